//! Self-test of the test kit: rbm-probe in the bottle talks to rbm-world in
//! the world, through a sentry namespace that only forwards (no agent, no
//! NAT), so the world sees the bottle's own address.
//!
//! Needs root and the static binaries (`scripts/build-static`, or set
//! RBM_STATIC_DIR).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{ensure, Result};
use rbm_tests::bottle::shown;
use rbm_tests::json::{str_field, str_list};
use rbm_tests::netns::{ipv4_range, ProbeRun, BOTTLE_V4, BOTTLE_V6, PODMAN_GATEWAY_V4, WORLD_V6};
use rbm_tests::world::setup::{RunningWorld, WorldSetup};
use rbm_tests::{require_netns, Ns, Topology};

const DNS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
const API: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const RACE_FIRST: Ipv4Addr = Ipv4Addr::new(10, 99, 1, 1);
const RACE_COUNT: u32 = 20;
/// 200 addresses, TCP and UDP each: 400 sockets in one rbm-world.
const BIG_RACE_COUNT: u32 = 200;
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// Drop order matters: the world process stops before its namespace goes.
struct Fixture {
    world: RunningWorld,
    topo: Topology,
}

fn zone(race_count: u32) -> String {
    let mut zone = String::from(
        "# the self-test zone\n\
         api.example.test.    A     60 198.51.100.10\n\
         api.example.test.    AAAA  60 2001:db8::10\n\
         www.example.test.    CNAME 30 edge.example.test.\n\
         edge.example.test.   CNAME 30 api.example.test.\n\
         note.example.test.   TXT   60 \"hello from the world\"\n",
    );
    for i in 1..=40 {
        zone.push_str(&format!("big.example.test. A 60 10.98.0.{i}\n"));
    }
    for (i, addr) in ipv4_range(RACE_FIRST, race_count).iter().enumerate() {
        zone.push_str(&format!("h{}.race.example.test. A 5 {addr}\n", i + 1));
    }
    zone
}

/// A topology plus a world serving DNS, `sees` servers on API:80 and on
/// every race address, port 7; the bottle's resolv.conf points at the world.
fn fixture() -> Result<Option<Fixture>> {
    fixture_with(RACE_COUNT)
}

fn fixture_with(race_count: u32) -> Result<Option<Fixture>> {
    if require_netns("creates network namespaces").is_err() {
        return Ok(None);
    }
    let race = ipv4_range(RACE_FIRST, race_count);
    let topo = Topology::builder()
        .world_addrs(
            [
                DNS,
                API,
                Ipv4Addr::new(198, 51, 100, 20),
                Ipv4Addr::new(203, 0, 113, 5),
            ]
            .map(IpAddr::V4),
        )
        .world_addrs(race.clone())
        .build()?;
    let mut servers: Vec<SocketAddr> = race.iter().map(|ip| SocketAddr::new(*ip, 7)).collect();
    servers.push(SocketAddr::new(API.into(), 80));
    servers.push(SocketAddr::new(WORLD_V6.into(), 80));
    let world = WorldSetup::new(&zone(race_count))
        .dns(SocketAddr::new(DNS.into(), 53))
        .tcp(servers.clone())
        .udp(servers)
        .start(&topo)?;
    topo.set_resolv_conf(Ns::Bottle, &format!("# test\nnameserver {DNS}\n"))?;
    Ok(Some(Fixture { world, topo }))
}

fn probe(f: &Fixture, args: &[&str]) -> Result<ProbeRun> {
    let run = f.topo.probe(Ns::Bottle, args, PROBE_TIMEOUT)?;
    eprintln!("rbm-probe {}: {}", args.join(" "), shown(&run.json, 300));
    Ok(run)
}

fn dns(f: &Fixture, name: &str, extra: &[&str]) -> Result<ProbeRun> {
    let server = format!("{DNS}");
    let mut args = vec!["dns", name, "--server", &server];
    args.extend_from_slice(extra);
    let run = probe(f, &args)?;
    ensure!(run.ok(), "dns query for {name} failed: {}", run.json);
    Ok(run)
}

#[test]
fn dns_answers_from_the_zone() -> Result<()> {
    let Some(f) = fixture()? else { return Ok(()) };
    let a = dns(&f, "API.example.test", &[])?.json;
    assert_eq!(str_field(&a, "rcode")?, "NoError");
    assert_eq!(str_list(&a, "addrs")?, vec!["198.51.100.10"]);
    assert_eq!(a["answers"][0]["name"], "API.example.test.");
    assert_eq!(a["answers"][0]["ttl"], 60);
    assert_eq!(a["truncated"], false);
    assert!(a["error"].is_null());

    let chain = dns(&f, "www.example.test", &[])?.json;
    let types: Vec<&str> = chain["answers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["CNAME", "CNAME", "A"]);
    assert_eq!(chain["answers"][1]["data"], "api.example.test.");
    assert_eq!(str_list(&chain, "addrs")?, vec!["198.51.100.10"]);

    let txt = dns(&f, "note.example.test", &["--type", "TXT"])?.json;
    assert_eq!(txt["answers"][0]["data"], "hello from the world");
    let aaaa = dns(&f, "api.example.test", &["--type", "AAAA"])?.json;
    assert_eq!(str_list(&aaaa, "addrs")?, vec!["2001:db8::10"]);
    let nx = dns(&f, "nope.example.test", &[])?.json;
    assert_eq!(str_field(&nx, "rcode")?, "NXDomain");
    assert_eq!(nx["answers"].as_array().unwrap().len(), 0);
    Ok(())
}

#[test]
fn default_server_and_query_log() -> Result<()> {
    let Some(f) = fixture()? else { return Ok(()) };
    // No --server: the probe reads the bottle's /etc/resolv.conf.
    let run = probe(&f, &["dns", "api.example.test"])?;
    assert!(run.ok(), "{}", run.json);
    assert_eq!(str_list(&run.json, "addrs")?, vec!["198.51.100.10"]);
    dns(&f, "Note.Example.Test", &["--type", "TXT", "--tcp"])?;
    let log = f.world.queries()?;
    assert!(
        log.iter()
            .any(|q| q.proto == "udp" && q.name == "api.example.test." && q.qtype == "A"),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|q| q.proto == "tcp" && q.name == "Note.Example.Test." && q.qtype == "TXT"),
        "{log:?}"
    );
    assert!(
        !f.world.was_asked("www.example.test")?,
        "never asked, yet logged: {log:?}"
    );
    Ok(())
}

#[test]
fn big_answers_truncate_over_udp_and_fit_over_tcp() -> Result<()> {
    let Some(f) = fixture()? else { return Ok(()) };
    let udp = dns(&f, "big.example.test", &[])?.json;
    assert_eq!(udp["truncated"], true, "{udp}");
    assert_eq!(str_field(&udp, "rcode")?, "NoError");
    let tcp = dns(&f, "big.example.test", &["--tcp"])?.json;
    assert_eq!(tcp["truncated"], false, "{tcp}");
    assert_eq!(str_list(&tcp, "addrs")?.len(), 40);
    Ok(())
}

#[test]
fn tcp_and_udp_servers_see_the_bottle() -> Result<()> {
    let Some(f) = fixture()? else { return Ok(()) };
    for proto in ["tcp", "udp"] {
        let run = probe(&f, &[proto, "198.51.100.10:80"])?;
        assert!(run.ok(), "{}", run.json);
        let reply = str_field(&run.json, "reply")?;
        assert!(
            reply.starts_with(&format!("world 198.51.100.10:80 sees {BOTTLE_V4}:")),
            "{reply}"
        );
    }
    let v6 = probe(&f, &["tcp", &format!("[{WORLD_V6}]:80")])?;
    assert!(v6.ok(), "{}", v6.json);
    assert!(
        str_field(&v6.json, "reply")?.contains(&format!("sees [{BOTTLE_V6}]:")),
        "{}",
        v6.json
    );

    let closed = probe(&f, &["tcp", "198.51.100.20:80", "--timeout-ms", "1000"])?;
    assert!(!closed.ok());
    assert_eq!(closed.json["ok"], false);
    assert!(
        str_field(&closed.json, "error")?.starts_with("refused"),
        "{}",
        closed.json
    );
    Ok(())
}

/// `rbm-probe reach` over `count` race names, asking the world directly.
fn reach(f: &Fixture, count: &str) -> Result<ProbeRun> {
    let server = DNS.to_string();
    let template = "h{i}.race.example.test";
    probe(
        f,
        &[
            "reach",
            "--name-template",
            template,
            "--count",
            count,
            "--port",
            "7",
            "--server",
            &server,
        ],
    )
}

#[test]
fn reach_resolves_and_connects_every_name() -> Result<()> {
    let Some(f) = fixture()? else { return Ok(()) };
    let count = RACE_COUNT.to_string();
    let run = reach(&f, &count)?;
    assert!(run.ok(), "{}", run.json);
    assert_eq!(run.json["count"], RACE_COUNT);
    assert_eq!(run.json["ok"], RACE_COUNT);
    assert_eq!(run.json["failures"].as_array().unwrap().len(), 0);
    Ok(())
}

#[test]
fn one_world_serves_hundreds_of_sockets() -> Result<()> {
    let Some(mut f) = fixture_with(BIG_RACE_COUNT)? else {
        return Ok(());
    };
    let count = BIG_RACE_COUNT.to_string();
    let run = reach(&f, &count)?;
    assert!(run.ok(), "{}", run.json);
    assert_eq!(run.json["ok"], BIG_RACE_COUNT);
    let status = f.world.process.stop(Duration::from_secs(5))?;
    assert!(
        status.success(),
        "rbm-world should exit 0 on SIGTERM, got {status}"
    );
    Ok(())
}

#[test]
fn reach_reports_the_failing_stage() -> Result<()> {
    let Some(f) = fixture()? else { return Ok(()) };
    let server = DNS.to_string();
    let run = probe(
        &f,
        &[
            "reach",
            "--name-template",
            "h{i}.race.example.test",
            "--count",
            "2",
            "--port",
            "8",
            "--server",
            &server,
            "--timeout-ms",
            "500",
        ],
    )?;
    assert!(!run.ok());
    assert_eq!(run.json["ok"], 0);
    assert_eq!(run.json["failures"][0]["stage"], "udp", "{}", run.json);
    assert_eq!(run.json["failures"][1]["name"], "h2.race.example.test");
    let run = probe(
        &f,
        &[
            "reach",
            "--name-template",
            "x{i}.example.test",
            "--count",
            "1",
            "--port",
            "7",
            "--server",
            &server,
        ],
    )?;
    assert_eq!(run.json["failures"][0]["stage"], "dns", "{}", run.json);
    Ok(())
}

#[test]
fn raw_dns_gets_formerr_for_garbage_and_null_for_silence() -> Result<()> {
    let Some(f) = fixture()? else { return Ok(()) };
    // A header claiming one question, then a truncated name.
    let garbage = "beef0100000100000000000003ab";
    for transport in [&[][..], &["--tcp"][..]] {
        let mut args = vec!["raw-dns", "192.0.2.53:53", "--hex", garbage];
        args.extend_from_slice(transport);
        let run = probe(&f, &args)?;
        assert!(run.ok(), "{}", run.json);
        let reply = str_field(&run.json, "reply_hex")?;
        assert!(reply.starts_with("beef8"), "id kept, QR set: {reply}");
        assert_eq!(&reply[7..8], "1", "rcode FORMERR: {reply}");
    }
    // Too short to be a query: the world stays silent; not a probe failure.
    let run = probe(
        &f,
        &[
            "raw-dns",
            "192.0.2.53:53",
            "--hex",
            "0102",
            "--timeout-ms",
            "500",
        ],
    )?;
    assert!(run.ok(), "{}", run.json);
    assert!(run.json["reply_hex"].is_null());
    assert!(
        str_field(&run.json, "error")?.starts_with("timeout"),
        "{}",
        run.json
    );
    Ok(())
}

#[test]
fn dns_without_an_answer_is_a_failure_with_json() -> Result<()> {
    let Some(f) = fixture()? else { return Ok(()) };
    // Nothing listens on 203.0.113.5:53: the world's kernel refuses.
    let run = probe(
        &f,
        &[
            "dns",
            "api.example.test",
            "--server",
            "203.0.113.5",
            "--timeout-ms",
            "1000",
        ],
    )?;
    assert!(!run.ok());
    assert!(run.json["rcode"].is_null());
    assert!(
        str_field(&run.json, "error")?.starts_with("refused"),
        "{}",
        run.json
    );
    // Nobody is at Podman's enclave gateway address: silence.
    let server = PODMAN_GATEWAY_V4.to_string();
    let run = probe(
        &f,
        &[
            "dns",
            "api.example.test",
            "--server",
            &server,
            "--timeout-ms",
            "500",
        ],
    )?;
    assert!(!run.ok());
    assert!(
        str_field(&run.json, "error")?.starts_with("timeout"),
        "{}",
        run.json
    );
    Ok(())
}
