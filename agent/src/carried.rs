//! What a restarted agent carries over from the table its predecessor left:
//! every learned element, with the time it had left, read before the
//! lockdown replaces the table and put into the new one. Without it, an
//! agent the supervisor restarted started with nothing learned, and every
//! connection to an address learned before the crash was dropped until the
//! bottle resolved its name again (which clients with a DNS cache do not).
//!
//! The kernel does not know which name opened an element, so the agent's
//! records name carried addresses `BEFORE_RESTART`. The policy they were
//! opened under is the one the new agent enforces (a reload is written
//! down before it goes in, marked in progress until its table is in: an
//! agent that died in between left a table of the policy before, and
//! nothing of it is carried), so nothing is opened that the policy would
//! not. A name the policy does not know is never granted: a later reload
//! closes carried addresses (a new answer opens them again), and they are
//! not kept open past their time for being in use (`crate::inuse`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::firewall::ruleset::{sets, BySet, SetElem, LEARNED_MAX};
use crate::firewall::{Firewall, FirewallError, Learn};
use crate::profile::Ports;

/// The name the agent's records give an address carried over a restart.
pub const BEFORE_RESTART: &str = "(learned before a restart)";

/// The sets whose elements learning put there, each with a timeout: the
/// credential proxy's too, or a credential host's carried address would
/// reach its host past the proxy.
const CARRIED_SETS: [&str; 5] = [
    sets::LEARNED4,
    sets::LEARNED6,
    sets::LEARNED4_PORTS,
    sets::LEARNED6_PORTS,
    sets::CRED4,
];

/// One set's elements: each key, with the time it has left (ms).
type Elems = Vec<(Vec<u8>, u64)>;

/// The learned elements of the table before the restart.
#[derive(Debug, Default)]
pub struct Carried {
    /// Set by set, each element with the time it had left as its timeout.
    elements: Vec<(&'static str, Elems)>,
}

impl Carried {
    /// Reads the learned sets of the agent's table (empty if there is no
    /// table: the sentry's first start).
    pub fn read(firewall: &mut Firewall) -> Result<Carried, FirewallError> {
        let mut elements = Vec::new();
        for set in CARRIED_SETS {
            let mut elems = firewall.set_elements(set)?;
            // The kernel's sets hold no more; a table that somehow did
            // must not grow the new agent beyond its bounds.
            elems.truncate(LEARNED_MAX as usize);
            elems.retain(|(_, left)| *left > 0);
            elements.push((set, elems));
        }
        Ok(Carried { elements })
    }

    pub fn is_empty(&self) -> bool {
        self.elements.iter().all(|(_, e)| e.is_empty())
    }

    /// The elements for the new table, each for what it had left less
    /// `since` (the time since they were read): never longer than the old
    /// table would have kept them.
    pub fn elements(&self, since: Duration) -> BySet {
        let since = since.as_millis() as u64;
        let mut by_set = BySet::default();
        for (set, elems) in &self.elements {
            for (key, left) in elems {
                let Some(left) = left.checked_sub(since).filter(|l| *l > 0) else {
                    continue;
                };
                by_set.entry(set).push(SetElem {
                    key: key.clone(),
                    interval_end: false,
                    timeout_ms: Some(left),
                });
            }
        }
        by_set
    }

    /// The proxy's carried addresses (`sets::CRED4`).
    pub fn intercepted(&self) -> Vec<IpAddr> {
        self.elements
            .iter()
            .filter(|(set, _)| *set == sets::CRED4)
            .flat_map(|(_, elems)| elems.iter().filter_map(|(key, _)| addr(key)))
            .collect()
    }

    /// The carried addresses as the agent's records hold them: all ports,
    /// or the ports their elements open; each for the least time one of
    /// its elements has left (as of the read).
    pub fn learns(&self) -> Vec<Learn> {
        let mut all: BTreeMap<IpAddr, u64> = BTreeMap::new();
        let mut only: BTreeMap<IpAddr, (BTreeSet<u16>, u64)> = BTreeMap::new();
        for (set, elems) in &self.elements {
            for (key, left) in elems {
                match *set {
                    sets::LEARNED4 | sets::LEARNED6 => {
                        if let Some(addr) = addr(key) {
                            let at = all.entry(addr).or_insert(*left);
                            *at = (*at).min(*left);
                        }
                    }
                    sets::LEARNED4_PORTS | sets::LEARNED6_PORTS => {
                        if let Some((addr, port)) = addr_port(key) {
                            let at = only.entry(addr).or_insert((BTreeSet::new(), *left));
                            at.0.insert(port);
                            at.1 = at.1.min(*left);
                        }
                    }
                    _ => {}
                }
            }
        }
        let ms = Duration::from_millis;
        let all = all.into_iter().map(|(addr, left)| Learn {
            addr,
            ports: Ports::All,
            timeout: ms(left),
        });
        let only = only.into_iter().map(|(addr, (ports, left))| Learn {
            addr,
            ports: Ports::Only(ports),
            timeout: ms(left),
        });
        all.chain(only).collect()
    }
}

/// The address of an all-ports element's key.
fn addr(key: &[u8]) -> Option<IpAddr> {
    match key.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(key).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(key).ok()?))),
        _ => None,
    }
}

/// The address and port of a port set's key (`encode::proto_port_key`:
/// address, protocol and 3 bytes, port and 2 bytes).
fn addr_port(key: &[u8]) -> Option<(IpAddr, u16)> {
    let len = key.len().checked_sub(8)?;
    let addr = addr(&key[..len])?;
    let port = u16::from_be_bytes([key[len + 4], key[len + 5]]);
    Some((addr, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::encode::proto_port_key;
    use crate::firewall::wire::Request;
    use crate::firewall::{RuleCounter, Transport};

    /// A kernel whose table's sets hold `sets`.
    struct Left {
        sets: Vec<(&'static str, Elems)>,
    }

    impl Transport for Left {
        fn apply(&mut self, _: &[Request]) -> Result<(), FirewallError> {
            Ok(())
        }
        fn dump_rules(&mut self, _: &str) -> Result<Vec<RuleCounter>, FirewallError> {
            Ok(vec![])
        }
        fn dump_set_elements(
            &mut self,
            table: &str,
            set: &str,
        ) -> Result<Vec<(Vec<u8>, u64)>, FirewallError> {
            assert_eq!(table, "rbm");
            let found = self.sets.iter().find(|(name, _)| *name == set);
            Ok(found.map(|(_, elems)| elems.clone()).unwrap_or_default())
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_restarted_agent_carries_each_learned_element_for_the_time_it_had_left() {
        let v4 = ip("198.51.100.10");
        let v6 = ip("fd00:99::10");
        let ported = ip("198.51.100.40");
        let kernel = Left {
            sets: vec![
                (sets::LEARNED4, vec![(vec![198, 51, 100, 10], 50_000)]),
                (sets::LEARNED6, vec![(addr_bytes(v6), 9_000)]),
                (
                    sets::LEARNED4_PORTS,
                    vec![
                        (proto_port_key(ported, 6, 443), 30_000),
                        (proto_port_key(ported, 17, 443), 29_000),
                        (proto_port_key(ported, 6, 22), 30_000),
                    ],
                ),
                (sets::CRED4, vec![(vec![198, 51, 100, 10], 50_000)]),
            ],
        };
        let mut firewall = Firewall::new(Box::new(kernel));
        let carried = Carried::read(&mut firewall).unwrap();
        let learns = carried.learns();
        let secs = |s| Duration::from_secs(s);
        assert_eq!(
            learns,
            [
                Learn {
                    addr: v4,
                    ports: Ports::All,
                    timeout: secs(50)
                },
                Learn {
                    addr: v6,
                    ports: Ports::All,
                    timeout: secs(9)
                },
                Learn {
                    addr: ported,
                    ports: Ports::Only([22, 443].into()),
                    timeout: secs(29),
                },
            ]
        );
        let elements = carried.elements(secs(10));
        assert!(
            elements.get(sets::LEARNED6).is_none_or(<[_]>::is_empty),
            "ran out since the read"
        );
        let four = elements.get(sets::LEARNED4).unwrap();
        assert_eq!(
            four[0].timeout_ms,
            Some(40_000),
            "the time since the read counts"
        );
        assert_eq!(
            elements.get(sets::CRED4).unwrap().len(),
            1,
            "the proxy's too"
        );
        assert_eq!(elements.get(sets::LEARNED4_PORTS).unwrap().len(), 3);
        // A restart does not forget that the proxy's addresses may be a
        // ruled host's (never spliced to).
        assert_eq!(carried.intercepted(), [IpAddr::from([198, 51, 100, 10])]);
    }

    #[test]
    fn the_first_start_carries_nothing() {
        let mut firewall = Firewall::new(Box::new(Left { sets: vec![] }));
        let carried = Carried::read(&mut firewall).unwrap();
        assert!(carried.is_empty() && carried.learns().is_empty());
    }

    fn addr_bytes(ip: IpAddr) -> Vec<u8> {
        crate::firewall::ruleset::addr_bytes(ip)
    }
}
