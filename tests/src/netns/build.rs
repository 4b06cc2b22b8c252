//! Creating a [`Topology`]:
//!
//! ```text
//!  bottle                 sentry                        world
//!  eth0 10.242.0.3/24 --- eth1 10.242.0.2/24  (enclave)
//!       fd00:242::3/64         fd00:242::2/64
//!                         eth0 10.243.0.2/24  (uplink) --- eth0 10.243.0.1/24
//!                              fd00:243::2/64                   fd00:243::1/64
//!                                                          lo   extra /32 and /128
//! ```
//!
//! - bottle: default via 10.242.0.2 and fd00:242::2.
//! - sentry: forwarding on (IPv4 and IPv6); default via 10.243.0.1 (metric
//!   100, netavark's) and fd00:243::1; plus, as Podman adds it for the
//!   enclave's `--route`, a second default route on the enclave
//!   (`default via 10.242.0.1 dev eth1 metric 1000 onlink`: the metric
//!   rbm-launch asks for, which the uplink's beats; see
//!   [`TopologyBuilder::enclave_route_metric`]). `onlink` because nothing
//!   answers at 10.242.0.1.
//! - world: the extra addresses on `lo`, and routes back to the enclave
//!   (10.242.0.0/24, fd00:242::/64 via the sentry), so anything the sentry
//!   forwards without masquerading gets a reply showing the bottle's address
//!   instead of silently timing out.
//!
//! The veth pairs are created directly inside the namespaces, so no
//! interface ever appears on the host and parallel tests cannot collide.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};

use super::{
    Ns, Topology, BOTTLE_V4, BOTTLE_V6, IP_TIMEOUT, PODMAN_GATEWAY_V4, SENTRY_ENCLAVE_V4,
    SENTRY_ENCLAVE_V6, SENTRY_UPLINK_V4, SENTRY_UPLINK_V6, WORLD_V4, WORLD_V6,
};
use crate::cmd;
use crate::files::temp_dir;

/// Prefix of every namespace name created by the tests.
pub const NS_PREFIX: &str = "rbmt-";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// `count` consecutive IPv4 addresses starting at `first`
/// (e.g. `ipv4_range(10.99.1.1, 200)` is 10.99.1.1 ..= 10.99.1.200).
pub fn ipv4_range(first: Ipv4Addr, count: u32) -> Vec<IpAddr> {
    let start = u32::from(first);
    (0..count)
        .map(|i| IpAddr::V4(Ipv4Addr::from(start + i)))
        .collect()
}

/// The metric of the sentry's default route on the uplink: netavark's.
pub const UPLINK_ROUTE_METRIC: u32 = 100;

/// The metric of the enclave's default route as rbm-launch creates it
/// (`--route 0.0.0.0/0,SENTRY,1000`), unless a test says otherwise.
pub const ENCLAVE_ROUTE_METRIC: u32 = 1000;

/// Describes a [`Topology`]; [`TopologyBuilder::build`] creates it.
pub struct TopologyBuilder {
    world_addrs: Vec<IpAddr>,
    enclave_route_metric: u32,
}

impl Default for TopologyBuilder {
    fn default() -> Self {
        TopologyBuilder {
            world_addrs: Vec::new(),
            enclave_route_metric: ENCLAVE_ROUTE_METRIC,
        }
    }
}

impl TopologyBuilder {
    /// The metric of the enclave default route Podman would give the
    /// sentry. Below [`UPLINK_ROUTE_METRIC`] it beats the uplink's, as a
    /// network created without rbm-launch's metric would.
    pub fn enclave_route_metric(mut self, metric: u32) -> Self {
        self.enclave_route_metric = metric;
        self
    }

    /// Adds one extra local address to the world (a /32 or /128 on `lo`).
    pub fn world_addr(mut self, addr: IpAddr) -> Self {
        self.world_addrs.push(addr);
        self
    }

    /// Adds extra local addresses to the world (see [`ipv4_range`]).
    pub fn world_addrs(mut self, addrs: impl IntoIterator<Item = IpAddr>) -> Self {
        self.world_addrs.extend(addrs);
        self
    }

    /// Creates the namespaces, links, addresses, routes and sysctls.
    /// On failure, whatever was created is deleted again.
    pub fn build(self) -> Result<Topology> {
        remove_stale_namespaces();
        let id = format!(
            "{NS_PREFIX}{}-{}-",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut topo = Topology {
            names: Ns::ALL.map(|ns| format!("{id}{}", ns.suffix())),
            created: Vec::new(),
            world_addrs: self.world_addrs,
            enclave_route_metric: self.enclave_route_metric,
            dir: temp_dir()?,
        };
        for ns in Ns::ALL {
            let name = topo.name(ns).to_string();
            cmd::run_ok("ip", &["netns", "add", &name], IP_TIMEOUT)?;
            topo.created.push(name);
        }
        create_veths(&topo)?;
        for ns in Ns::ALL {
            configure(&topo, ns)?;
        }
        topo.exec_ok(
            Ns::Sentry,
            "sysctl",
            &[
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
            ],
            IP_TIMEOUT,
        )?;
        Ok(topo)
    }
}

/// bottle eth0 <-> sentry eth1 (enclave), world eth0 <-> sentry eth0 (uplink).
fn create_veths(topo: &Topology) -> Result<()> {
    let sentry = topo.name(Ns::Sentry);
    for (ns, here, there) in [(Ns::Bottle, "eth0", "eth1"), (Ns::World, "eth0", "eth0")] {
        let args = [
            "-n",
            topo.name(ns),
            "link",
            "add",
            here,
            "type",
            "veth",
            "peer",
            "name",
            there,
            "netns",
            sentry,
        ];
        cmd::run_ok("ip", &args, IP_TIMEOUT)?;
    }
    Ok(())
}

/// Applies the `ip` batch of namespace `ns`.
fn configure(topo: &Topology, ns: Ns) -> Result<()> {
    let batch = match ns {
        Ns::Bottle => bottle_batch(),
        Ns::Sentry => sentry_batch(topo.enclave_route_metric),
        Ns::World => world_batch(&topo.world_addrs),
    };
    let file = topo.write_file(&format!("{}.ip-batch", ns.suffix()), &batch.join("\n"))?;
    let file = file.to_string_lossy();
    cmd::run_ok("ip", &["-n", topo.name(ns), "-batch", &file], IP_TIMEOUT)
        .with_context(|| format!("configuring the {} namespace", ns.suffix()))?;
    Ok(())
}

fn bottle_batch() -> Vec<String> {
    vec![
        "link set lo up".into(),
        "link set eth0 up".into(),
        format!("addr add {BOTTLE_V4}/24 dev eth0"),
        format!("addr add {BOTTLE_V6}/64 dev eth0 nodad"),
        format!("route add default via {SENTRY_ENCLAVE_V4} dev eth0"),
        format!("route add ::/0 via {SENTRY_ENCLAVE_V6} dev eth0"),
    ]
}

fn sentry_batch(enclave_route_metric: u32) -> Vec<String> {
    vec![
        "link set lo up".into(),
        "link set eth0 up".into(),
        "link set eth1 up".into(),
        format!("addr add {SENTRY_ENCLAVE_V4}/24 dev eth1"),
        format!("addr add {SENTRY_ENCLAVE_V6}/64 dev eth1 nodad"),
        format!("addr add {SENTRY_UPLINK_V4}/24 dev eth0"),
        format!("addr add {SENTRY_UPLINK_V6}/64 dev eth0 nodad"),
        format!("route add default via {WORLD_V4} dev eth0 metric {UPLINK_ROUTE_METRIC}"),
        format!("route add ::/0 via {WORLD_V6} dev eth0"),
        // What Podman adds for the enclave network's --route.
        format!(
            "route add default via {PODMAN_GATEWAY_V4} dev eth1 metric {enclave_route_metric} onlink"
        ),
    ]
}

fn world_batch(extra: &[IpAddr]) -> Vec<String> {
    let mut batch = vec![
        "link set lo up".into(),
        "link set eth0 up".into(),
        format!("addr add {WORLD_V4}/24 dev eth0"),
        format!("addr add {WORLD_V6}/64 dev eth0 nodad"),
        format!("route add 10.242.0.0/24 via {SENTRY_UPLINK_V4} dev eth0"),
        format!("route add fd00:242::/64 via {SENTRY_UPLINK_V6} dev eth0"),
    ];
    for addr in extra {
        batch.push(match addr {
            IpAddr::V4(a) => format!("addr add {a}/32 dev lo"),
            IpAddr::V6(a) => format!("addr add {a}/128 dev lo nodad"),
        });
    }
    batch
}

/// Deletes `rbmt-<pid>-…` namespaces left behind by test processes that
/// no longer exist (a crash or SIGKILL skips Drop). Best effort.
fn remove_stale_namespaces() {
    let Ok(entries) = fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(NS_PREFIX)
            .and_then(|r| r.split('-').next())
        else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new("/proc").join(pid).exists() {
            let _ = cmd::run("ip", &["netns", "del", &name], IP_TIMEOUT);
            let _ = fs::remove_dir_all(std::path::Path::new("/etc/netns").join(&name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_is_consecutive() {
        let r = ipv4_range(Ipv4Addr::new(10, 99, 1, 255), 3);
        let want: Vec<IpAddr> = ["10.99.1.255", "10.99.2.0", "10.99.2.1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(r, want);
    }

    #[test]
    fn world_gets_host_routes_on_lo() {
        let batch = world_batch(&[
            "198.51.100.10".parse().unwrap(),
            "2001:db8::5".parse().unwrap(),
        ]);
        assert!(batch.contains(&"addr add 198.51.100.10/32 dev lo".to_string()));
        assert!(batch.contains(&"addr add 2001:db8::5/128 dev lo nodad".to_string()));
    }
}
