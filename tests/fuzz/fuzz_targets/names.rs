//! Any bytes from the bottle: the name check never panics, answers each queued packet once, and allows only names granted on the port.
#![no_main]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rbm_agent::names::flows::{Flows, HOLD_FOR};
use rbm_agent::names::judge::{self, Outcome};
use rbm_agent::names::{http, packet, quic, tls};
use rbm_agent::policy::Policy;
use rbm_agent::profile::Ports;
use rbm_fuzz::{pieces, policy, PLACEHOLDER};

const PORTS: [u16; 4] = [443, 80, 22, 8443];

/// An allowed name must be granted on the port; no name only off TCP 80
/// and 443 and UDP 443.
fn check_allow(policy: &Policy, proto: u8, port: u16, outcome: &Outcome) {
    let Outcome::Allow { name } = outcome else {
        return;
    };
    let named = port == 443 || (proto == packet::TCP && port == 80);
    match name {
        None => assert!(!named, "allowed without a name on {proto}/{port}"),
        Some(name) => match policy.grant_for(name) {
            Some(Ports::All) => {}
            Some(Ports::Only(ports)) => assert!(ports.contains(&port), "{name} allowed on {port}"),
            None => panic!("{name} allowed, which no rule grants"),
        },
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Packets from the queue, one after another, then a sweep after the hold
/// time: each gets one verdict, never two.
fn queued(policy: &Policy, packets: &[&[u8]]) {
    let now = Instant::now();
    let mut flows = Flows::default();
    let mut verdicts = BTreeMap::new();
    let mut note = |step: rbm_agent::names::flows::Step| {
        for (id, verdict) in step.verdicts {
            assert!(
                verdicts.insert(id, verdict).is_none(),
                "packet {id} answered twice"
            );
        }
        for (key, outcome) in &step.decided {
            check_allow(policy, key.proto, key.dst.port(), outcome);
        }
    };
    for (id, ip) in (0u32..).zip(packets) {
        note(flows.packet(policy, now, id, packet::parse(ip)));
    }
    note(flows.expire(now + HOLD_FOR + Duration::from_secs(1)));
    assert_eq!(verdicts.len(), packets.len(), "a packet left in the queue");
    assert_eq!(flows.held(), 0);
}

fuzz_target!(|data: &[u8]| {
    let Some((&select, rest)) = data.split_first() else {
        return;
    };
    let policy = policy(false);
    let port = PORTS[usize::from(select >> 2) % PORTS.len()];
    match select & 3 {
        0 => queued(policy, &pieces(rest)),
        1 => {
            let outcome = judge::tcp(policy, port, rest);
            check_allow(policy, packet::TCP, port, &outcome);
            if matches!(outcome, Outcome::Allow { .. }) && rest.first() != Some(&tls::HANDSHAKE) {
                assert!(
                    !contains(rest, PLACEHOLDER),
                    "the placeholder allowed in the clear"
                );
            }
        }
        2 => {
            let outcome = judge::udp(policy, port, &pieces(rest), &[]);
            check_allow(policy, packet::UDP, port, &outcome);
        }
        _ => {
            tls::client_hello(rest);
            tls::hello_name(rest);
            http::may_be_request(rest);
            http::request(rest);
            quic::initial_name(&[rest]);
            let known = [quic::Origin {
                version: 1,
                dcid: b"fuzzfuzz".to_vec(),
            }];
            quic::again(rest, &known);
            quic::initial_name_keyed(&[rest], &known);
        }
    }
});
