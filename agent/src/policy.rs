//! What the bottle may resolve and reach: domain rules and the decision the
//! DNS proxy takes for each name. Pure logic, no I/O.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::profile::{Enclave, Entry, Profile};

/// `disabled | allowlist | global`, for both uplink.dns and uplink.access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Disabled,
    Allowlist,
    Global,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Disabled => "disabled",
            Mode::Allowlist => "allowlist",
            Mode::Global => "global",
        }
    }
}

/// Which ports a learned address opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ports {
    All,
    Only(BTreeSet<u16>),
}

impl Ports {
    fn union(self, other: &Ports) -> Ports {
        match (self, other) {
            (Ports::All, _) | (_, Ports::All) => Ports::All,
            (Ports::Only(mut a), Ports::Only(b)) => {
                a.extend(b.iter().copied());
                Ports::Only(a)
            }
        }
    }
}

/// One entry of uplink.domains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRule {
    /// Lowercase, no trailing dot, without the `*.`.
    pub name: String,
    /// `*.name`: any name strictly below `name`, not `name` itself.
    pub wildcard: bool,
    pub ports: Ports,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub message: String,
    pub fix: String,
}

fn rule_err(message: impl Into<String>, fix: &str) -> RuleError {
    RuleError {
        message: message.into(),
        fix: fix.to_string(),
    }
}

const NAME_FIX: &str = "write a DNS name like \"pypi.org\" or \"*.pythonhosted.org\", optionally with \":443\" or \":22,443\"";

impl DomainRule {
    pub fn parse(text: &str) -> Result<DomainRule, RuleError> {
        let (name_part, ports) = match text.split_once(':') {
            Some((n, p)) => (n, parse_ports(p)?),
            None => (text, Ports::All),
        };
        let (wildcard, bare) = match name_part.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, name_part),
        };
        let name = normalize(bare);
        check_name(&name)?;
        Ok(DomainRule {
            name,
            wildcard,
            ports,
        })
    }

    /// Does this rule cover `qname` (already normalized)?
    pub fn matches(&self, qname: &str) -> bool {
        if self.wildcard {
            qname.len() > self.name.len() + 1
                && qname.ends_with(&self.name)
                && qname.as_bytes()[qname.len() - self.name.len() - 1] == b'.'
        } else {
            qname == self.name
        }
    }
}

impl std::fmt::Display for DomainRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.wildcard {
            f.write_str("*.")?;
        }
        f.write_str(&self.name)?;
        if let Ports::Only(ports) = &self.ports {
            let list: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
            write!(f, ":{}", list.join(","))?;
        }
        Ok(())
    }
}

/// Lowercase and drop one trailing dot.
pub fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

fn parse_ports(text: &str) -> Result<Ports, RuleError> {
    let fix = "write ports as \":443\" or \":22,443\", each 1 to 65535";
    let mut set = BTreeSet::new();
    for p in text.split(',') {
        match p.trim().parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => {
                set.insert(n as u16);
            }
            _ => return Err(rule_err(format!("port {p:?} is not 1 to 65535"), fix)),
        }
    }
    Ok(Ports::Only(set))
}

fn check_name(name: &str) -> Result<(), RuleError> {
    if name.is_empty() {
        return Err(rule_err("the name is empty", NAME_FIX));
    }
    if name.len() > 253 {
        return Err(rule_err(
            format!("the name is {} characters long, more than 253", name.len()),
            NAME_FIX,
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(rule_err(
                "has an empty label (two dots in a row, or a leading dot)",
                NAME_FIX,
            ));
        }
        if label.contains('*') {
            return Err(rule_err(
                "a wildcard is only allowed as the whole first label, as in \"*.example.org\"",
                NAME_FIX,
            ));
        }
        if label.len() > 63 {
            return Err(rule_err(
                format!("label {label:?} is longer than 63 characters"),
                NAME_FIX,
            ));
        }
        let ok_chars = label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok_chars || label.starts_with('-') || label.ends_with('-') {
            return Err(rule_err(
                format!("label {label:?} has characters a DNS name cannot have"),
                NAME_FIX,
            ));
        }
    }
    Ok(())
}

/// What the DNS proxy does with one question name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Answer REFUSED; nothing goes upstream.
    Refuse,
    /// Forward upstream; if `grant` is set, learn the answered addresses
    /// with those ports.
    Forward { grant: Option<Ports> },
}

/// The agent's input: everything it enforces, nothing about the bottle's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub dns: Mode,
    pub access: Mode,
    pub domains: Vec<DomainRule>,
    pub cidrs: Vec<IpNet>,
    pub upstream_dns: Vec<IpAddr>,
    pub min_ttl: u32,
    pub enclave: Enclave,
    pub entries: Vec<Entry>,
    /// Addresses no DNS answer may open: the machine itself, the enclave,
    /// link-local (cloud metadata), multicast. Only `cidrs` can open them.
    pub protected: Vec<IpNet>,
}

/// Ranges a DNS answer must never open, whatever the name (DNS rebinding:
/// an allowed name that resolves to 127.0.0.1 or 169.254.169.254).
const ALWAYS_PROTECTED: [&str; 9] = [
    "0.0.0.0/8",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "224.0.0.0/3",
    "::/128",
    "::1/128",
    "::ffff:0:0/96",
    "fe80::/10",
    "ff00::/8",
];

/// The always-protected ranges plus the enclave itself.
pub fn protected_ranges(enclave: &Enclave) -> Vec<IpNet> {
    let mut v: Vec<IpNet> = ALWAYS_PROTECTED
        .iter()
        .map(|n| n.parse().expect("valid constant"))
        .collect();
    v.push(IpNet::V4(enclave.subnet));
    v
}

impl Policy {
    pub fn from_profile(p: &Profile) -> Policy {
        Policy {
            dns: p.uplink.dns,
            access: p.uplink.access,
            domains: p.uplink.domains.clone(),
            cidrs: p.uplink.cidrs.clone(),
            upstream_dns: p.uplink.upstream_dns.clone(),
            min_ttl: p.uplink.min_ttl,
            enclave: p.enclave,
            entries: p.entries.clone(),
            protected: protected_ranges(&p.enclave),
        }
    }

    /// Whether a DNS answer may open `ip` (see `protected`).
    pub fn may_learn(&self, ip: IpAddr) -> bool {
        !self.protected.iter().any(|net| net.contains(&ip))
    }

    /// The ports the domain rules give `qname`, if any rule matches.
    pub fn grant_for(&self, qname: &str) -> Option<Ports> {
        let qname = normalize(qname);
        self.domains
            .iter()
            .filter(|r| r.matches(&qname))
            .fold(None, |acc: Option<Ports>, r| {
                Some(match acc {
                    None => r.ports.clone(),
                    Some(p) => p.union(&r.ports),
                })
            })
    }

    pub fn verdict(&self, qname: &str) -> Verdict {
        let grant = self.grant_for(qname);
        let learn = |g: Option<Ports>| {
            if self.access == Mode::Allowlist {
                g
            } else {
                None
            }
        };
        match (self.dns, grant) {
            (Mode::Disabled, _) => Verdict::Refuse,
            (Mode::Allowlist, None) => Verdict::Refuse,
            (Mode::Allowlist, Some(g)) => Verdict::Forward {
                grant: learn(Some(g)),
            },
            (Mode::Global, g) => Verdict::Forward { grant: learn(g) },
        }
    }

    /// How long a learned address stays open for an answer with `ttl`.
    pub fn learn_timeout(&self, ttl: u32) -> u32 {
        ttl.max(self.min_ttl).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;
    use std::path::Path;

    fn rule(s: &str) -> DomainRule {
        DomainRule::parse(s).unwrap()
    }

    #[test]
    fn exact_name_matches_only_itself() {
        let r = rule("pypi.org");
        assert!(r.matches("pypi.org"));
        assert!(!r.matches("www.pypi.org"));
        assert!(!r.matches("xpypi.org"));
        assert!(!r.matches("org"));
    }

    #[test]
    fn wildcard_matches_any_depth_below_not_apex() {
        let r = rule("*.pythonhosted.org");
        assert!(r.matches("files.pythonhosted.org"));
        assert!(r.matches("a.b.c.pythonhosted.org"));
        assert!(!r.matches("pythonhosted.org"));
        assert!(!r.matches("evilpythonhosted.org"));
    }

    #[test]
    fn case_and_trailing_dot_are_ignored() {
        let r = rule("PyPI.org.");
        assert_eq!(r.name, "pypi.org");
        let p = policy_with(&["PyPI.org"]);
        assert!(p.grant_for("PYPI.ORG.").is_some());
        assert!(p.grant_for("pypi.org").is_some());
    }

    #[test]
    fn ports_parse_and_union() {
        assert_eq!(
            rule("github.com:22,443").ports,
            Ports::Only([22, 443].into())
        );
        assert_eq!(rule("github.com").ports, Ports::All);
        assert_eq!(
            rule("*.GitHub.com:443,22").to_string(),
            "*.github.com:22,443"
        );
        let p = policy_with(&["github.com:22", "github.com:443"]);
        assert_eq!(
            p.grant_for("github.com"),
            Some(Ports::Only([22, 443].into()))
        );
        let p = policy_with(&["*.example.org:443", "a.example.org"]);
        assert_eq!(p.grant_for("a.example.org"), Some(Ports::All));
        assert_eq!(
            p.grant_for("b.example.org"),
            Some(Ports::Only([443].into()))
        );
    }

    #[test]
    fn bad_names_are_rejected() {
        for bad in [
            "",
            "a..b",
            ".a.b",
            "a.*.b",
            "*",
            "**.a",
            "a*.b",
            "-a.b",
            "a b.c",
            "x.org:0",
            "x.org:",
            "x.org:65536",
            "x.org:a",
        ] {
            assert!(
                DomainRule::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
        let long = format!("{}.org", ["abcdefghij"; 25].join("."));
        assert!(DomainRule::parse(&long)
            .unwrap_err()
            .message
            .contains("253"));
    }

    fn policy_with(domains: &[&str]) -> Policy {
        let list = domains
            .iter()
            .map(|d| format!("{d:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        policy_modes("allowlist", "allowlist", &list)
    }

    fn policy_modes(dns: &str, access: &str, domains: &str) -> Policy {
        let text = format!(
            "moniker = \"tt\"\n[bottle]\nimage = \"i\"\n[enclave]\nsubnet = \"10.242.0.0/24\"\nsentry_ip = \"10.242.0.2\"\nbottle_ip = \"10.242.0.3\"\n[uplink]\ndns = \"{dns}\"\naccess = \"{access}\"\ndomains = [{domains}]\nmin_ttl = 30\n"
        );
        Policy::from_profile(&Profile::parse(&text, Path::new("t.toml")).unwrap())
    }

    #[test]
    fn verdicts_follow_modes() {
        let p = policy_modes("allowlist", "allowlist", "\"a.test\"");
        assert_eq!(
            p.verdict("a.test"),
            Verdict::Forward {
                grant: Some(Ports::All)
            }
        );
        assert_eq!(p.verdict("b.test"), Verdict::Refuse);
        let p = policy_modes("global", "allowlist", "\"a.test\"");
        assert_eq!(
            p.verdict("a.test"),
            Verdict::Forward {
                grant: Some(Ports::All)
            }
        );
        assert_eq!(p.verdict("b.test"), Verdict::Forward { grant: None });
        let p = policy_modes("disabled", "allowlist", "\"a.test\"");
        assert_eq!(p.verdict("a.test"), Verdict::Refuse);
        let p = policy_modes("allowlist", "global", "\"a.test\"");
        assert_eq!(p.verdict("a.test"), Verdict::Forward { grant: None });
        let p = policy_modes("allowlist", "disabled", "\"a.test\"");
        assert_eq!(p.verdict("a.test"), Verdict::Forward { grant: None });
    }

    #[test]
    fn answers_may_not_open_the_machine_the_enclave_or_metadata() {
        let p = policy_with(&["a.test"]);
        for ip in [
            "127.0.0.1",
            "169.254.169.254",
            "10.242.0.2",
            "10.242.0.3",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!p.may_learn(ip.parse().unwrap()), "{ip} must be protected");
        }
        for ip in ["198.51.100.10", "10.243.0.9", "2001:db8::1"] {
            assert!(p.may_learn(ip.parse().unwrap()), "{ip} may be learned");
        }
    }

    #[test]
    fn ttl_floor() {
        let p = policy_with(&["a.test"]);
        assert_eq!(p.learn_timeout(5), 30);
        assert_eq!(p.learn_timeout(300), 300);
        let mut p0 = p.clone();
        p0.min_ttl = 0;
        assert_eq!(
            p0.learn_timeout(0),
            1,
            "a zero timeout would mean 'never expires' to the kernel"
        );
    }
}
