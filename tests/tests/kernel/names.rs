//! Name binding in the kernel: connections to an address that a name
//! opened must carry an allowed name on the wire. The world's "what did you
//! get" servers on `names.example.test` (one address, any name) log how many
//! bytes each connection brought: a denied connection must bring none.

use super::*;
use rbm_tests::world::log::Receipt;

/// Where `names.example.test` has "what did you get" servers.
pub const RECV_PORTS: [u16; 3] = [80, 443, 8443];
const ALLOWED_NAME: &str = "names.example.test";
const FOREIGN_NAME: &str = "fronted.other.test";
/// How long the world waits for more bytes before it logs a connection.
const SETTLE: Duration = Duration::from_secs(10);

fn names_lab(name_binding: bool) -> Result<Option<Lab>> {
    let lab = lab(Options {
        name_binding,
        ..STANDARD
    })?;
    if let Some(lab) = &lab {
        lab.resolve(ALLOWED_NAME, NAMES)?;
    }
    Ok(lab)
}

impl Lab {
    /// `rbm-probe send ADDR ARGS...` from the bottle.
    fn send(&self, addr: SocketAddr, wait_ms: &str, args: &[&str]) -> Result<ProbeRun> {
        let target = addr.to_string();
        let mut all = vec!["send", target.as_str(), "--timeout-ms", wait_ms];
        all.extend_from_slice(args);
        self.probe(&all)
    }

    /// The send must get the world's answer; returns the byte count it saw.
    fn passes(&self, addr: SocketAddr, args: &[&str]) -> Result<usize> {
        let run = self.send(addr, OPEN_MS, args)?;
        ensure!(run.ok(), "{args:?} to {addr} should pass: {}", run.json);
        let reply = str_field(&run.json, "reply")?;
        let bytes = reply
            .split_whitespace()
            .nth(3)
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("not `world LOCAL got N bytes`: {reply}"))?;
        Ok(bytes)
    }

    /// The send must fail: a TCP reset from the sentry, or UDP silence.
    fn refused(&self, addr: SocketAddr, args: &[&str]) -> Result<()> {
        let udp = args.contains(&"--udp") || args.contains(&"--quic");
        let run = self.send(addr, if udp { BLOCKED_MS } else { OPEN_MS }, args)?;
        ensure!(
            !run.ok(),
            "{args:?} to {addr} should be refused: {}",
            run.json
        );
        let error = str_field(&run.json, "error")?;
        let want = if udp { "timeout" } else { "reset" };
        ensure!(
            error.starts_with(want),
            "{args:?} to {addr}: expected {want}, got {error}"
        );
        Ok(())
    }

    /// Waits until the world logged `count` connections, and returns them.
    fn receipts(&self, count: usize) -> Result<Vec<Receipt>> {
        let deadline = Instant::now() + SETTLE;
        loop {
            let receipts = self.world.receipts()?;
            if receipts.len() >= count || Instant::now() > deadline {
                ensure!(
                    receipts.len() == count,
                    "the world logged {} connections, want {count}: {receipts:?}",
                    receipts.len()
                );
                return Ok(receipts);
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn name_denials(&self) -> Result<Vec<Value>> {
        let status = self.status()?;
        status["name_denials"]
            .as_array()
            .cloned()
            .with_context(|| format!("no name_denials in status: {status}"))
    }
}

/// Only the connections that passed brought bytes, exactly theirs.
fn only_passed_brought_bytes(receipts: &[Receipt], passed: &[usize]) {
    let mut got: Vec<usize> = receipts
        .iter()
        .map(|r| r.bytes)
        .filter(|b| *b > 0)
        .collect();
    let mut want = passed.to_vec();
    got.sort();
    want.sort();
    assert_eq!(got, want, "bytes that reached the world: {receipts:?}");
}

#[test]
fn an_allowed_sni_passes_and_a_foreign_or_missing_one_brings_the_world_nothing() -> Result<()> {
    let Some(lab) = names_lab(true)? else {
        return Ok(());
    };
    let https = sock(NAMES, 443);
    let passed = lab.passes(https, &["--tls", ALLOWED_NAME])?;
    assert!(passed > 1460, "the hello spans two segments: {passed}");
    lab.refused(https, &["--tls", FOREIGN_NAME])?;
    lab.refused(https, &["--tls", ""])?;
    // Any allowed name on the address's port: a CDN serves many.
    let ports = lab.passes(https, &["--tls", "ports.example.test"])?;
    let other = lab.passes(sock(NAMES, 8443), &["--tls", ALLOWED_NAME])?;
    // ports.example.test is allowed on 443 only.
    lab.refused(sock(NAMES, 8443), &["--tls", "ports.example.test"])?;
    let receipts = lab.receipts(6)?;
    only_passed_brought_bytes(&receipts, &[passed, ports, other]);

    let denials = lab.name_denials()?;
    let text = serde_json::to_string(&denials)?;
    assert!(text.contains(FOREIGN_NAME), "{text}");
    assert!(text.contains("TLS without a server name"), "{text}");
    assert!(text.contains("not allowed on port 8443"), "{text}");
    let status = lab.status()?;
    assert_eq!(status["name_binding"], true);
    assert_eq!(status["names"]["denied"], 3, "{status}");
    assert_eq!(status["names"]["allowed"], 3, "{status}");
    Ok(())
}

#[test]
fn a_client_hello_split_in_two_is_held_until_its_name_is_known() -> Result<()> {
    let Some(lab) = names_lab(true)? else {
        return Ok(());
    };
    let https = sock(NAMES, 443);
    // The name is at the end of the hello: in the second segment.
    let passed = lab.passes(https, &["--tls", ALLOWED_NAME, "--split", "600"])?;
    lab.refused(https, &["--tls", FOREIGN_NAME, "--split", "600"])?;
    let receipts = lab.receipts(2)?;
    only_passed_brought_bytes(&receipts, &[passed]);
    Ok(())
}

#[test]
fn ports_443_and_80_carry_only_tls_and_http_and_hosts_are_checked() -> Result<()> {
    let Some(lab) = names_lab(true)? else {
        return Ok(());
    };
    let (http, https, other) = (sock(NAMES, 80), sock(NAMES, 443), sock(NAMES, 8443));
    let mut passed = vec![lab.passes(http, &["--http", ALLOWED_NAME])?];
    lab.refused(http, &["--http", FOREIGN_NAME])?;
    lab.refused(http, &["--tls", ALLOWED_NAME])?;
    lab.refused(http, &["--text", "SSH-2.0-rbm\r\n"])?;
    lab.refused(https, &["--http", ALLOWED_NAME])?;
    lab.refused(https, &["--text", "hello"])?;
    lab.refused(other, &["--http", FOREIGN_NAME])?;
    passed.push(lab.passes(other, &["--text", "SSH-2.0-rbm\r\n"])?);
    let receipts = lab.receipts(8)?;
    only_passed_brought_bytes(&receipts, &passed);
    Ok(())
}

#[test]
fn quic_initials_are_read_and_only_allowed_names_pass() -> Result<()> {
    let Some(lab) = names_lab(true)? else {
        return Ok(());
    };
    let quic = sock(NAMES, 443);
    let mut passed = vec![lab.passes(quic, &["--quic", ALLOWED_NAME])?];
    // The ClientHello in two Initials, two datagrams: the name in the second.
    let split = lab.passes(quic, &["--quic", ALLOWED_NAME, "--split", "600"])?;
    lab.refused(quic, &["--quic", FOREIGN_NAME])?;
    lab.refused(quic, &["--quic", FOREIGN_NAME, "--split", "600"])?;
    lab.refused(quic, &["--quic", ""])?;
    lab.refused(quic, &["--udp", "--text", "not quic"])?;
    // Other UDP keeps the address rules.
    passed.push(lab.passes(sock(NAMES, 8443), &["--udp", "--text", "any datagram"])?);
    // Each datagram of an allowed flow reached the world, nothing else.
    let receipts = lab.receipts(4)?;
    assert!(receipts.iter().all(|r| r.proto == "udp"), "{receipts:?}");
    let split_datagrams: Vec<&Receipt> = receipts
        .iter()
        .filter(|r| r.local.port() == 443 && r.bytes != passed[0])
        .collect();
    assert!(
        split_datagrams.iter().any(|r| r.bytes == split),
        "{receipts:?}"
    );
    let denials = serde_json::to_string(&lab.name_denials()?)?;
    assert!(denials.contains(FOREIGN_NAME), "{denials}");
    assert!(denials.contains("without a QUIC Initial"), "{denials}");
    Ok(())
}

#[test]
fn a_new_connection_from_a_reused_source_port_is_checked_again() -> Result<()> {
    let Some(lab) = names_lab(true)? else {
        return Ok(());
    };
    let https = sock(NAMES, 443);
    // An allowed hello from port P, a reset, then another name from P: the
    // agent once answered the new SYN with the old connection's verdict.
    let passed = lab.passes(https, &["--tls", ALLOWED_NAME, "--from-port", "41001"])?;
    lab.refused(https, &["--tls", FOREIGN_NAME, "--from-port", "41001"])?;
    let receipts = lab.receipts(2)?;
    only_passed_brought_bytes(&receipts, &[passed]);
    Ok(())
}

#[test]
fn a_second_quic_connection_on_an_allowed_udp_flow_is_checked() -> Result<()> {
    let Some(lab) = names_lab(true)? else {
        return Ok(());
    };
    let quic = sock(NAMES, 443);
    // From one socket: Initials for the allowed name (a reply comes), then
    // a new QUIC connection (another connection ID) for a foreign name.
    lab.refused(
        quic,
        &["--quic", FOREIGN_NAME, "--after-quic", ALLOWED_NAME],
    )?;
    let passed = lab.passes(
        quic,
        &["--quic", ALLOWED_NAME, "--after-quic", ALLOWED_NAME],
    )?;
    let receipts = lab.receipts(3)?;
    let bytes: Vec<usize> = receipts.iter().map(|r| r.bytes).collect();
    assert_eq!(
        bytes, [passed; 3],
        "the foreign Initial never arrived: {receipts:?}"
    );
    let denials = serde_json::to_string(&lab.name_denials()?)?;
    assert!(denials.contains(FOREIGN_NAME), "{denials}");
    Ok(())
}

#[test]
fn http_that_a_lenient_server_reads_is_checked_on_other_ports() -> Result<()> {
    let Some(lab) = names_lab(true)? else {
        return Ok(());
    };
    let other = sock(NAMES, 8443);
    let foreign = format!("GET / HTTP/1.1\r\nHost: {FOREIGN_NAME}\r\n\r\n");
    for request in [
        format!("\r\n{foreign}"),
        foreign.replace("HTTP/1.1", "HTTP/1.2"),
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_string(),
        format!("GET xyz://{FOREIGN_NAME}/ HTTP/1.1\r\nHost: {ALLOWED_NAME}\r\n\r\n"),
    ] {
        lab.refused(other, &["--text", &request])?;
    }
    let allowed = format!("\r\nGET / HTTP/1.2\r\nHost: {ALLOWED_NAME}\r\n\r\n");
    let passed = lab.passes(other, &["--text", &allowed])?;
    let receipts = lab.receipts(5)?;
    only_passed_brought_bytes(&receipts, &[passed]);
    Ok(())
}

#[test]
fn cidrs_and_name_binding_off_keep_address_only_filtering() -> Result<()> {
    let Some(lab) = names_lab(true)? else {
        return Ok(());
    };
    // A CIDR is the explicit "trust this range": no name check.
    lab.passes(sock(IN_CIDR, 443), &["--tls", FOREIGN_NAME])?;
    drop(lab);
    let Some(off) = names_lab(false)? else {
        return Ok(());
    };
    off.passes(sock(NAMES, 443), &["--tls", FOREIGN_NAME])?;
    off.passes(sock(NAMES, 443), &["--text", "hello"])?;
    let status = off.status()?;
    assert_eq!(status["name_binding"], false);
    Ok(())
}

#[test]
fn https_records_reach_the_bottle_without_ech_or_address_hints() -> Result<()> {
    let Some(lab) = names_lab(true)? else {
        return Ok(());
    };
    let answer = lab.dns(ALLOWED_NAME, &["--type", "HTTPS"])?;
    assert_eq!(str_field(&answer, "rcode")?, "NoError", "{answer}");
    let data = answer["answers"][0]["data"]
        .as_str()
        .with_context(|| format!("no HTTPS record: {answer}"))?;
    assert!(data.contains("alpn"), "{data}");
    assert!(!data.contains("ech") && !data.contains("hint"), "{data}");
    assert!(!data.contains("203.0.113.99"), "{data}");
    // The world did serve them: the proxy took them out.
    assert!(lab.world.was_asked(ALLOWED_NAME)?);
    Ok(())
}

/// Sends `signal` to the agent.
fn signal(lab: &Lab, signal: &str) -> Result<()> {
    let pid = lab.agent.process.pid().to_string();
    run_ok("kill", &["-s", signal, &pid], CMD_TIMEOUT)?;
    Ok(())
}

#[test]
fn with_the_agent_stopped_or_gone_named_connections_are_dropped_never_passed() -> Result<()> {
    let Some(mut lab) = names_lab(true)? else {
        return Ok(());
    };
    let https = sock(NAMES, 443);
    let mut passed = vec![lab.passes(https, &["--tls", ALLOWED_NAME])?];
    // A stopped agent (as good as a slow one): the kernel holds what it
    // queued, and forwards nothing of it.
    signal(&lab, "STOP")?;
    let run = lab.send(https, BLOCKED_MS, &["--tls", ALLOWED_NAME])?;
    let stopped = signal(&lab, "CONT");
    ensure!(
        !run.ok(),
        "passed while the agent was stopped: {}",
        run.json
    );
    stopped?;
    passed.push(lab.passes(https, &["--tls", ALLOWED_NAME])?);
    // A dead agent: nobody reads the queue, the kernel drops.
    lab.agent.process.stop(Duration::from_secs(5))?;
    let run = lab.send(https, BLOCKED_MS, &["--tls", ALLOWED_NAME])?;
    ensure!(!run.ok(), "passed with the agent gone: {}", run.json);
    assert!(
        str_field(&run.json, "error")?.starts_with("timeout"),
        "{}",
        run.json
    );
    // The world got the two hellos that passed; the connection made while
    // the agent was stopped may have completed once it was back, never
    // with a byte from before.
    let receipts = lab.world.receipts()?;
    let got: usize = receipts.iter().filter(|r| r.bytes > 0).count();
    assert!((2..=3).contains(&got), "{receipts:?}");
    Ok(())
}
