//! A restarted agent carries over what the agent before it learned: the
//! bottle's connections to addresses it resolved before the crash (a
//! client with a DNS cache does not ask again) go on working, for the
//! time their TTL had left, and nothing else opens.

use super::*;

#[test]
fn a_restarted_agent_keeps_open_what_was_learned_before_for_the_time_it_had_left() -> Result<()> {
    let Some(mut lab) = lab(STANDARD)? else {
        return Ok(());
    };
    lab.resolve("a.example.test", ALLOWED)?;
    lab.reaches(sock(ALLOWED, 80))?;
    lab.agent.restart(&lab.topo)?;
    // Not resolved again: still open.
    lab.reaches(sock(ALLOWED, 80))?;
    let status = lab.status()?;
    let entry = learned(&status, ALLOWED).context("the carried address is not listed")?;
    let left = entry["expires_in_secs"].as_u64().unwrap_or(0);
    assert!(left > 0 && left <= 60, "for what its TTL had left: {entry}");
    // What was never learned stays shut.
    lab.blocked(&both(sock(NEVER, 80)))?;
    Ok(())
}
