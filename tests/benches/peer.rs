//! Benchmark (not a test): rbm-agent against the peer it replaces,
//! dnsmasq with `--nftset` and a table like rbm's (`rbm_tests::peer`), as
//! the sentry in the same network namespaces, in one run, rounds
//! interleaved, reported as ratios. "direct" is the bottle with no sentry
//! software at all: it asks the world's DNS server itself, and the sentry
//! only routes (no table), so "added" (a side minus direct) is what the
//! sentry's software costs. "relay" is a bare DNS relay over UDP in the
//! sentry's place (`rbm-probe dns-relay`: no policy, no cache, no
//! learning): the least any sentry that answers DNS adds, the floor both
//! sentries' UDP latency is compared with.
//!
//! - DNS, over UDP and over TCP (a new connection per query): the same
//!   name again; 200 names in rotation; a fresh name each query (each
//!   answer opens a new address before it reaches the bottle).
//!   p50, p99 and max of all queries pooled over the rounds.
//! - TCP connect time to a learned address through the sentry.
//! - iperf3 to a learned address, 1 and 8 streams (medians of the rounds).
//! - Then, for each sentry: DNS latency (the same name, fresh names) with
//!   nothing learned, a flood of 100,000 fresh names (each answer opens
//!   its address), the same latency again with 100,000 addresses in the
//!   set, and the sentry's resident memory before and after the flood.
//!
//! Run as root after scripts/build-static, with dnsmasq and iperf3
//! installed (`scripts/deps dnsmasq-base iperf3`):
//! `cargo bench -p rbm-tests --bench peer`. `RBM_BENCH_QUERIES=300` (and
//! `RBM_BENCH_IPERF_SECONDS=1`, `RBM_BENCH_FLOOD=1000`) make a smoke run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::thread;
use std::time::Duration;

use anyhow::{bail, ensure, Result};
use rbm_tests::agent::Agent;
use rbm_tests::bench::{self, count_from_env, median, Pooled};
use rbm_tests::bins::static_bin;
use rbm_tests::cmd::Spawned;
use rbm_tests::netns::SENTRY_ENCLAVE_V4;
use rbm_tests::peer::Dnsmasq;
use rbm_tests::skip::find_in_path;
use rbm_tests::world::setup::{RunningWorld, WorldSetup};
use rbm_tests::{require_netns, Ns, Topology};

const DNS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
/// The learned address of the connect and iperf3 runs.
const TARGET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const TARGET_PORT: u16 = 80;
const SAME: &str = "bench.example.test";
/// Allowed by neither sentry: never asked upstream, never answered.
const OTHER: &str = "other.example.test";
/// `r1.rot.example.test` ... `r200.rot.example.test`.
const ROTATING: &str = "r{i}.rot.example.test";
const ROTATION: u32 = 200;
/// rbm's allowlist; dnsmasq's names cover the same (and their parents).
const RBM_DOMAINS: [&str; 3] = [SAME, "*.rot.example.test", "*.fresh.example.test"];
const PEER_DOMAINS: [&str; 3] = [SAME, "rot.example.test", "fresh.example.test"];
/// Fresh names: 10.64.0.0 upwards, one address each.
const FRESH_BASE: Ipv4Addr = Ipv4Addr::new(10, 64, 0, 0);
const TTL: u32 = 60;
/// Long enough that nothing the flood opened expires before the timing
/// after it ends.
const FLOOD_TTL: u32 = 3600;

/// Queries per case, protocol and side, over all rounds.
const QUERIES: u32 = 20_000;
const QUERIES_ENV: &str = "RBM_BENCH_QUERIES";
/// TCP connections per side, over all rounds.
const CONNECTIONS: u32 = 4_000;
const IPERF_SECONDS: u32 = 5;
const IPERF_SECONDS_ENV: &str = "RBM_BENCH_IPERF_SECONDS";
const ROUNDS: u32 = 4;
/// Fresh names the flood asks each sentry, and the queries timed before
/// and after it, per case.
const FLOOD: u32 = 100_000;
const FLOOD_ENV: &str = "RBM_BENCH_FLOOD";
const FLOOD_PROBES: u32 = 2_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    Direct,
    Relay,
    Rbm,
    Peer,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::Direct => "direct",
            Side::Relay => "relay",
            Side::Rbm => "rbm",
            Side::Peer => "peer",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Case {
    Same,
    Rotating,
    Fresh,
}

impl Case {
    const ALL: [Case; 3] = [Case::Same, Case::Rotating, Case::Fresh];

    fn label(self) -> &'static str {
        match self {
            Case::Same => "the same name again",
            Case::Rotating => "200 names in rotation",
            Case::Fresh => "a fresh name each query",
        }
    }
}

/// Every fresh name a run asks (one `{i}` template per side, protocol and
/// round, so that no sentry has seen any of them), and the zone.
struct Names {
    per_round: u32,
    flood: u32,
}

impl Names {
    fn fresh(side: Side, tcp: bool, round: u32) -> String {
        let proto = if tcp { "tcp" } else { "udp" };
        format!("n{{i}}.{}-{proto}-{round}.fresh.example.test", side.label())
    }

    /// The flood's names, and those timed before and after it.
    fn flooded(side: Side, phase: &str) -> String {
        format!("n{{i}}.{}-{phase}.fresh.example.test", side.label())
    }

    fn template(&self, case: Case, side: Side, tcp: bool, round: u32) -> String {
        match case {
            Case::Same => SAME.into(),
            Case::Rotating => ROTATING.into(),
            Case::Fresh => Names::fresh(side, tcp, round),
        }
    }

    fn zone(&self) -> String {
        let mut zone = format!("{SAME}. A {TTL} {TARGET}\n");
        for i in 1..=ROTATION {
            let addr = Ipv4Addr::new(10, 63, (i >> 8) as u8, i as u8);
            let name = ROTATING.replace("{i}", &i.to_string());
            let _ = writeln!(zone, "{name}. A {TTL} {addr}");
        }
        let mut next = u32::from(FRESH_BASE);
        for side in [Side::Direct, Side::Relay, Side::Rbm, Side::Peer] {
            for tcp in [false, true] {
                for round in 1..=ROUNDS {
                    let template = Names::fresh(side, tcp, round);
                    for i in 1..=self.per_round {
                        next += 1;
                        let name = template.replace("{i}", &i.to_string());
                        let _ = writeln!(zone, "{name}. A {TTL} {}", Ipv4Addr::from(next));
                    }
                }
            }
        }
        for side in [Side::Rbm, Side::Peer] {
            for (phase, count) in [
                ("empty", FLOOD_PROBES),
                ("flood", self.flood),
                ("full", FLOOD_PROBES),
            ] {
                let template = Names::flooded(side, phase);
                for i in 1..=count {
                    next += 1;
                    let name = template.replace("{i}", &i.to_string());
                    let _ = writeln!(zone, "{name}. A {FLOOD_TTL} {}", Ipv4Addr::from(next));
                }
            }
        }
        zone
    }
}

/// The sentry software of one side, running (none for direct); stopped,
/// and its table deleted, on drop.
struct Sentry<'t> {
    _rbm: Option<RbmSentry<'t>>,
    _peer: Option<Dnsmasq<'t>>,
    _relay: Option<Spawned>,
}

/// The agent, whose table stays after it stops (fail closed): deleted here.
struct RbmSentry<'t> {
    topo: &'t Topology,
    agent: Option<Agent>,
}

impl Drop for RbmSentry<'_> {
    fn drop(&mut self) {
        drop(self.agent.take());
        let args = ["delete", "table", "inet", "rbm"];
        if let Err(e) = self
            .topo
            .exec_ok(Ns::Sentry, "nft", &args, Duration::from_secs(20))
        {
            eprintln!("deleting rbm's table: {e:#}");
        }
    }
}

impl Sentry<'_> {
    /// The sentry software's resident memory (KiB): the largest of the
    /// process started and its children (the agent runs under its
    /// supervisor).
    fn rss_kib(&self) -> Result<u64> {
        let pid = match (&self._rbm, &self._peer) {
            (Some(rbm), _) => rbm.agent.as_ref().map(|a| a.process.pid()),
            (_, Some(peer)) => Some(peer.pid()),
            _ => None,
        };
        let pid = pid.ok_or_else(|| anyhow::anyhow!("no sentry software runs"))?;
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))?;
        let pids =
            std::iter::once(pid).chain(children.split_whitespace().filter_map(|p| p.parse().ok()));
        let rss = pids
            .filter_map(|p: u32| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
            .filter_map(|status| {
                let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
                line.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .max();
        rss.ok_or_else(|| anyhow::anyhow!("no VmRSS for pid {pid}"))
    }
}

fn start(topo: &Topology, side: Side) -> Result<Sentry<'_>> {
    let rbm = match side {
        Side::Rbm => Some(RbmSentry {
            topo,
            agent: Some(Agent::start(topo, &bench::profile(&RBM_DOMAINS, DNS))?),
        }),
        _ => None,
    };
    let peer = match side {
        Side::Peer => Some(Dnsmasq::start(topo, &PEER_DOMAINS, DNS)?),
        _ => None,
    };
    let relay = match side {
        Side::Relay => {
            let probe = static_bin("rbm-probe")?;
            let listen = SocketAddr::from((SENTRY_ENCLAVE_V4, 53)).to_string();
            let upstream = SocketAddr::from((DNS, 53)).to_string();
            let args = ["dns-relay", &listen, &upstream];
            let mut relay = topo.spawn(Ns::Sentry, &probe.to_string_lossy(), &args)?;
            relay.wait_for_line("ready", Duration::from_secs(10))?;
            Some(relay)
        }
        _ => None,
    };
    Ok(Sentry {
        _rbm: rbm,
        _peer: peer,
        _relay: relay,
    })
}

/// Where a side's bottle sends its queries.
fn server(side: Side) -> Ipv4Addr {
    match side {
        Side::Direct => DNS,
        Side::Relay | Side::Rbm | Side::Peer => SENTRY_ENCLAVE_V4,
    }
}

/// What one side measured, pooled over the rounds.
#[derive(Default)]
struct Measured {
    dns: BTreeMap<(bool, Case), Pooled>,
    connect: Pooled,
    one_stream: Vec<f64>,
    eight_streams: Vec<f64>,
}

struct Plan {
    names: Names,
    connections: u32,
    iperf_seconds: u32,
}

/// Both sentries do the same job: a name outside the allowlist gets no
/// address, and the world's server is not asked for it.
fn check_refuses(topo: &Topology, world: &RunningWorld, side: Side) -> Result<()> {
    let server = server(side).to_string();
    let report = bench::probe(topo, Ns::Bottle, &["dns", OTHER, "--server", &server])?;
    let addrs = report["addrs"].as_array().map_or(0, Vec::len);
    ensure!(
        addrs == 0 && !world.was_asked(OTHER)?,
        "{} let {OTHER} through: {report}",
        side.label()
    );
    Ok(())
}

/// One round of one side: every DNS case over UDP and TCP, then connect
/// and iperf3 to the learned target.
fn round(
    topo: &Topology,
    world: &RunningWorld,
    plan: &Plan,
    (side, round): (Side, u32),
    out: &mut Measured,
) -> Result<()> {
    let _sentry = start(topo, side)?;
    if matches!(side, Side::Rbm | Side::Peer) {
        check_refuses(topo, world, side)?;
    }
    let server = server(side).to_string();
    let count = plan.names.per_round.to_string();
    let rotation = ROTATION.to_string();
    // The relay is UDP only, and opens nothing to connect to.
    let protocols: &[bool] = match side {
        Side::Relay => &[false],
        _ => &[false, true],
    };
    for &tcp in protocols {
        for case in Case::ALL {
            let name = plan.names.template(case, side, tcp, round);
            let mut args = vec![
                "dns-bench",
                &name,
                "--server",
                &server,
                "--count",
                &count,
                "--samples",
            ];
            if tcp {
                args.push("--tcp");
            }
            if case == Case::Rotating {
                args.extend(["--rotate", &rotation]);
            }
            let report = bench::probe(topo, Ns::Bottle, &args)?;
            out.dns.entry((tcp, case)).or_default().add(&report)?;
        }
    }
    if side == Side::Relay {
        return Ok(());
    }
    // The target's address is open again for what follows (a sentry's
    // answer opens it; direct needs none).
    bench::probe(topo, Ns::Bottle, &["dns", SAME, "--server", &server])?;
    let target = SocketAddr::new(IpAddr::V4(TARGET), TARGET_PORT).to_string();
    let connections = (plan.connections / ROUNDS).max(1).to_string();
    let report = bench::probe(
        topo,
        Ns::Bottle,
        &[
            "connect-bench",
            &target,
            "--count",
            &connections,
            "--samples",
        ],
    )?;
    out.connect.add(&report)?;
    let seconds = plan.iperf_seconds;
    out.one_stream
        .push(bench::iperf(topo, Ns::Bottle, TARGET, 1, seconds)?);
    out.eight_streams
        .push(bench::iperf(topo, Ns::Bottle, TARGET, 8, seconds)?);
    Ok(())
}

/// Widens the ephemeral ports and reuses TIME_WAIT ones in `ns`: tens of
/// thousands of short TCP connections to one address within a minute.
fn many_connections(topo: &Topology, ns: Ns) -> Result<()> {
    let sysctls = [
        "-qw",
        "net.ipv4.ip_local_port_range=1024 65535",
        "net.ipv4.tcp_tw_reuse=1",
    ];
    topo.exec_ok(ns, "sysctl", &sysctls, Duration::from_secs(10))?;
    Ok(())
}

fn main() -> Result<()> {
    if require_netns("the peer benchmark runs in network namespaces").is_err() {
        return Ok(());
    }
    for (tool, package) in [("dnsmasq", "dnsmasq-base"), ("iperf3", "iperf3")] {
        if find_in_path(tool).is_none() {
            bail!("{tool} is not installed: run `scripts/deps {package}`");
        }
    }
    let queries = count_from_env(QUERIES_ENV, QUERIES);
    let plan = Plan {
        names: Names {
            per_round: (queries / ROUNDS).max(1),
            flood: count_from_env(FLOOD_ENV, FLOOD),
        },
        connections: CONNECTIONS.min(queries),
        iperf_seconds: count_from_env(IPERF_SECONDS_ENV, IPERF_SECONDS),
    };
    let topo = Topology::builder()
        .world_addrs([IpAddr::V4(DNS), IpAddr::V4(TARGET)])
        .build()?;
    for ns in [Ns::Bottle, Ns::Sentry] {
        many_connections(&topo, ns)?;
    }
    let world = WorldSetup::new(&plan.names.zone())
        .dns(SocketAddr::new(IpAddr::V4(DNS), 53))
        .answer([SocketAddr::new(IpAddr::V4(TARGET), TARGET_PORT)])
        .start(&topo)?;
    let _iperf = topo.spawn(Ns::World, "iperf3", &["-s", "-B", &TARGET.to_string()])?;
    thread::sleep(Duration::from_millis(500));

    println!(
        "peer: rbm-agent against dnsmasq --nftset, {}",
        bench::machine()
    );
    println!(
        "  rbm as it ships (name binding on); the peer: {} with its defaults (a cache of 150 names)",
        dnsmasq_version()
    );
    println!(
        "  {} queries per case, protocol and side, {} TCP connections per side, iperf3 {} s; {ROUNDS} rounds interleaved",
        plan.names.per_round * ROUNDS,
        (plan.connections / ROUNDS).max(1) * ROUNDS,
        plan.iperf_seconds
    );
    let mut measured: BTreeMap<Side, Measured> = BTreeMap::new();
    for r in 1..=ROUNDS {
        let order = match r % 2 {
            1 => [Side::Direct, Side::Relay, Side::Rbm, Side::Peer],
            _ => [Side::Peer, Side::Rbm, Side::Relay, Side::Direct],
        };
        for side in order {
            eprintln!("round {r}/{ROUNDS}: {}", side.label());
            let out = measured.entry(side).or_default();
            round(&topo, &world, &plan, (side, r), out)?;
        }
    }
    report(&measured);
    println!(
        "\n{} fresh names learned: DNS latency (us) with nothing learned and with all of them in the set",
        plan.names.flood
    );
    println!(
        "{:<6} {:<22} {:>5} {:>8} {:>8} {:>10}",
        "", "", "", "empty", "full", "full/empty"
    );
    for side in [Side::Rbm, Side::Peer] {
        let flooded = flood(&topo, &plan, side)?;
        flooded.report(side);
    }
    Ok(())
}

/// One sentry before and after the flood.
struct Flooded {
    empty: [Pooled; 2],
    full: [Pooled; 2],
    flood_secs: f64,
    rss_kib: (u64, u64),
}

impl Flooded {
    fn report(&self, side: Side) {
        for (i, case) in ["the same name again", "a fresh name"].iter().enumerate() {
            for (stat, pct) in [("p50", 50), ("p99", 99)] {
                let (e, f) = (self.empty[i].percentile(pct), self.full[i].percentile(pct));
                println!(
                    "{:<6} {case:<22} {stat:>5} {e:>8.0} {f:>8.0} {:>10.2}",
                    side.label(),
                    f / e
                );
            }
        }
        println!(
            "{:<6} the flood took {:.1} s; resident memory {:.1} MiB before, {:.1} MiB after",
            side.label(),
            self.flood_secs,
            self.rss_kib.0 as f64 / 1024.0,
            self.rss_kib.1 as f64 / 1024.0
        );
    }
}

/// Starts `side`'s sentry, times the same name and fresh names, floods it
/// with fresh names (every answer opens its address), times them again.
fn flood(topo: &Topology, plan: &Plan, side: Side) -> Result<Flooded> {
    eprintln!("flood: {}", side.label());
    let sentry = start(topo, side)?;
    let server = server(side).to_string();
    let timed = |phase: &str| -> Result<[Pooled; 2]> {
        let mut same = Pooled::default();
        let mut fresh = Pooled::default();
        let probes = FLOOD_PROBES.to_string();
        let args = |name: &str| {
            let name = name.to_string();
            vec![
                "dns-bench".to_string(),
                name,
                "--server".into(),
                server.clone(),
                "--count".into(),
                probes.clone(),
                "--samples".into(),
            ]
        };
        same.add(&bench::probe(topo, Ns::Bottle, &args(SAME))?)?;
        fresh.add(&bench::probe(
            topo,
            Ns::Bottle,
            &args(&Names::flooded(side, phase)),
        )?)?;
        Ok([same, fresh])
    };
    let empty = timed("empty")?;
    let rss_before = sentry.rss_kib()?;
    let count = plan.names.flood.to_string();
    let name = Names::flooded(side, "flood");
    let started = std::time::Instant::now();
    let report = bench::probe(
        topo,
        Ns::Bottle,
        &["dns-bench", &name, "--server", &server, "--count", &count],
    )?;
    let flood_secs = started.elapsed().as_secs_f64();
    ensure!(
        report["answered"].as_u64() == Some(u64::from(plan.names.flood)),
        "{} did not answer the whole flood: {report}",
        side.label()
    );
    let rss_after = sentry.rss_kib()?;
    let full = timed("full")?;
    Ok(Flooded {
        empty,
        full,
        flood_secs,
        rss_kib: (rss_before, rss_after),
    })
}

/// Each sentry's UDP latency over the bare relay's: what its own work
/// (policy, cache, learning) adds to the least a DNS-answering sentry pays.
fn floor(m: &BTreeMap<Side, Measured>) {
    let [direct, relay, rbm, peer] =
        [Side::Direct, Side::Relay, Side::Rbm, Side::Peer].map(|side| &m[&side]);
    println!(
        "\n{:<34} {:>5} {:>11} {:>10} {:>10} {:>10}",
        "over the bare relay (us)", "", "relay added", "rbm over", "peer over", "over r/p"
    );
    for case in Case::ALL {
        let key = (false, case);
        let label = format!("DNS UDP {}", case.label());
        for (stat, pct) in [("p50", 50), ("p99", 99)] {
            let [d, f, r, p] = [direct, relay, rbm, peer].map(|s| s.dns[&key].percentile(pct));
            let (ro, po) = (r - f, p - f);
            let ratio = ratio_of_added(ro, po);
            println!(
                "{label:<34} {stat:>5} {:>11.0} {ro:>10.0} {po:>10.0} {ratio:>10}",
                f - d
            );
        }
    }
}

/// `rbm / peer` of two added times: none unless both added some.
fn ratio_of_added(rbm: f64, peer: f64) -> String {
    match rbm > 0.0 && peer > 0.0 {
        true => format!("{:.2}", rbm / peer),
        false => "-".into(),
    }
}

/// `Dnsmasq version 2.90`, as dnsmasq prints it.
fn dnsmasq_version() -> String {
    rbm_tests::run("dnsmasq", &["--version"], Duration::from_secs(10))
        .ok()
        .and_then(|out| out.stdout.lines().next().map(str::to_string))
        .and_then(|line| line.split("  ").next().map(str::to_string))
        .unwrap_or_else(|| "dnsmasq".into())
}

fn report(m: &BTreeMap<Side, Measured>) {
    let (direct, rbm, peer) = (&m[&Side::Direct], &m[&Side::Rbm], &m[&Side::Peer]);
    println!(
        "\n{:<34} {:>5} {:>8} {:>8} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "latency (us)",
        "",
        "direct",
        "rbm",
        "peer",
        "rbm added",
        "peer added",
        "added r/p",
        "total r/p"
    );
    let mut rows: Vec<(String, &Pooled, &Pooled, &Pooled)> = Vec::new();
    for tcp in [false, true] {
        for case in Case::ALL {
            let key = (tcp, case);
            let label = format!("DNS {} {}", if tcp { "TCP" } else { "UDP" }, case.label());
            rows.push((label, &direct.dns[&key], &rbm.dns[&key], &peer.dns[&key]));
        }
    }
    rows.push((
        "TCP connect to a learned address".into(),
        &direct.connect,
        &rbm.connect,
        &peer.connect,
    ));
    for (label, d, r, p) in rows {
        for (stat, pct) in [("p50", 50), ("p99", 99), ("max", 100)] {
            let (d, r, p) = (d.percentile(pct), r.percentile(pct), p.percentile(pct));
            let (ra, pa) = (r - d, p - d);
            let added = ratio_of_added(ra, pa);
            println!(
                "{label:<34} {stat:>5} {d:>8.0} {r:>8.0} {p:>8.0} {ra:>10.0} {pa:>10.0} {added:>10} {:>10.2}",
                r / p
            );
        }
    }
    floor(m);
    println!("\niperf3 to a learned address (Gbit/s, medians of {ROUNDS} rounds; % of direct)");
    for (label, pick) in [
        (
            "1 stream",
            (|s: &Measured| median(&s.one_stream)) as fn(&Measured) -> f64,
        ),
        ("8 streams", |s: &Measured| median(&s.eight_streams)),
    ] {
        let (d, r, p) = (pick(direct), pick(rbm), pick(peer));
        println!(
            "  {label:<10} direct {:>6.2}   rbm {:>6.2} ({:>5.1}%)   peer {:>6.2} ({:>5.1}%)   rbm/peer {:.2}",
            d / 1e9,
            r / 1e9,
            100.0 * r / d,
            p / 1e9,
            100.0 * p / d,
            r / p
        );
    }
}
