//! The Podman host's addresses and networks, which the sentry withholds
//! from DNS answers: every Podman network's subnet and gateway (as Podman
//! reports them, local or remote) and, on Linux, this machine's own
//! interface addresses.
//!
//! An allowed name that resolves to one of them would open it to the
//! bottle (DNS rebinding): a service on the workstation's LAN address, on
//! Podman's 10.88.0.1, or another project's containers. The sentry sees
//! only its own uplink's gateway; the launcher sees the rest.

use std::net::IpAddr;

use ipnet::IpNet;

/// The agent's variable for them (rbm-agent's `policy::HOST_ENV`).
pub const ENV: &str = "RBM_HOST_NETS";

/// `podman network ls --format`: a network's name, then its subnets each
/// followed by its gateway, separated by spaces.
pub const NETWORK_FORMAT: &str = "{{.Name}}{{range .Subnets}} {{.Subnet}} {{.Gateway}}{{end}}";

/// The subnets and gateways of a `NETWORK_FORMAT` listing. Words that are
/// neither (a network without a gateway prints `<nil>`) are skipped.
pub fn from_networks(listing: &str) -> Vec<IpNet> {
    let mut nets = Vec::new();
    for line in listing.lines() {
        for word in line.split_whitespace().skip(1) {
            if let Some(net) = parse(word) {
                push(&mut nets, net);
            }
        }
    }
    nets
}

fn parse(word: &str) -> Option<IpNet> {
    word.parse::<IpNet>()
        .map(|n| n.trunc())
        .ok()
        .or_else(|| word.parse::<IpAddr>().ok().map(IpNet::from))
}

fn push(nets: &mut Vec<IpNet>, net: IpNet) {
    if !nets.contains(&net) {
        nets.push(net);
    }
}

/// This machine's own addresses, but loopback and link-local (the agent
/// withholds those always). Read from /proc, so Linux only: on macOS and
/// Windows Podman runs in a virtual machine, whose addresses Podman's
/// networks stand for, and none is returned.
pub fn local() -> Vec<IpNet> {
    let read = |path| std::fs::read_to_string(path).unwrap_or_default();
    let mut nets = from_fib_trie(&read("/proc/net/fib_trie"));
    for net in from_if_inet6(&read("/proc/net/if_inet6")) {
        push(&mut nets, net);
    }
    nets
}

fn keep(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local(),
        IpAddr::V6(v6) => !v6.is_loopback() && (v6.segments()[0] & 0xffc0) != 0xfe80,
    }
}

/// The local IPv4 addresses in /proc/net/fib_trie: a `|-- ADDR` line
/// followed by `/32 host LOCAL`.
fn from_fib_trie(text: &str) -> Vec<IpNet> {
    let mut nets = Vec::new();
    let mut last: Option<IpAddr> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(addr) = line.strip_prefix("|-- ") {
            last = addr.trim().parse().ok();
        } else if line.starts_with("/32 host LOCAL") {
            if let Some(ip) = last.filter(|ip| keep(*ip)) {
                push(&mut nets, IpNet::from(ip));
            }
        }
    }
    nets
}

/// The IPv6 addresses in /proc/net/if_inet6: 32 hex digits first on each
/// line.
fn from_if_inet6(text: &str) -> Vec<IpNet> {
    let mut nets = Vec::new();
    for line in text.lines() {
        let Some(hex) = line.split_whitespace().next() else {
            continue;
        };
        let Ok(bits) = u128::from_str_radix(hex, 16) else {
            continue;
        };
        let ip = IpAddr::V6(bits.into());
        if hex.len() == 32 && keep(ip) {
            push(&mut nets, IpNet::from(ip));
        }
    }
    nets
}

/// `networks` (Podman's, `from_networks`) and then this machine's own
/// (`local`): what `up` and `quadlet` hand the sentry. The profile's own
/// uplink subnet is not among them (one left by an earlier run): the
/// sentry's neighbours there are what the profile reaches by design; its
/// gateway stays withheld.
pub fn with_local(mut networks: Vec<IpNet>, profile: &rbm_profile::Profile) -> Vec<IpNet> {
    if let Some(own) = profile.uplink.subnet {
        networks.retain(|n| *n != IpNet::V4(own.trunc()));
    }
    for net in local() {
        push(&mut networks, net);
    }
    networks
}

/// The value of `ENV`, addresses without `/32` or `/128`.
pub fn value(nets: &[IpNet]) -> String {
    let list: Vec<String> = nets.iter().map(|n| short(*n)).collect();
    list.join(",")
}

/// `-e RBM_HOST_NETS=...` for the sentry, nothing when there are none.
pub fn sentry_args(nets: &[IpNet]) -> Vec<String> {
    if nets.is_empty() {
        return vec![];
    }
    vec!["-e".into(), format!("{ENV}={}", value(nets))]
}

/// A single address without its `/32` or `/128`.
fn short(net: IpNet) -> String {
    match net.prefix_len() == net.max_prefix_len() {
        true => net.addr().to_string(),
        false => net.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(nets: &[IpNet]) -> Vec<String> {
        nets.iter().map(|n| short(*n)).collect()
    }

    #[test]
    fn every_podman_network_s_subnets_and_gateways_are_gathered() {
        let listing = "podman 10.88.0.0/16 10.88.0.1\n\
                       rbm-demo-enclave 10.242.0.0/24 <nil>\n\
                       dual 10.89.3.0/24 10.89.3.1 fd12:3456::/64 fd12:3456::1\n\
                       again 10.88.0.0/16 10.88.0.1\n\
                       nosubnet\n";
        assert_eq!(
            strings(&from_networks(listing)),
            [
                "10.88.0.0/16",
                "10.88.0.1",
                "10.242.0.0/24",
                "10.89.3.0/24",
                "10.89.3.1",
                "fd12:3456::/64",
                "fd12:3456::1"
            ]
        );
    }

    #[test]
    fn this_machine_s_addresses_are_read_without_loopback_and_link_local() {
        let fib_trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     +-- 127.0.0.0/8 2 0 2\n        |-- 127.0.0.1\n           /32 host LOCAL\n     |-- 192.168.1.0\n        /24 link UNICAST\n     |-- 192.168.1.20\n        /32 host LOCAL\n     |-- 169.254.3.4\n        /32 host LOCAL\n     |-- 192.168.1.255\n        /32 link BROADCAST\nLocal:\n     |-- 192.168.1.20\n        /32 host LOCAL\n";
        assert_eq!(strings(&from_fib_trie(fib_trie)), ["192.168.1.20"]);
        let if_inet6 = "00000000000000000000000000000001 01 80 10 80       lo\n\
                        fe800000000000000000000000000001 02 40 20 80     eth0\n\
                        2001067c12340000000000000000abcd 02 40 00 00     eth0\n";
        assert_eq!(strings(&from_if_inet6(if_inet6)), ["2001:67c:1234::abcd"]);
    }

    #[test]
    fn the_sentry_gets_them_in_one_variable_or_none_at_all() {
        assert!(sentry_args(&[]).is_empty());
        let nets = [
            "10.88.0.0/16".parse().unwrap(),
            "10.88.0.1/32".parse().unwrap(),
        ];
        assert_eq!(
            sentry_args(&nets),
            ["-e", "RBM_HOST_NETS=10.88.0.0/16,10.88.0.1"]
        );
    }
}
