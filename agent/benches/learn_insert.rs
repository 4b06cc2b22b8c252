//! Benchmark (not a test): time to open 10,000 learned addresses in the
//! kernel, rbm's one netlink batch side by side with the usual peer, `nft -f`
//! with the same elements, in one run, in a fresh network namespace.
//! Run as root: `cargo bench -p rbm-agent --bench learn_insert`.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rbm_agent::firewall::netlink::NetlinkTransport;
use rbm_agent::firewall::ruleset::{FirewallInput, Interfaces, Ruleset};
use rbm_agent::firewall::{Firewall, Learn};
use rbm_agent::profile::{Mode, Ports};

const COUNT: u32 = 10_000;
const ROUNDS: usize = 7;

fn addrs() -> Vec<IpAddr> {
    (0..COUNT)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0x0a63_0000 + i)))
        .collect()
}

fn ruleset() -> Ruleset {
    Ruleset::build(&FirewallInput {
        access: Mode::Allowlist,
        cidrs: vec![],
        upstream_dns: vec![],
        bottle_ip: "10.242.0.3".parse().unwrap(),
        entries: vec![],
        interfaces: Interfaces {
            enclave: "eth1".into(),
            uplink: "eth0".into(),
        },
        name_binding: true,
        generation: 0,
        intercept: None,
    })
}

fn rbm_round(fw: &mut Firewall, items: &[Learn]) -> Duration {
    fw.install(&ruleset()).unwrap();
    let t = Instant::now();
    fw.learn(items).unwrap();
    t.elapsed()
}

fn nft_round(fw: &mut Firewall, script: &str) -> Duration {
    fw.install(&ruleset()).unwrap();
    let t = Instant::now();
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("nft (package nftables)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "nft -f failed");
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: learn_insert benchmark needs root");
        return;
    }
    let report = std::thread::spawn(|| {
        // SAFETY: affects only this thread.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
        let items: Vec<Learn> = addrs()
            .into_iter()
            .map(|addr| Learn {
                addr,
                ports: Ports::All,
                timeout: Duration::from_secs(60),
            })
            .collect();
        let elems: Vec<String> = addrs().iter().map(|a| format!("{a} timeout 60s")).collect();
        let script = format!("add element inet rbm learned4 {{ {} }}\n", elems.join(", "));
        let mut fw = Firewall::new(Box::new(NetlinkTransport::open().unwrap()));
        let mut rbm = Vec::new();
        let mut nft = Vec::new();
        for _ in 0..ROUNDS {
            rbm.push(rbm_round(&mut fw, &items));
            nft.push(nft_round(&mut fw, &script));
        }
        (median(rbm), median(nft))
    })
    .join()
    .unwrap();
    let (rbm, nft) = report;
    println!("learn_insert: {COUNT} addresses, median of {ROUNDS} rounds each, interleaved");
    println!(
        "  rbm netlink batch (add+delete+add, refreshes timeouts): {:>8.2} ms",
        rbm.as_secs_f64() * 1e3
    );
    println!(
        "  nft -f (add only):                                      {:>8.2} ms",
        nft.as_secs_f64() * 1e3
    );
    println!(
        "  ratio rbm / nft: {:.2}",
        rbm.as_secs_f64() / nft.as_secs_f64()
    );
}
