//! Benchmark (not a test): rbm's credential proxy against mitmproxy doing
//! the same swap (the placeholder in a header becomes the real value, the
//! real value is redacted from answers, streamed), in the same namespaces,
//! in one run, rounds interleaved. From the bottle to the world's HTTPS
//! server for `api.cred.test`:
//! - small requests on one reused connection (HTTP/2): rate and latency;
//! - a new TCP and TLS connection for every request: rate;
//! - one 64 MiB answer: throughput.
//!
//! "direct" is the same client in the sentry's namespace straight to the
//! world (no proxy): the added latency is proxy minus direct. mitmproxy
//! runs as a reverse proxy on the sentry's enclave address (its best case:
//! no redirect, no name check); rbm as it runs for a bottle.
//! Run as root after scripts/build-static, with mitmproxy installed
//! (`scripts/deps mitmproxy`):
//! `cargo bench -p rbm-tests --bench credential_proxy`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use rbm_tests::agent::Agent;
use rbm_tests::bench::{self, median};
use rbm_tests::certs::TestCa;
use rbm_tests::netns::SENTRY_ENCLAVE_V4;
use rbm_tests::world::https::HttpsServer;
use rbm_tests::world::setup::WorldSetup;
use rbm_tests::{require_netns, static_bin, Ns, Topology};
use serde_json::Value;

const DNS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
const CRED: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 80);
const NAME: &str = "api.cred.test";
/// Of equal length: mitmproxy's streamed replacement keeps the answer's
/// Content-Length, which a shorter value would then break.
const REAL: &str = "sk-bench-real-value-0123456789abcdef";
const PLACEHOLDER: &str = "rbm-bench-placeholder-0123456789abcd";
const MITM_PORT: u16 = 8443;
const ROUNDS: usize = 3;
const REUSED: &str = "2000";
const NEW: &str = "300";
const BIG: &str = "2";

const SWAP_ADDON: &str = r#"
import os
PH, REAL = os.environ["RBM_PH"], os.environ["RBM_REAL"]
PHB, REALB = PH.encode(), REAL.encode()

def request(flow):
    for k, v in list(flow.request.headers.items()):
        if PH in v:
            flow.request.headers[k] = v.replace(PH, REAL)

def responseheaders(flow):
    flow.response.stream = lambda chunk: chunk.replace(REALB, PHB)
"#;

fn profile() -> String {
    bench::profile(&[NAME], DNS)
        + &format!("[[credential]]\nenv = \"KEY\"\nfrom = \"env:KEY\"\nhosts = [\"{NAME}\"]\n")
}

/// One client run's report.
fn client(topo: &Topology, ns: Ns, connect: SocketAddr, ca: &Path, mode: &str) -> Result<Value> {
    let (connect, ca) = (connect.to_string(), ca.to_string_lossy().into_owned());
    let header = format!("authorization: Bearer {PLACEHOLDER}");
    let mut args = vec![
        "https-bench",
        "--connect",
        &connect,
        "--name",
        NAME,
        "--ca",
        &ca,
        "--header",
        &header,
    ];
    match mode {
        "reused" => args.extend(["--count", REUSED, "--path", "/small"]),
        "new" => args.extend(["--count", NEW, "--new", "--path", "/small"]),
        _ => args.extend(["--count", BIG, "--path", "/big"]),
    }
    bench::probe(topo, ns, &args)
}

/// The three modes from one place.
fn measure(topo: &Topology, ns: Ns, connect: SocketAddr, ca: &Path) -> Result<[Value; 3]> {
    Ok([
        client(topo, ns, connect, ca, "reused")?,
        client(topo, ns, connect, ca, "new")?,
        client(topo, ns, connect, ca, "big")?,
    ])
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

/// What one round of one side measured.
#[derive(Default, Clone)]
struct Side {
    p50_us: Vec<f64>,
    p99_us: Vec<f64>,
    reused_rps: Vec<f64>,
    new_rps: Vec<f64>,
    mbps: Vec<f64>,
}

impl Side {
    fn add(&mut self, runs: &[Value; 3]) {
        let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        self.p50_us.push(f(&runs[0], "p50_us"));
        self.p99_us.push(f(&runs[0], "p99_us"));
        self.reused_rps.push(f(&runs[0], "per_second"));
        self.new_rps.push(f(&runs[1], "per_second"));
        self.mbps
            .push(f(&runs[2], "bytes") * 8.0 / f(&runs[2], "seconds") / 1e6);
    }
}

fn main() -> Result<()> {
    if require_netns("the benchmark makes network namespaces").is_err() {
        return Ok(());
    }
    if std::process::Command::new("mitmdump")
        .arg("--version")
        .output()
        .is_err()
    {
        bail!("mitmproxy is not installed: run `scripts/deps mitmproxy`");
    }
    let topo = Topology::builder()
        .world_addrs([IpAddr::V4(DNS), IpAddr::V4(CRED)])
        .build()?;
    let world_ca = TestCa::new("bench world CA")?;
    let leaf = world_ca.leaf(&[NAME])?;
    let world_ca_file = topo.write_file("world-ca.pem", &world_ca.cert_pem)?;
    let _world = WorldSetup::new(&format!("{NAME}. A 60 {CRED}\n"))
        .dns(SocketAddr::from((DNS, 53)))
        .https([HttpsServer {
            addr: SocketAddr::from((CRED, 443)),
            cert: leaf.chain_pem.clone(),
            key: leaf.key_pem.clone(),
        }])
        .start(&topo)?;
    topo.set_resolv_conf(Ns::Bottle, &format!("nameserver {SENTRY_ENCLAVE_V4}\n"))?;
    topo.set_etc_file(Ns::Sentry, "hosts", &format!("{CRED} {NAME}\n"))?;
    let secrets = topo.dir().join("secrets");
    std::fs::create_dir_all(&secrets)?;
    std::fs::write(secrets.join("rbm-cred-KEY"), REAL)?;
    let passed = serde_json::json!([{
        "env": "KEY", "placeholder": PLACEHOLDER, "upstream_ca": world_ca.cert_pem,
    }]);
    let addon = topo.write_file("swap.py", SWAP_ADDON)?;
    let confdir = topo.dir().join("mitm");
    let mitm_ca = confdir.join("mitmproxy-ca-cert.pem");
    let world_https = SocketAddr::from((CRED, 443));
    let (mut direct, mut mitm, mut rbm) = (Side::default(), Side::default(), Side::default());

    for round in 1..=ROUNDS {
        eprintln!("round {round}/{ROUNDS}: direct");
        let _ = topo.exec(
            Ns::Sentry,
            "nft",
            &["delete", "table", "inet", "rbm"],
            Duration::from_secs(10),
        );
        direct.add(&measure(&topo, Ns::Sentry, world_https, &world_ca_file)?);

        eprintln!("round {round}/{ROUNDS}: mitmproxy");
        let mode = format!("reverse:https://{NAME}:443");
        let listen = SENTRY_ENCLAVE_V4.to_string();
        let port = MITM_PORT.to_string();
        let conf = format!("confdir={}", confdir.display());
        let trust = format!("ssl_verify_upstream_trusted_ca={}", world_ca_file.display());
        let (ph, real) = (format!("RBM_PH={PLACEHOLDER}"), format!("RBM_REAL={REAL}"));
        let addon_arg = addon.to_string_lossy().into_owned();
        let mut proxy = topo.spawn(
            Ns::Sentry,
            "env",
            &[
                ph.as_str(),
                real.as_str(),
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
            ],
        )?;
        wait_for_file(&mitm_ca)?;
        thread::sleep(Duration::from_secs(2)); // until it listens
        let through = SocketAddr::from((SENTRY_ENCLAVE_V4, MITM_PORT));
        let measured = measure(&topo, Ns::Bottle, through, &mitm_ca);
        if measured.is_err() {
            eprintln!("mitmdump said: {}", proxy.stderr());
        }
        mitm.add(&measured?);
        proxy.stop(Duration::from_secs(5))?;

        eprintln!("round {round}/{ROUNDS}: rbm");
        let agent = Agent::start_with(
            &topo,
            &profile(),
            &[format!("RBM_CREDENTIALS={passed}")],
            &["--secrets".into(), secrets.to_string_lossy().into()],
        )?;
        let rbm_ca = agent.control.with_extension("ca.pem");
        let probe = static_bin("rbm-probe")?.to_string_lossy().into_owned();
        let server = SENTRY_ENCLAVE_V4.to_string();
        topo.exec(
            Ns::Bottle,
            &probe,
            &["dns", NAME, "--server", &server],
            Duration::from_secs(10),
        )?
        .check()?;
        rbm.add(&measure(&topo, Ns::Bottle, world_https, &rbm_ca)?);
        drop(agent);
    }

    println!("credential proxy, {ROUNDS} rounds interleaved, medians (HTTP/2 small answers; 64 MiB answer for throughput)");
    println!(
        "{:<28} {:>12} {:>12} {:>12}",
        "", "direct", "mitmproxy", "rbm"
    );
    let row = |label: &str, f: &dyn Fn(&Side) -> f64| {
        println!(
            "{label:<28} {:>12.1} {:>12.1} {:>12.1}",
            f(&direct),
            f(&mitm),
            f(&rbm)
        );
    };
    row("reused: p50 us", &|s| median(&s.p50_us));
    row("reused: p99 us", &|s| median(&s.p99_us));
    row("reused: requests/s", &|s| median(&s.reused_rps));
    row("new TLS each: requests/s", &|s| median(&s.new_rps));
    row("64 MiB answer: Mbit/s", &|s| median(&s.mbps));
    let added = |s: &Side| median(&s.p50_us) - median(&direct.p50_us);
    println!(
        "added at p50 on a reused connection: rbm {:.0} us, mitmproxy {:.0} us (goal: rbm under 1000 us)",
        added(&rbm),
        added(&mitm)
    );
    println!(
        "rbm / mitmproxy: reused requests/s x{:.1}, new-session requests/s x{:.1} (goal: x10), throughput x{:.1}",
        median(&rbm.reused_rps) / median(&mitm.reused_rps),
        median(&rbm.new_rps) / median(&mitm.new_rps),
        median(&rbm.mbps) / median(&mitm.mbps)
    );
    Ok(())
}
