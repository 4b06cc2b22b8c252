//! Addresses in use in the kernel: a learned address that a connection
//! from the bottle still uses stays open past its TTL (a pooled HTTP/2 or
//! gRPC channel reconnects to the address it has), and one nobody
//! connected to closes on time.

use super::*;

/// `inuse.example.test` (allowed, TTL 2): an echo server and a TCP server.
pub const INUSE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 80);
/// `unused.example.test` (allowed, TTL 2): never connected to.
pub const UNUSED: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 81);
/// Their names, in the world's zone with a TTL of 2 s.
pub const ZONE: &str = "inuse.example.test.   A     2  198.51.100.80\n\
                        unused.example.test.  A     2  198.51.100.81\n";
pub const DOMAINS: &str = "\"inuse.example.test\", \"unused.example.test\"";
const TTL: Duration = Duration::from_secs(2);

#[test]
fn a_pooled_connection_s_address_stays_open_past_its_ttl_and_an_unused_one_closes() -> Result<()> {
    let Some(lab) = lab(STANDARD)? else {
        return Ok(());
    };
    let answered = Instant::now();
    lab.resolve("inuse.example.test", INUSE)?;
    lab.resolve("unused.example.test", UNUSED)?;
    // One round trip, then idle for twice the TTL, then another: a pooled
    // channel that wakes up.
    let program = static_bin("rbm-probe")?.to_string_lossy().into_owned();
    let echo = sock(INUSE, reload::ECHO_PORT).to_string();
    let args = ["hold", &echo, "--every-ms", "4000", "--ms", "3500"];
    let mut held = lab.topo.spawn(Ns::Bottle, &program, &args)?;
    held.wait_for_line("connected", CMD_TIMEOUT)?;

    thread::sleep((TTL * 2).saturating_sub(answered.elapsed()));
    // Never connected to: closed when its TTL said.
    lab.blocked(&both(sock(UNUSED, 80)))?;
    assert!(learned(&lab.status()?, UNUSED).is_none());
    // In use: a new connection to it (the pool reconnecting) gets through.
    lab.reaches(sock(INUSE, 80))?;
    let status = lab.status()?;
    let entry = learned(&status, INUSE).context("the address in use is not listed")?;
    assert_eq!(entry["in_use"], true, "{entry}");
    assert!(
        entry["expires_in_secs"].as_u64() > Some(200),
        "kept for the grace: {entry}"
    );
    assert!(status["in_use"].as_u64() >= Some(1), "{status}");
    // The idle connection sends again and its answer comes back.
    let line = held.wait_for(|l| l.starts_with('{'), "a report", CMD_TIMEOUT)?;
    let report: Value = serde_json::from_str(&line)?;
    assert!(
        report["error"].is_null() && report["rounds"].as_u64() >= Some(1),
        "{report}"
    );
    Ok(())
}
