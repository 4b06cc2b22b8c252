//! The `[[credential]]` section of a profile: a secret the bottle only
//! sees as a placeholder, where its real value comes from and which hosts
//! get it; its raw shape, its checks and its validated form.

use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;

use crate::validate::{is_env_name, Validator};
use crate::{normalize, Bottle, DomainRule, Mode, Ports, Uplink};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCredential {
    env: String,
    from: String,
    #[serde(default)]
    hosts: Vec<String>,
    upstream_ca: Option<String>,
}

/// A secret the bottle never holds: it gets a placeholder in `env`, and
/// the sentry puts the real value (from `from`) in its requests to `hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub env: String,
    pub from: Source,
    /// Exact names, lowercase, no trailing dot.
    pub hosts: Vec<String>,
    /// A CA file (PEM) that the sentry also trusts for these hosts' real
    /// certificates, as written (relative to the profile's directory).
    pub upstream_ca: Option<String>,
}

/// Where the real value of a credential is, on the machine that runs
/// `rbm-launch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `env:NAME`: the launcher's environment variable NAME.
    Env(String),
    /// `file:PATH`: the contents of a file (one trailing newline dropped).
    File(String),
    /// `podman-secret:NAME`: a Podman secret that already exists.
    PodmanSecret(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Env(n) => write!(f, "env:{n}"),
            Source::File(p) => write!(f, "file:{p}"),
            Source::PodmanSecret(n) => write!(f, "podman-secret:{n}"),
        }
    }
}

impl Validator {
    pub(crate) fn credentials(
        &mut self,
        raw: &[RawCredential],
        uplink: &Uplink,
        bottle: &Bottle,
    ) -> Vec<Credential> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (i, c) in raw.iter().enumerate() {
            let field = |name: &str| format!("credential[{i}].{name}");
            if !is_env_name(&c.env) {
                self.fail(
                    &field("env"),
                    format!("{:?} is not a valid environment variable name", c.env),
                    "use letters, digits and _ only, not starting with a digit, e.g. \"ANTHROPIC_API_KEY\"",
                );
            } else if !seen.insert(c.env.clone()) {
                self.fail(
                    &field("env"),
                    format!("{} has two credentials", c.env),
                    "give each credential its own variable",
                );
            } else if bottle.env.contains_key(&c.env) {
                self.fail(
                    &field("env"),
                    format!("{} is also set in bottle.env", c.env),
                    "remove it from bottle.env: the bottle gets the credential's placeholder there",
                );
            }
            let from = self.source(&field("from"), &c.from);
            if c.hosts.is_empty() {
                self.fail(
                    &field("hosts"),
                    "is empty: the real value would go nowhere",
                    "list the names the real value is sent to, e.g. [\"api.anthropic.com\"]",
                );
            }
            let hosts: Vec<String> = c.hosts.iter().map(|h| normalize(h)).collect();
            for (j, host) in hosts.iter().enumerate() {
                let field = format!("credential[{i}].hosts[{j}]");
                match DomainRule::parse(host) {
                    Ok(rule)
                        if !rule.wildcard && rule.ports == Ports::All && !host.contains(':') => {}
                    _ => {
                        self.fail(
                            &field,
                            format!("{host:?} is not an exact DNS name"),
                            "write one name, without a wildcard or port, e.g. \"api.anthropic.com\"",
                        );
                        continue;
                    }
                }
                let granted =
                    uplink
                        .domains
                        .iter()
                        .filter(|r| r.matches(host))
                        .any(|r| match &r.ports {
                            Ports::All => true,
                            Ports::Only(p) => p.contains(&443),
                        });
                if !granted {
                    self.fail(
                        &field,
                        format!("{host} is not allowed on port 443 by uplink.domains"),
                        format!("add \"{host}\" (or \"{host}:443\") to uplink.domains"),
                    );
                }
            }
            if uplink.access != Mode::Allowlist || uplink.dns == Mode::Disabled {
                self.fail(
                    &field("hosts"),
                    "needs uplink.access = \"allowlist\" and DNS through the sentry: the sentry finds the hosts' connections by the addresses their names answer",
                    "set uplink.access = \"allowlist\" and uplink.dns to \"allowlist\" or \"global\"",
                );
            }
            if let Some(from) = from {
                out.push(Credential {
                    env: c.env.clone(),
                    from,
                    hosts,
                    upstream_ca: c.upstream_ca.clone(),
                });
            }
        }
        out
    }

    fn source(&mut self, field: &str, text: &str) -> Option<Source> {
        let fix = "write env:NAME (an environment variable of rbm-launch), file:PATH or podman-secret:NAME";
        let Some((kind, rest)) = text.split_once(':') else {
            self.fail(field, format!("{text:?} names no source"), fix);
            return None;
        };
        if rest.is_empty() {
            self.fail(field, format!("{text:?} has nothing after {kind}:"), fix);
            return None;
        }
        match kind {
            "env" if is_env_name(rest) => Some(Source::Env(rest.to_string())),
            "env" => {
                self.fail(
                    field,
                    format!("{rest:?} is not an environment variable name"),
                    fix,
                );
                None
            }
            "file" => Some(Source::File(rest.to_string())),
            "podman-secret" => Some(Source::PodmanSecret(rest.to_string())),
            other => {
                self.fail(field, format!("unknown source {other:?}"), fix);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{has, parse, problems, with, GOOD};

    const CREDENTIAL: &str = "\n[[credential]]\nenv = \"API_KEY\"\nfrom = \"env:REAL_KEY\"\nhosts = [\"PyPI.org.\"]\nupstream_ca = \"./ca.pem\"\n";

    #[test]
    fn a_credential_names_its_variable_source_and_hosts() {
        let p = parse(&format!("{GOOD}{CREDENTIAL}")).unwrap();
        assert_eq!(
            p.credentials,
            vec![Credential {
                env: "API_KEY".into(),
                from: Source::Env("REAL_KEY".into()),
                hosts: vec!["pypi.org".into()],
                upstream_ca: Some("./ca.pem".into()),
            }]
        );
        for (from, source) in [
            ("file:/k", Source::File("/k".into())),
            ("podman-secret:s1", Source::PodmanSecret("s1".into())),
        ] {
            let text = format!("{GOOD}{}", CREDENTIAL.replace("env:REAL_KEY", from));
            assert_eq!(parse(&text).unwrap().credentials[0].from, source);
        }
        let changed = parse(&format!("{GOOD}{}", CREDENTIAL.replace("API_KEY", "OTHER"))).unwrap();
        assert_eq!(p.restart_fields(&changed), vec!["credential"]);
    }

    #[test]
    fn bad_credentials_name_the_field_and_the_fix() {
        let bad = |from: &str, to: &str| {
            assert!(CREDENTIAL.contains(from), "test bug: {from}");
            problems(&format!("{GOOD}{}", CREDENTIAL.replace(from, to)))
        };
        let p = bad("env:REAL_KEY", "vault:x");
        assert!(
            has(&p, "credential[0].from", "unknown source \"vault\""),
            "{p:?}"
        );
        let p = bad("PyPI.org.", "api.other.test");
        assert!(
            has(
                &p,
                "credential[0].hosts[0]",
                "not allowed on port 443 by uplink.domains"
            ),
            "{p:?}"
        );
        let p = bad("PyPI.org.", "*.pythonhosted.org");
        assert!(
            has(&p, "credential[0].hosts[0]", "not an exact DNS name"),
            "{p:?}"
        );
        let p = bad("hosts = [\"PyPI.org.\"]", "hosts = []");
        assert!(has(&p, "credential[0].hosts", "is empty"), "{p:?}");
        let p = bad("API_KEY", "KEY");
        assert!(
            has(&p, "credential[0].env", "also set in bottle.env"),
            "{p:?}"
        );
        let twice = format!("{GOOD}{CREDENTIAL}{CREDENTIAL}");
        assert!(has(
            &problems(&twice),
            "credential[1].env",
            "API_KEY has two credentials"
        ));
        let global = with("access = \"allowlist\"", "access = \"global\"");
        assert!(has(
            &problems(&format!("{global}{CREDENTIAL}")),
            "credential[0].hosts",
            "needs uplink.access = \"allowlist\""
        ));
    }
}
