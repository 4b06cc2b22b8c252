//! The deny log: the packets from the bottle that the filter drops, copied
//! by the kernel (NFLOG, rate-limited in the ruleset so a flood cannot
//! swamp the agent), explained in words and kept for status and `watch`.
//!
//! `nflog` reads the kernel's copies over netlink, `explain` tells why a
//! packet was dropped, `watch` streams denials to whoever follows them.

pub mod explain;
pub mod nflog;
pub mod watch;

use std::sync::Arc;

use crate::policy::PolicyCell;
use crate::state::Shared;
use nflog::NfLog;

/// Starts the thread that reads the log; it runs as long as the agent.
pub fn start(
    mut log: NfLog,
    policy: Arc<PolicyCell>,
    shared: Arc<Shared>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("deny-log".into())
        .spawn(move || loop {
            match log.recv() {
                Ok(entries) => {
                    for entry in entries {
                        if let Some(denied) = explain::explain(&policy.get(), &shared, &entry) {
                            tracing::info!(dst = ?denied.dst, proto = ?denied.proto, reason = %denied.reason, "denied");
                            shared.record_denied(denied);
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot read the deny log");
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
            }
        })
}
