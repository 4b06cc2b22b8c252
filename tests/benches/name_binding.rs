//! Benchmark (not a test): what name binding costs. rbm-agent with
//! `uplink.name_binding` on and off in turn, in the same namespaces, in one
//! run, interleaved: the time to first byte of new TLS connections
//! (connect, ClientHello, first byte of the answer; with name binding the
//! SYN and the ClientHello visit the agent) and iperf3 throughput to a
//! named address, 1 and 8 streams (once decided, the kernel forwards
//! alone). Reported as on/off ratios.
//! Run as root after scripts/build-static, with iperf3 installed
//! (`scripts/deps iperf3`): `cargo bench -p rbm-tests --bench name_binding`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::thread;
use std::time::Duration;

use anyhow::Result;
use rbm_tests::agent::Agent;
use rbm_tests::bench::{self, field, median};
use rbm_tests::netns::SENTRY_ENCLAVE_V4;
use rbm_tests::world::setup::WorldSetup;
use rbm_tests::{require_netns, Ns, Topology};

const DNS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
const NAMES: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 70);
const NAME: &str = "names.example.test";
const CONNECTIONS: &str = "2000";
const IPERF_SECONDS: u32 = 5;
const ROUNDS: usize = 5;

fn profile(name_binding: bool) -> String {
    bench::profile(&[NAME], DNS) + &format!("name_binding = {name_binding}\n")
}

#[derive(Default)]
struct Samples {
    p50_us: Vec<f64>,
    p99_us: Vec<f64>,
    one_stream: Vec<f64>,
    eight_streams: Vec<f64>,
}

fn main() -> Result<()> {
    if require_netns("the name-binding benchmark runs in network namespaces").is_err() {
        return Ok(());
    }
    let topo = Topology::builder()
        .world_addrs([IpAddr::V4(DNS), IpAddr::V4(NAMES)])
        .build()?;
    let _world = WorldSetup::new(&format!("{NAME}. A 60 {NAMES}\n"))
        .dns(SocketAddr::new(IpAddr::V4(DNS), 53))
        .answer([SocketAddr::new(IpAddr::V4(NAMES), 443)])
        .start(&topo)?;
    let _iperf = topo.spawn(Ns::World, "iperf3", &["-s", "-B", &NAMES.to_string()])?;
    thread::sleep(Duration::from_millis(500));
    let target = SocketAddr::new(IpAddr::V4(NAMES), 443).to_string();
    let mut on = Samples::default();
    let mut off = Samples::default();
    println!("name_binding: {CONNECTIONS} new TLS connections and iperf3 ({IPERF_SECONDS} s, 1 and 8 streams) per side per round");
    for round in 1..=ROUNDS {
        for (binding, samples) in [(true, &mut on), (false, &mut off)] {
            let _agent = Agent::start(&topo, &profile(binding))?;
            let server = SENTRY_ENCLAVE_V4.to_string();
            bench::probe(&topo, Ns::Bottle, &["dns", NAME, "--server", &server])?;
            let ttfb = bench::probe(
                &topo,
                Ns::Bottle,
                &["ttfb", &target, "--tls", NAME, "--count", CONNECTIONS],
            )?;
            let (p50, p99) = (field(&ttfb, "p50_us"), field(&ttfb, "p99_us"));
            let one = bench::iperf(&topo, Ns::Bottle, NAMES, 1, IPERF_SECONDS)?;
            let eight = bench::iperf(&topo, Ns::Bottle, NAMES, 8, IPERF_SECONDS)?;
            println!(
                "  round {round} name binding {:<3}: first byte p50 {p50:>5.0} us p99 {p99:>5.0} us; iperf3 1 stream {:>6.2} Gbit/s, 8 streams {:>6.2} Gbit/s",
                if binding { "on" } else { "off" },
                one / 1e9,
                eight / 1e9
            );
            samples.p50_us.push(p50);
            samples.p99_us.push(p99);
            samples.one_stream.push(one);
            samples.eight_streams.push(eight);
        }
    }
    let (p50_on, p50_off) = (median(&on.p50_us), median(&off.p50_us));
    let (p99_on, p99_off) = (median(&on.p99_us), median(&off.p99_us));
    println!("medians of {ROUNDS} rounds, on/off:");
    println!(
        "  first byte p50: {p50_on:.0} us vs {p50_off:.0} us, added {:.0} us (ratio {:.2})",
        p50_on - p50_off,
        p50_on / p50_off
    );
    println!(
        "  first byte p99: {p99_on:.0} us vs {p99_off:.0} us, added {:.0} us (ratio {:.2})",
        p99_on - p99_off,
        p99_on / p99_off
    );
    for (what, a, b) in [
        ("iperf3 1 stream ", &on.one_stream, &off.one_stream),
        ("iperf3 8 streams", &on.eight_streams, &off.eight_streams),
    ] {
        let (a, b) = (median(a), median(b));
        println!(
            "  {what}: {:.2} vs {:.2} Gbit/s ({:.1}% of off)",
            a / 1e9,
            b / 1e9,
            100.0 * a / b
        );
    }
    Ok(())
}
