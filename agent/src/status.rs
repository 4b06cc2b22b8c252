//! The control socket: the running agent answers each connection with one
//! JSON status report; `rbm-agent status` reads it and prints it for a human
//! (or as JSON).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;

use crate::firewall::ruleset::{Interfaces, LEARNED_MAX};
use crate::firewall::{Firewall, RuleCounter};
use crate::policy::PolicyCell;
use crate::profile::Mode;
use crate::shown::{self, shown, shown_or};
use crate::state::{Denied, DnsCounts, LearnedView, NameCounts, NameDenial, Shared};

pub const DEFAULT_SOCKET: &str = "/run/rbm/agent.sock";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Packets the forward chain let out of the enclave (or in, for entries).
    pub accepted: u64,
    /// Packets dropped by any rbm chain.
    pub dropped: u64,
    pub rules: Vec<RuleCounter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub ready: bool,
    pub dns_mode: Mode,
    pub access_mode: Mode,
    pub interfaces: Option<Interfaces>,
    pub sentry_ip: Ipv4Addr,
    pub bottle_ip: Ipv4Addr,
    pub upstream_dns: Vec<IpAddr>,
    pub domains: Vec<String>,
    pub cidrs: Vec<String>,
    pub counters: Option<Counters>,
    pub dns: DnsCounts,
    pub learned: Vec<LearnedView>,
    /// Answers that got SERVFAIL because a learned set was full
    /// (`LEARNED_MAX` addresses).
    #[serde(default)]
    pub learned_full: u64,
    /// Of the learned, how many are open past their TTL because
    /// connections use them (`crate::inuse`).
    #[serde(default)]
    pub in_use: usize,
    pub refused_names: Vec<String>,
    /// Whether connections must show an allowed name on the wire.
    #[serde(default)]
    pub name_binding: bool,
    #[serde(default)]
    pub names: NameCounts,
    /// The latest connections the name check refused, oldest first.
    #[serde(default)]
    pub name_denials: Vec<NameDenial>,
    /// The latest of everything refused (dropped packets with their reason,
    /// name-check denials), oldest first.
    #[serde(default)]
    pub denied: Vec<Denied>,
    /// How many were refused in all since the agent started.
    #[serde(default)]
    pub denied_total: u64,
    /// Every name refused since the agent started, counted, most refused
    /// first (`rbm-launch suggest` reads it).
    #[serde(default)]
    pub refusals: Vec<crate::state::tally::Refusal>,
    /// Refusals of names beyond the ones counted one by one.
    #[serde(default)]
    pub refusals_overflow: u64,
    /// How often the sentry's supervisor restarted the agent.
    #[serde(default)]
    pub restarts: u64,
    /// How often the policy was reloaded since the sentry started.
    #[serde(default)]
    pub reloads: u64,
    /// The policy's generation: connections of an older one are checked
    /// again on their next packet.
    #[serde(default)]
    pub generation: u16,
}

/// Everything the control socket reports from.
pub struct StatusSource {
    pub restarts: u64,
    pub shared: Arc<Shared>,
    pub policy: Arc<PolicyCell>,
    pub firewall: Arc<Mutex<Firewall>>,
    pub interfaces: Interfaces,
    pub upstream_dns: Vec<IpAddr>,
}

impl StatusSource {
    pub fn report(&self) -> StatusReport {
        let counters = match self.firewall.lock().unwrap().counters() {
            Ok(rules) => Some(summarize(rules)),
            Err(e) => {
                tracing::warn!("cannot read rule counters: {e}");
                None
            }
        };
        let denied = self.shared.denied();
        let (refusals, refusals_overflow) = self.shared.refusals();
        let policy = self.policy.get();
        let (generation, reloads) = self.shared.generation();
        StatusReport {
            ready: self.shared.is_ready(),
            dns_mode: policy.dns,
            access_mode: policy.access,
            interfaces: Some(self.interfaces.clone()),
            sentry_ip: policy.enclave.sentry_ip,
            bottle_ip: policy.enclave.bottle_ip,
            upstream_dns: self.upstream_dns.clone(),
            domains: policy.domains.iter().map(|d| d.to_string()).collect(),
            cidrs: policy.cidrs.iter().map(|c| c.to_string()).collect(),
            counters,
            dns: self.shared.dns_counts(),
            learned: self.shared.learned(),
            learned_full: self.shared.learned_full(),
            in_use: self.shared.in_use(),
            refused_names: self.shared.refused_names(),
            name_binding: policy.binds_names(),
            names: self.shared.name_counts(),
            name_denials: self.shared.name_denials(),
            denied: denied.0,
            denied_total: denied.1,
            refusals,
            refusals_overflow,
            restarts: self.restarts,
            reloads,
            generation,
        }
    }
}

fn summarize(rules: Vec<RuleCounter>) -> Counters {
    let sum =
        |f: &dyn Fn(&RuleCounter) -> bool| rules.iter().filter(|r| f(r)).map(|r| r.packets).sum();
    Counters {
        accepted: sum(&|r| r.chain == "forward" && r.comment.starts_with("accept:")),
        dropped: sum(&|r| r.comment.starts_with("drop:")),
        rules: rules.clone(),
    }
}

/// Binds a Unix socket at `path`, creating its directory and replacing a
/// stale socket a previous agent left.
pub fn bind_socket(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path)
}

/// Binds the control socket (replacing a stale one) and serves reports.
pub fn serve(
    path: &Path,
    source: Arc<StatusSource>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = bind_socket(path)?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let source = source.clone();
            tokio::spawn(async move {
                let report = tokio::task::spawn_blocking(move || source.report()).await;
                if let Ok(report) = report {
                    let body = shown::json(serde_json::to_string(&report).unwrap_or_default());
                    let _ = stream.write_all(body.as_bytes()).await;
                }
            });
        }
    }))
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("rbm-agent is not running here (no control socket at {path}: {source})")]
    NotRunning {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the agent's answer on {path} was not a status report: {message}")]
    BadReply { path: PathBuf, message: String },
}

/// Asks the running agent for its report.
pub fn query(path: &Path) -> Result<StatusReport, StatusError> {
    let not_running = |source| StatusError::NotRunning {
        path: path.to_path_buf(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(not_running)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(not_running)?;
    let _ = stream.flush();
    let mut body = Vec::new();
    stream.read_to_end(&mut body).map_err(not_running)?;
    serde_json::from_slice(&body).map_err(|e| StatusError::BadReply {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The human summary.
pub fn render(r: &StatusReport) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!(
        "rbm sentry: {}",
        if r.ready {
            "READY (filter in force)"
        } else {
            "NOT READY"
        }
    ));
    line(format!(
        "  mode:        dns={} access={}",
        r.dns_mode.as_str(),
        r.access_mode.as_str()
    ));
    if let Some(i) = &r.interfaces {
        line(format!(
            "  interfaces:  enclave {} ({}), uplink {}",
            i.enclave, r.sentry_ip, i.uplink
        ));
    }
    line(format!("  bottle:      {}", r.bottle_ip));
    if r.restarts > 0 {
        line(format!(
            "  restarts:    {} (the agent died and was started again)",
            r.restarts
        ));
    }
    if r.reloads > 0 {
        line(format!(
            "  reloads:     {} (policy generation {})",
            r.reloads, r.generation
        ));
    }
    line(format!("  upstream:    {}", join(r.upstream_dns.iter())));
    line(format!("  domains:     {}", join(r.domains.iter())));
    line(format!("  cidrs:       {}", join(r.cidrs.iter())));
    match &r.counters {
        Some(c) => line(format!(
            "  packets:     {} accepted, {} dropped",
            c.accepted, c.dropped
        )),
        None => line("  packets:     (counters unavailable)".to_string()),
    }
    line(format!(
        "  dns queries: {} allowed ({} from the cache), {} refused, {} failed",
        r.dns.allowed, r.dns.cached, r.dns.refused, r.dns.failed
    ));
    line(format!("  learned:     {}", r.learned.len()));
    if r.in_use > 0 {
        line(format!(
            "  in use:      {} kept open past their TTL while connections use them, {} s after the last",
            r.in_use,
            crate::inuse::GRACE.as_secs()
        ));
    }
    if r.learned_full > 0 {
        line(format!(
            "  FULL:        {} answers got SERVFAIL: a learned set holds {} addresses already",
            r.learned_full, LEARNED_MAX
        ));
    }
    for l in &r.learned {
        let ports = match &l.ports {
            None => "all ports".to_string(),
            Some(p) => format!("ports {}", join(p.iter())),
        };
        line(format!(
            "    {:<40} {:<30} {:<14} {}s left{}",
            l.addr,
            shown(&l.name),
            ports,
            l.expires_in_secs,
            if l.in_use { " (in use)" } else { "" }
        ));
    }
    line(format!(
        "  refused:     {}",
        join(r.refused_names.iter().rev().map(|n| shown(n)))
    ));
    if r.name_binding {
        line(format!(
            "  names:       {} connections allowed, {} denied on the wire",
            r.names.allowed, r.names.denied
        ));
        for d in r.name_denials.iter().rev() {
            line(format!(
                "    {} {:<28} {:<30} {}",
                shown(&d.proto),
                d.dst,
                shown_or(d.name.as_deref(), "(no name)"),
                shown(&d.reason)
            ));
        }
    } else {
        line("  names:       not checked (uplink.name_binding = false)".to_string());
    }
    line(format!(
        "  denied:      {} in all; the latest:",
        r.denied_total
    ));
    for d in r.denied.iter().rev().take(10) {
        line(format!("    {}", crate::denylog::watch::render(d)));
    }
    out
}

fn join<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let v: Vec<String> = items.map(|i| i.to_string()).collect();
    if v.is_empty() {
        "-".to_string()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rc(chain: &str, comment: &str, packets: u64) -> RuleCounter {
        RuleCounter {
            chain: chain.into(),
            comment: comment.into(),
            packets,
            bytes: 0,
        }
    }

    #[test]
    fn counters_sum_forward_accepts_and_all_drops() {
        let c = summarize(vec![
            rc("forward", "accept:learned4", 5),
            rc("forward", "drop:forward", 2),
            rc("input", "accept:dns-udp", 7),
            rc("input", "drop:input", 1),
        ]);
        assert_eq!((c.accepted, c.dropped), (5, 3));
    }

    fn report() -> StatusReport {
        StatusReport {
            ready: true,
            dns_mode: Mode::Allowlist,
            access_mode: Mode::Allowlist,
            interfaces: Some(Interfaces {
                enclave: "eth1".into(),
                uplink: "eth0".into(),
            }),
            sentry_ip: "10.242.0.2".parse().unwrap(),
            bottle_ip: "10.242.0.3".parse().unwrap(),
            upstream_dns: vec![],
            domains: vec!["a.test".into()],
            cidrs: vec![],
            counters: None,
            dns: DnsCounts {
                allowed: 1,
                refused: 1,
                failed: 0,
                cached: 0,
            },
            learned: vec![LearnedView {
                addr: "198.51.100.10".parse().unwrap(),
                name: "a.test".into(),
                ports: None,
                expires_in_secs: 29,
                in_use: true,
            }],
            learned_full: 2,
            in_use: 1,
            refused_names: vec!["evil.test".into()],
            name_binding: true,
            names: NameCounts {
                allowed: 3,
                denied: 1,
            },
            name_denials: vec![NameDenial {
                at: 0,
                proto: "tcp".into(),
                dst: "198.51.100.10:443".parse().unwrap(),
                name: Some("fronted.test".into()),
                reason: "TLS name fronted.test is not allowed".into(),
            }],
            denied: vec![Denied {
                at: 0,
                kind: "connection".into(),
                proto: Some("udp".into()),
                dst: Some("198.51.100.20:53".parse().unwrap()),
                name: None,
                reason: "never resolved".into(),
            }],
            denied_total: 7,
            refusals: vec![],
            refusals_overflow: 0,
            restarts: 2,
            reloads: 1,
            generation: 1,
        }
    }

    #[test]
    fn render_shows_learned_and_refused() {
        let r = report();
        let text = render(&r);
        assert!(text.contains("READY"));
        assert!(
            text.contains("198.51.100.10") && text.contains("a.test") && text.contains("29s left")
        );
        assert!(text.contains("refused:     evil.test"));
        assert!(text.contains("FULL:        2 answers got SERVFAIL"));
        assert!(text.contains("in use:      1 kept open") && text.contains("29s left (in use)"));
        assert!(text.contains("3 connections allowed, 1 denied"));
        assert!(text.contains("fronted.test") && text.contains("198.51.100.10:443"));
        assert!(text.contains("7 in all") && text.contains("udp 198.51.100.20:53"));
        assert!(text.contains("restarts:    2"));
        assert!(text.contains("reloads:     1 (policy generation 1)"));
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<StatusReport>(&json).unwrap(), r);
    }

    #[test]
    fn names_from_the_bottle_reach_the_terminal_escaped() {
        // An SNI, a Host or a DNS question is the bottle's to choose: raw,
        // "\x1b[2J" would clear the operator's screen and "\r" rewrite a line.
        let evil = "a.test\x1b[2J\rok\u{9b}1m\x7f";
        let mut r = report();
        r.learned[0].name = evil.into();
        r.refused_names = vec![evil.into()];
        r.name_denials[0].name = Some(evil.into());
        r.name_denials[0].reason = format!("TLS name {evil} is not allowed");
        r.denied[0].name = Some(evil.into());
        r.denied[0].reason = format!("expired 1 s ago ({evil})");
        let text = render(&r);
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert_eq!(
            text.matches(r"a.test\u{1b}[2J\rok\u{9b}1m\u{7f}").count(),
            6
        );
        let json = shown::json(serde_json::to_string_pretty(&r).unwrap());
        assert!(!json.chars().any(|c| c.is_control() && c != '\n'), "{json}");
        assert_eq!(serde_json::from_str::<StatusReport>(&json).unwrap(), r);
    }

    #[test]
    fn query_without_agent_says_not_running() {
        let err = query(Path::new("/nonexistent/rbm.sock"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not running"), "{err}");
    }
}
