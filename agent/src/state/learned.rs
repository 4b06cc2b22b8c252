//! Every address a name opened, expired or not, as the agent remembers it:
//! compactly, for a flood of fresh names must grow the agent by little
//! (an IPv4 address takes 12 bytes in a hash map, its name and ports one
//! piece of `Names` unless another name shares it).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use super::names::{NameId, Names};
use super::{LearnedRecord, LearnedView, ReloadPlan};
use crate::firewall::Learn;
use crate::profile::Ports;

/// How long an expired learned address is remembered, to explain a drop
/// ("expired 40 s ago"), and how many at most.
pub(super) const EXPIRED_KEPT: Duration = Duration::from_secs(24 * 3600);
pub(super) const MAX_LEARNED_KEPT: usize = 16384;
/// How often learning sweeps out what is remembered no longer: a sweep reads
/// the whole map, too slow to do on every answer (it grew with the map:
/// up to 0.2 ms of a fresh name's time at 10,000 addresses).
pub(super) const PRUNE_EVERY: Duration = Duration::from_secs(1);
/// The latest expiry a slot holds, in seconds since the epoch (136 years,
/// longer than any TTL).
const LATEST: u32 = u32::MAX;
/// A name's top bit in a slot: a reload took the address away.
const REVOKED: u32 = 1 << 31;
/// The next bit: connections kept the address open past its TTL (see
/// `crate::inuse`); a fresh DNS answer that re-opens it clears it.
const IN_USE: u32 = 1 << 30;
const FLAGS: u32 = REVOKED | IN_USE;
/// A map at least this many times larger than what it holds gives back
/// the rest (once a flood expired).
const SHRINK_AT: usize = 4;

/// What is remembered of one address.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// When it expires, in whole seconds since the epoch, rounded down:
    /// the record never says an address is open longer than the kernel's
    /// set has it.
    expires: u32,
    /// Its name's `NameId` (which has its ports), `REVOKED` and `IN_USE`.
    name: u32,
}

const _: () = assert!(size_of::<(Ipv4Addr, Slot)>() == 12);

impl Slot {
    fn new(expires: u32, name: NameId, in_use: bool) -> Slot {
        debug_assert!(name.index() & FLAGS == 0, "2^30 pieces are never made");
        Slot {
            expires,
            name: name.index() | if in_use { IN_USE } else { 0 },
        }
    }

    fn name(&self) -> NameId {
        NameId::from_index(self.name & !FLAGS)
    }

    fn in_use(&self) -> bool {
        self.name & IN_USE != 0
    }

    fn revoked(&self) -> bool {
        self.name & REVOKED != 0
    }
}

/// The ports learned addresses were opened for, each set kept once: there
/// are as many as the policy has grants (a reload gives the addresses it
/// keeps the new policy's), besides those of revoked addresses. A set is
/// in use from `intern` until `Names` lets go of the last name with it.
#[derive(Debug, Default)]
struct PortsTable {
    /// Each set; none: free.
    sets: Vec<Option<Ports>>,
}

impl PortsTable {
    /// `ports`' index; none if 65,536 other sets are in use.
    fn intern(&mut self, ports: &Ports) -> Option<u16> {
        let held = self.sets.iter().position(|p| p.as_ref() == Some(ports));
        let at = match held {
            Some(at) => at,
            None => match self.sets.iter().position(Option::is_none) {
                Some(at) => {
                    self.sets[at] = Some(ports.clone());
                    at
                }
                None if self.sets.len() <= usize::from(u16::MAX) => {
                    self.sets.push(Some(ports.clone()));
                    self.sets.len() - 1
                }
                None => return None,
            },
        };
        Some(at as u16)
    }

    fn free(&mut self, id: u16) {
        self.sets[usize::from(id)] = None;
    }

    fn get(&self, id: u16) -> &Ports {
        self.sets[usize::from(id)].as_ref().unwrap_or(&Ports::All)
    }
}

/// Every address a name opened, expired or not, and when that was last
/// swept of what is remembered no longer.
#[derive(Debug)]
pub(super) struct Learned {
    v4: HashMap<Ipv4Addr, Slot>,
    v6: HashMap<Ipv6Addr, Slot>,
    names: Names,
    ports: PortsTable,
    /// What slots count their expiry from: a day before the map was made,
    /// so that every expiry a sweep keeps comes after it.
    epoch: Instant,
    pub(super) swept: Option<Instant>,
}

impl Default for Learned {
    fn default() -> Learned {
        let now = Instant::now();
        Learned {
            v4: HashMap::new(),
            v6: HashMap::new(),
            names: Names::default(),
            ports: PortsTable::default(),
            epoch: now.checked_sub(EXPIRED_KEPT).unwrap_or(now),
            swept: None,
        }
    }
}

impl Learned {
    /// How many addresses are remembered.
    pub(super) fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// `at` in whole seconds since the epoch, no earlier than the epoch and no later
    /// than `LATEST`; rounded down, so that what is remembered never
    /// outlives the kernel's element.
    fn secs(&self, at: Instant) -> u32 {
        let secs = at.saturating_duration_since(self.epoch).as_secs();
        u32::try_from(secs).unwrap_or(LATEST)
    }

    fn instant(&self, secs: u32) -> Instant {
        self.epoch + Duration::from_secs(secs.into())
    }

    fn ports(&self, slot: &Slot) -> &Ports {
        self.ports.get(self.names.ports(slot.name()))
    }

    fn slot(&self, addr: IpAddr) -> Option<&Slot> {
        match addr {
            IpAddr::V4(a) => self.v4.get(&a),
            IpAddr::V6(a) => self.v6.get(&a),
        }
    }

    fn slot_mut(&mut self, addr: IpAddr) -> Option<&mut Slot> {
        match addr {
            IpAddr::V4(a) => self.v4.get_mut(&a),
            IpAddr::V6(a) => self.v6.get_mut(&a),
        }
    }

    fn slots(&self) -> impl Iterator<Item = (IpAddr, &Slot)> {
        let v4 = self.v4.iter().map(|(a, s)| (IpAddr::V4(*a), s));
        v4.chain(self.v6.iter().map(|(a, s)| (IpAddr::V6(*a), s)))
    }

    /// Lets go of `name` once, and of its ports if no name has them any
    /// more. (Not a method: `retain` holds the maps while it calls it.)
    fn forget(names: &mut Names, ports: &mut PortsTable, name: NameId) {
        if let Some(unused) = names.release(name) {
            ports.free(unused);
        }
    }

    /// Keeps the slots `keep` says, forgets the others.
    fn retain(&mut self, keep: impl Fn(&Slot) -> bool) {
        let Learned {
            v4,
            v6,
            names,
            ports,
            ..
        } = self;
        let mut kept = |slot: &Slot| {
            let kept = keep(slot);
            if !kept {
                Learned::forget(names, ports, slot.name());
            }
            kept
        };
        v4.retain(|_, slot| kept(slot));
        v6.retain(|_, slot| kept(slot));
        if v4.capacity() > SHRINK_AT * v4.len().max(1024) {
            v4.shrink_to_fit();
        }
        if v6.capacity() > SHRINK_AT * v6.len().max(1024) {
            v6.shrink_to_fit();
        }
    }

    /// Drops what is remembered no longer, at most once every
    /// `PRUNE_EVERY`: a sweep reads the whole map.
    pub(super) fn sweep_if_due(&mut self, now: Instant) {
        if self
            .swept
            .is_some_and(|at| now.saturating_duration_since(at) < PRUNE_EVERY)
        {
            return;
        }
        let now_secs = self.secs(now);
        let kept_secs = EXPIRED_KEPT.as_secs() as u32;
        self.retain(|slot| now_secs.saturating_sub(slot.expires) < kept_secs);
        if self.len() >= MAX_LEARNED_KEPT {
            self.retain(|slot| slot.expires > now_secs);
        }
        self.swept = Some(now);
    }

    /// Remembers addresses that `name` taught, sent to the kernel at `sent`
    /// (not one whose ports find no room, 65,536 other sets in use: the
    /// kernel has it all the same); `in_use`: kept open for connections to
    /// them, not for a DNS answer.
    pub(super) fn record(&mut self, name: &str, items: &[Learn], sent: Instant, in_use: bool) {
        // The name with the ports of the item before, held once by `last`.
        let mut last: Option<(&Ports, NameId)> = None;
        for item in items {
            let id = match last {
                Some((ports, id)) if *ports == item.ports => id,
                _ => {
                    let Some(ports) = self.ports.intern(&item.ports) else {
                        continue;
                    };
                    let id = self.names.intern(name, ports);
                    if let Some((_, before)) = last.replace((&item.ports, id)) {
                        Learned::forget(&mut self.names, &mut self.ports, before);
                    }
                    id
                }
            };
            let expires = sent
                .checked_add(item.timeout)
                .map_or(LATEST, |t| self.secs(t));
            self.names.hold(id);
            let slot = Slot::new(expires, id, in_use);
            let old = match item.addr {
                IpAddr::V4(a) => self.v4.insert(a, slot),
                IpAddr::V6(a) => self.v6.insert(a, slot),
            };
            if let Some(old) = old {
                Learned::forget(&mut self.names, &mut self.ports, old.name());
            }
        }
        if let Some((_, id)) = last {
            Learned::forget(&mut self.names, &mut self.ports, id);
        }
    }

    /// What was last learned for `addr`, even if it has expired since.
    pub(super) fn record_of(&self, addr: IpAddr) -> Option<LearnedRecord> {
        let slot = self.slot(addr)?;
        Some(LearnedRecord {
            name: self.names.name(slot.name()),
            ports: self.ports(slot).clone(),
            expires: self.instant(slot.expires),
            revoked: slot.revoked(),
        })
    }

    /// How long `item`'s address stays open anyway (see
    /// `Shared::still_open`).
    pub(super) fn still_open(&self, item: &Learn, now: Instant) -> Option<Duration> {
        let slot = self
            .slot(item.addr)
            .filter(|s| *self.ports(s) == item.ports)?;
        let left = self.instant(slot.expires).saturating_duration_since(now);
        (left >= item.timeout / 2).then_some(left)
    }

    /// What a reload to a policy that grants `grant(address, name)` keeps,
    /// address by address in order.
    pub(super) fn plan(
        &self,
        now: Instant,
        grant: impl Fn(IpAddr, &str) -> Option<Ports>,
    ) -> ReloadPlan {
        let mut slots: Vec<(IpAddr, &Slot)> = self.slots().filter(|(_, s)| !s.revoked()).collect();
        slots.sort_unstable_by_key(|(addr, _)| *addr);
        let mut plan = ReloadPlan::default();
        for (addr, slot) in slots {
            let Some(ports) = grant(addr, &self.names.name(slot.name())) else {
                plan.revoked.push(addr);
                continue;
            };
            let item = |timeout| Learn {
                addr,
                ports: ports.clone(),
                timeout,
            };
            let expires = self.instant(slot.expires);
            if expires > now {
                plan.relearn.push(item(expires - now));
            }
            plan.kept.push(item(Duration::ZERO));
        }
        plan
    }

    /// The reload of `plan` is in force (see `Shared::reloaded`).
    pub(super) fn reloaded(&mut self, plan: &ReloadPlan, now: Instant) {
        for item in &plan.kept {
            let Some(slot) = self.slot(item.addr).copied() else {
                continue;
            };
            if *self.ports(&slot) == item.ports {
                continue;
            }
            let Some(ports) = self.ports.intern(&item.ports) else {
                continue;
            };
            let name = self.names.name(slot.name());
            let id = self.names.intern(&name, ports);
            if let Some(kept) = self.slot_mut(item.addr) {
                kept.name = id.index() | slot.name & FLAGS;
            }
            Learned::forget(&mut self.names, &mut self.ports, slot.name());
        }
        let now_secs = self.secs(now);
        for addr in &plan.revoked {
            if let Some(slot) = self.slot_mut(*addr) {
                slot.name |= REVOKED;
                slot.expires = slot.expires.min(now_secs);
            }
        }
    }

    /// Addresses a name opened and no reload revoked whose element expires
    /// between `late` ago and `ahead` from now (the kernel's at most a
    /// second later), soonest first, at most `max` of them.
    pub(super) fn expiring(
        &self,
        now: Instant,
        late: Duration,
        ahead: Duration,
        max: usize,
    ) -> Vec<(IpAddr, String, Ports)> {
        let from = self.secs(now.checked_sub(late).unwrap_or(now));
        let to = self.secs(now + ahead);
        let mut due: Vec<(u32, IpAddr, &Slot)> = self
            .slots()
            .filter(|(_, s)| !s.revoked() && s.expires > from && s.expires <= to)
            .map(|(addr, s)| (s.expires, addr, s))
            .collect();
        due.sort_unstable_by_key(|(expires, addr, _)| (*expires, *addr));
        due.truncate(max);
        due.into_iter()
            .map(|(_, addr, s)| (addr, self.names.name(s.name()), self.ports(s).clone()))
            .collect()
    }

    /// How many open addresses are open because connections used them.
    pub(super) fn in_use(&self, now: Instant) -> usize {
        let now_secs = self.secs(now);
        self.slots()
            .filter(|(_, s)| s.in_use() && !s.revoked() && s.expires > now_secs)
            .count()
    }

    /// Learned addresses that have not expired, soonest to expire first
    /// (then by address).
    pub(super) fn views(&self, now: Instant) -> Vec<LearnedView> {
        let now_secs = self.secs(now);
        let mut v: Vec<LearnedView> = self
            .slots()
            .filter(|(_, slot)| slot.expires > now_secs)
            .map(|(addr, slot)| LearnedView {
                addr,
                name: self.names.name(slot.name()),
                ports: match self.ports(slot) {
                    Ports::All => None,
                    Ports::Only(p) => Some(p.iter().copied().collect()),
                },
                expires_in_secs: self
                    .instant(slot.expires)
                    .saturating_duration_since(now)
                    .as_secs_f64()
                    .ceil() as u64,
                in_use: slot.in_use(),
            })
            .collect();
        v.sort_unstable_by_key(|e| (e.expires_in_secs, e.addr));
        v
    }

    /// Every address expires at `at` (tests: set, not slept).
    #[cfg(test)]
    pub(super) fn expire_all(&mut self, at: Instant) {
        let secs = self.secs(at);
        let slots = self.v4.values_mut().chain(self.v6.values_mut());
        slots.for_each(|slot| slot.expires = secs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learn(addr: &str, ports: Ports, timeout: Duration) -> Learn {
        Learn {
            addr: addr.parse().unwrap(),
            ports,
            timeout,
        }
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn forgotten_addresses_let_go_of_their_names_and_ports() {
        let mut l = Learned::default();
        let now = Instant::now();
        let https = Ports::Only([443].into());
        let a = [
            learn("192.0.2.1", https.clone(), MINUTE),
            learn("2001:db8::1", https.clone(), MINUTE),
        ];
        l.record("a.example.test", &a, now, false);
        l.record(
            "b.example.test",
            &[learn("192.0.2.1", Ports::All, MINUTE)],
            now,
            false,
        );
        let record = |addr: &str| l.record_of(addr.parse().unwrap()).unwrap();
        assert_eq!(record("192.0.2.1").name, "b.example.test");
        assert_eq!(record("192.0.2.1").ports, Ports::All);
        assert_eq!(record("2001:db8::1").name, "a.example.test");
        assert_eq!(record("2001:db8::1").ports, https);
        assert_eq!(l.names.pieces_held(), 8, "other ports: nothing shared");
        l.expire_all(now - EXPIRED_KEPT);
        l.sweep_if_due(now);
        assert_eq!(l.len(), 0);
        assert_eq!(l.names.pieces_held(), 0);
        assert!(l.ports.sets.iter().all(Option::is_none));
    }

    #[test]
    fn a_map_a_flood_left_gives_its_room_back_once_swept() {
        let mut l = Learned::default();
        let now = Instant::now();
        let items: Vec<Learn> = (0..20_000u32)
            .map(|i| Learn {
                addr: IpAddr::V4(Ipv4Addr::from(0x0a40_0000 + i)),
                ports: Ports::All,
                timeout: MINUTE,
            })
            .collect();
        l.record("flood.test", &items, now, false);
        assert!(l.v4.capacity() >= 20_000);
        l.expire_all(now - Duration::from_secs(1));
        l.sweep_if_due(now);
        assert_eq!(l.len(), 0, "more than MAX_LEARNED_KEPT: the expired go");
        assert!(l.v4.capacity() < 20_000);
    }

    #[test]
    fn a_reload_s_ports_and_revocations_are_remembered() {
        let mut l = Learned::default();
        let now = Instant::now();
        let items = [
            learn("192.0.2.2", Ports::All, MINUTE),
            learn("192.0.2.1", Ports::All, MINUTE),
        ];
        l.record("a.test", &items, now, false);
        let https = Ports::Only([443].into());
        let plan = l.plan(now, |addr, name| {
            assert_eq!(name, "a.test");
            (addr == items[1].addr).then(|| https.clone())
        });
        assert_eq!(plan.revoked, [items[0].addr]);
        assert_eq!(plan.kept.len(), 1);
        assert_eq!(plan.relearn[0].ports, https);
        l.reloaded(&plan, now);
        let kept = l.record_of(items[1].addr).unwrap();
        assert!(!kept.revoked && kept.ports == https && kept.expires > now);
        let revoked = l.record_of(items[0].addr).unwrap();
        assert!(revoked.revoked && revoked.expires <= now);
        assert_eq!(
            (revoked.name.as_str(), revoked.ports),
            ("a.test", Ports::All)
        );
        let again = l.plan(now, |_, _| None);
        assert_eq!(again.revoked, [items[1].addr], "what was revoked, once");
    }

    #[test]
    fn the_longest_ttl_fits_a_slot() {
        let mut l = Learned::default();
        let now = Instant::now();
        // RFC 2181: a TTL is at most 2^31 - 1 seconds.
        let forever = Duration::from_secs((1 << 31) - 1);
        l.record(
            "a.test",
            &[learn("192.0.2.1", Ports::All, forever)],
            now,
            false,
        );
        let expires = l.record_of("192.0.2.1".parse().unwrap()).unwrap().expires;
        assert!(expires <= now + forever && expires + Duration::from_secs(1) > now + forever);
    }

    #[test]
    fn addresses_that_expire_together_are_listed_by_address() {
        let mut l = Learned::default();
        let now = Instant::now();
        let items = [
            learn("2001:db8::1", Ports::All, MINUTE),
            learn("192.0.2.2", Ports::All, MINUTE),
            learn("192.0.2.1", Ports::All, MINUTE),
            learn("192.0.2.3", Ports::All, MINUTE / 2),
        ];
        l.record("a.test", &items, now, false);
        let listed: Vec<String> = l.views(now).iter().map(|v| v.addr.to_string()).collect();
        assert_eq!(
            listed,
            ["192.0.2.3", "192.0.2.1", "192.0.2.2", "2001:db8::1"]
        );
    }

    #[test]
    fn only_unrevoked_addresses_about_to_expire_are_due_for_a_look() {
        let mut l = Learned::default();
        let now = Instant::now();
        let secs = Duration::from_secs;
        let items = [
            learn("192.0.2.1", Ports::All, secs(2)),
            learn("192.0.2.2", Ports::All, MINUTE),
            learn("192.0.2.3", Ports::All, secs(1)),
            learn("192.0.2.4", Ports::All, secs(2)),
        ];
        l.record("a.test", &items, now, false);
        let plan = l.plan(now, |addr, _| (addr != items[3].addr).then_some(Ports::All));
        l.reloaded(&plan, now);
        let due = l.expiring(now, secs(2), secs(3), 10);
        let addrs: Vec<IpAddr> = due.iter().map(|(addr, _, _)| *addr).collect();
        assert_eq!(
            addrs,
            [items[2].addr, items[0].addr],
            "soonest first; revoked and far ones not"
        );
        assert_eq!(due[0].1, "a.test");
        assert_eq!(l.expiring(now, secs(2), secs(3), 1).len(), 1, "bounded");
        assert_eq!(l.in_use(now), 0);
        l.record("a.test", &items[..1], now, true);
        assert_eq!(l.in_use(now), 1);
        assert!(l
            .views(now)
            .iter()
            .any(|v| v.in_use && v.addr == items[0].addr));
        l.record("a.test", &items[..1], now, false);
        assert_eq!(
            l.in_use(now),
            0,
            "a fresh answer opens it for its TTL again"
        );
    }
}
