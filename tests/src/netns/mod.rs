//! Throwaway network namespaces for kernel tests: a bottle, a sentry and a
//! world, wired like rbm's Podman setup (see [`build`] for the exact layout).

mod build;

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::Value;
use tempfile::TempDir;

pub use build::{ipv4_range, TopologyBuilder, ENCLAVE_ROUTE_METRIC, UPLINK_ROUTE_METRIC};

use crate::bins::static_bin;
use crate::cmd::{self, Output, Spawned};
use crate::json::probe_json;

/// Timeout of each `ip` command used to build or tear down a topology.
pub const IP_TIMEOUT: Duration = Duration::from_secs(20);

pub const BOTTLE_V4: Ipv4Addr = Ipv4Addr::new(10, 242, 0, 3);
pub const SENTRY_ENCLAVE_V4: Ipv4Addr = Ipv4Addr::new(10, 242, 0, 2);
/// Where Podman's gateway of the enclave network would be.
pub const PODMAN_GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(10, 242, 0, 1);
pub const SENTRY_UPLINK_V4: Ipv4Addr = Ipv4Addr::new(10, 243, 0, 2);
pub const WORLD_V4: Ipv4Addr = Ipv4Addr::new(10, 243, 0, 1);
pub const BOTTLE_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x242, 0, 0, 0, 0, 0, 3);
pub const SENTRY_ENCLAVE_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x242, 0, 0, 0, 0, 0, 2);
pub const SENTRY_UPLINK_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x243, 0, 0, 0, 0, 0, 2);
pub const WORLD_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x243, 0, 0, 0, 0, 0, 1);

/// A route as (gateway, dev, metric).
pub type Route = (String, String, u64);

/// The sentry's IPv4 default route on the uplink.
pub fn uplink_default_route() -> Route {
    (
        WORLD_V4.to_string(),
        "eth0".into(),
        UPLINK_ROUTE_METRIC.into(),
    )
}

/// The IPv4 default route Podman gives the sentry on the enclave, with `metric`.
pub fn enclave_default_route(metric: u32) -> Route {
    (PODMAN_GATEWAY_V4.to_string(), "eth1".into(), metric.into())
}

/// One of the three namespaces of a [`Topology`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ns {
    Bottle,
    Sentry,
    World,
}

impl Ns {
    pub const ALL: [Ns; 3] = [Ns::Bottle, Ns::Sentry, Ns::World];

    fn index(self) -> usize {
        self as usize
    }

    fn suffix(self) -> &'static str {
        match self {
            Ns::Bottle => "bottle",
            Ns::Sentry => "sentry",
            Ns::World => "world",
        }
    }
}

/// A probe run: its parsed JSON report and the raw command output.
#[derive(Debug)]
pub struct ProbeRun {
    pub json: Value,
    pub output: Output,
}

impl ProbeRun {
    /// Whether the probe exited 0.
    pub fn ok(&self) -> bool {
        self.output.success()
    }
}

/// Three network namespaces with unique names, deleted on drop, plus a
/// temporary directory for the test's files.
pub struct Topology {
    names: [String; 3],
    /// The namespaces created so far (teardown deletes exactly these).
    created: Vec<String>,
    world_addrs: Vec<IpAddr>,
    enclave_route_metric: u32,
    dir: TempDir,
}

impl Topology {
    /// Starts describing a topology; see [`TopologyBuilder`].
    pub fn builder() -> TopologyBuilder {
        TopologyBuilder::default()
    }

    /// The kernel name of namespace `ns` (for `ip -n NAME`).
    pub fn name(&self, ns: Ns) -> &str {
        &self.names[ns.index()]
    }

    /// The extra local addresses of the world namespace.
    pub fn world_addrs(&self) -> &[IpAddr] {
        &self.world_addrs
    }

    /// This topology's temporary directory (removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `contents` to `name` in [`Topology::dir`] and returns the path.
    pub fn write_file(&self, name: &str, contents: &str) -> Result<PathBuf> {
        crate::files::write_file(self.dir(), name, contents)
    }

    /// The default routes of `ns` for `family` (`-4` or `-6`), sorted by metric.
    pub fn default_routes(&self, ns: Ns, family: &str) -> Result<Vec<Route>> {
        let args = ["-j", family, "route", "show", "default"];
        let out = self.exec_ok(ns, "ip", &args, IP_TIMEOUT)?;
        let routes: Value = serde_json::from_str(&out.stdout)?;
        let Some(routes) = routes.as_array() else {
            bail!("`ip -j route` printed no list: {}", out.stdout);
        };
        let mut list: Vec<Route> = routes
            .iter()
            .map(|r| {
                (
                    r["gateway"].as_str().unwrap_or("").to_string(),
                    r["dev"].as_str().unwrap_or("").to_string(),
                    r["metric"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        list.sort_by_key(|r| r.2);
        Ok(list)
    }

    /// Runs `program args` inside `ns`, returning its output whatever its status.
    pub fn exec<S: AsRef<str>>(
        &self,
        ns: Ns,
        program: &str,
        args: &[S],
        timeout: Duration,
    ) -> Result<Output> {
        cmd::run("ip", &self.netns_exec_args(ns, program, args), timeout)
    }

    /// Like [`Topology::exec`], and fails unless the command exited 0.
    pub fn exec_ok<S: AsRef<str>>(
        &self,
        ns: Ns,
        program: &str,
        args: &[S],
        timeout: Duration,
    ) -> Result<Output> {
        self.exec(ns, program, args, timeout)?.check()
    }

    /// Starts `program args` in the background inside `ns`; the returned
    /// guard kills it on drop (keep it alive for as long as it is needed).
    pub fn spawn<S: AsRef<str>>(&self, ns: Ns, program: &str, args: &[S]) -> Result<Spawned> {
        cmd::spawn("ip", &self.netns_exec_args(ns, program, args))
    }

    /// Runs the static rbm-probe inside `ns` and parses its JSON report
    /// (whatever its exit status: check [`ProbeRun::ok`]).
    pub fn probe<S: AsRef<str>>(&self, ns: Ns, args: &[S], timeout: Duration) -> Result<ProbeRun> {
        let probe = static_bin("rbm-probe")?;
        let output = self.exec(ns, &probe.to_string_lossy(), args, timeout)?;
        let json = probe_json(&output)?;
        Ok(ProbeRun { json, output })
    }

    /// Gives `ns` its own /etc/resolv.conf (via /etc/netns/NAME/, which
    /// `ip netns exec` bind-mounts over /etc); removed on drop.
    pub fn set_resolv_conf(&self, ns: Ns, contents: &str) -> Result<()> {
        self.set_etc_file(ns, "resolv.conf", contents)
    }

    /// Gives `ns` its own /etc/`name` (e.g. `hosts`), as `set_resolv_conf`.
    pub fn set_etc_file(&self, ns: Ns, name: &str, contents: &str) -> Result<()> {
        let dir = netns_etc_dir(self.name(ns));
        fs::create_dir_all(&dir)?;
        crate::files::write_file(&dir, name, contents)?;
        Ok(())
    }

    fn netns_exec_args<S: AsRef<str>>(&self, ns: Ns, program: &str, args: &[S]) -> Vec<String> {
        let mut all = vec![
            "netns".into(),
            "exec".into(),
            self.name(ns).into(),
            program.into(),
        ];
        all.extend(args.iter().map(|a| a.as_ref().to_string()));
        all
    }

    /// Deletes the namespaces, reporting every failure (not only the first).
    pub fn close(mut self) -> Result<()> {
        let errors = self.teardown();
        if errors.is_empty() {
            return Ok(());
        }
        bail!("topology teardown failed:\n{}", errors.join("\n"))
    }

    /// Deletes everything this topology created; keeps going on errors
    /// and returns them all.
    fn teardown(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        for name in self.created.drain(..).rev() {
            let etc = netns_etc_dir(&name);
            if etc.exists() {
                if let Err(e) = fs::remove_dir_all(&etc) {
                    errors.push(format!("remove {}: {e}", etc.display()));
                }
            }
            if let Err(e) = cmd::run_ok("ip", &["netns", "del", &name], IP_TIMEOUT) {
                errors.push(format!("{e:#}"));
            }
        }
        errors
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for error in self.teardown() {
            eprintln!("topology cleanup: {error}");
        }
    }
}

fn netns_etc_dir(name: &str) -> PathBuf {
    Path::new("/etc/netns").join(name)
}
