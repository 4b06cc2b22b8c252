//! Addresses in use: a learned address whose TTL runs out while the bottle
//! still has connections to it stays open for a grace period more, so a
//! pooled HTTP/2 or gRPC channel that reconnects to the address it has
//! (CDN rotation, a client's DNS cache outliving the TTL) is not dropped.
//!
//! How: once a second, the addresses whose learned element expires within
//! `AHEAD` are looked up in conntrack (one ctnetlink dump, only when some
//! are due); those that a connection's original destination names are
//! learned again, for `GRACE`, through the same batcher as a DNS answer
//! (so the policy in force must still grant their name, with the same
//! ports, and a credential host's addresses go to the proxy's set too),
//! and recorded as kept for use. A kept address is looked at again when
//! its grace runs out: it closes `GRACE` after the last look that saw a
//! connection to it.
//!
//! - Never an unused address: one with no connection is not touched and
//!   closes when its TTL says.
//! - Never a shorter timeout: only elements with less than `AHEAD` left
//!   are re-added, with `GRACE` (longer), and whether each still has so
//!   little left is asked again under the firewall's lock, just before
//!   the batch: a DNS answer that re-opened it for longer in between wins.
//! - Bounded: at most `MAX_LOOKED` addresses a sweep, at most `MAX_IN_USE`
//!   kept at once, one conntrack dump a sweep.
//!
//! Why not an nftables dynset `update @learned4 { ip daddr timeout 5m }`
//! on the packet path: it sets the element's timeout to 5 minutes on every
//! packet, which shortens a longer TTL (an hour-long answer would close
//! after 5 idle minutes), costs a set write per packet, and leaves the
//! agent's records and `status` out of step with the kernel.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::firewall::{Firewall, FirewallError, Learn};
use crate::learning::{Batcher, Still, Then};
use crate::state::Shared;

/// How long an address stays open after the last look that saw a
/// connection to it.
pub const GRACE: Duration = Duration::from_secs(300);
/// How often addresses about to expire are looked up.
pub const EVERY: Duration = Duration::from_secs(1);
/// How long before its element expires an address is looked up: a sweep
/// every second, the record rounded down by up to a second, and a margin.
const AHEAD: Duration = Duration::from_secs(3);
/// How long after its record says it expired an address is still looked
/// up (a sweep that came late; the kernel's element may outlive the
/// record by a second).
const LATE: Duration = Duration::from_secs(2);
/// At most this many addresses are looked up in one sweep, the soonest
/// to expire first.
const MAX_LOOKED: usize = 4096;
/// At most this many addresses are kept open for use at once: a bottle
/// that opens connections to every address it ever learned cannot keep
/// them all open forever.
pub const MAX_IN_USE: usize = 16384;

const _: () = assert!(
    AHEAD.as_secs() + 1 < GRACE.as_secs(),
    "a keep never shortens"
);

/// Keeps addresses in use open (see the module's documentation).
pub struct Keeper {
    firewall: Arc<Mutex<Firewall>>,
    batcher: Arc<Batcher>,
    shared: Arc<Shared>,
    /// Whether a failed conntrack dump was reported already.
    warned: bool,
}

impl Keeper {
    pub fn new(
        firewall: Arc<Mutex<Firewall>>,
        batcher: Arc<Batcher>,
        shared: Arc<Shared>,
    ) -> Keeper {
        Keeper {
            firewall,
            batcher,
            shared,
            warned: false,
        }
    }

    /// One sweep: keeps open the addresses about to expire that a
    /// connection uses; how many it kept.
    pub async fn sweep(&mut self) -> usize {
        let due = self.shared.expiring(LATE, AHEAD, MAX_LOOKED);
        if due.is_empty() {
            return 0;
        }
        let room = MAX_IN_USE.saturating_sub(self.shared.in_use());
        if room == 0 {
            tracing::warn!(
                max = MAX_IN_USE,
                "as many addresses are kept open for use as may be: the rest close on their TTL"
            );
            return 0;
        }
        let wanted: HashSet<IpAddr> = due.iter().map(|(addr, _, _)| *addr).collect();
        let firewall = self.firewall.clone();
        let looked = tokio::task::spawn_blocking(move || {
            let mut used = HashSet::new();
            let mut firewall = firewall.lock().unwrap();
            firewall.connection_destinations(&mut |dst| {
                if wanted.contains(&dst) {
                    used.insert(dst);
                }
            })?;
            Ok::<_, FirewallError>(used)
        })
        .await;
        let used = match looked {
            Ok(Ok(used)) => used,
            Ok(Err(e)) => {
                if !std::mem::replace(&mut self.warned, true) {
                    tracing::warn!(
                        "cannot read conntrack, so no address is kept open for use: {e}"
                    );
                }
                return 0;
            }
            Err(e) => {
                tracing::warn!("the conntrack dump failed: {e}");
                return 0;
            }
        };
        let mut by_name: BTreeMap<String, Vec<Learn>> = BTreeMap::new();
        let in_use = due.into_iter().filter(|(addr, _, _)| used.contains(addr));
        for (addr, name, ports) in in_use.take(room) {
            by_name.entry(name).or_default().push(Learn {
                addr,
                ports,
                timeout: GRACE,
            });
        }
        let kept: usize = by_name.values().map(Vec::len).sum();
        if kept == 0 {
            return 0;
        }
        let sent = Instant::now();
        let jobs = by_name
            .into_iter()
            .map(|(name, items)| {
                let shared = self.shared.clone();
                let owned = name.clone();
                let then: Then =
                    Box::new(move |items: &[Learn]| shared.record_kept(&owned, items, sent));
                (name, items, then)
            })
            .collect();
        let results = self
            .batcher
            .learn_all(jobs, Some(still_expiring(self.shared.clone())))
            .await;
        for e in results.iter().filter_map(|r| r.as_ref().err()) {
            tracing::debug!("an address in use was not kept open: {e}");
        }
        tracing::debug!(kept, "addresses in use kept open");
        kept
    }
}

/// Whether an address is still about to expire (asked under the firewall's
/// lock): one a DNS answer re-opened for longer since the sweep looked
/// must not get the grace period's shorter timeout instead.
fn still_expiring(shared: Arc<Shared>) -> Still {
    Arc::new(move |item: &Learn| {
        shared
            .learned_record(item.addr)
            .is_some_and(|r| !r.revoked && r.expires <= Instant::now() + AHEAD)
    })
}

/// Sweeps every `EVERY` for the agent's life.
pub fn start(mut keeper: Keeper) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            keeper.sweep().await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::wire::{parse_attrs, Cmd, Request};
    use crate::firewall::{RuleCounter, Transport};
    use crate::policy::{Policy, PolicyCell};
    use crate::profile::{Ports, Profile};
    use std::path::Path;

    /// Each added element's key and timeout (ms).
    type Added = Arc<Mutex<Vec<(Vec<u8>, u64)>>>;

    /// Records the (key, timeout ms) of every element a batch adds, and
    /// answers conntrack dumps with `connections` (or an error).
    #[derive(Clone, Default)]
    struct Kernel {
        added: Added,
        dumps: Arc<Mutex<usize>>,
        connections: Vec<IpAddr>,
        no_conntrack: bool,
    }

    impl Transport for Kernel {
        fn apply(&mut self, reqs: &[Request]) -> Result<(), FirewallError> {
            let mut added = self.added.lock().unwrap();
            for req in reqs.iter().filter(|r| r.cmd == Cmd::NewSetElem) {
                let attrs = parse_attrs(&req.attrs);
                let list = attrs.iter().find(|(k, _)| *k == 3).unwrap().1;
                for (_, elem) in parse_attrs(list) {
                    let elem = parse_attrs(elem);
                    let key = parse_attrs(elem.iter().find(|(k, _)| *k == 1).unwrap().1)[0].1;
                    let ms = elem.iter().find(|(k, _)| *k == 4).unwrap().1;
                    let ms = u64::from_be_bytes(ms.try_into().unwrap());
                    if !added.contains(&(key.to_vec(), ms)) {
                        added.push((key.to_vec(), ms));
                    }
                }
            }
            Ok(())
        }
        fn dump_rules(&mut self, _: &str) -> Result<Vec<RuleCounter>, FirewallError> {
            Ok(vec![])
        }
        fn conntrack_destinations(
            &mut self,
            each: &mut dyn FnMut(IpAddr),
        ) -> Result<(), FirewallError> {
            *self.dumps.lock().unwrap() += 1;
            if self.no_conntrack {
                return Err(FirewallError::Unanswered(1));
            }
            self.connections.iter().for_each(|dst| each(*dst));
            Ok(())
        }
    }

    const A: &str = "198.51.100.1";
    const B: &str = "198.51.100.2";

    fn keeper(kernel: Kernel, domains: &str) -> (Keeper, Arc<Shared>) {
        let text = format!("moniker = \"tt\"\n[bottle]\nimage = \"i\"\n[enclave]\nsubnet = \"10.242.0.0/24\"\nsentry_ip = \"10.242.0.2\"\nbottle_ip = \"10.242.0.3\"\n[uplink]\ndns = \"allowlist\"\naccess = \"allowlist\"\ndomains = [{domains}]\nupstream_dns = [\"192.0.2.53\"]\n");
        let profile = Profile::parse(&text, Path::new("t")).unwrap();
        let policy = Arc::new(PolicyCell::new(Policy::from_profile(&profile)));
        let firewall = Arc::new(Mutex::new(Firewall::new(Box::new(kernel))));
        let batcher = Arc::new(Batcher::new(firewall.clone(), policy));
        let shared = Arc::new(Shared::default());
        (Keeper::new(firewall, batcher, shared.clone()), shared)
    }

    fn learn(shared: &Shared, name: &str, addr: &str, secs: u64) {
        let item = Learn {
            addr: addr.parse().unwrap(),
            ports: Ports::All,
            timeout: Duration::from_secs(secs),
        };
        shared.record_learned(name, &[item], Instant::now());
    }

    fn key(addr: &str) -> Vec<u8> {
        match addr.parse::<IpAddr>().unwrap() {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        }
    }

    #[tokio::test]
    async fn an_address_in_use_when_its_ttl_runs_out_stays_open_for_the_grace_period() {
        let kernel = Kernel {
            connections: vec![A.parse().unwrap(), "192.0.2.99".parse().unwrap()],
            ..Kernel::default()
        };
        let (mut keeper, shared) = keeper(kernel.clone(), "\"a.test\"");
        learn(&shared, "a.test", A, 2);
        learn(&shared, "a.test", B, 2);
        assert_eq!(keeper.sweep().await, 1);
        let grace_ms = GRACE.as_millis() as u64;
        assert_eq!(
            *kernel.added.lock().unwrap(),
            [(key(A), grace_ms)],
            "A only"
        );
        assert_eq!(shared.in_use(), 1, "status counts it");
        let record = shared.learned_record(A.parse().unwrap()).unwrap();
        assert!(record.expires > Instant::now() + GRACE - Duration::from_secs(2));
        let b = shared.learned_record(B.parse().unwrap()).unwrap();
        assert!(
            b.expires <= Instant::now() + Duration::from_secs(2),
            "B kept its TTL"
        );
    }

    #[tokio::test]
    async fn an_address_nobody_connects_to_is_never_extended() {
        let kernel = Kernel::default();
        let (mut keeper, shared) = keeper(kernel.clone(), "\"a.test\"");
        learn(&shared, "a.test", A, 2);
        assert_eq!(keeper.sweep().await, 0);
        assert!(kernel.added.lock().unwrap().is_empty());
        assert_eq!(shared.in_use(), 0);
    }

    #[tokio::test]
    async fn addresses_far_from_expiry_cost_no_conntrack_dump_and_keep_their_ttl() {
        let kernel = Kernel {
            connections: vec![A.parse().unwrap()],
            ..Kernel::default()
        };
        let (mut keeper, shared) = keeper(kernel.clone(), "\"a.test\"");
        learn(&shared, "a.test", A, 3600);
        assert_eq!(keeper.sweep().await, 0);
        assert_eq!(*kernel.dumps.lock().unwrap(), 0);
        assert!(
            kernel.added.lock().unwrap().is_empty(),
            "an hour is never cut to the grace"
        );
    }

    #[tokio::test]
    async fn a_name_the_policy_no_longer_grants_is_not_kept_open() {
        let kernel = Kernel {
            connections: vec![A.parse().unwrap()],
            ..Kernel::default()
        };
        let (mut keeper, shared) = keeper(kernel.clone(), "\"b.test\"");
        learn(&shared, "a.test", A, 2);
        keeper.sweep().await;
        assert!(kernel.added.lock().unwrap().is_empty());
        assert_eq!(shared.in_use(), 0);
    }

    #[tokio::test]
    async fn without_conntrack_addresses_close_on_their_ttl() {
        let kernel = Kernel {
            connections: vec![A.parse().unwrap()],
            no_conntrack: true,
            ..Kernel::default()
        };
        let (mut keeper, shared) = keeper(kernel.clone(), "\"a.test\"");
        learn(&shared, "a.test", A, 2);
        assert_eq!(keeper.sweep().await, 0);
        assert_eq!(keeper.sweep().await, 0, "and says so once");
        assert!(kernel.added.lock().unwrap().is_empty());
    }

    #[test]
    fn a_fresh_answer_between_the_look_and_the_batch_is_not_cut_short() {
        let shared = Arc::new(Shared::default());
        learn(&shared, "a.test", A, 2);
        let still = still_expiring(shared.clone());
        let item = Learn {
            addr: A.parse().unwrap(),
            ports: Ports::All,
            timeout: GRACE,
        };
        assert!(still(&item));
        learn(&shared, "a.test", A, 3600);
        assert!(!still(&item), "the hour-long answer wins");
    }
}
