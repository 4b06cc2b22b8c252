//! rbm-agent in the kernel: real nftables in throwaway network namespaces,
//! the real static agent in the sentry, real DNS on the wire. Each test
//! builds its own bottle/sentry/world (so tests run in parallel) and proves
//! one property from inside the bottle.
//!
//! Network safety: every packet goes to an address that lives in a namespace
//! the test created (the world's 192.0.2.53, 198.51.100.x, 203.0.113.5,
//! 10.99.1.x, fd00:243::1, or the sentry itself).
//!
//! Needs root, `ip`, `nft`, `sysctl` and the static binaries
//! (`scripts/build-static`, or set RBM_STATIC_DIR).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use rbm_tests::agent::Agent;
use rbm_tests::bottle::{shown, Bottle, OPEN_MS};
use rbm_tests::json::{str_field, str_list};
use rbm_tests::netns::{
    enclave_default_route, ipv4_range, uplink_default_route, ProbeRun, BOTTLE_V4,
    ENCLAVE_ROUTE_METRIC, SENTRY_ENCLAVE_V4, SENTRY_UPLINK_V4, UPLINK_ROUTE_METRIC, WORLD_V4,
    WORLD_V6,
};
use rbm_tests::world::setup::{RunningWorld, WorldSetup};
use rbm_tests::{require_netns, run_ok, static_bin, Ns, Topology};
use serde_json::Value;

#[path = "kernel/creds.rs"]
mod creds;
#[path = "kernel/denied.rs"]
mod denied;
#[path = "kernel/inuse.rs"]
mod inuse;
#[path = "kernel/names.rs"]
mod names;
#[path = "kernel/reload.rs"]
mod reload;

#[path = "kernel/requests.rs"]
mod requests;
#[path = "kernel/restart.rs"]
mod restart;

/// The world's authoritative DNS server, the agent's upstream.
const DNS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
/// `a.example.test` (allowed, TTL 60).
const ALLOWED: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
/// Served, but no allowed name resolves to it.
const NEVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
/// `short.example.test` (allowed, TTL 1).
const SHORT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 30);
/// `ports.example.test` (allowed on port 443 only).
const PORTS: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 40);
/// `target.other.test`, the end of `alias.example.test`'s CNAME chain.
const TARGET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 50);
/// `evil.example.test` (not allowed).
const EVIL: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 66);
/// `names.example.test`: one address that serves many names, with "what
/// did you get" servers on 80, 443 and 8443 (the name-binding tests).
const NAMES: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 70);
/// A world address where no DNS server listens (a dead upstream).
const NO_DNS: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 99);
/// `six.example.test` (allowed, AAAA only).
const SIX: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0x10);
/// Inside the profile's CIDR.
const IN_CIDR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);
const CIDR: &str = "203.0.113.0/28";
const RACE_FIRST: Ipv4Addr = Ipv4Addr::new(10, 99, 1, 1);
const RACE_COUNT: u32 = 200;
const RACE_PORT: u16 = 7;
const MIN_TTL: u32 = 1;
/// The profile's entry port on the sentry, and the bottle's port behind it.
const ENTRY_PORT: u16 = 8890;
const BOTTLE_PORT: u16 = 8888;

/// Timeout of every command the tests run (probes, status, nft, ip).
const CMD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a probe waits for something the filter should drop. Local
/// traffic answers in milliseconds; silence this long is a drop.
const BLOCKED_MS: &str = "800";
/// Long enough for a dead upstream to become SERVFAIL (agent: 5 s at most).
const SERVFAIL_MS: &str = "7000";

fn sock(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

fn zone(race: u32) -> String {
    let mut zone = String::from(
        "a.example.test.       A     60 198.51.100.10\n\
         short.example.test.   A     1  198.51.100.30\n\
         ports.example.test.   A     60 198.51.100.40\n\
         alias.example.test.   CNAME 60 target.other.test.\n\
         target.other.test.    A     60 198.51.100.50\n\
         never.other.test.     A     60 198.51.100.20\n\
         evil.example.test.    A     60 198.51.100.66\n\
         names.example.test.   A     60 198.51.100.70\n\
         names.example.test.   HTTPS 60 1 . alpn=h2 ipv4hint=203.0.113.99 ech=0004deadbeef\n\
         six.example.test.     AAAA  60 fd00:99::10\n\
         rebind.example.test.  A     60 10.243.0.1\n\
         rebind.example.test.  A     60 127.0.0.1\n\
         rebind.example.test.  A     60 169.254.169.254\n\
         rebind.example.test.  A     60 198.51.100.10\n",
    );
    zone.push_str(inuse::ZONE);
    for (i, addr) in ipv4_range(RACE_FIRST, race).iter().enumerate() {
        zone.push_str(&format!("h{}.race.example.test. A 5 {addr}\n", i + 1));
    }
    zone
}

/// The moniker, bottle and enclave of every kernel test's profile: the
/// topology's addresses.
fn profile_head(moniker: &str) -> String {
    format!(
        r#"moniker = "{moniker}"

[bottle]
image = "localhost/rbm-unused:latest"

[enclave]
subnet = "10.242.0.0/24"
sentry_ip = "{SENTRY_ENCLAVE_V4}"
bottle_ip = "{BOTTLE_V4}"
"#
    )
}

fn profile(upstream: Ipv4Addr, name_binding: bool) -> String {
    let head = profile_head("kernel");
    let inuse = inuse::DOMAINS;
    format!(
        r#"{head}
[uplink]
dns = "allowlist"
access = "allowlist"
domains = ["a.example.test", "short.example.test", "alias.example.test", "ports.example.test:443", "*.race.example.test", "six.example.test", "rebind.example.test", "names.example.test", {inuse}]
cidrs = ["{CIDR}"]
upstream_dns = ["{upstream}"]
min_ttl = {MIN_TTL}
name_binding = {name_binding}

[[entry]]
host_port = {ENTRY_PORT}
bottle_port = {BOTTLE_PORT}

[[entry]]
host_port = {ENTRY_PORT}
bottle_port = {BOTTLE_PORT}
protocol = "udp"
"#
    )
}

/// What differs between the tests' setups.
#[derive(Clone, Copy)]
struct Options {
    /// The profile's upstream resolver.
    upstream: Ipv4Addr,
    /// How many `h{i}.race.example.test` names (and servers) the world has.
    race: u32,
    /// The metric of the enclave default route Podman gives the sentry.
    enclave_route_metric: u32,
    /// `uplink.name_binding` of the profile.
    name_binding: bool,
}

const STANDARD: Options = Options {
    upstream: DNS,
    race: 0,
    enclave_route_metric: ENCLAVE_ROUTE_METRIC,
    name_binding: true,
};

/// The namespaces and a running world: DNS on DNS:53, a TCP server on
/// DNS:853, TCP and UDP "who do you see" servers on every test address.
/// The bottle's resolv.conf names the sentry.
fn world(options: Options) -> Result<Option<(Topology, RunningWorld)>> {
    if require_netns("creates network namespaces and nftables tables").is_err() {
        return Ok(None);
    }
    let fixed = [
        DNS,
        ALLOWED,
        NEVER,
        SHORT,
        PORTS,
        TARGET,
        EVIL,
        NO_DNS,
        IN_CIDR,
        NAMES,
        inuse::INUSE,
        inuse::UNUSED,
    ];
    let race = options.race;
    let race_addrs = ipv4_range(RACE_FIRST, race);
    let topo = Topology::builder()
        .enclave_route_metric(options.enclave_route_metric)
        .world_addrs(fixed.map(IpAddr::V4))
        .world_addr(IpAddr::V6(SIX))
        .world_addrs(race_addrs.clone())
        .build()?;
    let mut servers = vec![
        sock(ALLOWED, 80),
        sock(NEVER, 80),
        sock(SHORT, 80),
        sock(PORTS, 80),
        sock(PORTS, 443),
        sock(TARGET, 80),
        sock(EVIL, 80),
        sock(IN_CIDR, 80),
        sock(IN_CIDR, 8080),
        sock(WORLD_V6, 80),
        sock(SIX, 80),
        sock(WORLD_V4, 80),
        sock(inuse::INUSE, 80),
        sock(inuse::UNUSED, 80),
    ];
    servers.extend(race_addrs.iter().map(|ip| sock(*ip, RACE_PORT)));
    let world = WorldSetup::new(&zone(race))
        .dns(sock(DNS, 53))
        .tcp(servers.iter().copied().chain([sock(DNS, 853)]))
        .udp(servers)
        .recv(names::RECV_PORTS.map(|port| sock(NAMES, port)))
        .recv([sock(IN_CIDR, 443)])
        .echo(reload::ECHOES.map(|ip| sock(ip, reload::ECHO_PORT)))
        .echo([sock(inuse::INUSE, reload::ECHO_PORT)])
        .start(&topo)?;
    topo.set_resolv_conf(Ns::Bottle, &format!("nameserver {SENTRY_ENCLAVE_V4}\n"))?;
    Ok(Some((topo, world)))
}

/// A topology, a world and a ready rbm-agent in the sentry. Fields drop in
/// order: the agent, then the world, then the namespaces.
struct Lab {
    agent: Agent,
    world: RunningWorld,
    topo: Topology,
}

/// Starts everything and waits until `rbm-agent status` exits 0.
fn lab(options: Options) -> Result<Option<Lab>> {
    let Some((topo, world)) = world(options)? else {
        return Ok(None);
    };
    let agent = Agent::start(&topo, &profile(options.upstream, options.name_binding))?;
    Ok(Some(Lab { agent, world, topo }))
}

impl Lab {
    /// `rbm-agent status --json`, run in the sentry; fails unless it exits 0.
    fn status(&self) -> Result<Value> {
        self.agent.status(&self.topo)
    }

    /// One query to the sentry over UDP (`extra`: e.g. `--tcp`, `--type`);
    /// fails unless an answer arrived.
    fn dns(&self, name: &str, extra: &[&str]) -> Result<Value> {
        let server = SENTRY_ENCLAVE_V4.to_string();
        let mut args = vec!["dns", name, "--server", &server];
        args.extend_from_slice(extra);
        let run = self.probe(&args)?;
        ensure!(run.ok(), "no DNS answer for {name}: {}", run.json);
        Ok(run.json)
    }

    /// Resolves `name` through the sentry and checks it answers `want`.
    fn resolve(&self, name: &str, want: Ipv4Addr) -> Result<()> {
        let answer = self.dns(name, &[])?;
        assert_eq!(str_field(&answer, "rcode")?, "NoError", "{answer}");
        assert!(
            str_list(&answer, "addrs")?.contains(&want.to_string()),
            "{name} should answer {want}: {answer}"
        );
        Ok(())
    }

    /// rbm-probe in the bottle.
    fn probe(&self, args: &[&str]) -> Result<ProbeRun> {
        NsBottle(&self.topo).probe(args)
    }

    /// TCP and UDP to `addr` from the bottle both get the server's line.
    fn reaches(&self, addr: SocketAddr) -> Result<String> {
        NsBottle(&self.topo).reaches(addr)
    }

    /// Every `(proto, addr)` from the bottle; each must be dropped.
    fn blocked(&self, targets: &[(&str, SocketAddr)]) -> Result<()> {
        NsBottle(&self.topo).blocked(targets, BLOCKED_MS)
    }
}

/// The bottle namespace of a topology, without an agent.
struct NsBottle<'a>(&'a Topology);

impl Bottle for NsBottle<'_> {
    fn probe(&self, args: &[&str]) -> Result<ProbeRun> {
        probe(self.0, Ns::Bottle, args)
    }
}

/// rbm-probe in `ns`, its report echoed to stderr for the test log.
fn probe(topo: &Topology, ns: Ns, args: &[&str]) -> Result<ProbeRun> {
    let run = topo.probe(ns, args, CMD_TIMEOUT)?;
    eprintln!("rbm-probe {}: {}", args.join(" "), shown(&run.json, 400));
    Ok(run)
}

/// TCP and UDP to `addr`.
fn both(addr: SocketAddr) -> [(&'static str, SocketAddr); 2] {
    [("tcp", addr), ("udp", addr)]
}

/// The packet counter of the rule `comment` in `chain`, from a status report.
fn rule_packets(status: &Value, chain: &str, comment: &str) -> Result<u64> {
    let rules = status["counters"]["rules"]
        .as_array()
        .with_context(|| format!("no counters in status: {status}"))?;
    rules
        .iter()
        .find(|r| r["chain"] == chain && r["comment"] == comment)
        .and_then(|r| r["packets"].as_u64())
        .with_context(|| format!("no rule {chain}/{comment} in {rules:?}"))
}

/// The learned entry for `addr`, if status lists it.
fn learned(status: &Value, addr: Ipv4Addr) -> Option<&Value> {
    status["learned"]
        .as_array()?
        .iter()
        .find(|l| l["addr"] == addr.to_string())
}

/// `nft -j list ruleset` in the sentry: the `nftables` array.
fn nft_ruleset(topo: &Topology) -> Result<Vec<Value>> {
    let out = topo.exec_ok(Ns::Sentry, "nft", &["-j", "list", "ruleset"], CMD_TIMEOUT)?;
    let json: Value = serde_json::from_str(&out.stdout)
        .with_context(|| format!("nft -j printed no JSON: {}", out.stdout))?;
    json["nftables"]
        .as_array()
        .cloned()
        .with_context(|| format!("no nftables array in {json}"))
}

/// The objects of kind `kind` (`table`, `chain`, `rule`, `set`) in a ruleset.
fn objects<'a>(ruleset: &'a [Value], kind: &str) -> Vec<&'a Value> {
    ruleset.iter().filter_map(|o| o.get(kind)).collect()
}

/// Exactly one table, `inet rbm`, whose forward and input chains drop by default.
fn assert_only_rbm_table(ruleset: &[Value]) {
    let tables: Vec<(&Value, &Value)> = objects(ruleset, "table")
        .iter()
        .map(|t| (&t["family"], &t["name"]))
        .collect();
    assert_eq!(tables, [(&Value::from("inet"), &Value::from("rbm"))]);
    for hook in ["forward", "input"] {
        let chain = objects(ruleset, "chain")
            .into_iter()
            .find(|c| c["hook"] == hook)
            .unwrap_or_else(|| panic!("no {hook} chain in {ruleset:?}"));
        assert_eq!(chain["table"], "rbm");
        assert_eq!(chain["policy"], "drop", "{chain}");
    }
}

#[test]
fn allowed_names_are_open_the_moment_they_are_answered() -> Result<()> {
    let Some(lab) = lab(Options {
        race: RACE_COUNT,
        ..STANDARD
    })?
    else {
        return Ok(());
    };
    // No --server: the bottle's resolv.conf names the sentry.
    let run = lab.probe(&["dns", "a.example.test"])?;
    assert!(run.ok(), "{}", run.json);
    assert_eq!(str_list(&run.json, "addrs")?, [ALLOWED.to_string()]);
    assert!(lab.world.was_asked("a.example.test")?);
    lab.reaches(sock(ALLOWED, 80))?;

    // 200 fresh names, each resolved and then at once reached over UDP
    // (one datagram, no retry) and TCP: no first packet may be lost.
    let count = RACE_COUNT.to_string();
    let port = RACE_PORT.to_string();
    let server = SENTRY_ENCLAVE_V4.to_string();
    let race = lab.probe(&[
        "reach",
        "--name-template",
        "h{i}.race.example.test",
        "--count",
        &count,
        "--port",
        &port,
        "--server",
        &server,
    ])?;
    assert!(race.ok(), "{}", race.json);
    assert_eq!(race.json["ok"], RACE_COUNT);
    assert_eq!(race.json["failures"], Value::Array(vec![]));

    let status = lab.status()?;
    assert_eq!(
        rule_packets(&status, "forward", "drop:forward")?,
        0,
        "{status}"
    );
    let learned_packets = rule_packets(&status, "forward", "accept:learned4")?;
    assert!(
        learned_packets >= u64::from(2 * RACE_COUNT),
        "every race flow's first packet should pass accept:learned4: {learned_packets}"
    );
    assert!(status["dns"]["allowed"].as_u64() >= Some(u64::from(RACE_COUNT) + 1));
    Ok(())
}

#[test]
fn refused_names_never_go_upstream() -> Result<()> {
    let Some(lab) = lab(STANDARD)? else {
        return Ok(());
    };
    let answer = lab.dns("evil.example.test", &[])?;
    assert_eq!(str_field(&answer, "rcode")?, "Refused", "{answer}");
    assert_eq!(answer["addrs"], Value::Array(vec![]));
    let tcp = lab.dns("Evil.Example.Test", &["--tcp"])?;
    assert_eq!(str_field(&tcp, "rcode")?, "Refused", "{tcp}");
    assert!(
        !lab.world.was_asked("evil.example.test")?,
        "a refused name reached upstream: {:?}",
        lab.world.queries()?
    );
    let status = lab.status()?;
    assert!(
        str_list(&status, "refused_names")?.contains(&"evil.example.test".to_string()),
        "{status}"
    );
    assert!(learned(&status, EVIL).is_none(), "{status}");
    lab.blocked(&both(sock(EVIL, 80)))
}

#[test]
fn unlearned_addresses_are_dropped() -> Result<()> {
    let Some(lab) = lab(STANDARD)? else {
        return Ok(());
    };
    // An allowed name was learned, but NEVER stays shut.
    lab.resolve("a.example.test", ALLOWED)?;
    lab.blocked(&both(sock(NEVER, 80)))?;
    let status = lab.status()?;
    assert!(
        rule_packets(&status, "forward", "drop:forward-logged")?
            + rule_packets(&status, "forward", "drop:forward")?
            >= 2,
        "{status}"
    );
    Ok(())
}

#[test]
fn learned_addresses_nobody_connected_to_close_after_their_ttl() -> Result<()> {
    let Some(lab) = lab(STANDARD)? else {
        return Ok(());
    };
    let answered = Instant::now();
    lab.resolve("short.example.test", SHORT)?;
    // Not connected to first: a connection would keep it open for the
    // grace period past its TTL (kernel/inuse.rs).
    let entry = learned(&lab.status()?, SHORT).cloned();
    let entry = entry.context("short.example.test's address is not listed as learned")?;
    assert!(
        entry["expires_in_secs"].as_u64() <= Some(u64::from(MIN_TTL)),
        "{entry}"
    );
    // TTL 1 and min_ttl 1: closed 1 s after the answer; wait 2.5 s.
    thread::sleep(Duration::from_millis(2500).saturating_sub(answered.elapsed()));
    lab.blocked(&both(sock(SHORT, 80)))?;
    assert!(learned(&lab.status()?, SHORT).is_none());
    Ok(())
}

#[test]
fn cidrs_open_every_port_and_port_rules_only_theirs() -> Result<()> {
    let Some(lab) = lab(STANDARD)? else {
        return Ok(());
    };
    lab.reaches(sock(IN_CIDR, 80))?;
    lab.reaches(sock(IN_CIDR, 8080))?;

    lab.resolve("ports.example.test", PORTS)?;
    // TCP only: UDP 443 is QUIC, which name binding checks (kernel/names.rs).
    let tcp_443 = sock(PORTS, 443).to_string();
    let run = lab.probe(&["tcp", &tcp_443, "--timeout-ms", OPEN_MS])?;
    assert!(run.ok(), "{}", run.json);
    lab.blocked(&both(sock(PORTS, 80)))?;
    let status = lab.status()?;
    let entry = learned(&status, PORTS).context("ports.example.test not learned")?;
    assert_eq!(entry["ports"], serde_json::json!([443]), "{entry}");
    assert_eq!(entry["name"], "ports.example.test");
    assert!(rule_packets(&status, "forward", "accept:cidr4")? >= 2);
    assert!(rule_packets(&status, "forward", "accept:learned4-ports")? >= 1);
    Ok(())
}

#[test]
fn dns_over_tcp_works_through_the_sentry() -> Result<()> {
    let Some(lab) = lab(STANDARD)? else {
        return Ok(());
    };
    let answer = lab.dns("a.example.test", &["--tcp"])?;
    assert_eq!(str_field(&answer, "rcode")?, "NoError", "{answer}");
    assert_eq!(str_list(&answer, "addrs")?, [ALLOWED.to_string()]);
    lab.reaches(sock(ALLOWED, 80))?;
    Ok(())
}

#[test]
fn cname_chains_open_the_final_address() -> Result<()> {
    let Some(lab) = lab(STANDARD)? else {
        return Ok(());
    };
    // The target alone is not allowed...
    let direct = lab.dns("target.other.test", &[])?;
    assert_eq!(str_field(&direct, "rcode")?, "Refused", "{direct}");
    // ...but as the end of an allowed name's chain it is opened.
    let answer = lab.dns("alias.example.test", &[])?;
    let types: Vec<&Value> = answer["answers"]
        .as_array()
        .context("no answers")?
        .iter()
        .map(|a| &a["type"])
        .collect();
    assert_eq!(types, ["CNAME", "A"], "{answer}");
    assert_eq!(str_list(&answer, "addrs")?, [TARGET.to_string()]);
    lab.reaches(sock(TARGET, 80))?;
    let status = lab.status()?;
    let entry = learned(&status, TARGET).context("the chain's end is not learned")?;
    assert_eq!(entry["name"], "alias.example.test", "{entry}");
    Ok(())
}

#[test]
fn the_worlds_resolver_is_unreachable_from_the_bottle() -> Result<()> {
    let Some(lab) = lab(STANDARD)? else {
        return Ok(());
    };
    // The world does serve DNS on 53 and TCP on 853 (checked from inside it).
    let dns = sock(DNS, 53).to_string();
    let local = probe(
        &lab.topo,
        Ns::World,
        &["dns", "a.example.test", "--server", &dns],
    )?;
    assert!(local.ok(), "{}", local.json);
    let local = probe(&lab.topo, Ns::World, &["tcp", "192.0.2.53:853"])?;
    assert!(local.ok(), "{}", local.json);

    lab.blocked(&[
        ("udp", sock(DNS, 53)),
        ("tcp", sock(DNS, 53)),
        ("tcp", sock(DNS, 853)),
    ])?;
    // And as a resolver, too: a real query straight to it gets no answer.
    let direct = lab.probe(&[
        "dns",
        "a.example.test",
        "--server",
        &dns,
        "--timeout-ms",
        BLOCKED_MS,
    ])?;
    assert!(!direct.ok(), "{}", direct.json);
    Ok(())
}

#[test]
fn the_sentry_answers_nothing_but_dns() -> Result<()> {
    let Some(lab) = lab(STANDARD)? else {
        return Ok(());
    };
    let targets = [
        ("tcp", sock(SENTRY_ENCLAVE_V4, 22)),
        ("tcp", sock(SENTRY_ENCLAVE_V4, 80)),
        ("udp", sock(SENTRY_ENCLAVE_V4, 123)),
    ];
    let _listeners = WorldSetup::new("")
        .tcp(targets[..2].iter().map(|t| t.1))
        .udp([targets[2].1])
        .start_in(&lab.topo, Ns::Sentry)?;
    // The listeners answer inside the sentry (loopback is allowed)...
    for (proto, addr) in targets {
        let local = probe(&lab.topo, Ns::Sentry, &[proto, &addr.to_string()])?;
        assert!(local.ok(), "{}", local.json);
    }
    // ...and the bottle cannot reach them.
    lab.blocked(&targets)?;
    let status = lab.status()?;
    assert!(
        rule_packets(&status, "input", "drop:input-logged")?
            + rule_packets(&status, "input", "drop:input")?
            >= 3,
        "{status}"
    );
    Ok(())
}

#[test]
fn ipv6_from_the_bottle_goes_nowhere() -> Result<()> {
    let Some(lab) = lab(STANDARD)? else {
        return Ok(());
    };
    // The world serves on fd00:243::1 (checked from inside it).
    let v6 = sock(WORLD_V6, 80);
    let local = probe(&lab.topo, Ns::World, &["tcp", &v6.to_string()])?;
    assert!(local.ok(), "{}", local.json);
    lab.blocked(&both(v6))
}

#[test]
fn learned_ipv6_addresses_open_too() -> Result<()> {
    let Some(lab) = lab(STANDARD)? else {
        return Ok(());
    };
    let answer = lab.dns("six.example.test", &["--type", "AAAA"])?;
    assert_eq!(str_list(&answer, "addrs")?, [SIX.to_string()], "{answer}");
    lab.reaches(sock(SIX, 80))?;
    // Learning one IPv6 address opens that one only.
    lab.blocked(&both(sock(WORLD_V6, 80)))
}

#[test]
fn an_allowed_name_cannot_open_the_sentrys_gateway_or_loopback() -> Result<()> {
    let Some(lab) = lab(STANDARD)? else {
        return Ok(());
    };
    // DNS rebinding: the name is allowed, but three of its addresses are the
    // machine the sentry runs on (its uplink gateway), loopback and the
    // cloud metadata address. Only the ordinary address reaches the bottle.
    let answer = lab.dns("rebind.example.test", &[])?;
    assert_eq!(
        str_list(&answer, "addrs")?,
        [ALLOWED.to_string()],
        "{answer}"
    );
    let learned: Vec<String> = lab.status()?["learned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["addr"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(learned, [ALLOWED.to_string()]);
    lab.reaches(sock(ALLOWED, 80))?;
    lab.blocked(&both(sock(WORLD_V4, 80)))
}

#[test]
fn masquerade_hides_the_bottle() -> Result<()> {
    let Some(lab) = lab(STANDARD)? else {
        return Ok(());
    };
    lab.resolve("a.example.test", ALLOWED)?;
    let reply = lab.reaches(sock(ALLOWED, 80))?;
    let want = format!("world {ALLOWED}:80 sees {SENTRY_UPLINK_V4}:");
    assert!(reply.starts_with(&want), "want {want:?}..., got {reply:?}");
    assert!(!reply.contains(&BOTTLE_V4.to_string()), "{reply}");
    Ok(())
}

#[test]
fn status_reports_what_was_learned_and_refused() -> Result<()> {
    let Some(lab) = lab(STANDARD)? else {
        return Ok(());
    };
    lab.resolve("A.Example.Test", ALLOWED)?;
    lab.dns("evil.example.test", &[])?;
    let status = lab.status()?;
    assert_eq!(status["ready"], true);
    assert_eq!(status["dns_mode"], "allowlist");
    assert_eq!(status["access_mode"], "allowlist");
    assert_eq!(status["interfaces"]["enclave"], "eth1", "{status}");
    assert_eq!(status["interfaces"]["uplink"], "eth0", "{status}");
    assert_eq!(status["sentry_ip"], SENTRY_ENCLAVE_V4.to_string());
    assert_eq!(status["bottle_ip"], BOTTLE_V4.to_string());
    assert_eq!(str_list(&status, "upstream_dns")?, [DNS.to_string()]);
    assert_eq!(str_list(&status, "cidrs")?, [CIDR]);
    assert!(str_list(&status, "domains")?.contains(&"ports.example.test:443".into()));
    let entry = learned(&status, ALLOWED).context("a.example.test not learned")?;
    assert_eq!(entry["name"], "a.example.test", "{entry}");
    assert!(entry["ports"].is_null(), "{entry}");
    let left = entry["expires_in_secs"]
        .as_u64()
        .context("expires_in_secs")?;
    assert!((55..=60).contains(&left), "TTL 60, yet {left} s left");
    assert_eq!(
        str_list(&status, "refused_names")?,
        ["evil.example.test"],
        "{status}"
    );
    assert_eq!(status["dns"]["allowed"], 1, "{status}");
    assert_eq!(status["dns"]["refused"], 1, "{status}");
    assert_eq!(status["dns"]["failed"], 0, "{status}");
    Ok(())
}

#[test]
fn any_axfr_and_garbage_are_refused_and_the_proxy_keeps_serving() -> Result<()> {
    let Some(mut lab) = lab(STANDARD)? else {
        return Ok(());
    };
    for extra in [
        &["--type", "ANY"][..],
        &["--type", "AXFR", "--tcp"][..],
        &["--type", "AXFR"][..],
    ] {
        let answer = lab.dns("a.example.test", extra)?;
        assert_eq!(
            str_field(&answer, "rcode")?,
            "Refused",
            "{extra:?}: {answer}"
        );
    }
    assert!(
        !lab.world.was_asked("a.example.test")?,
        "ANY/AXFR went upstream"
    );

    let sentry = sock(SENTRY_ENCLAVE_V4, 53).to_string();
    let garbage = [
        "beef0100000100000000000003ab", // one question, truncated name
        "0102",                         // not even a header
        "beef8180000100000000000000",   // a "response", cut short
        "ffffffffffffffffffffffffffffffffffffffff",
    ];
    for hex in garbage {
        for transport in [&[][..], &["--tcp"][..]] {
            let mut args = vec!["raw-dns", &sentry, "--hex", hex, "--timeout-ms", BLOCKED_MS];
            args.extend_from_slice(transport);
            let run = lab.probe(&args)?;
            assert!(run.ok(), "an answer or nothing, not an error: {}", run.json);
            if let Some(reply) = run.json["reply_hex"].as_str() {
                assert!(reply.len() >= 24, "a reply shorter than a header: {reply}");
                assert!(
                    u8::from_str_radix(&reply[4..5], 16)? & 0x8 != 0,
                    "QR unset: {reply}"
                );
            }
        }
    }
    assert!(
        lab.agent.process.is_running(),
        "agent died: {}",
        lab.agent.process.stderr()
    );
    lab.resolve("a.example.test", ALLOWED)?;
    lab.reaches(sock(ALLOWED, 80))?;
    assert_eq!(lab.status()?["ready"], true);
    Ok(())
}

#[test]
fn a_dead_upstream_gives_servfail_and_opens_nothing() -> Result<()> {
    let Some(lab) = lab(Options {
        upstream: NO_DNS,
        ..STANDARD
    })?
    else {
        return Ok(());
    };
    let answer = lab.dns("a.example.test", &["--timeout-ms", SERVFAIL_MS])?;
    assert_eq!(str_field(&answer, "rcode")?, "ServFail", "{answer}");
    assert_eq!(answer["addrs"], Value::Array(vec![]));
    lab.blocked(&both(sock(ALLOWED, 80)))?;
    let status = lab.status()?;
    assert_eq!(status["learned"], Value::Array(vec![]), "{status}");
    assert_eq!(status["dns"]["failed"], 1, "{status}");
    Ok(())
}

#[test]
fn the_kernel_holds_one_rbm_table() -> Result<()> {
    let Some(lab) = lab(STANDARD)? else {
        return Ok(());
    };
    let ruleset = nft_ruleset(&lab.topo)?;
    assert_only_rbm_table(&ruleset);
    let sets: Vec<&Value> = objects(&ruleset, "set")
        .iter()
        .map(|s| &s["name"])
        .collect();
    for name in [
        "allow4",
        "allow6",
        "learned4",
        "learned6",
        "learned4_ports",
        "learned6_ports",
    ] {
        assert!(
            sets.contains(&&Value::from(name)),
            "no set {name}: {sets:?}"
        );
    }
    let comments: Vec<&Value> = objects(&ruleset, "rule")
        .iter()
        .map(|r| &r["comment"])
        .collect();
    for comment in [
        "accept:established",
        "accept:learned4",
        "drop:forward",
        "nat:masquerade",
    ] {
        assert!(
            comments.contains(&&Value::from(comment)),
            "no rule {comment}: {comments:?}"
        );
    }

    Ok(())
}

#[test]
fn entry_ports_reach_the_bottle_the_rootful_and_the_rootless_way_but_not_from_the_bottle(
) -> Result<()> {
    let Some(lab) = lab(STANDARD)? else {
        return Ok(());
    };
    let program = rbm_tests::static_bin("rbm-probe")?;
    let listen = sock(Ipv4Addr::UNSPECIFIED, BOTTLE_PORT).to_string();
    let mut server = lab
        .topo
        .spawn(Ns::Bottle, &program.to_string_lossy(), &["serve", &listen])?;
    server.wait_for_line("ready", CMD_TIMEOUT)?;
    let entry = sock(SENTRY_UPLINK_V4, ENTRY_PORT).to_string();
    // Masqueraded toward the enclave: the bottle sees the sentry.
    let seen_by_bottle = format!(" sees {SENTRY_ENCLAVE_V4}:");
    // Rootful Podman: netavark forwards the workstation's port to the
    // sentry's uplink address, so it arrives on the uplink. Rootless
    // Podman: rootlessport connects from inside the sentry itself.
    for from in [Ns::World, Ns::Sentry] {
        for proto in ["tcp", "udp"] {
            let run = probe(&lab.topo, from, &[proto, &entry])?;
            assert!(run.ok(), "{proto} from {from:?}: {}", run.json);
            let line = str_field(&run.json, "reply")?;
            assert!(
                line.starts_with("bottle ") && line.contains(&seen_by_bottle),
                "{proto} from {from:?}: {line}"
            );
        }
    }
    // The bottle cannot loop through the entry, on either sentry address.
    lab.blocked(&both(sock(SENTRY_UPLINK_V4, ENTRY_PORT)))?;
    lab.blocked(&both(sock(SENTRY_ENCLAVE_V4, ENTRY_PORT)))
}

#[test]
fn the_enclave_default_route_stays_where_podman_put_it_and_the_uplink_wins() -> Result<()> {
    let Some(lab) = lab(STANDARD)? else {
        return Ok(());
    };
    // Left alone, so netavark can tear down what it set up, and beaten by
    // the uplink's route: the sentry's own traffic leaves through the uplink.
    assert_eq!(
        lab.topo.default_routes(Ns::Sentry, "-4")?,
        [
            uplink_default_route(),
            enclave_default_route(ENCLAVE_ROUTE_METRIC)
        ]
    );
    let sentry = lab.topo.name(Ns::Sentry);
    let get = run_ok(
        "ip",
        &["-n", sentry, "-j", "route", "get", &NEVER.to_string()],
        CMD_TIMEOUT,
    )?;
    let chosen: Value = serde_json::from_str(&get.stdout)?;
    assert_eq!(chosen[0]["dev"], "eth0", "{chosen}");
    Ok(())
}

#[test]
fn an_enclave_default_route_that_would_win_is_deleted() -> Result<()> {
    let Some(lab) = lab(Options {
        enclave_route_metric: UPLINK_ROUTE_METRIC - 1,
        ..STANDARD
    })?
    else {
        return Ok(());
    };
    assert_eq!(
        lab.topo.default_routes(Ns::Sentry, "-4")?,
        [uplink_default_route()]
    );
    lab.resolve("a.example.test", ALLOWED)?;
    lab.reaches(sock(ALLOWED, 80)).map(drop)
}

#[test]
fn the_sentry_forwards_only_once_the_agent_has_its_filter_in_force() -> Result<()> {
    let Some((topo, _world)) = world(STANDARD)? else {
        return Ok(());
    };
    // Without the agent the sentry forwards plainly: the world is reachable.
    let open = probe(&topo, Ns::Bottle, &["tcp", &sock(ALLOWED, 80).to_string()])?;
    assert!(open.ok(), "{}", open.json);

    // As the launcher starts it (`--sysctl net.ipv4.ip_forward=0`): a
    // sentry that has no filter yet forwards nothing, even to allowed hosts.
    topo.exec_ok(
        Ns::Sentry,
        "sysctl",
        &["-qw", "net.ipv4.ip_forward=0"],
        CMD_TIMEOUT,
    )?;
    NsBottle(&topo).blocked(&both(sock(ALLOWED, 80)), BLOCKED_MS)?;
    let forwarding = |topo: &Topology| -> Result<Vec<String>> {
        let out = topo.exec_ok(
            Ns::Sentry,
            "sh",
            &["-c", "cat /proc/sys/net/ipv4/conf/*/forwarding"],
            CMD_TIMEOUT,
        )?;
        Ok(out.stdout.split_whitespace().map(str::to_string).collect())
    };
    assert!(forwarding(&topo)?.iter().all(|v| v == "0"));

    // The agent turns it on for the enclave and the uplink only, after its
    // ruleset is in: allowed traffic flows, the rest is still dropped.
    let lab = Lab {
        agent: Agent::start(&topo, &profile(DNS, true))?,
        world: _world,
        topo,
    };
    let on = forwarding(&lab.topo)?;
    assert_eq!(
        on.iter().filter(|v| *v == "1").count(),
        2,
        "forwarding on exactly the enclave and the uplink: {on:?}"
    );
    let ipv4 = lab.topo.exec_ok(
        Ns::Sentry,
        "sysctl",
        &["-n", "net.ipv4.ip_forward"],
        CMD_TIMEOUT,
    )?;
    assert_eq!(ipv4.stdout.trim(), "0", "the global switch stays off");
    lab.resolve("a.example.test", ALLOWED)?;
    lab.reaches(sock(ALLOWED, 80))?;
    lab.blocked(&both(sock(NEVER, 80)))
}

#[test]
fn sigterm_stops_the_agent_cleanly_and_the_filter_stays() -> Result<()> {
    let Some(mut lab) = lab(STANDARD)? else {
        return Ok(());
    };
    let status = lab.agent.process.stop(Duration::from_secs(5))?;
    assert!(
        status.success(),
        "rbm-agent exit on SIGTERM: {status}\n{}",
        lab.agent.process.stderr()
    );
    assert!(!lab.agent.control.exists(), "the control socket is removed");
    // The default-deny table outlives the agent: nothing new gets out.
    assert_only_rbm_table(&nft_ruleset(&lab.topo)?);
    lab.blocked(&both(sock(NEVER, 80)))
}
