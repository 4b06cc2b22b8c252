//! Starts the proxy on 127.0.0.1 (free port) with a recording learner.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::dns::{serve, DnsConfig, DnsServerHandle, Learner};
use crate::firewall::{FirewallError, Learn};
use crate::learning::Then;
use crate::policy::{Policy, PolicyCell};
use crate::state::Shared;

/// Per-try upstream timeout in these tests.
pub(super) const TRY_TIMEOUT: Duration = Duration::from_millis(300);

/// Records each learn() call in `events` ("learned NAME"); the test adds
/// "answer NAME" when the client got its answer, so the order shows.
/// Sleeps first, so that an answer sent before learning would overtake it.
#[derive(Default)]
pub(super) struct RecordingLearner {
    pub fail: bool,
    pub events: Arc<Mutex<Vec<String>>>,
    pub batches: Mutex<Vec<(String, Vec<Learn>)>>,
}

#[async_trait::async_trait]
impl Learner for RecordingLearner {
    async fn learn(&self, qname: &str, items: Vec<Learn>, then: Then) -> Result<(), FirewallError> {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if self.fail {
            return Err(FirewallError::Unanswered(1));
        }
        self.events.lock().unwrap().push(format!("learned {qname}"));
        self.batches
            .lock()
            .unwrap()
            .push((qname.to_string(), items.clone()));
        then(&items);
        Ok(())
    }
}

impl RecordingLearner {
    pub fn note(&self, event: &str) {
        self.events.lock().unwrap().push(event.to_string());
    }

    pub fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    pub fn batches(&self) -> Vec<(String, Vec<Learn>)> {
        self.batches.lock().unwrap().clone()
    }
}

pub(super) struct Proxy {
    pub handle: DnsServerHandle,
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    pub learner: Arc<RecordingLearner>,
    pub policy: Arc<PolicyCell>,
}

pub(super) async fn start(
    policy: Policy,
    upstreams: Vec<SocketAddr>,
    learner: RecordingLearner,
) -> Proxy {
    let config = DnsConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstreams,
        upstream_timeout: TRY_TIMEOUT,
    };
    let shared = Arc::new(Shared::default());
    let learner = Arc::new(learner);
    let policy = Arc::new(PolicyCell::new(policy));
    // Port 0 picks a free UDP port, and the TCP listener takes the same
    // number, which another process may hold: try again on another.
    let mut tries = 0;
    let handle = loop {
        match serve(
            config.clone(),
            policy.clone(),
            learner.clone(),
            shared.clone(),
        )
        .await
        {
            Ok(handle) => break handle,
            Err(e) if tries < 20 => {
                tries += 1;
                eprintln!("the proxy's ports, try {tries}: {e}");
            }
            Err(e) => panic!("the proxy does not start: {e}"),
        }
    };
    let addr = handle.local_addr();
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    Proxy {
        handle,
        addr,
        shared,
        learner,
        policy,
    }
}
