//! What the running agent knows about itself, shared between the DNS proxy,
//! the control socket and main: readiness, DNS counts, learned addresses,
//! recently refused names.

mod learned;
mod names;
pub mod tally;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::firewall::ruleset::LEARNED_MAX;
use crate::firewall::Learn;
use crate::profile::Ports;
use learned::{Learned, MAX_LEARNED_KEPT};

/// How many refused names status remembers.
const RECENT_REFUSED: usize = 32;
/// How many name-check denials status remembers.
const RECENT_NAME_DENIALS: usize = 32;
/// How many denials of any kind status remembers.
const RECENT_DENIED: usize = 64;
/// Events a slow watcher may fall behind before it misses some.
const WATCH_BACKLOG: usize = 256;

/// What a reload does with the addresses names opened before it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    /// Still open: into the new table's learned sets, for the time left,
    /// with the ports the new policy grants.
    pub relearn: Vec<Learn>,
    /// Still allowed, open or expired: connections to them carry on.
    pub kept: Vec<Learn>,
    /// No longer allowed: connections to them are closed.
    pub revoked: Vec<IpAddr>,
}

#[derive(Debug)]
pub struct Shared {
    ready: AtomicBool,
    pub dns_allowed: AtomicU64,
    pub dns_refused: AtomicU64,
    pub dns_failed: AtomicU64,
    pub dns_cached: AtomicU64,
    /// Answers refused (SERVFAIL) because a learned set was full.
    learned_full: AtomicU64,
    refused: Mutex<VecDeque<String>>,
    learned: Mutex<Learned>,
    tally: Mutex<tally::Tally>,
    /// Addresses a host with request rules answered (or a name whose
    /// answer led to one): the proxy never passes another name's
    /// connection to them untouched.
    ruled: Mutex<std::collections::HashSet<std::net::IpAddr>>,
    reloads: AtomicU64,
    generation: AtomicU64,
    names_allowed: AtomicU64,
    names_denied: AtomicU64,
    name_denials: Mutex<VecDeque<NameDenial>>,
    denied: Mutex<VecDeque<Denied>>,
    denied_total: AtomicU64,
    events: broadcast::Sender<Denied>,
}

impl Default for Shared {
    fn default() -> Shared {
        Shared {
            ready: AtomicBool::default(),
            dns_allowed: AtomicU64::default(),
            dns_refused: AtomicU64::default(),
            dns_failed: AtomicU64::default(),
            dns_cached: AtomicU64::default(),
            learned_full: AtomicU64::default(),
            refused: Mutex::default(),
            learned: Mutex::default(),
            tally: Mutex::default(),
            ruled: Mutex::default(),
            reloads: AtomicU64::default(),
            generation: AtomicU64::default(),
            names_allowed: AtomicU64::default(),
            names_denied: AtomicU64::default(),
            name_denials: Mutex::default(),
            denied: Mutex::default(),
            denied_total: AtomicU64::default(),
            events: broadcast::channel(WATCH_BACKLOG).0,
        }
    }
}

/// What the sentry refused, as the deny log, status and `watch` tell it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denied {
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// `connection` (a packet the filter dropped), `name` (the name check)
    /// or `dns` (a refused query).
    pub kind: String,
    /// `tcp`, `udp`, `icmp`, ... (`dns` events: none).
    pub proto: Option<String>,
    pub dst: Option<SocketAddr>,
    /// The name involved, if any.
    pub name: Option<String>,
    /// Why, in words.
    pub reason: String,
}

/// What the learned map remembers of an address, expired or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedRecord {
    pub name: String,
    pub ports: Ports,
    pub expires: Instant,
    /// A reload took it away (its name is no longer allowed).
    pub revoked: bool,
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A connection the name check refused, as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameDenial {
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// `tcp` or `udp`.
    pub proto: String,
    pub dst: SocketAddr,
    /// The name seen on the wire, if there was one.
    pub name: Option<String>,
    pub reason: String,
}

/// Connections the name check decided.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameCounts {
    pub allowed: u64,
    pub denied: u64,
}

/// One learned address as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnedView {
    pub addr: IpAddr,
    pub name: String,
    /// `null` for all ports.
    pub ports: Option<Vec<u16>>,
    pub expires_in_secs: u64,
    /// Kept open past its TTL because connections used it.
    #[serde(default)]
    pub in_use: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsCounts {
    pub allowed: u64,
    pub refused: u64,
    pub failed: u64,
    /// Of the allowed, answered from the proxy's cache.
    #[serde(default)]
    pub cached: u64,
}

impl Shared {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    pub fn count_allowed(&self) {
        self.dns_allowed.fetch_add(1, Ordering::Relaxed);
    }

    /// An allowed query answered from the proxy's cache (it is counted as
    /// allowed too).
    pub fn count_cached(&self) {
        self.dns_cached.fetch_add(1, Ordering::Relaxed);
    }

    /// An answer got SERVFAIL because a learned set was full.
    pub fn count_learned_full(&self) {
        self.learned_full.fetch_add(1, Ordering::Relaxed);
    }

    pub fn learned_full(&self) -> u64 {
        self.learned_full.load(Ordering::Relaxed)
    }

    pub fn count_failed(&self) {
        self.dns_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refused query and remembers its name (most recent last).
    pub fn record_refused(&self, name: &str) {
        self.dns_refused.fetch_add(1, Ordering::Relaxed);
        let _ = self.events.send(Denied {
            at: unix_now(),
            kind: "dns".into(),
            proto: None,
            dst: None,
            name: Some(name.to_string()),
            reason: "name not allowed: REFUSED".into(),
        });
        self.tally.lock().unwrap().dns(name);
        let mut r = self.refused.lock().unwrap();
        r.retain(|n| n != name);
        r.push_back(name.to_string());
        while r.len() > RECENT_REFUSED {
            r.pop_front();
        }
    }

    /// Remembers addresses that `name` taught, after the kernel took them.
    /// `sent` is when they were sent to the kernel, so that what is
    /// remembered never outlives the kernel's element.
    pub fn record_learned(&self, name: &str, items: &[Learn], sent: Instant) {
        let mut learned = self.learned.lock().unwrap();
        learned.sweep_if_due(Instant::now());
        learned.record(name, items, sent, false);
    }

    /// Remembers addresses of `name` that connections kept open: re-added
    /// to the kernel at `sent` for the grace period (`crate::inuse`).
    pub fn record_kept(&self, name: &str, items: &[Learn], sent: Instant) {
        let mut learned = self.learned.lock().unwrap();
        learned.sweep_if_due(Instant::now());
        learned.record(name, items, sent, true);
    }

    /// Addresses a name opened (and no reload revoked) whose element
    /// expires between `late` ago and `ahead` from now, soonest first, at
    /// most `max`: its address, its name and its ports.
    pub fn expiring(
        &self,
        late: Duration,
        ahead: Duration,
        max: usize,
    ) -> Vec<(IpAddr, String, Ports)> {
        let learned = self.learned.lock().unwrap();
        learned.expiring(Instant::now(), late, ahead, max)
    }

    /// How many addresses are open because connections use them.
    pub fn in_use(&self) -> usize {
        self.learned.lock().unwrap().in_use(Instant::now())
    }

    /// Whether `more` addresses may still be learned: the agent remembers
    /// at most `LEARNED_MAX` addresses, besides expired ones it keeps to
    /// explain drops, so that a flood of fresh names cannot grow its
    /// memory without bound (the kernel's sets refuse beyond that too).
    pub fn has_room(&self, more: usize) -> bool {
        let mut learned = self.learned.lock().unwrap();
        learned.sweep_if_due(Instant::now());
        learned.len() + more <= LEARNED_MAX as usize + MAX_LEARNED_KEPT
    }

    /// How long `item`'s address stays open anyway, when its last learning
    /// had the same ports and keeps it open for at least half of
    /// `item.timeout`: then the kernel need not be asked again, and the
    /// answer's TTL must not exceed what is left.
    pub fn mark_ruled(&self, addrs: impl IntoIterator<Item = std::net::IpAddr>) {
        self.ruled.lock().unwrap().extend(addrs);
    }

    pub fn is_ruled(&self, addr: std::net::IpAddr) -> bool {
        self.ruled.lock().unwrap().contains(&addr)
    }

    pub fn still_open(&self, item: &Learn) -> Option<Duration> {
        let learned = self.learned.lock().unwrap();
        learned.still_open(item, Instant::now())
    }

    pub fn dns_counts(&self) -> DnsCounts {
        DnsCounts {
            allowed: self.dns_allowed.load(Ordering::Relaxed),
            refused: self.dns_refused.load(Ordering::Relaxed),
            failed: self.dns_failed.load(Ordering::Relaxed),
            cached: self.dns_cached.load(Ordering::Relaxed),
        }
    }

    /// What was last learned for `addr`, even if it has expired since.
    pub fn learned_record(&self, addr: IpAddr) -> Option<LearnedRecord> {
        self.learned.lock().unwrap().record_of(addr)
    }

    /// What a reload to a policy that grants `grant(address, name)` keeps
    /// of every address a name opened (and the agent still remembers).
    pub fn reload_plan(&self, grant: impl Fn(IpAddr, &str) -> Option<Ports>) -> ReloadPlan {
        self.learned.lock().unwrap().plan(Instant::now(), grant)
    }

    /// The reload of `plan` is in force: remember the new ports, and that
    /// revoked addresses are closed (a later answer must open them anew).
    pub fn reloaded(&self, plan: &ReloadPlan) {
        self.learned.lock().unwrap().reloaded(plan, Instant::now());
    }

    /// The policy's generation, and how often it was reloaded (also
    /// before the agent restarted).
    pub fn set_generation(&self, generation: u16, reloads: u64) {
        self.generation.store(generation.into(), Ordering::Relaxed);
        self.reloads.store(reloads, Ordering::Relaxed);
    }

    pub fn generation(&self) -> (u16, u64) {
        (
            self.generation.load(Ordering::Relaxed) as u16,
            self.reloads.load(Ordering::Relaxed),
        )
    }

    /// Remembers a denial (most recent last) and tells the watchers.
    pub fn record_denied(&self, denied: Denied) {
        self.denied_total.fetch_add(1, Ordering::Relaxed);
        let mut d = self.denied.lock().unwrap();
        d.push_back(denied.clone());
        while d.len() > RECENT_DENIED {
            d.pop_front();
        }
        drop(d);
        let _ = self.events.send(denied);
    }

    /// The latest denials, oldest first, and how many there were in all.
    pub fn denied(&self) -> (Vec<Denied>, u64) {
        let d = self.denied.lock().unwrap();
        (
            d.iter().cloned().collect(),
            self.denied_total.load(Ordering::Relaxed),
        )
    }

    /// Denials (and refused names) from now on.
    pub fn watch(&self) -> broadcast::Receiver<Denied> {
        self.events.subscribe()
    }

    pub fn count_name_allowed(&self) {
        self.names_allowed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a name-check denial and remembers it (most recent last).
    pub fn record_name_denial(&self, denial: NameDenial) {
        self.names_denied.fetch_add(1, Ordering::Relaxed);
        if let Some(name) = &denial.name {
            self.tally
                .lock()
                .unwrap()
                .wire(name, &denial.proto, denial.dst.port());
        }
        self.record_denied(Denied {
            at: denial.at,
            kind: "name".into(),
            proto: Some(denial.proto.clone()),
            dst: Some(denial.dst),
            name: denial.name.clone(),
            reason: denial.reason.clone(),
        });
        let mut d = self.name_denials.lock().unwrap();
        d.push_back(denial);
        while d.len() > RECENT_NAME_DENIALS {
            d.pop_front();
        }
    }

    pub fn name_counts(&self) -> NameCounts {
        NameCounts {
            allowed: self.names_allowed.load(Ordering::Relaxed),
            denied: self.names_denied.load(Ordering::Relaxed),
        }
    }

    pub fn name_denials(&self) -> Vec<NameDenial> {
        self.name_denials.lock().unwrap().iter().cloned().collect()
    }

    /// Every name refused since the start, most refused first, and the
    /// refusals of names beyond the bound.
    pub fn refusals(&self) -> (Vec<tally::Refusal>, u64) {
        let t = self.tally.lock().unwrap();
        (t.list(), t.overflow)
    }

    pub fn refused_names(&self) -> Vec<String> {
        self.refused.lock().unwrap().iter().cloned().collect()
    }

    /// Learned addresses that have not expired, soonest to expire first.
    pub fn learned(&self) -> Vec<LearnedView> {
        self.learned.lock().unwrap().views(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::learned::PRUNE_EVERY;
    use super::*;

    #[test]
    fn denials_are_bounded_and_reach_watchers() {
        let s = Shared::default();
        let mut watcher = s.watch();
        let denied = |i: u16| Denied {
            at: 0,
            kind: "connection".into(),
            proto: Some("tcp".into()),
            dst: Some(SocketAddr::from(([198, 51, 100, 20], i))),
            name: None,
            reason: "never resolved".into(),
        };
        for i in 0..100 {
            s.record_denied(denied(i));
        }
        let (recent, total) = s.denied();
        assert_eq!((recent.len(), total), (RECENT_DENIED, 100));
        assert_eq!(recent.last().unwrap().dst.unwrap().port(), 99);
        assert_eq!(watcher.try_recv().unwrap(), denied(0));
        s.record_refused("evil.test");
        assert_eq!(s.denied().1, 100, "a refused name is not a dropped packet");
    }

    #[test]
    fn expired_learnings_are_remembered_to_explain_drops() {
        let s = Shared::default();
        let item = Learn {
            addr: "192.0.2.1".parse().unwrap(),
            ports: Ports::All,
            timeout: Duration::from_millis(1),
        };
        s.record_learned("a.test", &[item], Instant::now() - Duration::from_secs(5));
        assert!(s.learned().is_empty(), "expired: not shown as learned");
        let record = s.learned_record("192.0.2.1".parse().unwrap()).unwrap();
        assert_eq!(&*record.name, "a.test");
        assert!(record.expires < Instant::now());
    }

    #[test]
    fn refused_names_are_recent_and_unique() {
        let s = Shared::default();
        for i in 0..40 {
            s.record_refused(&format!("n{i}.test"));
        }
        s.record_refused("n39.test");
        let names = s.refused_names();
        assert_eq!(names.len(), RECENT_REFUSED);
        assert_eq!(names.last().unwrap(), "n39.test");
        assert_eq!(s.dns_counts().refused, 41);
    }

    #[test]
    fn a_full_map_has_no_room_until_what_it_holds_expires() {
        let s = Shared::default();
        let bound = LEARNED_MAX as usize + MAX_LEARNED_KEPT;
        let items: Vec<Learn> = (0..bound as u32)
            .map(|i| Learn {
                addr: IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)),
                ports: Ports::All,
                timeout: Duration::from_secs(3600),
            })
            .collect();
        assert!(s.has_room(bound));
        s.record_learned("flood.test", &items, Instant::now());
        assert!(!s.has_room(1), "full of open addresses");
        // Their time runs out (set, not slept: a slow machine, such as
        // the arm64 run under qemu, must not expire them any earlier).
        let mut learned = s.learned.lock().unwrap();
        let past = Instant::now() - Duration::from_secs(1);
        learned.expire_all(past);
        learned.swept = Some(Instant::now() - PRUNE_EVERY);
        drop(learned);
        assert!(s.has_room(1), "expired and swept: room again");
    }

    #[test]
    fn learning_sweeps_out_the_forgotten_at_most_once_a_second() {
        let s = Shared::default();
        let learn = |i: u32, ms| Learn {
            addr: IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)),
            ports: Ports::All,
            timeout: Duration::from_millis(ms),
        };
        let item = |i| learn(i, 60_000);
        // A full map of expired addresses: a sweep drops them all.
        let expired: Vec<Learn> = (0..MAX_LEARNED_KEPT as u32).map(|i| learn(i, 1)).collect();
        let a_second_ago = Instant::now() - Duration::from_secs(1);
        s.record_learned("old.test", &expired, a_second_ago);
        // Swept "just now", however long recording took on this machine.
        s.learned.lock().unwrap().swept = Some(Instant::now() + Duration::from_secs(60));
        s.record_learned("new.test", &[item(1 << 20)], Instant::now());
        assert!(
            s.learned_record(expired[0].addr).is_some(),
            "no sweep within the second"
        );
        s.learned.lock().unwrap().swept = Some(Instant::now() - PRUNE_EVERY);
        s.record_learned("new.test", &[item(2 << 20)], Instant::now());
        assert!(s.learned_record(expired[0].addr).is_none(), "swept");
        assert_eq!(s.learned().len(), 2, "the unexpired stay");
    }

    #[test]
    fn learned_entries_expire() {
        let s = Shared::default();
        let learn = |addr: &str, secs| Learn {
            addr: addr.parse().unwrap(),
            ports: Ports::All,
            timeout: Duration::from_millis(secs),
        };
        s.record_learned(
            "a.test",
            &[learn("192.0.2.1", 60_000), learn("192.0.2.2", 0)],
            Instant::now(),
        );
        let l = s.learned();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].name, "a.test");
        assert_eq!(l[0].expires_in_secs, 60);
    }

    /// The process's resident memory that is not its program's pages.
    fn resident() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find_map(|l| l.strip_prefix("RssAnon:"));
        let kib = line.unwrap().trim().trim_end_matches("kB").trim();
        kib.parse::<usize>().unwrap() * 1024
    }

    /// Not a test: what a flood of fresh names costs the agent's memory.
    /// `cargo test -p rbm-agent --lib -- --ignored --exact --nocapture
    /// state::tests::a_flood_of_fresh_names_costs_little_memory_per_address`
    /// (glibc keeps the tables a growing map left behind, unlike musl:
    /// `MALLOC_MMAP_THRESHOLD_=65536` gives them back, as the agent does).
    #[test]
    #[ignore]
    fn a_flood_of_fresh_names_costs_little_memory_per_address() {
        const FLOOD: u32 = 100_000;
        let s = Shared::default();
        let learn = |i: u32| {
            let item = Learn {
                addr: IpAddr::from(std::net::Ipv4Addr::from(0x0a40_0000 + i)),
                ports: Ports::All,
                timeout: Duration::from_secs(3600),
            };
            let name = format!("n{i}.rbm-flood.fresh.example.test");
            s.record_learned(&name, &[item], Instant::now());
        };
        learn(FLOOD);
        let before = resident();
        (0..FLOOD).for_each(learn);
        let grown = resident().saturating_sub(before);
        println!(
            "{FLOOD} addresses: resident memory grew {grown} B, {} B per address",
            grown / FLOOD as usize
        );
        assert_eq!(s.learned().len(), FLOOD as usize + 1);
    }

    #[test]
    fn a_fresh_learning_with_the_same_ports_needs_no_kernel_call() {
        let s = Shared::default();
        let item = |ports, secs| Learn {
            addr: "192.0.2.1".parse().unwrap(),
            ports,
            timeout: Duration::from_secs(secs),
        };
        assert_eq!(s.still_open(&item(Ports::All, 60)), None, "never learned");
        s.record_learned("a.test", &[item(Ports::All, 60)], Instant::now());
        let left = s.still_open(&item(Ports::All, 60)).expect("just learned");
        assert!(left <= Duration::from_secs(60) && left > Duration::from_secs(30));
        assert_eq!(
            s.still_open(&item(Ports::Only([443].into()), 60)),
            None,
            "other ports"
        );
        assert_eq!(
            s.still_open(&item(Ports::All, 200)),
            None,
            "less than half of a longer timeout left"
        );
    }
}
