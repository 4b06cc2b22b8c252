//! Live reload: a changed `[uplink]` policy replaces the one in force in one
//! atomic nftables batch, without a restart of the bottle or the sentry.
//!
//! - The new table carries over what names opened: every address a name
//!   still allowed opened stays open for the time it had left, with the
//!   ports the new policy grants. Addresses only removed names opened are
//!   not in it: they are closed at once.
//! - Connections: when a reload takes anything away, it starts a new
//!   generation. A connection of an older one is checked on its next packet
//!   against what the reload kept (`ruleset::recheck_chain`): it carries on
//!   untouched if its destination is still allowed, else it is closed (a
//!   reset for TCP). This kernel has no ctnetlink to delete conntrack
//!   entries; the connection's mark does the job, lazily but on the very
//!   next packet either way.
//! - The reloaded profile is written beside the control socket before the
//!   new table goes in (and put back if the kernel refuses it), so an agent
//!   restarted by the supervisor starts from it: a restart never brings back
//!   a removed name.
//! - What only `rbm-launch up` can change (the bottle, the networks, the
//!   entries, the sentry's upstream DNS) is refused with the field named.
//!
//! A learning (a DNS answer) and a reload both hold the firewall's lock, and
//! a learning checks under it that the name's grant is still the policy's:
//! an answer resolved under the old policy cannot open an address the new
//! one took away.

use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::dns::Learner;
use crate::firewall::ruleset::{FirewallInput, Interfaces, Ruleset};
use crate::firewall::{elements, Firewall, FirewallError, Learn, Target};
use crate::learning::{Batcher, Then};
use crate::policy::{Policy, PolicyCell, Verdict};
use crate::profile::Profile;
use crate::state::Shared;
use crate::status::bind_socket;

/// The largest profile a reload accepts.
const MAX_PROFILE: u64 = 1 << 20;

/// The reload socket that goes with a control socket (`agent.sock` ->
/// `agent.reload`).
pub fn socket_path(control: &Path) -> PathBuf {
    control.with_extension("reload")
}

/// Where the policy in force is kept across agent restarts (`agent.sock`
/// -> `agent.policy`).
pub fn state_path(control: &Path) -> PathBuf {
    control.with_extension("policy")
}

/// What survives an agent restart: the profile in force and its generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persisted {
    pub generation: u16,
    pub reloads: u64,
    pub profile: String,
    /// Written before the reload's table goes in, cleared once it is: an
    /// agent that finds it set died in between, so the table it finds was
    /// made under the policy before, and what that table learned is not
    /// carried over (`crate::carried`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub installing: bool,
}

/// The policy a reload left, if one did.
pub fn load_state(path: &Path) -> anyhow::Result<Option<Persisted>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "the reloaded policy at {} is unreadable: {e}",
                path.display()
            )
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// Writes `state` (or removes the file for `None`) through a rename, so a
/// restarted agent finds the old file or the new one, never half of one.
fn store_state(path: &Path, state: Option<&Persisted>) -> std::io::Result<()> {
    let Some(state) = state else {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    };
    let tmp = path.with_extension("policy.tmp");
    std::fs::write(&tmp, serde_json::to_vec(state).expect("serializable"))?;
    std::fs::rename(&tmp, path)
}

/// What a reload changed, as the reply tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Addresses that stay open (learned before, still allowed).
    pub kept_open: usize,
    /// Addresses closed, with their connections.
    pub closed: usize,
    pub generation: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Reloaded(Summary),
    /// The profile is invalid: nothing changed.
    Refused(String),
    /// These fields changed, which only `rbm-launch up` applies: nothing
    /// changed.
    NeedsRestart(Vec<String>),
    /// The sentry could not apply it: nothing changed.
    Failed(String),
}

/// The running agent's filter and policy: what learning and reloading
/// change, each under the firewall's lock.
pub struct Enforcer {
    pub firewall: Arc<Mutex<Firewall>>,
    /// Learns, in batches, into the same firewall.
    pub batcher: Arc<Batcher>,
    pub policy: Arc<PolicyCell>,
    pub shared: Arc<Shared>,
    /// Fixed for the agent's life.
    pub upstreams: Vec<IpAddr>,
    pub interfaces: Interfaces,
    /// Every policy's `host`: the Podman host's addresses and networks the
    /// launcher handed over, and the uplink's gateways.
    pub host: Vec<IpNet>,
    /// The credentials' placeholders, fixed for the agent's life.
    pub placeholders: Vec<(String, Vec<u8>)>,
    pub state_file: PathBuf,
    /// Starts the name check when a reload turns it on.
    pub start_name_check: Box<dyn Fn() -> anyhow::Result<()> + Send + Sync>,
    current: Mutex<Current>,
}

struct Current {
    profile: Profile,
    /// What the last reload left (`None`: none yet, generation 0).
    persisted: Option<Persisted>,
    name_check: bool,
}

impl Current {
    fn generation(&self) -> u16 {
        self.persisted.as_ref().map_or(0, |p| p.generation)
    }
}

/// The policy of `profile` in this sentry: with the Podman host's
/// addresses and networks (`Policy::host`) and the credentials'
/// placeholders.
pub fn sentry_policy(
    profile: &Profile,
    host: &[IpNet],
    placeholders: &[(String, Vec<u8>)],
) -> Policy {
    let mut policy = Policy::from_profile(profile);
    policy.host = host.to_vec();
    policy.placeholders = placeholders.to_vec();
    policy
}

impl Enforcer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        firewall: Arc<Mutex<Firewall>>,
        policy: Arc<PolicyCell>,
        shared: Arc<Shared>,
        upstreams: Vec<IpAddr>,
        interfaces: Interfaces,
        host: Vec<IpNet>,
        placeholders: Vec<(String, Vec<u8>)>,
        profile: Profile,
        persisted: Option<Persisted>,
        state_file: PathBuf,
        name_check: bool,
        start_name_check: Box<dyn Fn() -> anyhow::Result<()> + Send + Sync>,
    ) -> Enforcer {
        let current = Current {
            profile,
            persisted,
            name_check,
        };
        let reloads = current.persisted.as_ref().map_or(0, |p| p.reloads);
        shared.set_generation(current.generation(), reloads);
        Enforcer {
            batcher: Arc::new(Batcher::new(firewall.clone(), policy.clone())),
            firewall,
            policy,
            shared,
            upstreams,
            interfaces,
            host,
            placeholders,
            state_file,
            start_name_check,
            current: Mutex::new(current),
        }
    }

    /// The policy of `profile` in this sentry.
    pub fn policy_of(&self, profile: &Profile) -> Policy {
        sentry_policy(profile, &self.host, &self.placeholders)
    }

    /// The whole ruleset of `policy` in `generation`.
    pub fn ruleset(&self, policy: &Policy, generation: u16) -> Ruleset {
        let mut input = FirewallInput::new(policy, self.upstreams.clone(), self.interfaces.clone());
        input.generation = generation;
        Ruleset::build(&input)
    }

    /// Applies the profile `text`, all or nothing.
    pub fn reload(&self, text: &str) -> Outcome {
        let new = match Profile::parse(text, Path::new("the reloaded profile")) {
            Ok(p) => p,
            Err(e) => return Outcome::Refused(e.to_string()),
        };
        let mut firewall = self.firewall.lock().unwrap();
        let mut current = self.current.lock().unwrap();
        let fields = current.profile.restart_fields(&new);
        if !fields.is_empty() {
            return Outcome::NeedsRestart(fields.iter().map(|f| f.to_string()).collect());
        }
        let old = self.policy.get();
        let policy = self.policy_of(&new);
        let generation = if takes_away(&old, &policy) {
            current.generation().wrapping_add(1)
        } else {
            current.generation()
        };
        if policy.binds_names() && !current.name_check {
            if let Err(e) = (self.start_name_check)() {
                return Outcome::Failed(format!("cannot start the name check: {e:#}"));
            }
            current.name_check = true;
        }
        let plan = self
            .shared
            .reload_plan(|addr, name| match policy.verdict(name) {
                Verdict::Forward { grant: Some(ports) } if policy.may_learn(addr) => Some(ports),
                _ => None,
            });
        let mut rs = self.ruleset(&policy, generation);
        rs.fill(elements(&plan.relearn, Target::Learned));
        let intercepted: Vec<Learn> = plan
            .relearn
            .iter()
            .filter(|l| {
                // A ruled host's address stays the proxy's even if another
                // name answered it last (a shared address).
                self.shared
                    .learned_record(l.addr)
                    .is_some_and(|r| policy.intercepts(&r.name))
                    || (!policy.requests.is_empty() && self.shared.is_ruled(l.addr))
            })
            .cloned()
            .collect();
        rs.fill(elements(&intercepted, Target::Intercepted));
        if generation != current.generation() {
            rs.fill(elements(&plan.kept, Target::Kept));
        }
        let mut persisted = Persisted {
            generation,
            reloads: current.persisted.as_ref().map_or(0, |p| p.reloads) + 1,
            profile: text.to_string(),
            installing: true,
        };
        if let Err(e) = store_state(&self.state_file, Some(&persisted)) {
            return Outcome::Failed(format!(
                "cannot keep the new policy at {}: {e}",
                self.state_file.display()
            ));
        }
        if let Err(e) = firewall.install(&rs) {
            if let Err(undo) = store_state(&self.state_file, current.persisted.as_ref()) {
                tracing::error!(%undo, "cannot put the previous policy back in its file");
            }
            return Outcome::Failed(format!("the kernel refused the new ruleset: {e}"));
        }
        persisted.installing = false;
        if let Err(e) = store_state(&self.state_file, Some(&persisted)) {
            // The new policy is in force and written down; only a restart
            // would carry nothing over.
            tracing::warn!(
                "cannot mark the reload done in {}: {e}",
                self.state_file.display()
            );
        }
        let summary = Summary {
            added: rules_diff(&policy, &old),
            removed: rules_diff(&old, &policy),
            kept_open: plan.relearn.len(),
            closed: plan.revoked.len(),
            generation,
        };
        self.policy.set(policy);
        self.shared.reloaded(&plan);
        self.shared.set_generation(generation, persisted.reloads);
        current.profile = new;
        current.persisted = Some(persisted);
        tracing::info!(?summary, "reloaded");
        Outcome::Reloaded(summary)
    }
}

/// Why fields that changed need a restart, in words.
pub fn needs_restart(fields: &[String]) -> String {
    format!(
        "{} changed, and a reload applies only {}",
        fields.join(", "),
        Profile::RELOADABLE
    )
}

/// Domain rules and CIDRs of `a` that `b` lacks, as the profile writes them.
fn rules_diff(a: &Policy, b: &Policy) -> Vec<String> {
    let domains = a
        .domains
        .iter()
        .filter(|r| !b.domains.contains(r))
        .map(|r| r.to_string());
    let cidrs = a
        .cidrs
        .iter()
        .filter(|c| !b.cidrs.contains(c))
        .map(|c| c.to_string());
    domains.chain(cidrs).collect()
}

/// Whether going from `old` to `new` may close a connection `old` allowed:
/// a domain rule or CIDR gone (a rule whose ports changed is gone too), or
/// another access mode.
fn takes_away(old: &Policy, new: &Policy) -> bool {
    old.access != new.access || !rules_diff(old, new).is_empty()
}

#[async_trait::async_trait]
impl Learner for Enforcer {
    async fn learn(&self, qname: &str, items: Vec<Learn>, then: Then) -> Result<(), FirewallError> {
        self.batcher.learn(qname, items, then).await
    }
}

/// Binds the reload socket: each client sends a profile's text, closes its
/// side, and reads back one JSON `Outcome`.
pub fn serve(path: &Path, enforcer: Arc<Enforcer>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = bind_socket(path)?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let enforcer = enforcer.clone();
            tokio::spawn(async move {
                let mut text = String::new();
                let read = (&mut stream)
                    .take(MAX_PROFILE)
                    .read_to_string(&mut text)
                    .await;
                let outcome = match read {
                    Err(e) => Outcome::Refused(format!("the profile is not UTF-8 text: {e}")),
                    Ok(_) => tokio::task::spawn_blocking(move || enforcer.reload(&text))
                        .await
                        .unwrap_or_else(|e| Outcome::Failed(format!("the reload crashed: {e}"))),
                };
                let body = serde_json::to_vec(&outcome).unwrap_or_default();
                let _ = stream.write_all(&body).await;
            });
        }
    }))
}

/// Sends `text` to the running agent's reload socket and waits for what it did.
pub fn send(control: &Path, text: &str) -> Result<Outcome, String> {
    let path = socket_path(control);
    let mut stream = UnixStream::connect(&path).map_err(|e| {
        format!(
            "rbm-agent is not running here (no reload socket at {}: {e})",
            path.display()
        )
    })?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(text.as_bytes())
        .and_then(|_| stream.shutdown(std::net::Shutdown::Write))
        .map_err(|e| format!("cannot send the profile to the agent: {e}"))?;
    let mut body = Vec::new();
    stream
        .read_to_end(&mut body)
        .map_err(|e| format!("no answer from the agent: {e}"))?;
    serde_json::from_slice(&body).map_err(|e| format!("the agent's answer was not understood: {e}"))
}

/// What `rbm-agent reload --json` prints: the outcome in one word
/// (`reloaded`, `refused`, `needs_restart`, `failed`), what a person reads,
/// the fields that need a restart, what changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub outcome: String,
    pub message: String,
    pub fields: Vec<String>,
    pub summary: Option<Summary>,
}

impl Reply {
    pub fn of(outcome: &Outcome) -> Reply {
        let (word, fields, summary) = match outcome {
            Outcome::Reloaded(s) => ("reloaded", vec![], Some(s.clone())),
            Outcome::Refused(_) => ("refused", vec![], None),
            Outcome::NeedsRestart(f) => ("needs_restart", f.clone(), None),
            Outcome::Failed(_) => ("failed", vec![], None),
        };
        Reply {
            outcome: word.into(),
            message: render(outcome).trim_end().to_string(),
            fields,
            summary,
        }
    }
}

/// What `rbm-agent reload` prints for `outcome`.
pub fn render(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Reloaded(s) => {
            let list = |v: &[String]| if v.is_empty() { "nothing".to_string() } else { v.join(", ") };
            format!(
                "reloaded: added {}; removed {}; {} learned address(es) stay open, {} closed with their connections (generation {})\n",
                list(&s.added),
                list(&s.removed),
                s.kept_open,
                s.closed,
                s.generation
            )
        }
        Outcome::Refused(m) => format!("reload refused, nothing changed: {m}\n"),
        Outcome::NeedsRestart(fields) => format!(
            "reload refused, nothing changed: {}; fix: start the pair anew with `rbm-launch up` and the profile (the bottle restarts), or undo the change\n",
            needs_restart(fields)
        ),
        Outcome::Failed(m) => format!("reload failed, nothing changed: {m}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::wire::Request;
    use crate::firewall::{RuleCounter, Transport};
    use crate::profile::Ports;
    use std::time::Instant;

    /// Takes every batch, or refuses every batch; `peek`: the state file,
    /// read as each batch goes in.
    struct Kernel {
        refuse: bool,
        peek: Option<(PathBuf, Arc<Mutex<Vec<bool>>>)>,
    }

    impl Transport for Kernel {
        fn apply(&mut self, _: &[Request]) -> Result<(), FirewallError> {
            if let Some((path, seen)) = &self.peek {
                let installing = load_state(path).unwrap().is_some_and(|p| p.installing);
                seen.lock().unwrap().push(installing);
            }
            if self.refuse {
                Err(FirewallError::Unanswered(1))
            } else {
                Ok(())
            }
        }
        fn dump_rules(&mut self, _: &str) -> Result<Vec<RuleCounter>, FirewallError> {
            Ok(vec![])
        }
    }

    fn text(domains: &str, image: &str) -> String {
        format!("moniker = \"tt\"\n[bottle]\nimage = \"{image}\"\n[enclave]\nsubnet = \"10.242.0.0/24\"\nsentry_ip = \"10.242.0.2\"\nbottle_ip = \"10.242.0.3\"\n[uplink]\ndns = \"allowlist\"\naccess = \"allowlist\"\ndomains = [{domains}]\nupstream_dns = [\"192.0.2.53\"]\n")
    }

    fn enforcer(dir: &Path, refuse: bool) -> Enforcer {
        let first = text("\"a.test\", \"b.test\"", "i");
        let profile = Profile::parse(&first, Path::new("t")).unwrap();
        let policy = Arc::new(PolicyCell::new(Policy::from_profile(&profile)));
        Enforcer::new(
            Arc::new(Mutex::new(Firewall::new(Box::new(Kernel {
                refuse,
                peek: None,
            })))),
            policy,
            Arc::new(Shared::default()),
            vec!["192.0.2.53".parse().unwrap()],
            Interfaces {
                enclave: "eth1".into(),
                uplink: "eth0".into(),
            },
            vec![],
            vec![],
            profile,
            None,
            dir.join("agent.policy"),
            false,
            Box::new(|| Ok(())),
        )
    }

    async fn learn(e: &Enforcer, name: &str, addr: &str) {
        let item = Learn {
            addr: addr.parse().unwrap(),
            ports: Ports::All,
            timeout: Duration::from_secs(60),
        };
        let (shared, owned) = (e.shared.clone(), name.to_string());
        let record = move |items: &[Learn]| shared.record_learned(&owned, items, Instant::now());
        e.learn(name, vec![item], Box::new(record)).await.unwrap();
    }

    #[tokio::test]
    async fn a_reload_keeps_what_kept_names_opened_and_closes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let e = enforcer(dir.path(), false);
        learn(&e, "a.test", "198.51.100.1").await;
        learn(&e, "b.test", "198.51.100.2").await;
        let Outcome::Reloaded(summary) = e.reload(&text("\"b.test\", \"c.test\"", "i")) else {
            panic!("not reloaded")
        };
        assert_eq!(summary.added, ["c.test"]);
        assert_eq!(summary.removed, ["a.test"]);
        assert_eq!((summary.kept_open, summary.closed), (1, 1));
        assert_eq!(summary.generation, 1, "something was taken away");
        assert_eq!(e.shared.learned().len(), 1);
        let a = e
            .shared
            .learned_record("198.51.100.1".parse().unwrap())
            .unwrap();
        assert!(a.revoked && a.expires <= Instant::now());
        let kept = load_state(&e.state_file).unwrap().unwrap();
        assert_eq!((kept.generation, kept.reloads), (1, 1));
        // Only adding starts no new generation.
        let Outcome::Reloaded(summary) = e.reload(&text("\"b.test\", \"c.test\", \"d.test\"", "i"))
        else {
            panic!("not reloaded")
        };
        assert_eq!(summary.generation, 1);
        assert_eq!(e.shared.generation(), (1, 2));
    }

    #[tokio::test]
    async fn an_answer_resolved_before_a_reload_cannot_open_what_it_took_away() {
        let dir = tempfile::tempdir().unwrap();
        let e = enforcer(dir.path(), false);
        e.reload(&text("\"b.test\"", "i"));
        let item = Learn {
            addr: "198.51.100.1".parse().unwrap(),
            ports: Ports::All,
            timeout: Duration::from_secs(60),
        };
        let never = Box::new(|_: &[Learn]| panic!("must not record"));
        let result = e.learn("a.test", vec![item], never).await;
        assert!(matches!(result, Err(FirewallError::PolicyChanged(_))));
    }

    #[test]
    fn a_reload_is_marked_in_progress_while_its_table_goes_in() {
        let dir = tempfile::tempdir().unwrap();
        let mut e = enforcer(dir.path(), false);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let peek = Some((e.state_file.clone(), Arc::clone(&seen)));
        e.firewall = Arc::new(Mutex::new(Firewall::new(Box::new(Kernel {
            refuse: false,
            peek,
        }))));
        assert!(matches!(
            e.reload(&text("\"b.test\"", "i")),
            Outcome::Reloaded(_)
        ));
        assert_eq!(
            *seen.lock().unwrap(),
            [true],
            "an agent dying here carries nothing"
        );
        let after = load_state(&e.state_file).unwrap().unwrap();
        assert!(!after.installing, "done");
    }

    #[test]
    fn restart_fields_and_kernel_refusals_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let e = enforcer(dir.path(), false);
        assert_eq!(
            e.reload(&text("\"a.test\"", "other")),
            Outcome::NeedsRestart(vec!["bottle.image".into()])
        );
        assert!(matches!(e.reload("moniker = 1"), Outcome::Refused(_)));
        assert!(load_state(&e.state_file).unwrap().is_none());

        let e = enforcer(dir.path(), true);
        assert!(matches!(
            e.reload(&text("\"a.test\"", "i")),
            Outcome::Failed(_)
        ));
        assert!(
            load_state(&e.state_file).unwrap().is_none(),
            "a restarted agent must not start from a policy the kernel refused"
        );
        assert_eq!(e.policy.get().domains.len(), 2, "the old policy stays");
    }
}
