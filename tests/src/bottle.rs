//! What a test asks of a bottle, whatever runs it: a network namespace
//! (kernel tests) or a container behind a real sentry (end-to-end tests).
//! Both implement `probe`; the checks built on it are shared.

use std::net::SocketAddr;
use std::thread;

use anyhow::{ensure, Result};
use serde_json::Value;

use crate::json::str_field;
use crate::netns::ProbeRun;

/// How long a probe waits for something the filter should let through.
pub const OPEN_MS: &str = "3000";

/// The report, cut short for a test log.
pub fn shown(json: &Value, limit: usize) -> String {
    let text = json.to_string();
    match text.char_indices().nth(limit) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text,
    }
}

pub trait Bottle: Sync {
    /// Runs rbm-probe with `args` inside the bottle.
    fn probe(&self, args: &[&str]) -> Result<ProbeRun>;

    /// TCP, then UDP, to `addr`; both must get the server's line. Returns
    /// the TCP reply (`world LOCAL sees PEER`).
    fn reaches(&self, addr: SocketAddr) -> Result<String> {
        let target = addr.to_string();
        let mut replies = Vec::new();
        for proto in ["tcp", "udp"] {
            let run = self.probe(&[proto, &target, "--timeout-ms", OPEN_MS])?;
            ensure!(run.ok(), "{proto} {addr} should be open: {}", run.json);
            replies.push(str_field(&run.json, "reply")?.to_string());
        }
        Ok(replies.swap_remove(0))
    }

    /// Runs every probe at once (in parallel); each must fail. Returns
    /// their reports.
    fn all_fail(&self, probes: &[&[&str]]) -> Result<Vec<Value>> {
        let runs: Vec<Result<ProbeRun>> = thread::scope(|s| {
            let handles: Vec<_> = probes
                .iter()
                .map(|args| s.spawn(move || self.probe(args)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("probe thread panicked"))
                .collect()
        });
        let mut reports = Vec::new();
        for (args, run) in probes.iter().zip(runs) {
            let run = run?;
            ensure!(!run.ok(), "`{}` should fail: {}", args.join(" "), run.json);
            reports.push(run.json);
        }
        Ok(reports)
    }

    /// Every `(proto, addr)` at once; each must end in silence, waiting at
    /// most `wait_ms`: a drop by the filter, not a closed port.
    fn blocked(&self, targets: &[(&str, SocketAddr)], wait_ms: &str) -> Result<()> {
        let texts: Vec<String> = targets.iter().map(|(_, addr)| addr.to_string()).collect();
        let args: Vec<[&str; 4]> = targets
            .iter()
            .zip(&texts)
            .map(|((proto, _), addr)| [*proto, addr.as_str(), "--timeout-ms", wait_ms])
            .collect();
        let probes: Vec<&[&str]> = args.iter().map(|a| &a[..]).collect();
        for ((proto, addr), report) in targets.iter().zip(self.all_fail(&probes)?) {
            let error = str_field(&report, "error")?;
            ensure!(
                error.starts_with("timeout"),
                "{proto} {addr}: expected silence (a drop), got {error}"
            );
        }
        Ok(())
    }
}
