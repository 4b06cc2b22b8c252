//! What the benchmarks of the sentry's proxy share (`credential_proxy`,
//! `request_rules`): a world HTTPS server for one name, the same client
//! (rbm-probe's https-bench) in three modes, mitmproxy with an addon as
//! the peer, and the table of medians with the ratios.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use rbm_tests::bench::{self, median};
use rbm_tests::certs::TestCa;
use rbm_tests::netns::SENTRY_ENCLAVE_V4;
use rbm_tests::world::https::HttpsServer;
use rbm_tests::world::setup::{RunningWorld, WorldSetup};
use rbm_tests::{static_bin, Ns, Topology};
use serde_json::Value;

pub const DNS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
pub const WORLD: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 80);
pub const NAME: &str = "api.cred.test";
const MITM_PORT: u16 = 8443;
pub const ROUNDS: usize = 3;
const REUSED: &str = "2000";
const NEW: &str = "300";
const BIG: &str = "2";

/// The namespaces, the world serving `NAME`, and its CA.
pub struct Bench {
    pub topo: Topology,
    pub _world: RunningWorld,
    pub world_ca: TestCa,
    pub world_ca_file: PathBuf,
}

pub fn setup() -> Result<Bench> {
    let topo = Topology::builder()
        .world_addrs([IpAddr::V4(DNS), IpAddr::V4(WORLD)])
        .build()?;
    let world_ca = TestCa::new("bench world CA")?;
    let leaf = world_ca.leaf(&[NAME])?;
    let world_ca_file = topo.write_file("world-ca.pem", &world_ca.cert_pem)?;
    let world = WorldSetup::new(&format!("{NAME}. A 60 {WORLD}\n"))
        .dns(SocketAddr::from((DNS, 53)))
        .https([HttpsServer {
            addr: SocketAddr::from((WORLD, 443)),
            cert: leaf.chain_pem.clone(),
            key: leaf.key_pem.clone(),
        }])
        .start(&topo)?;
    topo.set_resolv_conf(Ns::Bottle, &format!("nameserver {SENTRY_ENCLAVE_V4}\n"))?;
    topo.set_etc_file(Ns::Sentry, "hosts", &format!("{WORLD} {NAME}\n"))?;
    Ok(Bench {
        topo,
        _world: world,
        world_ca,
        world_ca_file,
    })
}

/// One client run's report; `header` goes with every request.
fn client(
    topo: &Topology,
    ns: Ns,
    connect: SocketAddr,
    ca: &Path,
    header: &str,
    mode: &str,
) -> Result<Value> {
    let (connect, ca) = (connect.to_string(), ca.to_string_lossy().into_owned());
    let mut args = vec![
        "https-bench",
        "--connect",
        &connect,
        "--name",
        NAME,
        "--ca",
        &ca,
        "--header",
        header,
    ];
    match mode {
        "reused" => args.extend(["--count", REUSED, "--path", "/small"]),
        "new" => args.extend(["--count", NEW, "--new", "--path", "/small"]),
        _ => args.extend(["--count", BIG, "--path", "/big"]),
    }
    bench::probe(topo, ns, &args)
}

/// The three modes from one place: small requests on one reused HTTP/2
/// connection, a new TCP and TLS connection for each, one 64 MiB answer.
pub fn measure(
    topo: &Topology,
    ns: Ns,
    connect: SocketAddr,
    ca: &Path,
    header: &str,
) -> Result<[Value; 3]> {
    Ok([
        client(topo, ns, connect, ca, header, "reused")?,
        client(topo, ns, connect, ca, header, "new")?,
        client(topo, ns, connect, ca, header, "big")?,
    ])
}

/// "direct": the client in the sentry's namespace straight to the world,
/// with the sentry's table out of the way.
pub fn direct(b: &Bench, header: &str) -> Result<[Value; 3]> {
    let _ = b.topo.exec(
        Ns::Sentry,
        "nft",
        &["delete", "table", "inet", "rbm"],
        Duration::from_secs(10),
    );
    measure(
        &b.topo,
        Ns::Sentry,
        SocketAddr::from((WORLD, 443)),
        &b.world_ca_file,
        header,
    )
}

/// mitmproxy as a reverse proxy for `NAME` on the sentry's enclave address
/// (its best case: no redirect, no name check) with `addon`, `env` in its
/// environment; the client in the bottle through it.
pub fn mitmproxy(b: &Bench, addon: &str, env: &[String], header: &str) -> Result<[Value; 3]> {
    let addon = b.topo.write_file("addon.py", addon)?;
    let confdir = b.topo.dir().join("mitm");
    let mitm_ca = confdir.join("mitmproxy-ca-cert.pem");
    let mode = format!("reverse:https://{NAME}:443");
    let listen = SENTRY_ENCLAVE_V4.to_string();
    let port = MITM_PORT.to_string();
    let conf = format!("confdir={}", confdir.display());
    let trust = format!(
        "ssl_verify_upstream_trusted_ca={}",
        b.world_ca_file.display()
    );
    let addon_arg = addon.to_string_lossy().into_owned();
    let mut args: Vec<&str> = env.iter().map(String::as_str).collect();
    args.extend([
        "mitmdump",
        "-q",
        "--mode",
        &mode,
        "--listen-host",
        &listen,
        "--listen-port",
        &port,
        "--set",
        &conf,
        "--set",
        &trust,
        "-s",
        &addon_arg,
    ]);
    let mut proxy = b.topo.spawn(Ns::Sentry, "env", &args)?;
    wait_for_file(&mitm_ca)?;
    thread::sleep(Duration::from_secs(2)); // until it listens
    let through = SocketAddr::from((SENTRY_ENCLAVE_V4, MITM_PORT));
    let measured = measure(&b.topo, Ns::Bottle, through, &mitm_ca, header);
    if measured.is_err() {
        eprintln!("mitmdump said: {}", proxy.stderr());
    }
    proxy.stop(Duration::from_secs(5))?;
    measured
}

/// rbm as it runs for a bottle: the client resolves `NAME` through the
/// sentry (its address goes to the proxy) and connects to the world.
pub fn rbm(b: &Bench, rbm_ca: &Path, header: &str) -> Result<[Value; 3]> {
    let probe = static_bin("rbm-probe")?.to_string_lossy().into_owned();
    let server = SENTRY_ENCLAVE_V4.to_string();
    b.topo
        .exec(
            Ns::Bottle,
            &probe,
            &["dns", NAME, "--server", &server],
            Duration::from_secs(10),
        )?
        .check()?;
    measure(
        &b.topo,
        Ns::Bottle,
        SocketAddr::from((WORLD, 443)),
        rbm_ca,
        header,
    )
}

fn wait_for_file(path: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        ensure!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// What one side measured, a value per round.
#[derive(Default, Clone)]
pub struct Side {
    p50_us: Vec<f64>,
    p99_us: Vec<f64>,
    reused_rps: Vec<f64>,
    new_rps: Vec<f64>,
    mbps: Vec<f64>,
}

impl Side {
    pub fn add(&mut self, runs: &[Value; 3]) {
        let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        self.p50_us.push(f(&runs[0], "p50_us"));
        self.p99_us.push(f(&runs[0], "p99_us"));
        self.reused_rps.push(f(&runs[0], "per_second"));
        self.new_rps.push(f(&runs[1], "per_second"));
        self.mbps
            .push(f(&runs[2], "bytes") * 8.0 / f(&runs[2], "seconds") / 1e6);
    }
}

/// The table of medians, the added latency and the ratios.
pub fn report(title: &str, direct: &Side, mitm: &Side, rbm: &Side) {
    println!("{title}, {ROUNDS} rounds interleaved, medians (HTTP/2 small answers; 64 MiB answer for throughput)");
    println!(
        "{:<28} {:>12} {:>12} {:>12}",
        "", "direct", "mitmproxy", "rbm"
    );
    let row = |label: &str, f: &dyn Fn(&Side) -> f64| {
        println!(
            "{label:<28} {:>12.1} {:>12.1} {:>12.1}",
            f(direct),
            f(mitm),
            f(rbm)
        );
    };
    row("reused: p50 us", &|s| median(&s.p50_us));
    row("reused: p99 us", &|s| median(&s.p99_us));
    row("reused: requests/s", &|s| median(&s.reused_rps));
    row("new TLS each: requests/s", &|s| median(&s.new_rps));
    row("64 MiB answer: Mbit/s", &|s| median(&s.mbps));
    let added = |s: &Side, p: &dyn Fn(&Side) -> &Vec<f64>| median(p(s)) - median(p(direct));
    println!(
        "added on a reused connection: rbm {:.0} us at p50, {:.0} us at p99; mitmproxy {:.0} us at p50, {:.0} us at p99 (goal: rbm under 1000 us at p99)",
        added(rbm, &|s| &s.p50_us),
        added(rbm, &|s| &s.p99_us),
        added(mitm, &|s| &s.p50_us),
        added(mitm, &|s| &s.p99_us)
    );
    println!(
        "rbm / mitmproxy: reused requests/s x{:.1} (goal: x10), new-session requests/s x{:.1}, throughput x{:.1}",
        median(&rbm.reused_rps) / median(&mitm.reused_rps),
        median(&rbm.new_rps) / median(&mitm.new_rps),
        median(&rbm.mbps) / median(&mitm.mbps)
    );
}
