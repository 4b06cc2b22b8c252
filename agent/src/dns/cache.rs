//! The upstream answers the proxy keeps for their TTL, so that a name asked
//! again is not asked upstream again. What is kept is the answer as
//! upstream gave it (after `cname_chain` and `strip_service_params`), never
//! a verdict: the policy decides every query anew, and a kept answer goes
//! through the same withholding and learning as a fresh one, so a reload, a
//! protected range or an address that closed in the meantime is honoured
//! exactly as for an answer straight from upstream.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::Query;
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};

/// Answers kept at most. Bounded, so a flood of fresh names cannot grow
/// the agent's memory: when full, expired answers go first, then any.
/// 448 fills a table of 512 slots (a hash map grows past 7/8 full), about
/// 0.2 MB with the answers; 1,024 took 0.6 MB. dnsmasq keeps 150.
pub(crate) const CAPACITY: usize = 448;
/// How often a full cache is read through for expired answers. Reading
/// it on every answer cost a flood of fresh names a scan of all of it
/// per query; in between, a full cache makes room by dropping any one.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

type Key = (Name, RecordType, DNSClass);

struct Entry {
    answers: Vec<Record>,
    stored: Instant,
    expires: Instant,
}

#[derive(Default)]
pub(crate) struct Cache {
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    entries: HashMap<Key, Entry>,
    /// When a full cache was last read through for expired answers.
    swept: Option<Instant>,
}

fn key(query: &Query) -> Key {
    (
        query.name.to_lowercase(),
        query.query_type,
        query.query_class,
    )
}

impl Cache {
    /// The kept answer to `query`, with every TTL lowered by the time it
    /// was kept (whole seconds); none once its shortest TTL ran out.
    pub(crate) fn get(&self, query: &Query) -> Option<Vec<Record>> {
        let kept = self.kept.lock().unwrap();
        let entry = kept.entries.get(&key(query))?;
        let now = Instant::now();
        if now >= entry.expires {
            return None;
        }
        let age = u32::try_from(now.saturating_duration_since(entry.stored).as_secs()).ok()?;
        let mut answers = entry.answers.clone();
        for record in &mut answers {
            record.ttl = record.ttl.checked_sub(age).filter(|ttl| *ttl > 0)?;
        }
        Some(answers)
    }

    /// Keeps `answers` to `query` for their shortest TTL. Only answers with
    /// records are kept: an empty or negative answer carries its time to
    /// live in an SOA record the proxy does not keep.
    pub(crate) fn put(&self, query: &Query, answers: &[Record]) {
        let Some(ttl) = answers.iter().map(|r| r.ttl).min().filter(|ttl| *ttl > 0) else {
            return;
        };
        let now = Instant::now();
        let mut kept = self.kept.lock().unwrap();
        let kept = &mut *kept;
        let due = kept
            .swept
            .is_none_or(|at| now.saturating_duration_since(at) >= SWEEP_EVERY);
        if kept.entries.len() >= CAPACITY && due {
            kept.entries.retain(|_, entry| entry.expires > now);
            kept.swept = Some(now);
        }
        if kept.entries.len() >= CAPACITY {
            let any = kept.entries.keys().next().cloned();
            any.map(|k| kept.entries.remove(&k));
        }
        kept.entries.insert(
            key(query),
            Entry {
                answers: answers.to_vec(),
                stored: now,
                expires: now + Duration::from_secs(u64::from(ttl)),
            },
        );
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.kept.lock().unwrap().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::tests::{a, name};

    fn query(text: &str) -> Query {
        Query::query(name(text), RecordType::A)
    }

    #[test]
    fn a_kept_answer_is_found_under_any_case_with_its_ttl_counting_down() {
        let cache = Cache::default();
        cache.put(&query("a.test"), &[a("a.test", "198.51.100.1", 60)]);
        let hit = cache.get(&query("A.Test")).unwrap();
        assert_eq!(hit.len(), 1);
        assert!(hit[0].ttl <= 60 && hit[0].ttl >= 59, "{}", hit[0].ttl);
        assert!(cache
            .get(&Query::query(name("a.test"), RecordType::AAAA))
            .is_none());
    }

    #[test]
    fn empty_and_zero_ttl_answers_are_not_kept() {
        let cache = Cache::default();
        cache.put(&query("a.test"), &[]);
        cache.put(&query("b.test"), &[a("b.test", "198.51.100.1", 0)]);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn an_answer_is_gone_once_its_shortest_ttl_ran_out() {
        let cache = Cache::default();
        cache.put(&query("a.test"), &[a("a.test", "198.51.100.1", 1)]);
        assert!(cache.get(&query("a.test")).is_some());
        std::thread::sleep(Duration::from_millis(1100));
        assert!(cache.get(&query("a.test")).is_none());
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity() {
        let cache = Cache::default();
        for i in 0..CAPACITY + 10 {
            let owner = format!("n{i}.test");
            cache.put(&query(&owner), &[a(&owner, "198.51.100.1", 60)]);
        }
        assert_eq!(cache.len(), CAPACITY);
    }
}
