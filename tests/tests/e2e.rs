//! rbm end to end through a real Podman 5: `rbm-launch` starts sentry and
//! bottle from a profile, rbm-world containers on the profile's uplink are
//! the internet, and rbm-probe in the bottle (`rbm-launch shell`) reports
//! what it can reach. Each test has its own profile, moniker and subnets,
//! so tests run in parallel.
//!
//! Network safety: every packet goes to loopback or to a container the
//! test created: 10.250.N.0/24 (enclave) and 10.251.N.0/24 (uplink), with
//! N distinct per test; the worlds sit at 10.251.N.10, .20 and .30.
//!
//! Needs root, RBM_PODMAN (Podman 5: `scripts/podman5 up [FLAVOUR]`), the
//! static binaries (`scripts/build-static`, or RBM_STATIC_DIR) and
//! rbm-launch (RBM_LAUNCH, else `<workspace>/target/debug/rbm-launch`).
//! rbm-launch runs from `/` and finds its agent and profiles by itself.
//! With RBM_ENTER (the `enter` wrapper of `scripts/podman5 up FLAVOUR`),
//! rbm-launch runs where that Podman runs (as its unprivileged user, for a
//! rootless flavour) and finds that Podman on PATH by itself; without it,
//! rbm-launch gets `--podman $RBM_PODMAN`. scripts/test runs this file once
//! per flavour: Podman 5.4 and 5.8, rootful and rootless.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use rbm_tests::bottle::{shown, Bottle, OPEN_MS};
use rbm_tests::certs::{Leaf, TestCa};
use rbm_tests::files::write_file;
use rbm_tests::json::{str_field, str_list};
use rbm_tests::launcher::{Launched, Launcher};
use rbm_tests::netns::ProbeRun;
use rbm_tests::podman::{
    fresh_dir, require_podman, test_images, Podman, WorldContainer, BOTTLE_IMAGE,
};
use rbm_tests::probe::conn::{tcp_line, udp_reply};
use rbm_tests::world::https::HttpsServer;
use rbm_tests::world::setup::WorldSetup;
use rbm_tests::{parse_json, probe_json, run_ok, static_bin, Output};
use serde_json::Value;

/// `suggest` and `allow` on a running pair.
#[path = "e2e/allow.rs"]
mod allow;

/// A profile with request rules and no credential.
#[path = "e2e/requests.rs"]
mod requests;

/// The image rbm-launch builds for every sentry.
const SENTRY_IMAGE: &str = "localhost/rbm-sentry:latest";
/// Allowed by every profile here; answers the world at .10.
const API_NAME: &str = "api.e2e.test";
/// Not allowed; answers the world at .20.
const OTHER_NAME: &str = "other.e2e.test";
/// Uplink hosts: the allowed name's world (also the upstream DNS), a world
/// no allowed name points at, and the world in the profile's CIDR.
const API_HOST: u8 = 10;
/// The credential host: HTTPS with a certificate of the test's world CA.
const CRED_NAME: &str = "cred.e2e.test";
const CRED_HOST: u8 = 40;
/// The real value of its credential (a file beside the profile).
const REAL_KEY: &str = "sk-e2e-real-value-never-in-the-bottle";
const OTHER_HOST: u8 = 20;
const CIDR_HOST: u8 = 30;
/// Where every world serves TCP and UDP.
const WORLD_PORT: u16 = 80;
/// Where the allowed name's world tells what it got (name binding).
const RECV_PORT: u16 = 443;
/// Every world echoes on this port (long-lived connections).
const ECHO_PORT: u16 = 7000;
/// A name that is not allowed, sent to the allowed name's address.
const FRONTED_NAME: &str = "fronted.e2e.test";
/// The bottle's server (the test image's default command).
const BOTTLE_PORT: u16 = 8888;

/// `rbm-launch up` (may build the sentry image first).
const UP_TIMEOUT: Duration = Duration::from_secs(120);
/// Every other command.
const CMD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a probe waits for something that should be open.
/// How long a probe waits for something that should be shut. Local
/// traffic answers in milliseconds; silence this long is a drop.
const SHUT_MS: &str = "1000";
/// How long the workstation waits for one reply on an entry port, over TCP
/// and over UDP (a lost datagram is retried sooner).
const TCP_REPLY: Duration = Duration::from_secs(3);
const UDP_REPLY: Duration = Duration::from_millis(500);
/// How long the bottle's server may take to listen after `up`.
const SERVER_START: Duration = Duration::from_secs(15);

/// One test's profile: its moniker, its N (enclave 10.250.N.0/24, uplink
/// 10.251.N.0/24), and an optional entry port on the workstation.
#[derive(Clone, Copy)]
struct Spec {
    moniker: &'static str,
    n: u8,
    entry: Option<u16>,
    /// A credential for `CRED_NAME`, served over HTTPS by the world at
    /// `CRED_HOST`.
    creds: bool,
    /// Request rules for `CRED_NAME` (`GET /e2e/**` only), without a
    /// credential.
    requests: bool,
}

impl Spec {
    const fn new(moniker: &'static str, n: u8) -> Spec {
        Spec {
            moniker,
            n,
            entry: None,
            creds: false,
            requests: false,
        }
    }

    fn enclave(self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 250, self.n, host)
    }

    fn uplink(self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 251, self.n, host)
    }

    fn world(self, host: u8) -> SocketAddr {
        SocketAddr::from((self.uplink(host), WORLD_PORT))
    }

    /// `rbm-<moniker>-<what>`: the launcher's container and network names.
    fn name(self, what: &str) -> String {
        format!("rbm-{}-{what}", self.moniker)
    }

    fn profile(self) -> String {
        let entry = self.entry.map_or(String::new(), |port| {
            ["tcp", "udp"]
                .map(|proto| {
                    format!("\n[[entry]]\nhost_port = {port}\nbottle_port = {BOTTLE_PORT}\nprotocol = \"{proto}\"\n")
                })
                .concat()
        });
        let (domains, credential) = if self.creds {
            (
                format!("\"{API_NAME}\", \"{CRED_NAME}\""),
                format!("\n[[credential]]\nenv = \"API_KEY\"\nfrom = \"file:api-key.txt\"\nhosts = [\"{CRED_NAME}\"]\nupstream_ca = \"world-ca.pem\"\n"),
            )
        } else if self.requests {
            (
                format!("\"{API_NAME}\", \"{CRED_NAME}\""),
                format!("\n[[requests]]\nhosts = [\"{CRED_NAME}\"]\nallow = [\"GET /e2e/**\"]\nupstream_ca = \"world-ca.pem\"\n"),
            )
        } else {
            (format!("\"{API_NAME}\""), String::new())
        };
        format!(
            r#"moniker = "{moniker}"
description = "rbm end-to-end test"

[bottle]
image = "{BOTTLE_IMAGE}"
command = ["/rbm-probe", "serve", "0.0.0.0:{BOTTLE_PORT}"]

[enclave]
subnet = "{subnet}/24"
sentry_ip = "{sentry}"
bottle_ip = "{bottle}"

[uplink]
dns = "allowlist"
access = "allowlist"
domains = [{domains}]
cidrs = ["{cidr}/32"]
upstream_dns = ["{dns}"]
subnet = "{uplink}/24"
{entry}{credential}"#,
            moniker = self.moniker,
            subnet = self.enclave(0),
            sentry = self.enclave(2),
            bottle = self.enclave(3),
            cidr = self.uplink(CIDR_HOST),
            dns = self.uplink(API_HOST),
            uplink = self.uplink(0),
        )
    }

    /// What the world at `host` serves: DNS for the zone (the API host
    /// only: it is the upstream), `world ... sees ...` over TCP and UDP, and
    /// "what did you get" (which logs every connection and datagram) on
    /// `RECV_PORT`.
    fn world_setup(self, host: u8) -> WorldSetup {
        let zone = format!(
            "{API_NAME}. A 60 {}\n{OTHER_NAME}. A 60 {}\n{CRED_NAME}. A 60 {}\n",
            self.uplink(API_HOST),
            self.uplink(OTHER_HOST),
            self.uplink(CRED_HOST)
        );
        let ip = self.uplink(host);
        if host == CRED_HOST {
            let (_, leaf) = world_certs();
            return WorldSetup::new(&zone).https([HttpsServer {
                addr: SocketAddr::from((ip, 443)),
                cert: leaf.chain_pem.clone(),
                key: leaf.key_pem.clone(),
            }]);
        }
        let setup = WorldSetup::new(&zone)
            .tcp([self.world(host)])
            .udp([self.world(host)])
            .recv([SocketAddr::from((ip, RECV_PORT))])
            .echo([SocketAddr::from((ip, ECHO_PORT))]);
        if host == API_HOST {
            setup.dns(SocketAddr::from((ip, 53)))
        } else {
            setup
        }
    }
}

/// Fails unless rbm-launch printed nothing but its own progress lines:
/// no error, warning or note from Podman or netavark.
fn assert_quiet(out: &Output) {
    let noise: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !l.starts_with("rbm-launch: ") || l.contains("note:"))
        .collect();
    assert!(
        noise.is_empty(),
        "`{}` printed more than its progress:\n{}",
        out.command,
        out.stderr
    );
}

/// A profile started with `rbm-launch up`, and its world containers.
/// Fields drop in order: the worlds leave the uplink first (a network with
/// a foreign container cannot be removed), then `rbm-launch stop`.
struct Lab {
    spec: Spec,
    uplink: String,
    worlds: Vec<WorldContainer>,
    launched: Launched,
    podman: Podman,
}

impl Lab {
    /// Writes `spec`'s profile, runs `rbm-launch up`, then starts a world
    /// container at 10.251.N.H for each H in `worlds` (after `up`, which
    /// creates the uplink). None if the test must be skipped.
    fn start(spec: Spec, worlds: &[u8]) -> Result<Option<Lab>> {
        let Ok(podman) = require_podman("starts containers and networks") else {
            return Ok(None);
        };
        test_images(&podman)?;
        let launcher = Launcher::find(podman.clone())?;
        let dir = fresh_dir(spec.moniker)?;
        let profile = write_file(&dir, "profile.toml", &spec.profile())?;
        if spec.requests {
            write_file(&dir, "world-ca.pem", &world_certs().0.cert_pem)?;
        }
        if spec.creds {
            write_file(&dir, "api-key.txt", &format!("{REAL_KEY}\n"))?;
            write_file(&dir, "world-ca.pem", &world_certs().0.cert_pem)?;
        }
        for host in [API_HOST, OTHER_HOST, CIDR_HOST, CRED_HOST] {
            // A world left by an aborted run would keep `up` from clearing the uplink.
            podman.remove_container(&world_name(spec, host))?;
        }
        podman.remove_pair(spec.moniker)?;
        let mut lab = Lab {
            spec,
            uplink: spec.name("uplink"),
            worlds: Vec::new(),
            launched: Launched {
                launcher,
                profile: profile.to_string_lossy().into_owned(),
            },
            podman,
        };
        let up = lab.up()?.check().context("rbm-launch up")?;
        eprintln!(
            "{}: {}",
            spec.moniker,
            up.stdout.lines().next().unwrap_or("")
        );
        assert_quiet(&up);
        for &host in worlds {
            let world = WorldContainer::start(
                &lab.podman,
                &world_name(spec, host),
                &spec.name("uplink"),
                spec.uplink(host),
                &spec.world_setup(host),
            )?;
            lab.worlds.push(world);
        }
        Ok(Some(lab))
    }

    /// `rbm-launch COMMAND PROFILE EXTRA...`
    fn launch(&self, command: &str, extra: &[&str], timeout: Duration) -> Result<Output> {
        let mut args = vec![command, self.launched.profile.as_str()];
        args.extend_from_slice(extra);
        self.launched.launcher.run(&args, timeout)
    }

    /// `rbm-launch up PROFILE` (with the agent shipped beside the launcher);
    /// `--yes` to a profile with a credential, which the test wrote itself
    /// (no terminal here to ask on).
    fn up(&self) -> Result<Output> {
        let yes: &[&str] = if self.spec.creds { &["--yes"] } else { &[] };
        self.launch("up", yes, UP_TIMEOUT)
    }

    /// `rbm-launch status PROFILE --json`.
    fn status(&self) -> Result<Value> {
        let out = self.launch("status", &["--json"], CMD_TIMEOUT)?.check()?;
        parse_json(&out.stdout)
    }

    /// Resolves `name` with the bottle's resolver (the sentry); must answer `want`.
    fn resolves(&self, name: &str, want: Ipv4Addr) -> Result<()> {
        let run = self.probe(&["dns", name, "--timeout-ms", OPEN_MS])?;
        ensure!(run.ok(), "no DNS answer for {name}: {}", run.json);
        ensure!(
            str_field(&run.json, "rcode")? == "NoError",
            "{name}: {}",
            run.json
        );
        ensure!(
            str_list(&run.json, "addrs")? == [want.to_string()],
            "{name} should answer {want}: {}",
            run.json
        );
        Ok(())
    }

    /// `name` is refused by the sentry.
    fn refused(&self, name: &str) -> Result<()> {
        let run = self.probe(&["dns", name, "--timeout-ms", OPEN_MS])?;
        ensure!(
            str_field(&run.json, "rcode")? == "Refused",
            "{name} should be refused: {}",
            run.json
        );
        Ok(())
    }

    /// The bottle's curl (`rbm-launch shell`); its output, whatever its exit.
    fn curl(&self, args: &[&str]) -> Result<Output> {
        let mut extra = vec!["--", "/usr/bin/curl", "-sS", "--max-time", "5"];
        extra.extend_from_slice(args);
        let output = self.launch("shell", &extra, CMD_TIMEOUT)?;
        eprintln!(
            "{} curl {}: exit {:?}, {}",
            self.spec.moniker,
            args.join(" "),
            output.status.code(),
            output.stderr.trim()
        );
        Ok(output)
    }

    /// rbm-probe in a throwaway container on the uplink, beside the worlds
    /// (rootless Podman's networks cannot be reached from the host).
    fn probe_on_uplink(&self, args: &[&str]) -> Result<Value> {
        let mut all = vec![
            "run",
            "--rm",
            "--pull=never",
            "--network",
            &self.uplink,
            BOTTLE_IMAGE,
            "/rbm-probe",
        ];
        all.extend_from_slice(args);
        let out = self.podman.run(&all)?;
        probe_json(&out)
    }

    fn world(&self, host: u8) -> &WorldContainer {
        let ip = self.spec.uplink(host);
        self.worlds
            .iter()
            .find(|w| w.ip == ip)
            .unwrap_or_else(|| panic!("no world at {ip}"))
    }
}

/// The containers carrying `spec`'s moniker label.
impl Bottle for Lab {
    /// rbm-probe in the bottle (`rbm-launch shell`), its report echoed.
    fn probe(&self, args: &[&str]) -> Result<ProbeRun> {
        let mut extra = vec!["--", "/rbm-probe"];
        extra.extend_from_slice(args);
        let mut output = self.launch("shell", &extra, CMD_TIMEOUT)?;
        if output.success() && output.stdout.trim().is_empty() {
            // A remote Podman under load can lose the output of an exec
            // that ends at once (its attach comes too late); the probe
            // always prints, so ask again.
            eprintln!(
                "{}: no output from `{}`; again",
                self.spec.moniker, output.command
            );
            output = self.launch("shell", &extra, CMD_TIMEOUT)?;
        }
        let json = probe_json(&output)?;
        eprintln!(
            "{} rbm-probe {}: {}",
            self.spec.moniker,
            args.join(" "),
            shown(&json, 400)
        );
        Ok(ProbeRun { json, output })
    }
}

fn containers(podman: &Podman, spec: Spec) -> Result<Vec<Value>> {
    podman.containers_labelled("rbm.moniker", spec.moniker)
}

/// The names of `spec`'s networks (`rbm-<moniker>-*`), sorted.
fn networks(podman: &Podman, spec: Spec) -> Result<Vec<String>> {
    let prefix = format!("rbm-{}-", spec.moniker);
    let mut names = podman.network_names()?;
    names.retain(|n| n.starts_with(&prefix));
    names.sort();
    Ok(names)
}

fn world_name(spec: Spec, host: u8) -> String {
    format!("{}-world{host}", spec.moniker)
}

/// Probe arguments for TCP and UDP to `addr`, waiting `SHUT_MS`.
fn tcp_udp(addr: &str) -> [[&str; 4]; 2] {
    [
        ["tcp", addr, "--timeout-ms", SHUT_MS],
        ["udp", addr, "--timeout-ms", SHUT_MS],
    ]
}

/// `name state` of each `ps --format json` entry, sorted.
fn names_and_states(containers: &[Value]) -> Vec<String> {
    let mut list: Vec<String> = containers
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["Names"][0].as_str().unwrap_or("?"),
                c["State"].as_str().unwrap_or("?")
            )
        })
        .collect();
    list.sort();
    list
}

/// Exactly the profile's bottle and sentry, running, and its two networks.
fn assert_one_of_each(podman: &Podman, spec: Spec) -> Result<()> {
    let running = [
        format!("{} running", spec.name("bottle")),
        format!("{} running", spec.name("sentry")),
    ];
    assert_eq!(names_and_states(&containers(podman, spec)?), running);
    assert_eq!(
        networks(podman, spec)?,
        [spec.name("enclave"), spec.name("uplink")]
    );
    Ok(())
}

const ALLOW: Spec = Spec::new("e2eallow", 1);

#[test]
fn bottle_reaches_the_allowed_name_and_cidr_and_nothing_else() -> Result<()> {
    let Some(lab) = Lab::start(ALLOW, &[API_HOST, OTHER_HOST, CIDR_HOST])? else {
        return Ok(());
    };
    let (api, other, cidr) = (
        ALLOW.world(API_HOST),
        ALLOW.world(OTHER_HOST),
        ALLOW.world(CIDR_HOST),
    );
    // `rbm-launch watch --json` follows what the sentry refuses from here on.
    let profile = lab.launched.profile.clone();
    let mut watch = lab
        .launched
        .launcher
        .spawn(&["watch", &profile, "--json"])?;

    // The allowed name resolves with the bottle's resolver (the sentry),
    // which asked the world, and its address opens over TCP and UDP.
    lab.resolves(API_NAME, ALLOW.uplink(API_HOST))?;
    assert!(lab.world(API_HOST).was_asked(API_NAME)?);
    let reply = lab.reaches(api)?;
    let masqueraded = format!("world {api} sees 10.251.{}.", ALLOW.n);
    assert!(
        reply.starts_with(&masqueraded),
        "the world should see the sentry's uplink address, not the bottle: {reply}"
    );
    // The CIDR's address is open without any name.
    lab.reaches(cidr)?;

    // A name outside the allowlist is refused, over UDP and TCP, and never
    // leaves the sentry.
    for extra in [&[][..], &["--tcp"]] {
        let mut args = vec!["dns", OTHER_NAME, "--timeout-ms", OPEN_MS];
        args.extend_from_slice(extra);
        let run = lab.probe(&args)?;
        assert_eq!(str_field(&run.json, "rcode")?, "Refused", "{}", run.json);
        assert!(str_list(&run.json, "addrs")?.is_empty(), "{}", run.json);
    }
    assert!(
        !lab.world(API_HOST).was_asked(OTHER_NAME)?,
        "{:?}",
        lab.world(API_HOST).queries()?
    );

    // The unlearned world serves (seen from a container on the uplink),
    // yet from the bottle it is silence: the sentry drops it.
    let direct = lab.probe_on_uplink(&["tcp", &other.to_string(), "--timeout-ms", OPEN_MS])?;
    let reply = str_field(&direct, "reply")?;
    assert!(
        reply.starts_with(&format!("world {other} sees ")),
        "{direct}"
    );
    let target = other.to_string();
    let shut = tcp_udp(&target);
    for report in lab.all_fail(&[&shut[0], &shut[1]])? {
        let error = str_field(&report, "error")?;
        assert!(
            error.starts_with("timeout"),
            "expected a drop (silence), got {report}"
        );
    }
    // The watch saw the drop, with its reason.
    let line = watch.wait_for(
        |l| l.contains(&target) && l.contains("never resolved"),
        "the dropped connection to the unlearned world",
        Duration::from_secs(10),
    )?;
    let event = parse_json(&line)?;
    assert_eq!(event["kind"], "connection", "{event}");

    // Status tells the learned address with its name, and the refused name.
    let status = lab.status()?;
    assert_eq!(status["ready"], true, "{status}");
    let learned = status["learned"].as_array().context("no learned list")?;
    let entry = learned
        .iter()
        .find(|l| l["addr"] == api.ip().to_string())
        .with_context(|| format!("{api} not learned: {status}"))?;
    assert_eq!(entry["name"], API_NAME, "{entry}");
    assert!(
        learned.iter().all(|l| l["addr"] != other.ip().to_string()),
        "{status}"
    );
    assert!(
        str_list(&status, "refused_names")?
            .iter()
            .any(|n| n == OTHER_NAME),
        "{status}"
    );
    assert!(status["dns"]["allowed"].as_u64() >= Some(1), "{status}");
    assert!(status["dns"]["refused"].as_u64() >= Some(2), "{status}");

    // Name binding, with a real client. curl's ClientHello names the
    // allowed name and reaches its world (which speaks no TLS, so the
    // handshake then fails there); the same address under a foreign name
    // (domain fronting) gets a reset from the sentry, and the world not
    // one byte.
    let allowed = lab.curl(&["-k", &format!("https://{API_NAME}/")])?;
    let connect_to = format!("{FRONTED_NAME}:443:{API_NAME}:443");
    let fronted = lab.curl(&[
        "-k",
        "--connect-to",
        &connect_to,
        &format!("https://{FRONTED_NAME}/"),
    ])?;
    assert!(!allowed.success() && !fronted.success());
    assert!(!allowed.stderr.contains("reset"), "{}", allowed.stderr);
    assert!(fronted.stderr.contains("reset"), "{}", fronted.stderr);
    let receipts = wait_for(|| {
        let r = lab.world(API_HOST).receipts()?;
        Ok((r.len() >= 2).then_some(r))
    })?;
    let mut bytes: Vec<usize> = receipts.iter().map(|r| r.bytes).collect();
    bytes.sort();
    assert!(
        bytes.len() == 2 && bytes[0] == 0 && bytes[1] > 200,
        "{receipts:?}"
    );
    let status = lab.status()?;
    let denials = serde_json::to_string(&status["name_denials"])?;
    assert!(denials.contains(FRONTED_NAME), "{status}");
    Ok(())
}

/// Polls `check` until it returns something (10 s at most).
fn wait_for<T>(mut check: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(found) = check()? {
            return Ok(found);
        }
        ensure!(Instant::now() < deadline, "gave up waiting");
        thread::sleep(Duration::from_millis(200));
    }
}

const ENTRY: Spec = Spec {
    entry: Some(18892),
    ..Spec::new("e2eentry", 2)
};

#[test]
fn entry_port_reaches_the_bottle_from_the_workstation() -> Result<()> {
    let Some(_lab) = Lab::start(ENTRY, &[])? else {
        return Ok(());
    };
    let port = ENTRY.entry.expect("ENTRY has an entry port");
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    // The bottle's server may still be starting: retry until it answers.
    let deadline = Instant::now() + SERVER_START;
    let ask = |what: &str, attempt: &dyn Fn() -> Result<String>| loop {
        let reply = attempt();
        match reply {
            Ok(line) if !line.is_empty() => return Ok(line),
            _ if Instant::now() < deadline => thread::sleep(Duration::from_millis(200)),
            _ => bail!("nothing over {what} from {addr} within {SERVER_START:?}: {reply:?}"),
        }
    };
    // The bottle sees the sentry (the entry is masqueraded toward it, from
    // the address Podman gave the sentry on the enclave).
    let sees = format!(" sees {}:", ENTRY.enclave(254));
    let tcp = ask("tcp", &|| {
        tcp_line(addr, TCP_REPLY).map_err(anyhow::Error::msg)
    })?;
    let bottle = format!("bottle {}:{BOTTLE_PORT}{sees}", ENTRY.enclave(3));
    assert!(tcp.starts_with(&bottle), "{tcp}");
    let udp = ask("udp", &|| {
        udp_reply(addr, UDP_REPLY).map_err(anyhow::Error::msg)
    })?;
    assert!(udp.starts_with("bottle ") && udp.contains(&sees), "{udp}");
    Ok(())
}

const KILL: Spec = Spec::new("e2ekill", 3);

#[test]
fn killed_sentry_leaves_the_bottle_no_way_out() -> Result<()> {
    let Some(lab) = Lab::start(KILL, &[API_HOST, CIDR_HOST])? else {
        return Ok(());
    };
    let (api, cidr) = (KILL.world(API_HOST), KILL.world(CIDR_HOST));
    lab.resolves(API_NAME, KILL.uplink(API_HOST))?;
    lab.reaches(api)?;
    lab.reaches(cidr)?;
    let asked = lab.world(API_HOST).queries()?.len();

    let sentry = KILL.name("sentry");
    lab.podman.run_ok(&["kill", &sentry])?;
    let deadline = Instant::now() + CMD_TIMEOUT;
    while lab.podman.is_running(&sentry)? {
        ensure!(Instant::now() < deadline, "{sentry} still runs after kill");
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        lab.podman.is_running(&KILL.name("bottle"))?,
        "the bottle should outlive its sentry"
    );

    let (api_target, cidr_target) = (api.to_string(), cidr.to_string());
    let to_api = tcp_udp(&api_target);
    let to_cidr = tcp_udp(&cidr_target);
    let dns = ["dns", API_NAME, "--timeout-ms", SHUT_MS];
    let reports = lab.all_fail(&[&dns, &to_api[0], &to_api[1], &to_cidr[0], &to_cidr[1]])?;
    for report in &reports {
        assert!(report["error"].is_string(), "{report}");
    }
    assert_eq!(
        lab.world(API_HOST).queries()?.len(),
        asked,
        "no query may reach the world once the sentry is dead"
    );
    Ok(())
}

/// The world's CA (the "public" roots of the model internet, which only
/// the sentry trusts, through the profile's upstream_ca) and the
/// credential host's certificate, made once per run.
fn world_certs() -> &'static (TestCa, Leaf) {
    static CERTS: std::sync::OnceLock<(TestCa, Leaf)> = std::sync::OnceLock::new();
    CERTS.get_or_init(|| {
        let ca = TestCa::new("rbm e2e world CA").expect("a CA");
        let leaf = ca.leaf(&[CRED_NAME]).expect("a certificate");
        (ca, leaf)
    })
}

const CREDS: Spec = Spec {
    creds: true,
    ..Spec::new("e2ecred", 10)
};

#[test]
fn the_sentry_puts_the_real_key_on_the_wire_and_the_bottle_never_holds_it() -> Result<()> {
    let Some(lab) = Lab::start(CREDS, &[API_HOST, CRED_HOST])? else {
        return Ok(());
    };
    // The bottle's variable holds a placeholder; nothing of the real value
    // is in what Podman shows of either container.
    let bottle = lab
        .podman
        .run_ok(&["container", "inspect", &CREDS.name("bottle")])?
        .stdout;
    let sentry = lab
        .podman
        .run_ok(&["container", "inspect", &CREDS.name("sentry")])?
        .stdout;
    for (what, text) in [("bottle", &bottle), ("sentry", &sentry)] {
        assert!(
            !text.contains(REAL_KEY),
            "the real value is in the {what}'s inspect"
        );
    }
    // Nor in any file of the bottle (its whole file system, as a tar).
    let files = lab
        .podman
        .run_ok(&["export", &CREDS.name("bottle")])?
        .stdout;
    assert!(files.len() > 100_000, "no file system exported");
    assert!(
        !files.contains(REAL_KEY),
        "the real value is in the bottle's files"
    );
    let inspected: Value = serde_json::from_str(&bottle)?;
    let env: Vec<String> = inspected[0]["Config"]["Env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str().map(str::to_string))
        .collect();
    let placeholder = env
        .iter()
        .find_map(|e| e.strip_prefix("API_KEY="))
        .with_context(|| format!("no API_KEY in the bottle: {env:?}"))?
        .to_string();
    assert!(placeholder.starts_with("rbm-"), "{placeholder}");
    assert!(
        env.iter()
            .any(|e| e == "SSL_CERT_FILE=/etc/rbm/ca-bundle.pem"),
        "{env:?}"
    );

    // curl trusts the bundle through CURL_CA_BUNDLE as set: the world gets
    // the real value, the bottle its placeholder back.
    let url = format!("https://{CRED_NAME}/e2e");
    let header = format!("Authorization: Bearer {placeholder}");
    let out = lab.curl(&["-H", &header, &url])?;
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(out.stdout, format!("auth: Bearer {placeholder}\n"));
    let got = lab.world(CRED_HOST).https_requests()?;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].authorization, format!("Bearer {REAL_KEY}"));
    Ok(())
}

const CRASH: Spec = Spec::new("e2ecrash", 8);

/// `{{.Id}} {{.State.StartedAt}}` of a container: what must not change
/// while the bottle keeps running.
fn identity(podman: &Podman, name: &str) -> Result<String> {
    let out = podman.run_ok(&[
        "container",
        "inspect",
        "--format",
        "{{.Id}} {{.State.StartedAt}} {{.State.Running}}",
        name,
    ])?;
    Ok(out.stdout.trim().to_string())
}

#[test]
fn a_reload_and_a_killed_agent_keep_the_bottle_running_and_the_new_policy() -> Result<()> {
    let Some(lab) = Lab::start(CRASH, &[API_HOST, OTHER_HOST])? else {
        return Ok(());
    };
    let api = CRASH.world(API_HOST);
    lab.resolves(API_NAME, CRASH.uplink(API_HOST))?;
    lab.reaches(api)?;
    let bottle = identity(&lab.podman, &CRASH.name("bottle"))?;
    let sentry = identity(&lab.podman, &CRASH.name("sentry"))?;

    // Reload: the API name out, the other name in. The bottle's busy
    // connection to the API's address is cut at once.
    let echo = SocketAddr::from((CRASH.uplink(API_HOST), ECHO_PORT)).to_string();
    let profile = lab.launched.profile.clone();
    let mut held = lab.launched.launcher.spawn(&[
        "shell",
        &profile,
        "--",
        "/rbm-probe",
        "hold",
        &echo,
        "--ms",
        "60000",
    ])?;
    held.wait_for_line("connected", CMD_TIMEOUT)?;
    let reloaded = CRASH.profile().replace(
        &format!("domains = [\"{API_NAME}\"]"),
        &format!("domains = [\"{OTHER_NAME}\"]"),
    );
    std::fs::write(&profile, &reloaded)?;
    let out = lab.launch("reload", &[], CMD_TIMEOUT)?.check()?;
    assert!(
        out.stdout.contains(&format!("removed {API_NAME}")),
        "{}",
        out.stdout
    );
    let cut = held.wait_for(|l| l.starts_with('{'), "the hold report", CMD_TIMEOUT)?;
    assert!(cut.contains("reset"), "the connection must be reset: {cut}");
    lab.refused(API_NAME)?;
    lab.blocked(&[("tcp", api), ("udp", api)], SHUT_MS)?;
    lab.resolves(OTHER_NAME, CRASH.uplink(OTHER_HOST))?;
    lab.reaches(CRASH.world(OTHER_HOST))?;
    // What only `up` can change is refused, naming the field.
    std::fs::write(
        &profile,
        reloaded.replace(BOTTLE_IMAGE, "localhost/other:latest"),
    )?;
    let refused = lab.launch("reload", &[], CMD_TIMEOUT)?;
    assert_eq!(refused.status.code(), Some(2), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("bottle.image changed") && refused.stderr.contains("rbm-launch up"),
        "{}",
        refused.stderr
    );
    std::fs::write(&profile, &reloaded)?;

    // A datagram every 5 ms to the address the reload closed, from before
    // the kill until after the agent is back: not one may arrive there.
    let target = SocketAddr::from((CRASH.uplink(API_HOST), RECV_PORT)).to_string();
    let flood = ["flood", target.as_str(), "--ms", "6000"];
    let (flooded, back) = thread::scope(|s| {
        let flooding = s.spawn(|| lab.probe(&flood));
        thread::sleep(Duration::from_millis(1000));
        let back = lab.podman.kill_agent(&CRASH.name("sentry")).and_then(|_| {
            wait_for(|| {
                let out = lab.launch("status", &["--json"], CMD_TIMEOUT)?;
                let status = parse_json(&out.stdout).unwrap_or(Value::Null);
                Ok((out.success() && status["restarts"] == 1).then_some(status))
            })
        });
        (flooding.join().expect("flood thread"), back)
    });
    let status = back?;
    let flooded = flooded?;
    assert_eq!(status["ready"], true, "{status}");
    assert!(
        flooded.json["sent"].as_u64() > Some(100),
        "{}",
        flooded.json
    );
    assert_eq!(flooded.json["replies"], 0, "{}", flooded.json);

    // Serving again with the reloaded policy, and the bottle and sentry
    // containers never restarted.
    assert_eq!(status["reloads"], 1, "{status}");
    lab.refused(API_NAME)?;
    lab.resolves(OTHER_NAME, CRASH.uplink(OTHER_HOST))?;
    lab.reaches(CRASH.world(OTHER_HOST))?;
    assert_eq!(identity(&lab.podman, &CRASH.name("bottle"))?, bottle);
    assert_eq!(identity(&lab.podman, &CRASH.name("sentry"))?, sentry);
    Ok(())
}

/// The `ExecStart=` of `service` in quadlet's dry-run output, as words.
fn exec_start(dryrun: &str, service: &str) -> Result<String> {
    // Each unit comes as `---NAME.service---` and then its text.
    let parts: Vec<&str> = dryrun.split("---").collect();
    let header = format!("{service}.service");
    let section = parts
        .iter()
        .position(|part| *part == header)
        .and_then(|i| parts.get(i + 1))
        .with_context(|| format!("no {header} in {dryrun}"))?;
    let line = section
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .with_context(|| format!("no ExecStart for {service}: {section}"))?;
    Ok(line.to_string())
}

const QUADLET: Spec = Spec::new("e2equad", 9);

#[test]
fn quadlet_units_pass_podmans_generator_and_run_the_containers_up_runs() -> Result<()> {
    let Some(podman) = require_podman("runs rbm-launch quadlet and Podman's quadlet").ok() else {
        return Ok(());
    };
    test_images(&podman)?;
    let launcher = Launcher::find(podman.clone())?;
    let dir = fresh_dir(QUADLET.moniker)?;
    let profile = write_file(&dir, "profile.toml", &QUADLET.profile())?;
    let units = dir.join("units");
    let profile_arg = profile.to_string_lossy().into_owned();
    let units_arg = units.to_string_lossy().into_owned();
    let out = launcher
        .run(&["quadlet", &profile_arg, "--dir", &units_arg], UP_TIMEOUT)?
        .check()?;
    assert!(out.stdout.contains("systemctl"), "{}", out.stdout);
    let rootless = podman.is_rootless()?;
    let dirs = format!("QUADLET_UNIT_DIRS={units_arg}");
    let mut args = vec!["env", &dirs, "/usr/libexec/podman/quadlet", "-dryrun"];
    if rootless {
        args.push("-user");
    }
    let dryrun = launcher.enter_run(&args, CMD_TIMEOUT)?.check()?;
    let sentry = exec_start(&dryrun.stdout, &QUADLET.name("sentry"))?;
    let bottle = exec_start(&dryrun.stdout, &QUADLET.name("bottle"))?;
    // What `rbm-launch up` passes to `podman run`, the units pass too.
    for want in [
        format!(
            "--network {}:ip={}",
            QUADLET.name("enclave"),
            QUADLET.enclave(254)
        ),
        format!("--network {}", QUADLET.name("uplink")),
        "--cap-drop all".to_string(),
        "--sdnotify=healthy".to_string(),
        // 5.8 writes the space in "/rbm-agent status" as \x20.
        "--health-cmd \"/rbm-agent".to_string(),
        "localhost/rbm-sentry:latest run --profile /rbm/profile.toml".to_string(),
    ] {
        assert!(
            sentry.to_lowercase().contains(&want.to_lowercase()),
            "{want} in {sentry}"
        );
    }
    for want in [
        format!(
            "--network {}:ip={}",
            QUADLET.name("enclave"),
            QUADLET.enclave(3)
        ),
        format!("--dns {}", QUADLET.enclave(2)),
        format!("{BOTTLE_IMAGE} /rbm-probe serve"),
    ] {
        assert!(bottle.contains(&want), "{want} in {bottle}");
    }
    assert!(!bottle.contains(&QUADLET.name("uplink")), "{bottle}");
    for network in ["enclave", "uplink"] {
        assert!(
            dryrun
                .stdout
                .contains(&format!("{}-network.service", QUADLET.name(network))),
            "{}",
            dryrun.stdout
        );
    }
    Ok(())
}

const STOP: Spec = Spec::new("e2estop", 5);

#[test]
fn stop_leaves_no_container_or_network_behind() -> Result<()> {
    let Some(lab) = Lab::start(STOP, &[])? else {
        return Ok(());
    };
    assert_one_of_each(&lab.podman, STOP)?;
    let stop = lab.launch("stop", &[], CMD_TIMEOUT)?;
    let left = (containers(&lab.podman, STOP)?, networks(&lab.podman, STOP)?);
    assert!(
        left.0.is_empty() && left.1.is_empty(),
        "left behind: containers {:?}, networks {:?}",
        names_and_states(&left.0),
        left.1
    );
    assert!(
        stop.success(),
        "`{}` removed everything but failed ({}):\n{}",
        stop.command,
        stop.status,
        stop.stderr.trim()
    );
    assert_quiet(&stop);
    Ok(())
}

const TWICE: Spec = Spec::new("e2etwice", 4);

#[test]
fn up_twice_leaves_one_sentry_and_one_bottle() -> Result<()> {
    let Some(lab) = Lab::start(TWICE, &[])? else {
        return Ok(());
    };
    let again = lab.up()?;
    assert!(
        again.success(),
        "second `{}` failed ({}):\n{}",
        again.command,
        again.status,
        again.stderr.trim()
    );
    assert_quiet(&again);
    assert_one_of_each(&lab.podman, TWICE)?;
    assert_eq!(lab.status()?["ready"], true);
    Ok(())
}

#[test]
fn the_launcher_finds_podman_its_agent_and_the_builtin_profiles_from_any_directory() -> Result<()> {
    let Ok(podman) = require_podman("asks the launcher which Podman it found") else {
        return Ok(());
    };
    let launcher = Launcher::find(podman.clone())?;
    let info = launcher.run(&["info"], CMD_TIMEOUT)?.check()?;
    let mode = if podman.is_rootless()? {
        "rootless"
    } else {
        "rootful"
    };
    let version = podman.run_ok(&["version", "--format", "{{.Client.Version}}"])?;
    let want = format!("Podman {} {mode} (", version.stdout.trim());
    assert!(
        info.stdout.contains(&want),
        "want {want:?}:\n{}",
        info.stdout
    );
    let agent = info
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("agent:"))
        .and_then(|l| l.split(" (for ").next())
        .map(str::trim)
        .context("no agent line")?;
    assert!(PathBuf::from(agent).is_file(), "{}", info.stdout);
    assert!(
        info.stdout.contains("hardening: ")
            && info.stdout.contains("net.core.devconf_inherit_init_net"),
        "{}",
        info.stdout
    );
    let demo = launcher.run(&["check", "demo"], CMD_TIMEOUT)?.check()?;
    assert!(
        demo.stdout.starts_with("ok: ") && demo.stdout.contains("moniker demo"),
        "{}",
        demo.stdout
    );
    Ok(())
}

const BAD: Spec = Spec::new("e2ebad", 6);

#[test]
fn invalid_profile_is_rejected_naming_file_and_field_and_starts_nothing() -> Result<()> {
    let Ok(podman) = require_podman("checks that no container or network was created") else {
        return Ok(());
    };
    let launcher = Launcher::find(podman.clone())?;
    // bottle_ip outside enclave.subnet.
    let text = BAD.profile().replace(
        &format!("bottle_ip = \"{}\"", BAD.enclave(3)),
        "bottle_ip = \"10.250.66.3\"",
    );
    let profile = write_file(&fresh_dir(BAD.moniker)?, "profile.toml", &text)?;
    let profile = profile.to_string_lossy();
    for args in [vec!["check", &*profile], vec!["up", &*profile]] {
        let out = launcher.run(&args, UP_TIMEOUT)?;
        assert_eq!(
            out.status.code(),
            Some(2),
            "`{}`: {}",
            out.command,
            out.stderr
        );
        for needle in [&*profile, "enclave.bottle_ip", "outside enclave.subnet"] {
            assert!(
                out.stderr.contains(needle),
                "`{}` should name {needle:?}: {}",
                out.command,
                out.stderr
            );
        }
    }
    let left = (containers(&podman, BAD)?, networks(&podman, BAD)?);
    assert!(left.0.is_empty() && left.1.is_empty(), "{left:?}");
    Ok(())
}

const IMAGE: Spec = Spec::new("e2eimage", 7);

#[test]
fn sentry_image_is_scratch_with_only_the_agent() -> Result<()> {
    let Some(lab) = Lab::start(IMAGE, &[])? else {
        return Ok(());
    };
    let image = &lab.podman.json(&["image", "inspect", SENTRY_IMAGE])?[0];
    let sentry = &lab
        .podman
        .json(&["container", "inspect", &IMAGE.name("sentry")])?[0];
    assert_eq!(
        sentry["Image"], image["Id"],
        "the sentry runs {SENTRY_IMAGE}"
    );
    assert_eq!(
        image["RootFS"]["Layers"].as_array().map(Vec::len),
        Some(1),
        "{}",
        image["RootFS"]
    );
    assert_eq!(
        image["Config"]["Entrypoint"],
        serde_json::json!(["/rbm-agent"])
    );
    let host_arch = lab.podman.run_ok(&["info", "--format", "{{.Host.Arch}}"])?;
    assert_eq!(
        image["Architecture"],
        host_arch.stdout.trim(),
        "the sentry image is for the Podman host's architecture"
    );
    let size = image["Size"].as_u64().context("no image size")?;
    assert!(size < 10_000_000, "{SENTRY_IMAGE} is {size} bytes");

    // Its file system: exactly one file, the agent we built.
    let dir = fresh_dir(&format!("{}/export", IMAGE.moniker))?;
    let tar = dir.join("sentry.tar");
    let copy = format!("{}-export", IMAGE.moniker);
    lab.podman.remove_container(&copy)?;
    lab.podman.run_ok(&[
        "create",
        "--pull=never",
        "--network",
        "none",
        "--name",
        &copy,
        SENTRY_IMAGE,
    ])?;
    let exported = lab
        .podman
        .run_ok(&["export", "--output", &tar.to_string_lossy(), &copy]);
    lab.podman.remove_container(&copy)?;
    exported?;
    let listing = run_ok(
        "tar",
        &["--list", "--file", &tar.to_string_lossy()],
        CMD_TIMEOUT,
    )?;
    let files: Vec<&str> = listing
        .stdout
        .lines()
        .map(|l| l.trim_start_matches("./").trim_start_matches('/'))
        .filter(|l| !l.is_empty() && !l.ends_with('/'))
        .collect();
    assert_eq!(files, ["rbm-agent"], "{}", listing.stdout);
    let out = dir.join("files");
    std::fs::create_dir_all(&out)?;
    run_ok(
        "tar",
        &[
            "--extract",
            "--file",
            &tar.to_string_lossy(),
            "--directory",
            &out.to_string_lossy(),
        ],
        CMD_TIMEOUT,
    )?;
    let agent = std::fs::read(static_bin("rbm-agent")?)?;
    assert!(
        std::fs::read(out.join("rbm-agent"))? == agent,
        "/rbm-agent is not the static agent"
    );
    Ok(())
}
