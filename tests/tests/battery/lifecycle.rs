//! The lifecycle cases, judged on the Rust side with a sender in the
//! bottle busy throughout: a reload that removes the name under fire, the
//! agent killed, the sentry killed, and the sentry started again (as the
//! bottle routes, via its Podman address, and that on a hardened host).

use super::*;

/// A lifecycle case, judged on the Rust side.
pub(super) fn lifecycle_case(id: &str, tries: &str, expected: &str, t0: f64) -> Case {
    rust_case("lifecycle", id, tries, expected, t0)
}

/// The reload and agent-kill cases (the witness still sees).
pub(super) fn lifecycle(b: &Battery, reloaded: &str, cases: &mut Vec<Case>) -> Result<()> {
    let api = SocketAddr::from((uplink(API), 80));
    // Reload under fire: replies until the reload, none after.
    let mut c = lifecycle_case(
        "reload-removes-the-name-under-fire",
        "a reload removes the allowed name while the bottle sends to it every 10 ms",
        "replies until the reload returns, none after; nothing leaves after it",
        epoch(),
    );
    b.podman
        .run_ok(&["exec", &b.bottle, "dig", "+short", API_NAME])?;
    let mut reloaded_at = 0.0;
    let report = b.under_fire(api, every_10_ms(5), Duration::from_secs(2), || {
        b.launch(&["reload", reloaded], CMD_TIMEOUT)?
            .check()
            .context("rbm-launch reload")?;
        reloaded_at = epoch();
        Ok(())
    })?;
    let last = report["last_reply"].as_f64().unwrap_or(0.0);
    c.t1 = epoch();
    c.bottle_ok = last > c.t0 && last < reloaded_at;
    c.observed = format!(
        "{} sent, {} UDP replies, {} TCP connections; last reply {:.3} s before the reload returned",
        report["sent"],
        report["udp_replies"],
        report["tcp_open"],
        reloaded_at - last
    );
    // Allowed: traffic to the name before the reload returned.
    c.egress = vec![
        format!("{api}<{reloaded_at:.3}"),
        format!("{}:53<{reloaded_at:.3}", uplink(RESOLVER)),
    ];
    cases.push(c);

    // The agent killed (its supervisor restarts it) while the bottle sends to the trap.
    let trap = SocketAddr::from((uplink(TRAP), TRAP_RECV));
    let mut c = lifecycle_case(
        "agent-killed-under-fire",
        "SIGKILL to the agent while the bottle sends to the trap every 10 ms",
        "no reply; nothing leaves; the agent is back",
        epoch(),
    );
    let report = b.under_fire(trap, every_10_ms(4), Duration::from_secs(1), || {
        b.podman.kill_agent(&b.sentry).map(drop)
    })?;
    let back = wait_until(|| {
        let out = b.launch(&["status", &b.launched.profile, "--json"], CMD_TIMEOUT)?;
        Ok(out.success())
    })
    .is_ok();
    c.t1 = epoch();
    c.bottle_ok = silent(&report) && back;
    c.observed = format!(
        "{} sent, {} replies, {} connections; agent back: {back}",
        report["sent"], report["udp_replies"], report["tcp_open"]
    );
    cases.push(c);
    Ok(())
}

/// The sentry killed while the bottle sends to the trap, then started
/// again; judged by the trap's own log (the witness dies with the sentry's
/// namespace). Returns what the trap had received before the restart (the
/// open gap).
pub(super) fn sentry_killed(b: &Battery, cases: &mut Vec<Case>) -> Result<usize> {
    let trap = SocketAddr::from((uplink(TRAP), TRAP_RECV));
    let before = b.trap_receipts()?;
    let mut c = lifecycle_case(
        "sentry-killed-under-fire",
        "podman kill of the sentry while the bottle sends to the trap every 10 ms",
        "the trap gets nothing; the bottle gets no reply",
        epoch(),
    );
    let report = b.under_fire(trap, every_10_ms(4), Duration::from_secs(1), || {
        b.podman.run_ok(&["kill", &b.sentry]).map(drop)
    })?;
    thread::sleep(Duration::from_millis(500));
    let after = b.trap_receipts()?;
    c.t1 = epoch();
    c.bottle_ok = after == before && silent(&report);
    c.observed = format!(
        "{} sent, {} replies, {} connections; the trap received {}",
        report["sent"],
        report["udp_replies"],
        report["tcp_open"],
        after - before
    );
    cases.push(c);

    // Started again while the bottle sends: a new network namespace
    // forwards (the host's setting) before any ruleset is in it.
    let before = b.trap_receipts()?;
    cases.push(restarted_under_fire(
        b,
        "sentry-restarted-under-fire",
        "podman start of the killed sentry while the bottle sends to the trap as fast as it can (every 0.2 ms)",
        None,
    )?);
    // The same, aimed at the address Podman gives the sentry (it holds it
    // from the start): only a bottle that may change its routes can.
    b.podman.run_ok(&["kill", &b.sentry])?;
    cases.push(restarted_under_fire(
        b,
        "sentry-restarted-under-fire-via-its-podman-address",
        "as above, with the bottle's default route changed to the sentry's Podman address (needs NET_ADMIN, which rbm never gives a bottle)",
        Some(enclave(254)),
    )?);
    // The same on a host that makes new network namespaces start with
    // forwarding off (README: "Hardening the host"): the window is gone.
    let hardened = HostSysctl::set(DEVCONF_INHERIT, "2")?;
    b.podman.run_ok(&["kill", &b.sentry])?;
    let case = restarted_under_fire(
        b,
        "sentry-restarted-under-fire-via-its-podman-address-on-a-hardened-host",
        "as above, on a host with net.core.devconf_inherit_init_net = 2",
        Some(enclave(254)),
    );
    drop(hardened);
    cases.push(case?);
    Ok(before)
}

/// The host setting that makes a new network namespace start from the
/// kernel's defaults (forwarding off) instead of the host's values.
const DEVCONF_INHERIT: &str = "/proc/sys/net/core/devconf_inherit_init_net";

/// A host sysctl set for a while; the old value is written back on drop.
struct HostSysctl {
    path: &'static str,
    old: String,
}

impl HostSysctl {
    fn set(path: &'static str, value: &str) -> Result<HostSysctl> {
        let old = std::fs::read_to_string(path).with_context(|| format!("read {path}"))?;
        std::fs::write(path, value).with_context(|| format!("write {value} to {path}"))?;
        Ok(HostSysctl {
            path,
            old: old.trim().to_string(),
        })
    }
}

impl Drop for HostSysctl {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(self.path, &self.old) {
            eprintln!("battery: cannot restore {} to {}: {e}", self.path, self.old);
        }
    }
}

/// `podman start` of the (dead) sentry while the bottle sends to the trap
/// every 0.2 ms, its default route via `via` if given; judged by the trap's
/// log, then the allowed CIDR must work again.
fn restarted_under_fire(b: &Battery, id: &str, tries: &str, via: Option<Ipv4Addr>) -> Result<Case> {
    let trap = SocketAddr::from((uplink(TRAP), TRAP_RECV));
    let mut c = lifecycle_case(
        id,
        tries,
        "the trap gets nothing at any moment; the allowed CIDR works again after",
        epoch(),
    );
    let route = |gw: Ipv4Addr| -> Result<()> {
        let gw = gw.to_string();
        b.podman
            .run_ok(&[
                "exec",
                "--privileged",
                &b.bottle,
                "ip",
                "route",
                "replace",
                "default",
                "via",
                &gw,
                "dev",
                "eth0",
                "onlink",
            ])
            .map(drop)
    };
    if let Some(gw) = via {
        route(gw)?;
    }
    let before = b.trap_receipts()?;
    let report = b.under_fire(trap, (5, "0.0002"), Duration::from_millis(500), || {
        b.podman.run_ok(&["start", &b.sentry]).map(drop)
    })?;
    thread::sleep(Duration::from_millis(500));
    let after = b.trap_receipts()?;
    if via.is_some() {
        route(enclave(2))?;
    }
    let cidr = SocketAddr::from((uplink(CIDR), 80)).to_string();
    // Up to a minute: the world may hold the old sentry's MAC address as
    // reachable for 15 to 45 s (the new sentry sends no gratuitous ARP).
    let back = wait_within(Duration::from_secs(60), &mut || {
        let out = b.podman.run(&[
            "exec",
            &b.bottle,
            "python3",
            "-c",
            &format!(
                "import socket; socket.create_connection(('{}', 80), timeout=1).close()",
                uplink(CIDR)
            ),
        ])?;
        Ok(out.success())
    })
    .is_ok();
    c.t1 = epoch();
    c.bottle_ok = after == before && silent(&report) && back;
    let diagnosis = if back {
        String::new()
    } else {
        let logs = b.podman.run(&["logs", "--tail", "4", &b.sentry])?;
        format!(" (sentry: {} {})", logs.stdout.trim(), logs.stderr.trim())
    };
    let log = b.trap_log()?;
    let mut from: Vec<&str> = log[before..]
        .iter()
        .filter_map(|l| l.split(" from ").nth(1))
        .map(|p| p.split(':').next().unwrap_or(p))
        .collect();
    from.dedup();
    c.observed = format!(
        "{} sent, {} replies, {} connections; the trap received {} (from {from:?}); {cidr} reachable again: {back}{diagnosis}",
        report["sent"],
        report["udp_replies"],
        report["tcp_open"],
        after - before
    );
    Ok(c)
}

/// The bottle's stream got nothing back: no UDP reply, no TCP connection.
fn silent(report: &Value) -> bool {
    report["udp_replies"] == 0 && report["tcp_open"] == 0
}
