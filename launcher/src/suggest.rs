//! `rbm-launch suggest`: the domain lines that what the sentry refused
//! would need, read from `rbm-agent status --json`, most refused first,
//! ready to paste into `uplink.domains` or to hand to `rbm-launch allow`.
//!
//! Every name here is the bottle's choice (a DNS question, a TLS SNI, an
//! HTTP Host): hostile. Only a plain DNS name is proposed, and it is
//! written by a TOML encoder; anything else is counted, never shown (see
//! `proposable`). A hostile bottle also chooses what it asks for, so the
//! list is a proposal to read, never a policy to take as it is.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use rbm_launch::lookup::{owner_of, Loaded, Places};
use rbm_launch::podman::{args, Podman};
use rbm_launch::{launch, Error};
use rbm_profile::{normalize, DomainRule, Ports};
use serde_json::Value;

/// A name to propose, with what was refused of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub name: String,
    /// Refusals on the wire (name check, a port the name does not open)
    /// by `proto port`, that the profile does not allow yet.
    pub wire: BTreeMap<(String, u16), u64>,
    /// Refused by the DNS proxy (a question carries no port).
    pub dns: bool,
    /// The latest refusal on the wire (seconds since the epoch), and the
    /// place of the name among the DNS refusals (later: higher).
    latest: u64,
    dns_rank: usize,
    /// How often DNS refused it, where the agent counts (else 0).
    dns_count: u64,
}

impl Proposal {
    /// How often it was refused on the wire.
    pub fn count(&self) -> u64 {
        self.wire.values().sum()
    }

    /// The rule that lifts these refusals: the name on the ports it was
    /// refused on; refused by DNS alone, on all ports (nothing says which).
    pub fn rule(&self) -> DomainRule {
        let ports: BTreeSet<u16> = self.wire.keys().map(|(_, port)| *port).collect();
        DomainRule {
            name: self.name.clone(),
            wildcard: false,
            ports: if ports.is_empty() {
                Ports::All
            } else {
                Ports::Only(ports)
            },
        }
    }

    /// The comment beside its line.
    fn why(&self) -> String {
        let n = self.count();
        let on: Vec<String> = self
            .wire
            .keys()
            .map(|(proto, port)| format!("{proto} {port}"))
            .collect();
        match (n, self.dns) {
            (0, _) => "refused by DNS; no port seen, so all ports (add :443 to narrow it)".into(),
            (n, dns) => format!(
                "refused {n} time{} ({}){}",
                if n == 1 { "" } else { "s" },
                on.join(", "),
                if dns { ", and by DNS" } else { "" }
            ),
        }
    }
}

/// What the refusals the sentry keeps would need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Suggestions {
    /// Most refused first.
    pub proposals: Vec<Proposal>,
    /// Refusals without a name (by address): a domain line cannot lift them.
    pub by_address: u64,
    /// Names that are not plain DNS names (never shown).
    pub not_names: usize,
    /// Refusals of names the profile allows on that port already (an
    /// expired answer, a change not reloaded yet) or without a port (ICMP).
    pub lifted: u64,
    /// What the counts cover: refusals on the wire kept and in all, names
    /// DNS refused kept, and DNS refusals in all.
    pub kept: (usize, u64, usize, u64),
    /// The counts are the agent's of every name refused since it started,
    /// with this many refusals of names beyond the ones it counts.
    pub since_start: Option<u64>,
}

/// A refused name as it may be proposed, if it is a plain DNS name: the
/// bottle chose its bytes, so only ASCII letters, digits, `-`, `_` and
/// dots pass. A `*` would widen it to a wildcard and a `:` add ports once
/// pasted; quotes, backslashes and control characters would break out of
/// the TOML string or reach the terminal. An address (`10.0.0.1` as an
/// SNI) is no name a DNS question would match.
pub fn proposable(raw: &str) -> Option<String> {
    let name = normalize(raw);
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if !plain || name.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    let rule = DomainRule::parse(&name).ok()?;
    (!rule.wildcard && rule.ports == Ports::All && rule.name == name).then_some(name)
}

/// Whether the profile's entries open `name` (on `port`, if one).
fn allowed(domains: &[DomainRule], name: &str, port: Option<u16>) -> bool {
    domains.iter().any(|d| {
        d.matches(name)
            && match (&d.ports, port) {
                (Ports::All, _) | (_, None) => true,
                (Ports::Only(p), Some(port)) => p.contains(&port),
            }
    })
}

/// The refusals on the wire in `status`: the `denied` list (connections
/// and name checks), with the name checks from `name_denials` instead
/// when that list holds more of them (both keep the latest of the same
/// name-check refusals, each up to its own bound).
fn wire_refusals(status: &Value) -> Vec<&Value> {
    let list = |key| status[key].as_array().map_or(&[][..], Vec::as_slice);
    let denied = list("denied");
    let names = list("name_denials");
    let named_in_denied = denied.iter().filter(|d| d["kind"] == "name").count();
    if names.len() > named_in_denied {
        denied
            .iter()
            .filter(|d| d["kind"] != "name")
            .chain(names)
            .collect()
    } else {
        denied.iter().collect()
    }
}

/// The proposals from the agent's count of every name refused since it
/// started (`refusals`): each name with the ports it was refused on, and
/// whether DNS refused it; a name the profile allows there already is
/// lifted.
fn from_tally(
    tally: &[Value],
    domains: &[DomainRule],
    s: &mut Suggestions,
    found: &mut BTreeMap<String, Proposal>,
    not_names: &mut BTreeSet<String>,
) {
    for (rank, r) in tally.iter().rev().enumerate() {
        let Some(raw) = r["name"].as_str() else {
            continue;
        };
        let Some(name) = proposable(raw) else {
            not_names.insert(raw.to_string());
            continue;
        };
        let dns = r["dns"].as_u64().unwrap_or(0);
        let mut wire = BTreeMap::new();
        for (key, n) in r["wire"].as_object().into_iter().flatten() {
            let n = n.as_u64().unwrap_or(0);
            match key
                .split_once(' ')
                .map(|(p, port)| (p, port.parse::<u16>()))
            {
                Some((proto @ ("tcp" | "udp"), Ok(port)))
                    if !allowed(domains, &name, Some(port)) =>
                {
                    wire.insert((proto.to_string(), port), n);
                }
                _ => s.lifted += n,
            }
        }
        let dns_wanted = dns > 0 && !allowed(domains, &name, None);
        if !dns_wanted {
            s.lifted += if allowed(domains, &name, None) {
                dns
            } else {
                0
            };
        }
        if wire.is_empty() && !dns_wanted {
            continue;
        }
        found.insert(
            name.clone(),
            Proposal {
                name,
                wire,
                dns: dns_wanted,
                latest: 0,
                dns_rank: if dns_wanted { rank + 1 } else { 0 },
                dns_count: if dns_wanted { dns } else { 0 },
            },
        );
    }
}

/// The proposals for `status` (`rbm-agent status --json`) against the
/// profile's `domains`: names refused that they do not allow yet.
pub fn from_status(status: &Value, domains: &[DomainRule]) -> Suggestions {
    let mut s = Suggestions::default();
    let mut found: BTreeMap<String, Proposal> = BTreeMap::new();
    let mut not_names = BTreeSet::new();
    fn proposal(found: &mut BTreeMap<String, Proposal>, name: String) -> &mut Proposal {
        found.entry(name.clone()).or_insert(Proposal {
            name,
            wire: BTreeMap::new(),
            dns: false,
            latest: 0,
            dns_rank: 0,
            dns_count: 0,
        })
    }
    let wire = wire_refusals(status);
    if let Some(tally) = status["refusals"].as_array() {
        // The agent counts every name refused since it started: from there.
        s.by_address = wire.iter().filter(|d| d["name"].is_null()).count() as u64;
        s.since_start = Some(status["refusals_overflow"].as_u64().unwrap_or(0));
        from_tally(tally, domains, &mut s, &mut found, &mut not_names);
    }
    for d in wire.iter().filter(|_| status["refusals"].is_null()) {
        let Some(raw) = d["name"].as_str() else {
            s.by_address += 1;
            continue;
        };
        let Some(name) = proposable(raw) else {
            not_names.insert(raw.to_string());
            continue;
        };
        let dst: Option<SocketAddr> = d["dst"].as_str().and_then(|a| a.parse().ok());
        let proto = d["proto"].as_str().unwrap_or_default();
        let port = dst.map(|a| a.port()).filter(|p| *p != 0);
        match port {
            Some(port)
                if (proto == "tcp" || proto == "udp") && !allowed(domains, &name, Some(port)) =>
            {
                let p = proposal(&mut found, name);
                *p.wire.entry((proto.to_string(), port)).or_default() += 1;
                p.latest = p.latest.max(d["at"].as_u64().unwrap_or(0));
            }
            _ => s.lifted += 1,
        }
    }
    let dns = status["refused_names"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let dns_listed = dns.iter().filter(|_| status["refusals"].is_null());
    for (rank, raw) in dns_listed.filter_map(Value::as_str).enumerate() {
        match proposable(raw) {
            None => {
                not_names.insert(raw.to_string());
            }
            Some(name) if !allowed(domains, &name, None) => {
                let p = proposal(&mut found, name);
                p.dns = true;
                p.dns_rank = rank + 1;
            }
            Some(_) => s.lifted += 1,
        }
    }
    s.not_names = not_names.len();
    s.kept = (
        wire.len(),
        status["denied_total"].as_u64().unwrap_or(0),
        dns.len(),
        status["dns"]["refused"].as_u64().unwrap_or(0),
    );
    let mut proposals: Vec<Proposal> = found.into_values().collect();
    proposals.sort_by(|a, b| {
        let (ta, tb) = (a.count() + a.dns_count, b.count() + b.dns_count);
        (tb, b.latest, b.dns_rank, &a.name).cmp(&(ta, a.latest, a.dns_rank, &b.name))
    });
    s.proposals = proposals;
    s
}

/// What the text says of where the suggestions go.
pub struct Target<'a> {
    /// The profile as the user named it, a shell word.
    pub arg: &'a str,
    /// The profile's file.
    pub file: &'a str,
    pub sentry: &'a str,
    /// Why `allow` would refuse this profile (one rbm ships), if it would.
    pub not_editable: Option<String>,
}

/// The suggestions as text: comments that say what they are and how to
/// apply them, then one line per name, each a TOML array entry with its
/// comment, so the whole text can be pasted into `domains = [ ... ]`.
pub fn render(s: &Suggestions, t: &Target) -> String {
    let (wire_kept, wire_all, dns_kept, dns_all) = s.kept;
    let names = if dns_kept == 1 { "name" } else { "names" };
    let mut out = match s.since_start {
        Some(beyond) => format!(
            "# Names the sentry {} refused since it started that {} does not allow, most refused first{}.\n",
            t.sentry,
            t.file,
            if beyond > 0 {
                format!(" ({beyond} refusals of names beyond the {} it counts are not)", "1024")
            } else {
                String::new()
            }
        ),
        None => format!(
            "# Names the sentry {} refused that {} does not allow, most refused first,\n\
             # counted over the refusals it keeps: the latest {wire_kept} of {wire_all} on the wire, \
             the latest {dns_kept} {names} of {dns_all} DNS refusals.\n",
            t.sentry, t.file
        ),
    };
    if s.proposals.is_empty() {
        out.push_str("# Nothing to propose.\n");
    } else {
        let rules: Vec<String> = s.proposals.iter().map(|p| p.rule().to_string()).collect();
        match &t.not_editable {
            None => out.push_str(&format!(
                "# Allow them all: rbm-launch allow {} {}\n# or paste these lines into its [uplink] domains:\n",
                t.arg,
                rules.join(" ")
            )),
            Some(why) => out.push_str(&format!(
                "# {}\n# Paste these lines into the copy's [uplink] domains:\n",
                why.replace(|c: char| c.is_control(), " ")
            )),
        }
        let entries: Vec<String> = rules
            .iter()
            .map(|r| format!("{},", toml_edit::Value::from(r.as_str())))
            .collect();
        let width = entries.iter().map(String::len).max().unwrap_or(0);
        for (entry, p) in entries.iter().zip(&s.proposals) {
            out.push_str(&format!("  {entry:width$}  # {}\n", p.why()));
        }
    }
    let mut left = Vec::new();
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    if s.by_address > 0 {
        left.push(format!(
            "{} by address only (no name: `cidrs` opens addresses)",
            plural(s.by_address, "refusal", "refusals")
        ));
    }
    if s.not_names > 0 {
        left.push(format!(
            "{} (see `rbm-launch watch`)",
            plural(
                s.not_names as u64,
                "name that is not a DNS name",
                "names that are not DNS names"
            )
        ));
    }
    if s.lifted > 0 {
        left.push(format!(
            "{} the profile allows already (an expired answer, ICMP, or a change not reloaded yet)",
            plural(s.lifted, "refusal", "refusals")
        ));
    }
    if !left.is_empty() {
        out.push_str(&format!("# Not proposed: {}.\n", left.join("; ")));
    }
    out
}

/// `rbm-launch suggest`: the running sentry's status, read and rendered.
pub fn run(podman: &Podman, loaded: &Loaded, places: &Places, arg: &str) -> Result<u8, Error> {
    let names = loaded.profile.names();
    // Where `allow` would refuse (a profile rbm ships), its reason and fix.
    let not_editable = crate::allow::editable(loaded, places, arg)
        .err()
        .map(|e| e.to_string().replacen("profile ", "", 1));
    if !launch::is_running(podman, &names.sentry) {
        return Err(Error::NotRunning {
            what: "sentry",
            name: names.sentry.clone(),
            profile: arg.to_string(),
        });
    }
    let argv = args::agent_status(&names.sentry, true);
    let out = podman.output(&argv)?;
    let status: Value = match serde_json::from_slice(&out.stdout) {
        Ok(v @ Value::Object(_)) if out.status.success() => v,
        _ => return Err(podman.failure(&argv, &out)),
    };
    let s = from_status(&status, &loaded.profile.uplink.domains);
    let file = owner_of(&loaded.path);
    print!(
        "{}",
        render(
            &s,
            &Target {
                arg: &super::shell_word(arg),
                file: &file,
                sentry: &names.sentry,
                not_editable,
            }
        )
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> DomainRule {
        DomainRule::parse(s).unwrap()
    }

    #[test]
    fn only_plain_dns_names_are_proposed() {
        assert_eq!(proposable("PyPI.org."), Some("pypi.org".into()));
        assert_eq!(
            proposable("_dmarc.x-y.test"),
            Some("_dmarc.x-y.test".into())
        );
        for hostile in [
            "*.evil.test",        // a wildcard, once pasted
            "evil.test:22,443",   // ports, once pasted
            "evil.test\", \"*.x", // out of the TOML string
            "a\u{1b}[2J.test",    // the terminal's
            "a\\.test",
            "é.test",
            "10.0.0.1",
            "::1",
            "a..test",
            "-a.test",
            "",
        ] {
            assert_eq!(proposable(hostile), None, "{hostile:?}");
        }
    }

    fn fixture() -> Value {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/status.json"),
        )
        .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn suggestions_are_counted_ordered_and_rendered_from_a_status() {
        let domains = [
            rule("api.e2e.test:443"),
            rule("short.test"),
            rule("git.test:443"),
        ];
        let s = from_status(&fixture(), &domains);
        let target = Target {
            arg: "./p.toml",
            file: "/work/p.toml",
            sentry: "rbm-demo-sentry",
            not_editable: None,
        };
        let expected = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/suggest.txt"),
        )
        .unwrap();
        assert_eq!(render(&s, &target), expected);
    }

    #[test]
    fn name_checks_are_counted_once_from_the_longer_list() {
        let denial = |at: u64| {
            serde_json::json!({"at": at, "kind": "name", "proto": "tcp", "dst": "192.0.2.1:443",
                "name": "n.test", "reason": "TLS name n.test is not allowed"})
        };
        // `denied` kept 1 of them (connections pushed the rest out),
        // `name_denials` all 3.
        let status = serde_json::json!({
            "denied": [denial(3)],
            "name_denials": [denial(1), denial(2), denial(3)],
            "refused_names": ["n.test"],
        });
        let s = from_status(&status, &[]);
        assert_eq!(s.proposals.len(), 1);
        assert_eq!(s.proposals[0].count(), 3);
        assert_eq!(s.proposals[0].rule(), rule("n.test:443"));
        assert!(s.proposals[0].why().ends_with("(tcp 443), and by DNS"));
        let both =
            serde_json::json!({"denied": [denial(1), denial(2)], "name_denials": [denial(2)]});
        assert_eq!(from_status(&both, &[]).proposals[0].count(), 2);
    }

    #[test]
    fn nothing_refused_proposes_nothing() {
        let s = from_status(&serde_json::json!({"denied_total": 0}), &[]);
        let t = Target {
            arg: "demo",
            file: "/p/demo.toml",
            sentry: "rbm-demo-sentry",
            not_editable: Some("demo is a profile rbm ships".into()),
        };
        let text = render(&s, &t);
        assert!(text.ends_with("# Nothing to propose.\n"), "{text}");
        assert!(text.lines().all(|l| l.starts_with('#')), "{text}");
        // A profile `allow` refuses: no command line for it, the reason instead.
        let s = from_status(&serde_json::json!({"refused_names": ["n.test"]}), &[]);
        let text = render(&s, &t);
        assert!(
            text.contains("# demo is a profile rbm ships\n# Paste these lines into the copy's")
                && !text.contains("rbm-launch allow")
                && text.contains("\n  \"n.test\",  # refused by DNS"),
            "{text}"
        );
    }

    #[test]
    fn the_agents_count_since_its_start_wins_over_the_recent_lists() {
        // 500 refusals of many.test on 443 long ago (pushed out of the
        // recent lists), then a few of few.test; DNS refused dns.test 40
        // times and only-once.test once; allowed.test is allowed by now.
        let status = serde_json::json!({
            "denied": [{"at": 9, "kind": "name", "proto": "tcp", "dst": "192.0.2.1:443",
                "name": "few.test", "reason": "r"},
                {"at": 9, "kind": "connection", "proto": "tcp", "dst": "192.0.2.9:22", "reason": "r"}],
            "refused_names": ["only-once.test"],
            "refusals": [
                {"name": "many.test", "dns": 0, "wire": {"tcp 443": 500}},
                {"name": "dns.test", "dns": 40, "wire": {}},
                {"name": "few.test", "dns": 0, "wire": {"tcp 443": 3, "udp 443": 1}},
                {"name": "allowed.test", "dns": 7, "wire": {"tcp 443": 2}},
                {"name": "a*b.test", "dns": 0, "wire": {"tcp 80": 9}},
                {"name": "only-once.test", "dns": 1, "wire": {}}
            ],
            "refusals_overflow": 0,
        });
        let s = from_status(&status, &[rule("allowed.test")]);
        let rules: Vec<String> = s.proposals.iter().map(|p| p.rule().to_string()).collect();
        assert_eq!(
            rules,
            [
                "many.test:443",
                "dns.test",
                "few.test:443",
                "only-once.test"
            ]
        );
        assert_eq!(s.proposals[0].count(), 500);
        assert_eq!((s.not_names, s.by_address, s.lifted), (1, 1, 9));
        let t = Target {
            arg: "p.toml",
            file: "p.toml",
            sentry: "rbm-p-sentry",
            not_editable: None,
        };
        assert!(
            render(&s, &t).starts_with("# Names the sentry rbm-p-sentry refused since it started")
        );
    }
}
