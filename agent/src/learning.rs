//! Learning without a thread hop, in batches: a DNS answer's addresses go
//! to the kernel from the async worker that has the answer when the
//! firewall is free, and learns that arrive while it is busy (another
//! learn, a reload, a status read) wait together and go in ONE batch.
//!
//! Every learn is a job in a queue. Whoever holds the firewall takes the
//! whole queue: the worker whose job found the firewall free does so at
//! once, with no other thread involved; a job that found it busy has a
//! blocking task of its own that waits for the lock and takes what is
//! queued by then (nothing, if another holder took its job already). So no
//! job is left behind, and the async workers never wait for a lock.

use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use tokio::sync::oneshot;

use crate::firewall::{Firewall, FirewallError, Learn};
use crate::policy::{PolicyCell, Verdict};

/// Runs once the kernel took a job's addresses, under the firewall's lock.
pub type Then = Box<dyn FnOnce(&[Learn]) + Send>;

/// Which of a job's addresses still go to the kernel, asked under the
/// firewall's lock (so no learn can come between the question and the
/// batch).
pub type Still = Arc<dyn Fn(&Learn) -> bool + Send + Sync>;

struct Job {
    qname: String,
    items: Vec<Learn>,
    then: Then,
    still: Option<Still>,
    done: oneshot::Sender<Result<(), FirewallError>>,
}

/// The queue of learns and the firewall they go to.
pub struct Batcher {
    firewall: Arc<Mutex<Firewall>>,
    policy: Arc<PolicyCell>,
    queue: Mutex<Vec<Job>>,
}

impl Batcher {
    pub fn new(firewall: Arc<Mutex<Firewall>>, policy: Arc<PolicyCell>) -> Batcher {
        Batcher {
            firewall,
            policy,
            queue: Mutex::default(),
        }
    }

    /// Opens `items`, which `qname` was granted, if the policy in force
    /// still grants them; returns once the kernel took them (or refused).
    pub async fn learn(
        self: &Arc<Self>,
        qname: &str,
        items: Vec<Learn>,
        then: Then,
    ) -> Result<(), FirewallError> {
        let job = (qname.to_string(), items, then);
        let mut results = self.learn_all(vec![job], None).await;
        results.pop().unwrap_or(Err(FirewallError::Unanswered(1)))
    }

    /// `learn` of several names' addresses, queued together so that they
    /// go in one batch; of each, only the addresses `still` keeps (all,
    /// without it). One result per job, in order.
    pub async fn learn_all(
        self: &Arc<Self>,
        jobs: Vec<(String, Vec<Learn>, Then)>,
        still: Option<Still>,
    ) -> Vec<Result<(), FirewallError>> {
        let mut answers = Vec::with_capacity(jobs.len());
        {
            let mut queue = self.queue.lock().unwrap();
            for (qname, items, then) in jobs {
                let (done, answer) = oneshot::channel();
                let still = still.clone();
                queue.push(Job {
                    qname,
                    items,
                    then,
                    still,
                    done,
                });
                answers.push(answer);
            }
        }
        match self.firewall.try_lock() {
            Ok(firewall) => self.take_queue(firewall),
            Err(TryLockError::WouldBlock) => {
                let batcher = self.clone();
                tokio::task::spawn_blocking(move || {
                    let firewall = batcher.firewall.lock().unwrap();
                    batcher.take_queue(firewall);
                });
            }
            Err(TryLockError::Poisoned(_)) => panic!("the firewall's lock is poisoned"),
        }
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            results.push(answer.await.unwrap_or(Err(FirewallError::Unanswered(1))));
        }
        results
    }

    /// Sends every queued job in one batch. A job whose name the policy no
    /// longer grants (a reload came between its answer and now) fails
    /// alone; if the kernel refuses the batch, each job is tried on its own,
    /// so that one job's error is not another's.
    fn take_queue(&self, mut firewall: MutexGuard<'_, Firewall>) {
        let jobs = std::mem::take(&mut *self.queue.lock().unwrap());
        if jobs.is_empty() {
            return;
        }
        let policy = self.policy.get();
        let mut granted = Vec::with_capacity(jobs.len());
        for mut job in jobs {
            if let Some(still) = job.still.take() {
                job.items.retain(|item| still(item));
                if job.items.is_empty() {
                    let _ = job.done.send(Ok(()));
                    continue;
                }
            }
            let still = match policy.verdict(&job.qname) {
                Verdict::Forward { grant: Some(ports) } => {
                    job.items.iter().all(|item| item.ports == ports)
                }
                _ => false,
            };
            if still {
                let intercepted = policy.intercepts(&job.qname);
                granted.push((job, intercepted));
            } else {
                let error = FirewallError::PolicyChanged(job.qname.clone());
                let _ = job.done.send(Err(error));
            }
        }
        let batch: Vec<(&[Learn], bool)> = granted
            .iter()
            .map(|(job, intercepted)| (job.items.as_slice(), *intercepted))
            .collect();
        let together = match batch.len() {
            0 => return,
            1 => None,
            _ => Some(firewall.learn_batch(&batch)),
        };
        for (job, intercepted) in granted {
            let result = match &together {
                Some(Ok(())) => Ok(()),
                _ => firewall.learn_batch(&[(&job.items, intercepted)]),
            };
            if result.is_ok() {
                (job.then)(&job.items);
            }
            let _ = job.done.send(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::wire::{Cmd, Request};
    use crate::firewall::{RuleCounter, Transport};
    use crate::policy::Policy;
    use crate::profile::{Ports, Profile};
    use std::path::Path;
    use std::time::Duration;

    /// Records which of 198.51.100.1-4 each batch adds; refuses a batch
    /// that holds `refuse`.
    #[derive(Clone, Default)]
    struct Kernel {
        batches: Arc<Mutex<Vec<Vec<u8>>>>,
        refuse: Option<u8>,
    }

    impl Transport for Kernel {
        fn apply(&mut self, reqs: &[Request]) -> Result<(), FirewallError> {
            let first_add = reqs.iter().find(|r| r.cmd == Cmd::NewSetElem).unwrap();
            let hosts: Vec<u8> = (1..=4)
                .filter(|h| first_add.attrs.windows(4).any(|w| w == [198, 51, 100, *h]))
                .collect();
            if self.refuse.is_some_and(|h| hosts.contains(&h)) {
                return Err(FirewallError::Unanswered(1));
            }
            self.batches.lock().unwrap().push(hosts);
            Ok(())
        }
        fn dump_rules(&mut self, _: &str) -> Result<Vec<RuleCounter>, FirewallError> {
            Ok(vec![])
        }
    }

    fn batcher(kernel: Kernel) -> Arc<Batcher> {
        let text = "moniker = \"tt\"\n[bottle]\nimage = \"i\"\n[enclave]\nsubnet = \"10.242.0.0/24\"\nsentry_ip = \"10.242.0.2\"\nbottle_ip = \"10.242.0.3\"\n[uplink]\ndns = \"allowlist\"\naccess = \"allowlist\"\ndomains = [\"a.test\", \"b.test\", \"c.test\"]\nupstream_dns = [\"192.0.2.53\"]\n";
        let profile = Profile::parse(text, Path::new("t")).unwrap();
        let policy = Arc::new(PolicyCell::new(Policy::from_profile(&profile)));
        let firewall = Arc::new(Mutex::new(Firewall::new(Box::new(kernel))));
        Arc::new(Batcher::new(firewall, policy))
    }

    fn item(addr: &str) -> Vec<Learn> {
        vec![Learn {
            addr: addr.parse().unwrap(),
            ports: Ports::All,
            timeout: Duration::from_secs(60),
        }]
    }

    /// Learns `name`'s `addr` in a task of its own; true once recorded.
    fn spawn_learn(
        batcher: &Arc<Batcher>,
        name: &'static str,
        addr: &str,
    ) -> tokio::task::JoinHandle<(Result<(), FirewallError>, bool)> {
        let (batcher, items) = (batcher.clone(), item(addr));
        tokio::spawn(async move {
            let recorded = Arc::new(Mutex::new(false));
            let flag = recorded.clone();
            let then = Box::new(move |_: &[Learn]| *flag.lock().unwrap() = true);
            let result = batcher.learn(name, items, then).await;
            let recorded = *recorded.lock().unwrap();
            (result, recorded)
        })
    }

    /// Holds the firewall, as a reload would, until all of `learns` are
    /// queued, then lets it go: the learns' tasks.
    // The guard is held across the awaits on purpose.
    #[allow(clippy::await_holding_lock)]
    async fn queued_behind_a_held_firewall<const N: usize>(
        b: &Arc<Batcher>,
        learns: [(&'static str, &str); N],
    ) -> [tokio::task::JoinHandle<(Result<(), FirewallError>, bool)>; N] {
        let held = b.firewall.lock().unwrap();
        let waiting = learns.map(|(name, addr)| spawn_learn(b, name, addr));
        while b.queue.lock().unwrap().len() < N {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(held);
        waiting
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn learns_that_wait_for_the_firewall_go_in_one_batch() {
        let kernel = Kernel::default();
        let b = batcher(kernel.clone());
        let waiting = queued_behind_a_held_firewall(
            &b,
            [
                ("a.test", "198.51.100.1"),
                ("b.test", "198.51.100.2"),
                ("c.test", "198.51.100.3"),
            ],
        )
        .await;
        for task in waiting {
            let (result, recorded) = task.await.unwrap();
            assert!(result.is_ok() && recorded);
        }
        assert_eq!(
            *kernel.batches.lock().unwrap(),
            [vec![1, 2, 3]],
            "one batch"
        );
    }

    #[tokio::test]
    async fn a_learn_on_a_free_firewall_is_sent_at_once() {
        let kernel = Kernel::default();
        let b = batcher(kernel.clone());
        let (result, recorded) = spawn_learn(&b, "a.test", "198.51.100.1").await.unwrap();
        assert!(result.is_ok() && recorded);
        assert_eq!(*kernel.batches.lock().unwrap(), [vec![1]]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_job_fails_alone_and_the_rest_of_its_batch_goes_in() {
        let kernel = Kernel {
            refuse: Some(2),
            ..Kernel::default()
        };
        let b = batcher(kernel.clone());
        let waiting = queued_behind_a_held_firewall(
            &b,
            [
                ("a.test", "198.51.100.1"),
                ("b.test", "198.51.100.2"),
                ("not-allowed.test", "198.51.100.4"),
            ],
        )
        .await;
        let [a, refused, ungranted] = waiting;
        assert!(matches!(a.await.unwrap(), (Ok(()), true)));
        assert!(matches!(refused.await.unwrap(), (Err(_), false)));
        assert!(matches!(
            ungranted.await.unwrap(),
            (Err(FirewallError::PolicyChanged(_)), false)
        ));
        assert_eq!(
            *kernel.batches.lock().unwrap(),
            [vec![1]],
            "only a.test went in"
        );
    }
}
