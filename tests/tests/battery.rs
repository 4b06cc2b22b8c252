//! The escape battery: a hostile bottle (root, every capability, real
//! tools: images/attacker) tries every way out through a real Podman 5,
//! one named case each (tests/battery/attacks.py), and a witness in the
//! sentry's network namespace records every packet the sentry sends out of
//! its uplink (tcpdump). A case passes when the bottle saw the blocked
//! outcome AND nothing left the sentry in its time window but what the
//! case allows (the DNS upstream for an allowed name, a bare TCP handshake
//! for a name check). The profile holds a credential and a host with
//! request rules (`[[requests]]`: its world's log shows what the rules let
//! through). After the attacks, the credential's real value is looked for
//! in every byte the witness captured and in every world's log. The
//! lifecycle cases (a reload that removes a name, a killed agent, a killed
//! sentry) run last, with a sender busy throughout.
//! Writes the table tests/battery/results-podman-VERSION-MODE.md.
//!
//! Network safety: every address is the test's own: enclave 10.250.60.0/24,
//! uplink 10.251.60.0/24 and the worlds on it, a neighbouring network
//! 10.252.60.0/24 (its gateway on the Podman host); the witness routes the
//! link-local range (cloud metadata) to the trap world first.
//!
//! Needs root and RBM_PODMAN (like tests/e2e.rs); scripts/test runs it on
//! Podman 5.4 rootful and 5.8 rootless.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use rbm_tests::bins::workspace_root;
use rbm_tests::certs::{Leaf, TestCa};
use rbm_tests::encode::base64;
use rbm_tests::files::write_file;
use rbm_tests::launcher::{Launched, Launcher};
use rbm_tests::podman::{
    attacker_image, fresh_dir, require_podman, test_images, Podman, WorldContainer, ATTACKER_IMAGE,
};
use rbm_tests::world::https::HttpsServer;
use rbm_tests::world::setup::WorldSetup;
use serde_json::{json, Value};

#[path = "battery/lifecycle.rs"]
mod lifecycle;
#[path = "battery/witness.rs"]
mod witness;

use lifecycle::{lifecycle, sentry_killed};
use witness::{attribute, parse_packet, rust_case, table, Case, Packet};

const MONIKER: &str = "battery";
const N: u8 = 60;
const ZONE: &str = "battery.test";
const API_NAME: &str = "api.battery.test";
const OTHER_NAME: &str = "other.battery.test";
const PORTS_NAME: &str = "ports.battery.test";
const SHORT_NAME: &str = "short.battery.test";
/// An allowed name that resolves to an address of the Podman host: the
/// gateway of a neighbouring network the test creates (another project's
/// bridge), which the sentry must withhold from the answer.
const HOST_NAME: &str = "host.battery.test";
const NEIGHBOUR_NET: &str = "rbm-battery-neighbour";
const NEIGHBOUR_SUBNET: &str = "10.252.60.0/24";
const NEIGHBOUR_GATEWAY: &str = "10.252.60.1";
const SHORT_TTL: u32 = 2;
/// The credential's host (HTTPS with a certificate of the world's CA,
/// which only the sentry trusts, through `upstream_ca`) and another
/// allowed HTTPS host that is not the credential's.
const CRED_NAME: &str = "cred.battery.test";
const FRONT_NAME: &str = "front.battery.test";
/// A host with request rules (`[[requests]]`): the sentry opens its TLS
/// and lets only `GET /allowed/**` through, so the two limits that a name
/// check leaves open (fronting inside the TLS, a second request on a
/// kept-alive connection) are closed for it.
const RULED_NAME: &str = "ruled.battery.test";
const RULED_ALLOW: &str = "GET /allowed/**";
/// The credential's real value (a file beside the profile): it may reach
/// the credential host's world and nothing else.
const REAL_KEY: &str = "sk-battery-real-value-never-in-the-bottle";
/// Uplink hosts: the upstream resolver (no allowed name points at it), the
/// allowed name, the trap (never allowed: what every blocked case aims
/// at), the allowed CIDR, the name allowed only on 443, the short-TTL name,
/// the credential's host, the other HTTPS host and the host with request
/// rules.
const RESOLVER: u8 = 5;
const API: u8 = 10;
const TRAP: u8 = 20;
const CIDR: u8 = 30;
const PORTS: u8 = 40;
const SHORT: u8 = 50;
const CRED: u8 = 60;
const FRONT: u8 = 70;
const RULED: u8 = 80;
/// Every world but the resolver logs what it got here (plain HTTP on a
/// port that is neither 80 nor 443).
const RECV_HTTP: u16 = 8080;
/// Where the trap logs every datagram and connection (the lifecycle cases'
/// witness when the sentry's namespace is gone).
const TRAP_RECV: u16 = 443;

/// Cases that can get through today, each named in README's "What rbm
/// does not do (yet)" with what would close it. Every other case must pass.
/// A sentry started again (`podman start`) while its bottle runs: Podman
/// sets its network namespace up, forwarding inherited from the host, a
/// few milliseconds before the runtime applies `ip_forward=0`. The
/// bottle's gateway address is not there yet (the agent adds it once its
/// filter holds), but a bottle allowed to change its routes can aim at the
/// address Podman gave the sentry.
const OPEN_GAPS: &[&str] = &["sentry-restarted-under-fire-via-its-podman-address"];

/// A sender that lasts `seconds`, a datagram every 10 ms.
fn every_10_ms(seconds: u32) -> (u32, &'static str) {
    (seconds, "0.01")
}

/// The agent's resident memory after every attack (the query flood, the
/// scans, the forged answers) stays under this.
const RSS_BOUND_KIB: u64 = 16 * 1024;

const UP_TIMEOUT: Duration = Duration::from_secs(120);
const CMD_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest one case may take (the TTL case sleeps; the scans send 65,535 packets).
const CASE_TIMEOUT: Duration = Duration::from_secs(120);

fn enclave(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 250, N, host)
}

fn uplink(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 251, N, host)
}

fn profile(with_api: bool) -> String {
    let api = if with_api {
        format!("\"{API_NAME}\", ")
    } else {
        String::new()
    };
    format!(
        r#"moniker = "{MONIKER}"
description = "rbm escape battery"

[bottle]
image = "{ATTACKER_IMAGE}"
command = ["sleep", "infinity"]

[enclave]
subnet = "{enclave}/24"
sentry_ip = "{sentry}"
bottle_ip = "{bottle}"

[uplink]
dns = "allowlist"
access = "allowlist"
domains = [{api}"{PORTS_NAME}:443", "{SHORT_NAME}", "{CRED_NAME}", "{FRONT_NAME}", "{HOST_NAME}", "{RULED_NAME}"]
cidrs = ["{cidr}/32"]
upstream_dns = ["{resolver}"]
subnet = "{uplink}/24"
min_ttl = 0

[[credential]]
env = "API_KEY"
from = "file:api-key.txt"
hosts = ["{CRED_NAME}"]
upstream_ca = "world-ca.pem"

[[requests]]
hosts = ["{RULED_NAME}"]
allow = ["{RULED_ALLOW}"]
upstream_ca = "world-ca.pem"
"#,
        enclave = enclave(0),
        sentry = enclave(2),
        bottle = enclave(3),
        cidr = uplink(CIDR),
        resolver = uplink(RESOLVER),
        uplink = uplink(0),
    )
}

/// The world's CA (the model internet's public roots, which only the
/// sentry trusts) and the certificates of its HTTPS hosts.
struct WorldCerts {
    ca: TestCa,
    cred: Leaf,
    front: Leaf,
    ruled: Leaf,
}

/// Made once per run.
fn world_certs() -> &'static WorldCerts {
    static CERTS: OnceLock<WorldCerts> = OnceLock::new();
    CERTS.get_or_init(|| {
        let ca = TestCa::new("rbm battery world CA").expect("a CA");
        let leaf = |name| ca.leaf(&[name]).expect("a certificate");
        WorldCerts {
            cred: leaf(CRED_NAME),
            front: leaf(FRONT_NAME),
            ruled: leaf(RULED_NAME),
            ca,
        }
    })
}

fn world_setup(host: u8) -> WorldSetup {
    let zone = format!(
        "{API_NAME}. A 60 {}\n{OTHER_NAME}. A 60 {}\n{PORTS_NAME}. A 60 {}\n{SHORT_NAME}. A {SHORT_TTL} {}\n\
         {CRED_NAME}. A 60 {}\n{FRONT_NAME}. A 60 {}\n{HOST_NAME}. A 60 {NEIGHBOUR_GATEWAY}\n\
         {RULED_NAME}. A 60 {}\n",
        uplink(API),
        uplink(TRAP),
        uplink(PORTS),
        uplink(SHORT),
        uplink(CRED),
        uplink(FRONT),
        uplink(RULED)
    );
    let at = |port| SocketAddr::from((uplink(host), port));
    let setup = WorldSetup::new(&zone);
    let https = |leaf: &Leaf| HttpsServer {
        addr: at(443),
        cert: leaf.chain_pem.clone(),
        key: leaf.key_pem.clone(),
    };
    let certs = world_certs();
    match host {
        RESOLVER => setup.dns(at(53)),
        // Plain HTTP to the credential's host: what it got, counted.
        CRED => setup.https([https(&certs.cred)]).recv([at(80)]),
        FRONT => setup.https([https(&certs.front)]),
        RULED => setup.https([https(&certs.ruled)]),
        _ => setup
            .tcp([at(80)])
            .udp([at(80)])
            .recv([at(443), at(RECV_HTTP)]),
    }
}

fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

struct Battery {
    podman: Podman,
    launched: Launched,
    worlds: Vec<WorldContainer>,
    witness: String,
    bottle: String,
    sentry: String,
}

impl Drop for Battery {
    fn drop(&mut self) {
        let _ = self.podman.remove_container(&self.witness);
        self.worlds.clear();
        let _ = self
            .podman
            .run(&["network", "rm", "--force", NEIGHBOUR_NET]);
    }
}

impl Battery {
    fn launch(&self, args: &[&str], timeout: Duration) -> Result<rbm_tests::Output> {
        self.launched.launcher.run(args, timeout)
    }

    /// Under fire: `attacks.py stream` in the bottle sends to `to` (a
    /// datagram every `every` seconds, a TCP connection every 100 ms) for
    /// `seconds`; `act` runs `lead` after the start. The sender's report.
    fn under_fire(
        &self,
        to: SocketAddr,
        (seconds, every): (u32, &str),
        lead: Duration,
        act: impl FnOnce() -> Result<()>,
    ) -> Result<Value> {
        let mut stream = self.podman.spawn(&[
            "exec",
            "--privileged",
            &self.bottle,
            "python3",
            "/battery/attacks.py",
            "stream",
            &to.ip().to_string(),
            &to.port().to_string(),
            &seconds.to_string(),
            every,
        ])?;
        thread::sleep(lead);
        act()?;
        let line = stream.wait_for(|l| l.starts_with('{'), "the stream's report", CMD_TIMEOUT)?;
        Ok(serde_json::from_str(&line)?)
    }

    fn world(&self, host: u8) -> Result<&WorldContainer> {
        self.worlds
            .iter()
            .find(|w| w.ip == uplink(host))
            .with_context(|| format!("no world at {}", uplink(host)))
    }

    fn trap_receipts(&self) -> Result<usize> {
        Ok(self.trap_log()?.len())
    }

    /// What the trap received: `PROTO from PEER` each.
    fn trap_log(&self) -> Result<Vec<String>> {
        Ok(self
            .world(TRAP)?
            .receipts()?
            .iter()
            .map(|r| format!("{} from {}", r.proto, r.peer))
            .collect())
    }
}

#[test]
fn the_hostile_bottle_finds_no_way_out() -> Result<()> {
    let Ok(podman) = require_podman("runs the battery's bottle, sentry and worlds") else {
        return Ok(());
    };
    test_images(&podman)?;
    attacker_image(&podman)?;
    let launcher = Launcher::find(podman.clone())?;
    let dir = fresh_dir(MONIKER)?;
    let path = write_file(&dir, "profile.toml", &profile(true))?;
    let reloaded = write_file(&dir, "reloaded.toml", &profile(false))?;
    write_file(&dir, "api-key.txt", &format!("{REAL_KEY}\n"))?;
    write_file(&dir, "world-ca.pem", &world_certs().ca.cert_pem)?;
    let hosts = [RESOLVER, API, TRAP, CIDR, PORTS, SHORT, CRED, FRONT, RULED];
    for host in hosts {
        podman.remove_container(&format!("{MONIKER}-world{host}"))?;
    }
    let names = (
        format!("rbm-{MONIKER}-sentry"),
        format!("rbm-{MONIKER}-bottle"),
        format!("rbm-{MONIKER}-witness"),
    );
    podman.remove_container(&names.2)?;
    podman.remove_pair(MONIKER)?;
    let mut b = Battery {
        podman: podman.clone(),
        launched: Launched {
            launcher,
            profile: path.to_string_lossy().into_owned(),
        },
        worlds: Vec::new(),
        witness: names.2,
        bottle: names.1,
        sentry: names.0,
    };
    // Another project's network on the same Podman, there before `up`,
    // with a container on it (so that its bridge, and the gateway address
    // on the host, exist: a packet to it stays on this machine).
    let _ = podman.run(&["network", "rm", "--force", NEIGHBOUR_NET]);
    podman.run_ok(&[
        "network",
        "create",
        "--subnet",
        NEIGHBOUR_SUBNET,
        NEIGHBOUR_NET,
    ])?;
    let neighbour: Ipv4Addr = Ipv4Addr::new(10, 252, N, 2);
    b.worlds.push(WorldContainer::start(
        &podman,
        &format!("{MONIKER}-neighbour"),
        NEIGHBOUR_NET,
        neighbour,
        &WorldSetup::new("").tcp([SocketAddr::from((neighbour, 80))]),
    )?);
    // --yes: the profile's credential is the test's own (no terminal to ask on).
    b.launch(&["up", "--yes", &b.launched.profile], UP_TIMEOUT)?
        .check()
        .context("rbm-launch up")?;
    for host in hosts {
        b.worlds.push(WorldContainer::start(
            &podman,
            &format!("{MONIKER}-world{host}"),
            &format!("rbm-{MONIKER}-uplink"),
            uplink(host),
            &world_setup(host),
        )?);
    }
    let rootless = podman.is_rootless()?;
    let version = podman
        .run_ok(&["version", "--format", "{{.Server.Version}}"])?
        .stdout
        .trim()
        .to_string();
    let mode = if rootless { "rootless" } else { "rootful" };

    // The witness: in the sentry's network namespace, link-local routed to
    // the trap (rootless keeps 169.254.1.2, the host, as it is).
    let reroute = if rootless {
        "169.254.169.254/32"
    } else {
        "169.254.0.0/16"
    };
    let net = format!("container:{}", b.sentry);
    let uplink_net = format!("{}/24", uplink(0));
    let trap = uplink(TRAP).to_string();
    podman.run_ok(&[
        "run",
        "-d",
        "--pull=never",
        "--name",
        &b.witness,
        "--network",
        &net,
        "--cap-add",
        "NET_ADMIN",
        "--cap-add",
        "NET_RAW",
        ATTACKER_IMAGE,
        "python3",
        "/battery/attacks.py",
        "witness",
        &uplink_net,
        &trap,
        reroute,
    ])?;
    let ready = wait_for_witness(&podman, &b.witness)?;
    thread::sleep(Duration::from_millis(500)); // tcpdump attaches

    let config = json!({
        "sentry": enclave(2).to_string(),
        "sentry_link": enclave(254).to_string(),
        "bottle": enclave(3).to_string(),
        "ifname": "eth0",
        "enclave_prefix": format!("10.250.{N}"),
        "uplink_prefix": format!("10.251.{N}"),
        "uplink_gateway": uplink(1).to_string(),
        "sentry_uplink": ready["addr"],
        "sentry_ll": ready["enclave_ll"],
        "resolver": uplink(RESOLVER).to_string(),
        "api": uplink(API).to_string(),
        "trap": trap,
        "cidr": uplink(CIDR).to_string(),
        "beside_cidr": uplink(CIDR + 1).to_string(),
        "ports": uplink(PORTS).to_string(),
        "short": uplink(SHORT).to_string(),
        "cred": uplink(CRED).to_string(),
        "front": uplink(FRONT).to_string(),
        "ruled": uplink(RULED).to_string(),
        "zone": ZONE,
        "api_name": API_NAME,
        "other_name": OTHER_NAME,
        "ports_name": PORTS_NAME,
        "short_name": SHORT_NAME,
        "host_name": HOST_NAME,
        "neighbour_gateway": NEIGHBOUR_GATEWAY,
        "cred_name": CRED_NAME,
        "front_name": FRONT_NAME,
        "ruled_name": RULED_NAME,
        "short_ttl": SHORT_TTL,
        "rootless": rootless,
        "only": std::env::var("RBM_BATTERY_ONLY").ok().map(|s| s.split(',').map(str::to_string).collect::<Vec<_>>()),
    })
    .to_string();
    let rss_before = podman.agent_rss_kib(&b.sentry)?;
    let mut run = podman.spawn(&[
        "exec",
        "--privileged",
        &b.bottle,
        "python3",
        "/battery/attacks.py",
        "run",
        &config,
    ])?;
    let mut cases = Vec::new();
    loop {
        let line = run.wait_for(|l| l.starts_with('{'), "a case", CASE_TIMEOUT)?;
        let v: Value = serde_json::from_str(&line).with_context(|| format!("not JSON: {line}"))?;
        if v["done"].as_bool() == Some(true) {
            break;
        }
        let case = Case::from_json(&v)?;
        eprintln!(
            "battery {}: {} ({})",
            case.id,
            case.observed,
            if case.bottle_ok { "ok" } else { "GOT THROUGH" }
        );
        cases.push(case);
    }

    fronting_seen(&b, &mut cases)?;
    ruled_world_saw(&b, &mut cases)?;
    published_kept_the_placeholder(&b, &mut cases)?;
    let key_case = real_key_stayed(&b, &cases)?;
    cases.push(key_case);
    let status_case = status_shows_bottle_names_escaped(&b)?;
    cases.push(status_case);

    // The 20,000-query flood, the scans and the rest are behind it.
    let rss_after = podman.agent_rss_kib(&b.sentry)?;
    let memory = format!(
        "The agent's resident memory: {:.1} MiB before the attacks, {:.1} MiB after them \
         (bound: {} MiB).",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        RSS_BOUND_KIB / 1024
    );

    // Lifecycle: a reload that removes the allowed name while the bottle
    // sends to it; then the agent killed, then the sentry killed, while it
    // sends to the trap.
    lifecycle(&b, &reloaded.to_string_lossy(), &mut cases)?;
    let log = podman.run_ok(&["logs", &b.witness])?.stdout;
    let packets: Vec<Packet> = log.lines().filter_map(parse_packet).collect();
    let first = cases.first().map_or(0.0, |c| c.t0);
    let stray = attribute(&mut cases, &packets, 0.3);
    let stray: Vec<String> = stray
        .into_iter()
        .filter(|l| parse_packet(l).is_some_and(|p| p.t >= first))
        .collect();
    // The witness shares the sentry's namespace: it goes first, or Podman
    // would not let the sentry be replaced.
    podman.remove_container(&b.witness)?;
    let trap_total = sentry_killed(&b, &mut cases)?;

    let controls_seen = cases
        .iter()
        .filter(|c| c.group == "control" && !c.egress.is_empty())
        .all(|c| packets.iter().any(|p| p.t >= c.t0 && p.t <= c.t1 + 0.3));
    let label = format!("podman-{version}-{mode}");
    let table = table(&label, &cases, &stray, trap_total, &memory);
    let out = workspace_root().join(format!("tests/battery/results-{label}.md"));
    std::fs::write(&out, &table).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("battery: table in {}", out.display());

    let failed: Vec<&str> = cases
        .iter()
        .filter(|c| !c.passed() && !c.open_gap())
        .map(|c| c.id.as_str())
        .collect();
    ensure!(
        controls_seen,
        "the witness saw none of the allowed traffic: it is blind, so the battery proves nothing"
    );
    ensure!(
        cases.len() >= 60,
        "only {} cases ran (RBM_BATTERY_ONLY?)",
        cases.len()
    );
    ensure!(
        failed.is_empty(),
        "cases that got through: {failed:?}\n{table}"
    );
    ensure!(stray.is_empty(), "packets left between cases: {stray:#?}");
    ensure!(
        trap_total == 0,
        "the trap world received {trap_total} datagrams or connections"
    );
    Ok(())
}

/// The domain-fronting limit: the allowed name's world logged the foreign
/// Host that the TLS carried (what the sentry cannot see).
fn fronting_seen(b: &Battery, cases: &mut [Case]) -> Result<()> {
    let Some(c) = cases
        .iter_mut()
        .find(|c| c.id == "fronting-inside-allowed-tls")
    else {
        return Ok(());
    };
    let served = b
        .world(FRONT)?
        .https_requests()?
        .iter()
        .any(|r| r.host == OTHER_NAME && r.path == "/fronted");
    c.bottle_ok &= served;
    let _ = write!(
        c.observed,
        "; {FRONT_NAME}'s world logged a request for Host {OTHER_NAME}: {served}"
    );
    Ok(())
}

/// The closed twins of the fronting and kept-alive limits, on the host
/// with request rules: its world never logged the foreign Host that the
/// bottle put inside its TLS, and of the two requests on one kept-alive
/// connection it logged the allowed one only.
fn ruled_world_saw(b: &Battery, cases: &mut [Case]) -> Result<()> {
    let requests = b.world(RULED)?.https_requests()?;
    if let Some(c) = cases
        .iter_mut()
        .find(|c| c.id == "fronting-inside-ruled-tls")
    {
        let fronted = requests
            .iter()
            .filter(|r| r.host.contains(OTHER_NAME) || r.path == "/allowed/fronted")
            .count();
        c.bottle_ok &= fronted == 0;
        let _ = write!(
            c.observed,
            "; {RULED_NAME}'s world logged {fronted} requests for Host {OTHER_NAME}"
        );
    }
    if let Some(c) = cases
        .iter_mut()
        .find(|c| c.id == "http-keep-alive-second-request-on-ruled-host")
    {
        let logged = |path: &str| requests.iter().filter(|r| r.path == path).count();
        let (allowed, forbidden) = (logged("/allowed/kept-alive"), logged("/forbidden"));
        c.bottle_ok &= allowed == 1 && forbidden == 0;
        let _ = write!(
            c.observed,
            "; {RULED_NAME}'s world logged /allowed/kept-alive {allowed} times, /forbidden {forbidden} times"
        );
    }
    Ok(())
}

/// `placeholder-where-the-host-publishes`: the credential host's world
/// logged the request with the placeholder in its path, query and x-title
/// (what a host stores and shows), the real key in Authorization only.
fn published_kept_the_placeholder(b: &Battery, cases: &mut [Case]) -> Result<()> {
    let Some(c) = cases
        .iter_mut()
        .find(|c| c.id == "placeholder-where-the-host-publishes")
    else {
        return Ok(());
    };
    let placeholder = bottle_placeholder(b)?;
    let requests = b.world(CRED)?.https_requests()?;
    let Some(r) = requests.iter().find(|r| r.path.starts_with("/published/")) else {
        c.bottle_ok = false;
        c.observed.push_str("; the world logged no such request");
        return Ok(());
    };
    let title = r.headers.get("x-title").map_or("", String::as_str);
    let kept = r.path.ends_with(&placeholder)
        && r.query == format!("title={placeholder}")
        && title == placeholder
        && r.authorization.contains(REAL_KEY);
    c.bottle_ok &= kept;
    let _ = write!(
        c.observed,
        "; the world got path, query and x-title with the placeholder and the real key in Authorization only: {kept}"
    );
    Ok(())
}

/// Judged on the Rust side after the attacks: the real key is in no byte
/// the sentry sent out of its uplink (the witness's whole capture, which
/// must hold the Host of the plain HTTP the controls sent: it sees
/// payloads), in no world's log but the credential host's, which must
/// have got it (the control), and in nothing the bottle saw.
fn real_key_stayed(b: &Battery, cases: &[Case]) -> Result<Case> {
    let mut c = rust_case(
        "creds",
        "the-real-key-reaches-its-host-only",
        "after every case: look for the real key (as it is, and in base64 alone and in Basic credentials) in every byte the sentry sent out, in every world's log and in what the bottle saw",
        "not in the capture (which holds what went out in the clear) nor in the bottle; only the credential host's world got it",
        epoch(),
    );
    let placeholder = bottle_placeholder(b)?;
    let clear = format!("Host: {API_NAME}");
    // Every form the sentry itself puts the key on the wire in: as it is,
    // in the Basic credentials it builds (`basic-credentials-echoed` sends
    // user rbm), and base64 alone.
    let forms = [
        REAL_KEY.to_string(),
        base64(format!("rbm:{REAL_KEY}").as_bytes()),
        base64(REAL_KEY.as_bytes()),
    ];
    let mut args = vec![
        "exec",
        &b.witness,
        "python3",
        "/battery/attacks.py",
        "count",
    ];
    args.push("/tmp/uplink.pcap");
    args.extend([placeholder.as_str(), clear.as_str()]);
    args.extend(forms.iter().map(String::as_str));
    let out = b.podman.run_ok(&args)?;
    let counted: Value = serde_json::from_str(out.stdout.trim())
        .with_context(|| format!("the witness's count: {}", out.stdout))?;
    let count = |i: usize| counted["count"][i].as_u64().unwrap_or(0);
    let (seen, visible) = (count(0), count(1));
    let real: u64 = (2..2 + forms.len()).map(count).sum();
    let in_text = |text: &str| {
        forms
            .iter()
            .map(|f| text.matches(f.as_str()).count())
            .sum::<usize>()
    };
    let mut at_host = 0;
    let mut elsewhere = Vec::new();
    for w in &b.worlds {
        let log = b.podman.run_ok(&["logs", &w.name])?.stdout;
        if w.ip == uplink(CRED) {
            at_host = log.matches(REAL_KEY).count();
        } else if in_text(&log) > 0 {
            elsewhere.push(format!("{} ({})", w.name, in_text(&log)));
        }
    }
    let in_bottle: Vec<&str> = cases
        .iter()
        .filter(|c| in_text(&c.observed) > 0)
        .map(|c| c.id.as_str())
        .collect();
    c.t1 = epoch();
    c.bottle_ok =
        real == 0 && visible > 0 && at_host > 0 && elsewhere.is_empty() && in_bottle.is_empty();
    c.observed = format!(
        "the uplink capture ({} bytes) holds the real key {real} times, the placeholder {seen} \
         times, `{clear}` {visible} times; {CRED_NAME}'s world got the real key {at_host} times; \
         other worlds: {elsewhere:?}; cases whose bottle saw it: {in_bottle:?}",
        counted["bytes"]
    );
    Ok(c)
}

/// Judged on the Rust side: after a ClientHello whose server name holds
/// terminal escapes (`escape-sequences-as-a-server-name`), what the
/// operator reads in `rbm-launch status` holds no control byte.
fn status_shows_bottle_names_escaped(b: &Battery) -> Result<Case> {
    let mut c = rust_case(
        "names",
        "status-shows-bottle-names-escaped",
        "after a server name with terminal escapes: `rbm-launch status` on the operator's terminal",
        "the name is shown escaped: no ESC, BEL or other control byte reaches the terminal",
        epoch(),
    );
    let out = b.launch(&["status", &b.launched.profile], CMD_TIMEOUT)?;
    let text = format!("{}{}", out.stdout, out.stderr);
    let controls = text
        .chars()
        .filter(|ch| ch.is_control() && *ch != '\n' && *ch != '\t')
        .count();
    let shown = text.contains("escape.battery.test");
    c.t1 = epoch();
    c.bottle_ok = controls == 0 && shown;
    c.observed = format!(
        "`status` ({} bytes) holds {controls} control characters; the name is shown: {shown}",
        text.len()
    );
    Ok(c)
}

/// The placeholder the launcher gave the bottle (its environment).
fn bottle_placeholder(b: &Battery) -> Result<String> {
    let inspected = b.podman.json(&["container", "inspect", &b.bottle])?;
    inspected[0]["Config"]["Env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find_map(|e| e.strip_prefix("API_KEY="))
        .map(str::to_string)
        .context("no API_KEY in the bottle's environment")
}

fn wait_for_witness(podman: &Podman, name: &str) -> Result<Value> {
    let deadline = Instant::now() + CMD_TIMEOUT;
    loop {
        let logs = podman.run(&["logs", name])?;
        if let Some(line) = logs.stdout.lines().find(|l| l.contains("\"ready\"")) {
            return Ok(serde_json::from_str(line)?);
        }
        if Instant::now() > deadline || !podman.is_running(name)? {
            bail!(
                "the witness did not start:\n{}\n{}",
                logs.stdout,
                logs.stderr
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn wait_until(mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    wait_within(CMD_TIMEOUT, &mut check)
}

fn wait_within(limit: Duration, check: &mut impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check()? {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(200));
    }
    bail!("timed out")
}
