//! Benchmark (not a test): DNS answer latency through rbm-agent's proxy
//! (bottle -> sentry proxy -> world, learning the address on every answer)
//! side by side with asking the world's server directly from the sentry,
//! in one run, interleaved. Reported as ratios.
//! Run as root after scripts/build-static: `cargo bench -p rbm-tests --bench dns_latency`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{ensure, Result};
use rbm_tests::agent::Agent;
use rbm_tests::netns::{BOTTLE_V4, SENTRY_ENCLAVE_V4};
use rbm_tests::world::setup::WorldSetup;
use rbm_tests::{require_netns, static_bin, Ns, Topology};
use serde_json::Value;

const DNS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
const TARGET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const NAME: &str = "bench.example.test";
const QUERIES: &str = "2000";
const ROUNDS: usize = 3;

fn profile() -> String {
    format!(
        "moniker = \"bench\"\n[bottle]\nimage = \"unused\"\n[enclave]\nsubnet = \"10.242.0.0/24\"\n\
         sentry_ip = \"{SENTRY_ENCLAVE_V4}\"\nbottle_ip = \"{BOTTLE_V4}\"\n[uplink]\ndns = \"allowlist\"\n\
         access = \"allowlist\"\ndomains = [\"{NAME}\"]\nupstream_dns = [\"{DNS}\"]\n"
    )
}

fn bench(topo: &Topology, ns: Ns, server: Ipv4Addr) -> Result<Value> {
    let probe = static_bin("rbm-probe")?.to_string_lossy().into_owned();
    let server = server.to_string();
    let args = ["dns-bench", NAME, "--server", &server, "--count", QUERIES];
    let out = topo.exec(ns, &probe, &args, Duration::from_secs(120))?;
    let json: Value = serde_json::from_str(&out.stdout)?;
    ensure!(
        out.success(),
        "dns-bench from {ns:?} to {server} failed: {json}"
    );
    Ok(json)
}

fn us(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

fn main() -> Result<()> {
    if require_netns("the DNS latency benchmark runs in network namespaces").is_err() {
        return Ok(());
    }
    let topo = Topology::builder()
        .world_addrs([IpAddr::V4(DNS), IpAddr::V4(TARGET)])
        .build()?;
    let _world = WorldSetup::new(&format!("{NAME}. A 60 {TARGET}\n"))
        .dns(SocketAddr::new(IpAddr::V4(DNS), 53))
        .start(&topo)?;
    let _agent = Agent::start(&topo, &profile())?;
    println!("dns_latency: {QUERIES} sequential UDP queries per side per round, {ROUNDS} rounds, interleaved");
    for round in 1..=ROUNDS {
        let proxied = bench(&topo, Ns::Bottle, SENTRY_ENCLAVE_V4)?;
        let direct = bench(&topo, Ns::Sentry, DNS)?;
        for pct in ["p50_us", "p99_us", "mean_us"] {
            let (p, d) = (us(&proxied, pct), us(&direct, pct));
            println!("  round {round} {pct:<7} via rbm proxy {p:>7.0} us   direct {d:>7.0} us   ratio {:.2}", p / d);
        }
    }
    Ok(())
}
