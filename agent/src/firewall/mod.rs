//! The firewall: the typed ruleset (`ruleset`), its netlink encoding
//! (`encode`, `wire`), the kernel transport (`netlink`) and reading counters
//! back (`decode`). The agent owns one `inet rbm` table and replaces it whole.

pub mod decode;
pub mod encode;
pub mod netlink;
pub mod ruleset;
pub mod wire;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::profile::Ports;
use crate::profile::Protocol;
use ruleset::{addr_bytes, sets, Ruleset, SetElem};
use wire::{Cmd, Request};

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("cannot open the nftables netlink socket (the agent needs CAP_NET_ADMIN): {0}")]
    Socket(#[source] std::io::Error),
    #[error("netlink I/O failed: {0}")]
    Io(#[source] std::io::Error),
    #[error("the kernel rejected {what}: {source}")]
    Rejected {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the kernel did not answer {0} request(s) of the batch")]
    Unanswered(usize),
    #[error("a reload changed what {0} may open while it was being resolved")]
    PolicyChanged(String),
}

/// One rule's counter, read back from the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleCounter {
    pub chain: String,
    pub comment: String,
    pub packets: u64,
    pub bytes: u64,
}

/// Sends nf_tables requests. The real one is `netlink::NetlinkTransport`;
/// unit tests use a recording fake.
pub trait Transport: Send {
    /// Applies all requests in one atomic batch: all or nothing.
    fn apply(&mut self, reqs: &[Request]) -> Result<(), FirewallError>;
    fn dump_rules(&mut self, table: &str) -> Result<Vec<RuleCounter>, FirewallError>;
}

/// An address the DNS proxy learned, to open for `timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learn {
    pub addr: IpAddr,
    pub ports: Ports,
    pub timeout: Duration,
}

pub struct Firewall {
    transport: Box<dyn Transport>,
}

impl Firewall {
    pub fn new(transport: Box<dyn Transport>) -> Firewall {
        Firewall { transport }
    }

    /// Installs the whole ruleset in one batch, replacing any earlier table.
    pub fn install(&mut self, rs: &Ruleset) -> Result<(), FirewallError> {
        self.transport.apply(&encode::ruleset(rs))
    }

    /// Opens learned addresses, all in one batch. Each element is added,
    /// deleted and added again so that its timeout is refreshed on every
    /// kernel (before 6.12 a plain re-add keeps the old timeout).
    pub fn learn(&mut self, items: &[Learn]) -> Result<(), FirewallError> {
        self.learn_batch(&[(items, false)])
    }

    /// `learn` of several names' addresses in one batch. Each comes with
    /// whether it is a credential host's: then its IPv4 addresses also go
    /// to the credential proxy (`sets::CRED4`).
    pub fn learn_batch(&mut self, batch: &[(&[Learn], bool)]) -> Result<(), FirewallError> {
        self.transport.apply(&learn_requests(batch))
    }

    pub fn counters(&mut self) -> Result<Vec<RuleCounter>, FirewallError> {
        self.transport.dump_rules(ruleset::TABLE)
    }
}

/// Groups learned addresses by set and frames add, delete, add: `batch`
/// as `Firewall::learn_batch` takes it.
pub fn learn_requests(batch: &[(&[Learn], bool)]) -> Vec<Request> {
    let all: Vec<Learn> = batch
        .iter()
        .flat_map(|(items, _)| items.iter())
        .cloned()
        .collect();
    let intercepted: Vec<Learn> = batch
        .iter()
        .filter(|(_, intercepted)| *intercepted)
        .flat_map(|(items, _)| items.iter())
        .cloned()
        .collect();
    let mut by_set = elements(&all, Target::Learned);
    by_set.extend(elements(&intercepted, Target::Intercepted));
    let mut out = Vec::new();
    for cmd in [Cmd::NewSetElem, Cmd::DelSetElem, Cmd::NewSetElem] {
        for (set, elems) in &by_set {
            out.extend(encode::set_elems(cmd, ruleset::TABLE, set, elems));
        }
    }
    out
}

/// Which sets addresses go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `learned*`, each element with its timeout.
    Learned,
    /// `kept*`, without timeouts (a reload's record of what stays allowed).
    Kept,
    /// `cred4`, with timeouts: IPv4 addresses only, ports aside.
    Intercepted,
}

/// The set elements of `items`, by set: an address for all ports, or one
/// element per port for TCP and for UDP. An element asked for twice (two
/// names that answer the same address) is there once, with the longer
/// timeout: the kernel refuses a batch that deletes an element twice.
pub fn elements(items: &[Learn], target: Target) -> BTreeMap<&'static str, Vec<SetElem>> {
    let mut by_set: BTreeMap<&'static str, Vec<SetElem>> = BTreeMap::new();
    for item in items {
        let timeout_ms = match target {
            Target::Learned | Target::Intercepted => Some(item.timeout.as_millis().max(1) as u64),
            Target::Kept => None,
        };
        let v6 = item.addr.is_ipv6();
        if target == Target::Intercepted {
            if !v6 {
                by_set.entry(sets::CRED4).or_default().push(SetElem {
                    key: addr_bytes(item.addr),
                    interval_end: false,
                    timeout_ms,
                });
            }
            continue;
        }
        match &item.ports {
            Ports::All => {
                let set = match (target, v6) {
                    (Target::Kept, false) => sets::KEPT4,
                    (Target::Kept, true) => sets::KEPT6,
                    (_, false) => sets::LEARNED4,
                    (_, true) => sets::LEARNED6,
                };
                by_set.entry(set).or_default().push(SetElem {
                    key: addr_bytes(item.addr),
                    interval_end: false,
                    timeout_ms,
                });
            }
            Ports::Only(ports) => {
                let set = match (target, v6) {
                    (Target::Kept, false) => sets::KEPT4_PORTS,
                    (Target::Kept, true) => sets::KEPT6_PORTS,
                    (_, false) => sets::LEARNED4_PORTS,
                    (_, true) => sets::LEARNED6_PORTS,
                };
                for port in ports {
                    for proto in [Protocol::Tcp, Protocol::Udp] {
                        let key = encode::proto_port_key(item.addr, proto.number(), *port);
                        by_set.entry(set).or_default().push(SetElem {
                            key,
                            interval_end: false,
                            timeout_ms,
                        });
                    }
                }
            }
        }
    }
    for elems in by_set.values_mut() {
        elems.sort_by(|a, b| a.key.cmp(&b.key).then(b.timeout_ms.cmp(&a.timeout_ms)));
        elems.dedup_by(|later, first| later.key == first.key);
    }
    by_set
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Records what would be sent; can be told to fail.
    #[derive(Clone, Default)]
    struct Fake {
        sent: Arc<Mutex<Vec<Vec<Request>>>>,
        fail: bool,
    }

    impl Transport for Fake {
        fn apply(&mut self, reqs: &[Request]) -> Result<(), FirewallError> {
            if self.fail {
                return Err(FirewallError::Unanswered(1));
            }
            self.sent.lock().unwrap().push(reqs.to_vec());
            Ok(())
        }
        fn dump_rules(&mut self, _: &str) -> Result<Vec<RuleCounter>, FirewallError> {
            Ok(vec![])
        }
    }

    fn learn(addr: &str, ports: Ports) -> Learn {
        Learn {
            addr: addr.parse().unwrap(),
            ports,
            timeout: Duration::from_secs(30),
        }
    }

    #[test]
    fn learning_is_one_batch_of_add_delete_add() {
        let fake = Fake::default();
        let mut fw = Firewall::new(Box::new(fake.clone()));
        fw.learn(&[
            learn("198.51.100.10", Ports::All),
            learn("2001:db8::1", Ports::All),
        ])
        .unwrap();
        let sent = fake.sent.lock().unwrap();
        assert_eq!(sent.len(), 1, "one batch");
        let cmds: Vec<Cmd> = sent[0].iter().map(|r| r.cmd).collect();
        assert_eq!(
            cmds,
            vec![
                Cmd::NewSetElem,
                Cmd::NewSetElem,
                Cmd::DelSetElem,
                Cmd::DelSetElem,
                Cmd::NewSetElem,
                Cmd::NewSetElem
            ]
        );
    }

    #[test]
    fn port_restricted_names_fill_the_port_sets_for_tcp_and_udp() {
        let reqs = learn_requests(&[(
            &[learn("198.51.100.10", Ports::Only([22, 443].into()))],
            false,
        )]);
        assert_eq!(reqs.len(), 3);
        let set_name = wire::parse_attrs(&reqs[0].attrs)[1].1.to_vec();
        assert_eq!(set_name, b"learned4_ports\0".to_vec());
        let elems = wire::parse_attrs(&reqs[0].attrs)[2].1;
        assert_eq!(wire::parse_attrs(elems).len(), 4, "2 ports x tcp/udp");
    }

    #[test]
    fn an_address_two_names_answered_is_one_element_with_the_longer_timeout() {
        let short = learn("198.51.100.10", Ports::All);
        let long = Learn {
            timeout: Duration::from_secs(300),
            ..short.clone()
        };
        let by_set = elements(&[short, long], Target::Learned);
        let elems = &by_set[sets::LEARNED4];
        assert_eq!(elems.len(), 1);
        assert_eq!(elems[0].timeout_ms, Some(300_000));
    }

    #[test]
    fn a_failed_insert_is_an_error() {
        let mut fw = Firewall::new(Box::new(Fake {
            fail: true,
            ..Fake::default()
        }));
        assert!(fw.learn(&[learn("198.51.100.10", Ports::All)]).is_err());
    }
}
