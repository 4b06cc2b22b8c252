//! The peer rbm is measured against: the sentry it replaces, Debian's
//! dnsmasq with `--nftset`, in a topology's sentry namespace. An nftables
//! table like rbm's (forward denied unless the destination is in an allow
//! set that dnsmasq fills from the answers, with timeouts; the sentry takes
//! only DNS from the enclave; masquerade on the uplink), and dnsmasq
//! forwarding only the allowed names to the world's server.

use std::net::Ipv4Addr;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::cmd::Spawned;
use crate::netns::{Ns, Topology, SENTRY_ENCLAVE_V4};

/// The peer's nftables table, in the sentry (`inet peer`).
pub const TABLE: &str = "peer";
/// How long an answered address stays open (rbm's floor is lower; the
/// benchmarks' zones answer with TTL 60).
pub const SET_TIMEOUT_S: u32 = 60;
const NFT_TIMEOUT: Duration = Duration::from_secs(20);
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The table: enclave `eth1`, uplink `eth0`, as [`Topology`] names them.
fn ruleset() -> String {
    format!(
        "table inet {TABLE} {{
  set allow4 {{ type ipv4_addr; flags timeout; timeout {SET_TIMEOUT_S}s; }}
  set allow6 {{ type ipv6_addr; flags timeout; timeout {SET_TIMEOUT_S}s; }}
  chain input {{
    type filter hook input priority filter; policy drop;
    iif lo accept
    ct state established,related accept
    iifname \"eth1\" meta l4proto {{ tcp, udp }} th dport 53 accept
    icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} accept
  }}
  chain forward {{
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname \"eth1\" oifname \"eth0\" ip daddr @allow4 accept
    iifname \"eth1\" oifname \"eth0\" ip6 daddr @allow6 accept
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname \"eth0\" masquerade
  }}
}}
"
    )
}

/// dnsmasq as the sentry: the table installed, dnsmasq listening on the
/// sentry's enclave address. Dropping it stops dnsmasq and deletes the table.
pub struct Dnsmasq<'t> {
    topo: &'t Topology,
    process: Option<Spawned>,
}

impl<'t> Dnsmasq<'t> {
    /// Installs the table and starts dnsmasq answering `domains` (and
    /// their subdomains) from `upstream`, putting every answered address
    /// into the allow sets; any other name gets no upstream query.
    pub fn start(topo: &'t Topology, domains: &[&str], upstream: Ipv4Addr) -> Result<Dnsmasq<'t>> {
        let file = topo.write_file("peer.nft", &ruleset())?;
        topo.exec_ok(
            Ns::Sentry,
            "nft",
            &["-f", &file.to_string_lossy()],
            NFT_TIMEOUT,
        )?;
        let mut peer = Dnsmasq {
            topo,
            process: None,
        };
        let names = domains.join("/");
        let listen = format!("--listen-address={SENTRY_ENCLAVE_V4}");
        let server = format!("--server=/{names}/{upstream}");
        let nftset = format!("--nftset=/{names}/4#inet#{TABLE}#allow4,6#inet#{TABLE}#allow6");
        let args = [
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--pid-file",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--except-interface=lo",
            &listen,
            // Every other name is answered locally (no upstream query).
            "--server=/#/",
            &server,
            &nftset,
        ];
        peer.process = Some(topo.spawn(Ns::Sentry, "dnsmasq", &args)?);
        peer.wait_listening()?;
        Ok(peer)
    }

    /// dnsmasq's process id.
    pub fn pid(&self) -> u32 {
        self.process.as_ref().expect("started").pid()
    }

    /// Until dnsmasq's UDP socket on port 53 is bound in the sentry.
    fn wait_listening(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let bound = format!("{SENTRY_ENCLAVE_V4}:53");
        loop {
            let out = self
                .topo
                .exec_ok(Ns::Sentry, "ss", &["-lnu"], NFT_TIMEOUT)?;
            if out.stdout.contains(&bound) {
                return Ok(());
            }
            let process = self.process.as_mut().expect("started");
            if !process.is_running() || Instant::now() > deadline {
                bail!(
                    "dnsmasq did not start listening on {bound}\nstderr: {}",
                    process.stderr()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Dnsmasq<'_> {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            if let Err(e) = process.stop(Duration::from_secs(5)) {
                eprintln!("stopping dnsmasq: {e:#}");
            }
        }
        let args = ["delete", "table", "inet", TABLE];
        if let Err(e) = self.topo.exec_ok(Ns::Sentry, "nft", &args, NFT_TIMEOUT) {
            eprintln!("deleting the peer's table: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_forwards_only_to_answered_addresses() {
        let rules = ruleset();
        assert!(rules.contains("hook forward priority filter; policy drop;"));
        assert!(rules.contains("ip daddr @allow4 accept"));
        assert!(rules.contains("flags timeout; timeout 60s;"));
        assert!(rules.contains("masquerade"));
    }
}
