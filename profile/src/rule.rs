//! The vocabulary of `uplink`: the modes, and the domain rules with the
//! ports they open. Parsing and matching only; what the agent decides with
//! them lives in the agent's `policy`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

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
    /// The ports either side opens.
    pub fn union(self, other: &Ports) -> Ports {
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn ports_parse_print_and_union() {
        assert_eq!(
            rule("github.com:22,443").ports,
            Ports::Only([22, 443].into())
        );
        assert_eq!(rule("github.com").ports, Ports::All);
        assert_eq!(
            rule("*.GitHub.com:443,22").to_string(),
            "*.github.com:22,443"
        );
        assert_eq!(rule("PyPI.org.").name, "pypi.org");
        let p22 = Ports::Only([22].into());
        assert_eq!(
            p22.clone().union(&Ports::Only([443].into())),
            Ports::Only([22, 443].into())
        );
        assert_eq!(p22.union(&Ports::All), Ports::All);
    }
}
