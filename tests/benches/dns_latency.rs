//! Benchmark (not a test): DNS answer latency through rbm-agent's proxy
//! (bottle -> sentry proxy -> world) side by side with asking the world's
//! server directly from the sentry, in one run, interleaved, reported as
//! ratios. Two cases: the same name again and again (its address stays
//! open, so the proxy skips the kernel), and a fresh name every time (each
//! answer opens a new address in the kernel before it is sent).
//! Run as root after scripts/build-static: `cargo bench -p rbm-tests --bench dns_latency`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::Result;
use rbm_tests::agent::Agent;
use rbm_tests::bench::{self, field};
use rbm_tests::netns::SENTRY_ENCLAVE_V4;
use rbm_tests::world::setup::WorldSetup;
use rbm_tests::{require_netns, Ns, Topology};
use serde_json::Value;

const DNS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
const TARGET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const NAME: &str = "bench.example.test";
/// `n1.fresh.example.test` ... each with its own address.
const FRESH: &str = "n{i}.fresh.example.test";
const QUERIES: &str = "2000";
const ROUNDS: usize = 3;

fn profile() -> String {
    bench::profile(&[NAME, "*.fresh.example.test"], DNS)
}

fn zone() -> String {
    let mut zone = format!("{NAME}. A 60 {TARGET}\n");
    for i in 1..=QUERIES.parse::<u32>().unwrap() {
        let addr = Ipv4Addr::from(0x0a62_0000 + i);
        zone.push_str(&format!(
            "{}. A 60 {addr}\n",
            FRESH.replace("{i}", &i.to_string())
        ));
    }
    zone
}

fn run(topo: &Topology, ns: Ns, server: Ipv4Addr, name: &str) -> Result<Value> {
    let server = server.to_string();
    bench::probe(
        topo,
        ns,
        &["dns-bench", name, "--server", &server, "--count", QUERIES],
    )
}

fn main() -> Result<()> {
    if require_netns("the DNS latency benchmark runs in network namespaces").is_err() {
        return Ok(());
    }
    let topo = Topology::builder()
        .world_addrs([IpAddr::V4(DNS), IpAddr::V4(TARGET)])
        .build()?;
    let _world = WorldSetup::new(&zone())
        .dns(SocketAddr::new(IpAddr::V4(DNS), 53))
        .start(&topo)?;
    println!("dns_latency: {QUERIES} sequential UDP queries per side per round, interleaved");
    for (case, name) in [("same name", NAME), ("fresh names", FRESH)] {
        for round in 1..=ROUNDS {
            // A new agent per round: fresh names must really be new to it.
            let agent = Agent::start(&topo, &profile())?;
            let proxied = run(&topo, Ns::Bottle, SENTRY_ENCLAVE_V4, name)?;
            let direct = run(&topo, Ns::Sentry, DNS, name)?;
            drop(agent);
            for pct in ["p50_us", "p99_us", "mean_us"] {
                let (p, d) = (field(&proxied, pct), field(&direct, pct));
                println!(
                    "  {case:<11} round {round} {pct:<7} via rbm proxy {p:>7.0} us   direct {d:>7.0} us   ratio {:.2}",
                    p / d
                );
            }
        }
    }
    Ok(())
}
