//! The name check's own thread: read held packets, judge, answer. It runs
//! beside the async runtime so that a DNS burst never delays a verdict.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::flows::{Flows, Step};
use super::judge::Outcome;
use super::packet::{self, FlowKey};
use super::queue::PacketQueue;
use crate::policy::PolicyCell;
use crate::shown::shown;
use crate::state::{unix_now, NameDenial, Shared};

/// How often held connections are checked for their deadline.
const SWEEP: Duration = Duration::from_millis(200);

/// Starts the thread. It runs as long as the agent.
pub fn start(
    queue: Box<dyn PacketQueue>,
    policy: Arc<PolicyCell>,
    shared: Arc<Shared>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("name-check".into())
        .spawn(move || run(queue, &policy, &shared))
}

fn run(mut queue: Box<dyn PacketQueue>, policy: &PolicyCell, shared: &Shared) {
    let mut flows = Flows::default();
    let mut swept = Instant::now();
    loop {
        let packets = match queue.recv(SWEEP) {
            Ok(packets) => packets,
            Err(error) => {
                // Held packets wait (and new ones are dropped by the kernel
                // once the queue is full): fail closed, then try again.
                tracing::error!(%error, "cannot read the name-check queue");
                std::thread::sleep(SWEEP);
                Vec::new()
            }
        };
        let now = Instant::now();
        let policy = policy.get();
        for queued in packets {
            let step = flows.packet(&policy, now, queued.id, packet::parse(&queued.packet));
            answer(queue.as_mut(), shared, step);
        }
        if now.duration_since(swept) >= SWEEP {
            swept = now;
            answer(queue.as_mut(), shared, flows.expire(now));
        }
    }
}

fn answer(queue: &mut dyn PacketQueue, shared: &Shared, step: Step) {
    for (id, verdict) in step.verdicts {
        if let Err(error) = queue.verdict(id, verdict) {
            tracing::warn!(%error, id, ?verdict, "cannot send a verdict; the kernel keeps the packet");
        }
    }
    for (key, outcome) in step.decided {
        record(shared, &key, outcome);
    }
}

fn record(shared: &Shared, key: &FlowKey, outcome: Outcome) {
    match outcome {
        Outcome::Allow { name } => {
            tracing::debug!(dst = %key.dst, ?name, "name check: allowed");
            shared.count_name_allowed();
        }
        Outcome::Deny(denial) => {
            let proto = if key.proto == packet::TCP {
                "tcp"
            } else {
                "udp"
            };
            // The reason quotes the bottle's name: escaped for the log too
            // (the subscriber escapes ESC, not a CR that rewrites a line).
            let reason = shown(&denial.reason);
            tracing::info!(dst = %key.dst, proto, name = ?denial.name, %reason, "name check: denied");
            shared.record_name_denial(NameDenial {
                at: unix_now(),
                proto: proto.into(),
                dst: key.dst,
                name: denial.name,
                reason: denial.reason,
            });
        }
        Outcome::Hold => {}
    }
}
