//! The firewall: the typed ruleset (`ruleset`), its netlink encoding
//! (`encode`, `wire`), the kernel transport (`netlink`) and reading counters
//! back (`decode`). The agent owns one `inet rbm` table and replaces it whole.

pub mod decode;
pub mod encode;
pub mod netlink;
pub mod ruleset;
pub mod wire;

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::profile::Ports;
use crate::profile::Protocol;
use ruleset::{addr_bytes, sets, BySet, Ruleset, SetElem};
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

impl FirewallError {
    /// The kernel refused an add because the set holds `LEARNED_MAX`
    /// elements already.
    pub fn is_full(&self) -> bool {
        matches!(self, FirewallError::Rejected { source, .. } if source.raw_os_error() == Some(libc::ENFILE))
    }
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
    /// The timeout and time left of each element of `table`'s `set`.
    fn dump_set_timeouts(
        &mut self,
        table: &str,
        set: &str,
    ) -> Result<Vec<ElemTimes>, FirewallError> {
        let _ = (table, set);
        Ok(vec![])
    }
    /// The key and the time left (ms) of each element with a timeout in
    /// `table`'s `set` (none if either does not exist).
    fn dump_set_elements(
        &mut self,
        table: &str,
        set: &str,
    ) -> Result<Vec<(Vec<u8>, u64)>, FirewallError> {
        let _ = (table, set);
        Ok(vec![])
    }
    /// Hands `each` the original destination of every connection conntrack
    /// tracks in this namespace (ctnetlink). A transport that cannot tell
    /// sees none: then no address is kept open for being in use.
    fn conntrack_destinations(
        &mut self,
        each: &mut dyn FnMut(IpAddr),
    ) -> Result<(), FirewallError> {
        let _ = each;
        Ok(())
    }
}

/// A set element's timeout and the time it has left, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElemTimes {
    pub timeout_ms: u64,
    pub expires_in_ms: u64,
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
    /// How a learned element's timeout is refreshed.
    refresh: Refresh,
}

/// How re-adding an element refreshes its timeout, on this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// One add does it (6.12 and newer): one message per set.
    Add,
    /// A re-add keeps the old timeout: add, delete and add again.
    AddDeleteAdd,
}

/// The throwaway table and set in which `Firewall::detect_refresh` tries.
const PROBE_TABLE: &str = "rbm_probe";
const PROBE_SET: &str = "t";

impl Firewall {
    /// Refreshes by add, delete, add until `detect_refresh` found better.
    pub fn new(transport: Box<dyn Transport>) -> Firewall {
        Firewall {
            transport,
            refresh: Refresh::AddDeleteAdd,
        }
    }

    /// Finds out by trying, not by the kernel's version, whether one add
    /// refreshes an element's timeout: in a table of its own, adds an
    /// element for a minute, adds it again for an hour and reads back its
    /// timeout and the time it has left: both must be the hour's. Learning
    /// uses the cheaper way from then on. Nothing of the try is left
    /// behind; on any error learning keeps add, delete, add.
    pub fn detect_refresh(&mut self) -> Result<Refresh, FirewallError> {
        let elem = |timeout_ms| SetElem {
            key: vec![192, 0, 2, 1],
            interval_end: false,
            timeout_ms: Some(timeout_ms),
        };
        let probe = Ruleset {
            table: PROBE_TABLE,
            sets: vec![ruleset::SetDef {
                name: PROBE_SET,
                key: ruleset::SetKey::Addr4,
                interval: false,
                timeout: true,
                elements: vec![elem(60_000)],
            }],
            chains: vec![],
        };
        let tried = self
            .transport
            .apply(&encode::ruleset(&probe))
            .and_then(|()| {
                let again =
                    encode::set_elems(Cmd::NewSetElem, PROBE_TABLE, PROBE_SET, &[elem(3_600_000)]);
                self.transport.apply(&again)?;
                self.transport.dump_set_timeouts(PROBE_TABLE, PROBE_SET)
            });
        let removed = self.transport.apply(&[encode::del_table(PROBE_TABLE)]);
        let timeouts = tried?;
        removed?;
        self.refresh = match timeouts.as_slice() {
            [t] if t.timeout_ms == 3_600_000 && t.expires_in_ms > 60_000 => Refresh::Add,
            _ => Refresh::AddDeleteAdd,
        };
        Ok(self.refresh)
    }

    /// Installs the whole ruleset in one batch, replacing any earlier table.
    pub fn install(&mut self, rs: &Ruleset) -> Result<(), FirewallError> {
        self.transport.apply(&encode::ruleset(rs))
    }

    /// Opens learned addresses, all in one batch, refreshing the timeout of
    /// those already open (`Refresh`).
    pub fn learn(&mut self, items: &[Learn]) -> Result<(), FirewallError> {
        self.learn_batch(&[(items, false)])
    }

    /// `learn` of several names' addresses in one batch. Each comes with
    /// whether it is a credential host's: then its IPv4 addresses also go
    /// to the credential proxy (`sets::CRED4`).
    pub fn learn_batch(&mut self, batch: &[(&[Learn], bool)]) -> Result<(), FirewallError> {
        self.transport.apply(&learn_requests(batch, self.refresh))
    }

    pub fn counters(&mut self) -> Result<Vec<RuleCounter>, FirewallError> {
        self.transport.dump_rules(ruleset::TABLE)
    }

    /// The key and time left (ms) of each element with a timeout in the
    /// agent's table's `set`, as the kernel has it now.
    pub fn set_elements(&mut self, set: &str) -> Result<Vec<(Vec<u8>, u64)>, FirewallError> {
        self.transport.dump_set_elements(ruleset::TABLE, set)
    }

    /// Hands `each` the original destination of every tracked connection.
    pub fn connection_destinations(
        &mut self,
        each: &mut dyn FnMut(IpAddr),
    ) -> Result<(), FirewallError> {
        self.transport.conntrack_destinations(each)
    }
}

/// Groups learned addresses by set and frames one add, or add, delete,
/// add (`refresh`): `batch` as `Firewall::learn_batch` takes it.
pub fn learn_requests(batch: &[(&[Learn], bool)], refresh: Refresh) -> Vec<Request> {
    let all = batch.iter().flat_map(|(items, _)| items.iter());
    let intercepted = batch
        .iter()
        .filter(|(_, intercepted)| *intercepted)
        .flat_map(|(items, _)| items.iter());
    let mut by_set = elements(all, Target::Learned);
    by_set.extend(elements(intercepted, Target::Intercepted));
    let cmds: &[Cmd] = match refresh {
        Refresh::Add => &[Cmd::NewSetElem],
        Refresh::AddDeleteAdd => &[Cmd::NewSetElem, Cmd::DelSetElem, Cmd::NewSetElem],
    };
    let mut out = Vec::new();
    for &cmd in cmds {
        for (set, elems) in by_set.iter() {
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
pub fn elements<'a>(items: impl IntoIterator<Item = &'a Learn>, target: Target) -> BySet {
    let mut by_set = BySet::default();
    for item in items {
        let timeout_ms = match target {
            Target::Learned | Target::Intercepted => Some(item.timeout.as_millis().max(1) as u64),
            Target::Kept => None,
        };
        let v6 = item.addr.is_ipv6();
        if target == Target::Intercepted {
            if !v6 {
                by_set.entry(sets::CRED4).push(SetElem {
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
                by_set.entry(set).push(SetElem {
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
                        by_set.entry(set).push(SetElem {
                            key,
                            interval_end: false,
                            timeout_ms,
                        });
                    }
                }
            }
        }
    }
    for elems in by_set.iter_mut() {
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
        let reqs = learn_requests(
            &[(
                &[learn("198.51.100.10", Ports::Only([22, 443].into()))],
                false,
            )],
            Refresh::AddDeleteAdd,
        );
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
        let elems = by_set.get(sets::LEARNED4).unwrap();
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
