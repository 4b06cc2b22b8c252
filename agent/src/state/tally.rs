//! Every name refused since the agent started, counted: by the DNS proxy
//! (no port) and on the wire (the name check, by protocol and port). What
//! `rbm-launch suggest` turns into domain lines, most refused first. The
//! recent lists beside it (`denied`, `refused_names`) keep only the
//! latest; this keeps counts, for at most `NAMES` names (a bottle that
//! asks for endless names cannot grow it: later ones are only counted in
//! `overflow`).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// How many names are counted one by one.
pub const NAMES: usize = 1024;

/// What was refused of one name. The name is the bottle's bytes: shown
/// escaped, proposed only if it is a plain DNS name (the launcher checks).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub name: String,
    /// Questions the DNS proxy refused.
    pub dns: u64,
    /// Connections the name check refused, by `"tcp 443"`.
    pub wire: BTreeMap<String, u64>,
}

impl Refusal {
    pub fn total(&self) -> u64 {
        self.dns + self.wire.values().sum::<u64>()
    }
}

#[derive(Debug, Default)]
pub struct Tally {
    names: HashMap<String, Refusal>,
    /// Refusals of names beyond `NAMES`.
    pub overflow: u64,
}

impl Tally {
    fn entry(&mut self, name: &str) -> Option<&mut Refusal> {
        if !self.names.contains_key(name) && self.names.len() >= NAMES {
            self.overflow += 1;
            return None;
        }
        Some(
            self.names
                .entry(name.to_string())
                .or_insert_with(|| Refusal {
                    name: name.to_string(),
                    ..Refusal::default()
                }),
        )
    }

    pub fn dns(&mut self, name: &str) {
        if let Some(r) = self.entry(name) {
            r.dns += 1;
        }
    }

    pub fn wire(&mut self, name: &str, proto: &str, port: u16) {
        if let Some(r) = self.entry(name) {
            *r.wire.entry(format!("{proto} {port}")).or_default() += 1;
        }
    }

    /// Most refused first.
    pub fn list(&self) -> Vec<Refusal> {
        let mut v: Vec<Refusal> = self.names.values().cloned().collect();
        v.sort_by(|a, b| b.total().cmp(&a.total()).then_with(|| a.name.cmp(&b.name)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_counted_most_refused_first_and_bounded() {
        let mut t = Tally::default();
        t.dns("a.test");
        t.wire("b.test", "tcp", 443);
        t.wire("b.test", "tcp", 443);
        t.wire("b.test", "udp", 443);
        let list = t.list();
        assert_eq!(list[0].name, "b.test");
        assert_eq!(list[0].wire["tcp 443"], 2);
        assert_eq!(list[1].dns, 1);
        for i in 0..NAMES + 10 {
            t.dns(&format!("n{i}.test"));
        }
        assert_eq!(t.list().len(), NAMES);
        assert_eq!(t.overflow, 12);
        t.dns("a.test");
        assert_eq!(t.list().iter().find(|r| r.name == "a.test").unwrap().dns, 2);
    }
}
