//! Live reload in the kernel: `rbm-agent reload` swaps the policy at once.
//! Added names work, removed names are refused and the connections to the
//! addresses only they opened are cut (established ones too), connections
//! to what stays allowed carry on, and a restarted agent keeps the reloaded
//! policy.

use super::*;
use rbm_tests::cmd::Spawned;

/// The world's echo servers (long-lived connections) listen on this port of
/// each of these addresses.
pub const ECHO_PORT: u16 = 7000;
pub const ECHOES: [Ipv4Addr; 4] = [ALLOWED, NAMES, IN_CIDR, EVIL];

/// How long a cut connection may take to notice (its next round trip, with
/// the probe's 2 s read timeout at worst).
const CUT_WITHIN: Duration = Duration::from_secs(5);

/// The standard profile with `from` replaced by `to`.
fn changed(from: &str, to: &str) -> String {
    let text = profile(DNS, true);
    assert!(text.contains(from), "test bug: {from:?} not in the profile");
    text.replacen(from, to, 1)
}

/// The standard domains without a.example.test, with evil.example.test.
fn without_a_with_evil() -> String {
    changed("\"a.example.test\", ", "\"evil.example.test\", ")
}

impl Lab {
    /// A busy connection from the bottle to `ip`'s echo server (opened by
    /// a ClientHello for `tls`, if given), once its first round trip is back.
    fn hold(&self, ip: Ipv4Addr, tls: Option<&str>) -> Result<Spawned> {
        let program = static_bin("rbm-probe")?.to_string_lossy().into_owned();
        let addr = sock(ip, ECHO_PORT).to_string();
        let mut args = vec!["hold", &addr, "--ms", "60000"];
        if let Some(name) = tls {
            args.extend(["--tls", name]);
        }
        let mut held = self.topo.spawn(Ns::Bottle, &program, &args)?;
        held.wait_for_line("connected", CMD_TIMEOUT)?;
        Ok(held)
    }

    /// `rbm-agent reload` with `profile`; its output, whatever the exit code.
    fn reload(&self, profile: &str) -> Result<rbm_tests::cmd::Output> {
        let out = self.agent.reload(&self.topo, profile)?;
        eprintln!("reload: {}{}", out.stdout, out.stderr);
        Ok(out)
    }
}

/// The report a `hold` printed when its connection broke.
fn broke(held: &mut Spawned) -> Result<Value> {
    let line = held.wait_for(|l| l.starts_with('{'), "a report", CUT_WITHIN)?;
    let report: Value = serde_json::from_str(&line)?;
    ensure!(
        report["error"].is_string(),
        "the connection should have been cut: {report}"
    );
    Ok(report)
}

#[test]
fn a_reload_opens_added_names_and_cuts_what_only_removed_names_opened() -> Result<()> {
    let Some(lab) = lab(STANDARD)? else {
        return Ok(());
    };
    lab.resolve("a.example.test", ALLOWED)?;
    lab.resolve("names.example.test", NAMES)?;
    let refused = lab.dns("evil.example.test", &[])?;
    assert_eq!(str_field(&refused, "rcode")?, "Refused");
    let mut removed = lab.hold(ALLOWED, None)?;
    let mut kept_named = lab.hold(NAMES, Some("names.example.test"))?;
    let mut kept_cidr = lab.hold(IN_CIDR, None)?;

    let out = lab.reload(&without_a_with_evil())?;
    ensure!(out.success(), "reload failed: {}", out.stderr);
    assert!(
        out.stdout.contains("added evil.example.test")
            && out.stdout.contains("removed a.example.test")
            && out.stdout.contains("1 closed"),
        "{}",
        out.stdout
    );

    // The established connection to the removed name's address is cut at
    // its next packet; the others carry on.
    let report = broke(&mut removed)?;
    assert!(
        str_field(&report, "error")?.contains("reset"),
        "a TCP connection is cut with a reset: {report}"
    );
    thread::sleep(Duration::from_millis(1500));
    assert!(kept_named.is_running(), "a kept name's connection was cut");
    assert!(kept_cidr.is_running(), "a CIDR's connection was cut");

    // Removed: refused, and its address closed for new connections.
    let refused = lab.dns("a.example.test", &[])?;
    assert_eq!(str_field(&refused, "rcode")?, "Refused");
    lab.blocked(&[("tcp", sock(ALLOWED, 80))])?;
    // Added: works at once.
    lab.resolve("evil.example.test", EVIL)?;
    lab.reaches(sock(EVIL, 80))?;
    lab.hold(EVIL, None)?;

    let status = lab.status()?;
    assert_eq!(status["reloads"], 1, "{status}");
    assert_eq!(status["generation"], 1, "{status}");
    let domains = str_list(&status, "domains")?;
    assert!(
        domains.contains(&"evil.example.test".to_string()),
        "{domains:?}"
    );
    assert!(
        !domains.contains(&"a.example.test".to_string()),
        "{domains:?}"
    );
    assert!(learned(&status, ALLOWED).is_none(), "{status}");
    assert!(learned(&status, NAMES).is_some(), "kept open: {status}");
    lab.denial(
        sock(ALLOWED, ECHO_PORT),
        "closed by a reload: a.example.test is no longer allowed",
    )?;
    Ok(())
}

#[test]
fn a_reload_that_only_adds_leaves_every_connection_alone() -> Result<()> {
    let Some(lab) = lab(STANDARD)? else {
        return Ok(());
    };
    lab.resolve("a.example.test", ALLOWED)?;
    let mut held = lab.hold(ALLOWED, None)?;
    let out = lab.reload(&changed(
        "\"a.example.test\", ",
        "\"a.example.test\", \"evil.example.test\", ",
    ))?;
    ensure!(out.success(), "reload failed: {}", out.stderr);
    assert!(out.stdout.contains("removed nothing"), "{}", out.stdout);
    thread::sleep(Duration::from_millis(1000));
    assert!(held.is_running(), "an untouched connection was cut");
    // Still open for new connections too, without asking DNS again.
    lab.reaches(sock(ALLOWED, 80))?;
    let status = lab.status()?;
    assert_eq!(status["generation"], 0, "nothing taken away: {status}");
    assert_eq!(status["reloads"], 1, "{status}");
    Ok(())
}

#[test]
fn a_reload_that_needs_a_restart_or_is_invalid_changes_nothing() -> Result<()> {
    let Some(lab) = lab(STANDARD)? else {
        return Ok(());
    };
    lab.resolve("a.example.test", ALLOWED)?;
    for (profile, says) in [
        (
            changed("localhost/rbm-unused:latest", "localhost/other:latest"),
            "bottle.image changed",
        ),
        (
            changed(
                "host_port = 8890\nbottle_port = 8888\n\n",
                "host_port = 8891\nbottle_port = 8888\n\n",
            ),
            "entry changed",
        ),
        (changed("min_ttl = 1", "min_ttl = 999999"), "uplink.min_ttl"),
    ] {
        let out = lab.reload(&profile)?;
        assert_eq!(out.status.code(), Some(2), "{}{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains("nothing changed") && out.stderr.contains(says),
            "{}",
            out.stderr
        );
    }
    let status = lab.status()?;
    assert_eq!(status["reloads"], 0, "{status}");
    lab.reaches(sock(ALLOWED, 80))?;
    Ok(())
}

#[test]
fn a_restarted_agent_keeps_the_reloaded_policy() -> Result<()> {
    let Some(mut lab) = lab(STANDARD)? else {
        return Ok(());
    };
    let out = lab.reload(&without_a_with_evil())?;
    ensure!(out.success(), "reload failed: {}", out.stderr);
    lab.agent.restart(&lab.topo)?;
    // The agent was started with the first profile; the reloaded one wins.
    let refused = lab.dns("a.example.test", &[])?;
    assert_eq!(str_field(&refused, "rcode")?, "Refused");
    lab.resolve("evil.example.test", EVIL)?;
    let status = lab.status()?;
    assert_eq!(status["reloads"], 1, "{status}");
    assert_eq!(status["generation"], 1, "{status}");
    Ok(())
}
