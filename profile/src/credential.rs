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
    headers: Option<Vec<String>>,
    query: Option<String>,
    #[serde(default)]
    outside: bool,
}

/// The headers besides `Authorization` that carry a credential's real
/// value when the profile names none of its own: the API-key headers of
/// the common model APIs (Anthropic and OpenAI-style, Google).
pub const DEFAULT_HEADERS: &[&str] = &["x-api-key", "x-goog-api-key"];

/// Headers that route or frame a request, never a credential's place: a
/// real value in one would be read by every front end on the way (Host is
/// what the credential host's front end routes and logs by), or break the
/// request's framing.
const NOT_A_PLACE: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "http2-settings",
];

/// What a header or query parameter that carries a key is named for, one
/// of these in its name: a shared profile must not be able to point the
/// real value at a place the host stores and shows (`x-title`, `referer`,
/// `user-agent`, a `title` or `q` parameter): the host would publish it.
const KEY_WORDS: &[&str] = &[
    "key",
    "token",
    "auth",
    "secret",
    "credential",
    "password",
    "signature",
];

/// Whether `name` (lowercase) is named for a key (`KEY_WORDS`).
fn named_for_a_key(name: &str) -> bool {
    KEY_WORDS.iter().any(|w| name.contains(w))
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
    /// The headers besides `Authorization` (which always does) whose
    /// values get the real value, lowercase: the profile's `headers`, or
    /// `DEFAULT_HEADERS`. Anywhere else the placeholder stays as it is.
    pub headers: Vec<String>,
    /// The one query parameter whose value gets the real value when it is
    /// exactly the placeholder, for APIs that take their key in the URL.
    pub query: Option<String>,
    /// The profile says (`outside = true`) that its `file:` source or
    /// `upstream_ca` may lie outside the profile's folder: only then may
    /// either be absolute or hold `..`, and `up` asks before it reads them.
    pub outside: bool,
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
        moniker: &str,
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
            self.reach(i, c, from.as_ref(), moniker);
            if c.hosts.is_empty() {
                self.fail(
                    &field("hosts"),
                    "is empty: the real value would go nowhere",
                    "list the names the real value is sent to, e.g. [\"api.anthropic.com\"]",
                );
            }
            let hosts = self.inspected_hosts(&field("hosts"), &c.hosts, uplink);
            if let Some(from) = from {
                out.push(Credential {
                    env: c.env.clone(),
                    from,
                    hosts,
                    upstream_ca: c.upstream_ca.clone(),
                    headers: self.headers(&field("headers"), c.headers.as_deref()),
                    query: self.query(&field("query"), c.query.as_deref()),
                    outside: c.outside,
                });
            }
        }
        out
    }

    /// The hosts of a `[[credential]]` or `[[requests]]` table (`field`),
    /// normalised: the sentry terminates their TLS, so each must be one
    /// exact name the domain rules allow on port 443, and the sentry must
    /// find their connections by the addresses their names answer.
    pub(crate) fn inspected_hosts(
        &mut self,
        field: &str,
        raw: &[String],
        uplink: &Uplink,
    ) -> Vec<String> {
        let hosts: Vec<String> = raw.iter().map(|h| normalize(h)).collect();
        for (j, host) in hosts.iter().enumerate() {
            let field = format!("{field}[{j}]");
            match DomainRule::parse(host) {
                Ok(rule) if !rule.wildcard && rule.ports == Ports::All && !host.contains(':') => {}
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
                field,
                "needs uplink.access = \"allowlist\" and DNS through the sentry: the sentry finds the hosts' connections by the addresses their names answer",
                "set uplink.access = \"allowlist\" and uplink.dns to \"allowlist\" or \"global\"",
            );
        }
        hosts
    }

    /// What a shared profile must not reach without saying so: a `file:`
    /// source or `upstream_ca` outside its folder (a profile could read
    /// the user's `~/.ssh` key or another project's token and send it to
    /// a host of its choosing) needs `outside = true`; another profile's
    /// Podman secret is out of reach.
    fn reach(&mut self, i: usize, c: &RawCredential, from: Option<&Source>, moniker: &str) {
        let field = |name: &str| format!("credential[{i}].{name}");
        let outside_fix = "put the file in the profile's folder and name it by a relative path without `..`, \
            or add `outside = true` to this credential if you mean it (rbm-launch then names the file and asks you before it reads it)";
        if let (Some(Source::File(path)), false) = (from, c.outside) {
            if crate::leaves_folder(path) {
                self.fail(
                    &field("from"),
                    format!("file:{path} is outside the profile's folder"),
                    outside_fix,
                );
            }
        }
        if let (Some(path), false) = (&c.upstream_ca, c.outside) {
            if crate::leaves_folder(path) {
                self.fail(
                    &field("upstream_ca"),
                    format!("{path} is outside the profile's folder"),
                    outside_fix,
                );
            }
        }
        if let Some(Source::PodmanSecret(name)) = from {
            let fair = name.starts_with(|c: char| c.is_ascii_alphanumeric())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !fair {
                self.fail(
                    &field("from"),
                    format!("{name:?} is not a Podman secret's name"),
                    "write the secret's full name: a letter or digit, then letters, digits, _, . or -",
                );
            }
            if let Some(owner) = rbm_secret_owner(name).filter(|o| *o != moniker) {
                self.fail(
                    &field("from"),
                    format!("{name} is a secret rbm made for another profile (moniker {owner})"),
                    "name a Podman secret you created for this profile (its name must not start with rbm-), or use env:NAME or file:PATH",
                );
            }
        }
    }

    /// The header names a credential goes in (`field`, as the profile
    /// wrote them, or the default), lowercase.
    fn headers(&mut self, field: &str, declared: Option<&[String]>) -> Vec<String> {
        let Some(declared) = declared else {
            return DEFAULT_HEADERS.iter().map(|h| h.to_string()).collect();
        };
        let mut out: Vec<String> = Vec::new();
        for (j, name) in declared.iter().enumerate() {
            let field = format!("{field}[{j}]");
            let lower = name.to_ascii_lowercase();
            if lower.is_empty() || !lower.bytes().all(is_token_byte) {
                self.fail(
                    &field,
                    format!("{name:?} is not an HTTP header name"),
                    "write the header's name alone, e.g. \"x-api-key\"",
                );
            } else if NOT_A_PLACE.contains(&lower.as_str()) {
                self.fail(
                    &field,
                    format!("{lower} routes or frames the request, it does not carry a credential"),
                    "remove it; name the header the API reads its key from, e.g. \"x-api-key\"",
                );
            } else if !named_for_a_key(&lower) {
                self.fail(
                    &field,
                    format!("{lower} is not named for a key (a header a host may store and show)"),
                    "name a header whose name says it carries a key (one of key, token, auth, secret, credential, password, signature), e.g. \"x-api-key\"",
                );
            } else if out.contains(&lower) {
                self.fail(
                    &field,
                    format!("{lower} is named twice"),
                    "name each header once",
                );
            } else {
                out.push(lower);
            }
        }
        out
    }

    /// The query parameter a credential goes in, if the profile names one.
    fn query(&mut self, field: &str, name: Option<&str>) -> Option<String> {
        let name = name?;
        // Unreserved characters only: the name is compared with the
        // request's bytes as they are, never decoded.
        let unreserved = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
        if name.is_empty() || !name.bytes().all(unreserved) {
            self.fail(
                field,
                format!("{name:?} is not a query parameter name rbm can match"),
                "write the parameter's name as the API's URLs have it, letters, digits and -._~ only, e.g. \"key\"",
            );
            return None;
        }
        if !named_for_a_key(&name.to_ascii_lowercase()) {
            self.fail(
                field,
                format!("{name:?} is not named for a key (a parameter a host may store and show)"),
                "name the parameter the API reads its key from; its name says so (one of key, token, auth, secret, credential, password, signature), e.g. \"key\"",
            );
            return None;
        }
        Some(name.to_string())
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

/// The moniker of the profile a Podman secret named `rbm-<moniker>-...`
/// belongs to (rbm names the secrets it makes so), if it is named so.
fn rbm_secret_owner(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("rbm-")?;
    Some(rest.split('-').next().unwrap_or(rest))
}

/// A byte of an HTTP token (RFC 9110), what a header name is made of.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
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
                headers: vec!["x-api-key".into(), "x-goog-api-key".into()],
                query: None,
                outside: false,
            }]
        );
        for (from, source) in [
            ("file:keys/k", Source::File("keys/k".into())),
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

    #[test]
    fn a_file_outside_the_profiles_folder_needs_outside_true() {
        for (from, to, field) in [
            ("env:REAL_KEY", "file:../secret", "credential[0].from"),
            (
                "env:REAL_KEY",
                "file:/home/u/.ssh/id_ed25519",
                "credential[0].from",
            ),
            ("env:REAL_KEY", "file:keys/../../k", "credential[0].from"),
            ("./ca.pem", "../ca.pem", "credential[0].upstream_ca"),
            ("./ca.pem", "/etc/ssl/ca.pem", "credential[0].upstream_ca"),
        ] {
            let text = format!("{GOOD}{}", CREDENTIAL.replace(from, to));
            let p = problems(&text);
            assert!(
                has(&p, field, "outside the profile's folder")
                    && has(&p, field, "add `outside = true`"),
                "{to}: {p:?}"
            );
            let c = &parse(&format!("{text}outside = true\n"))
                .unwrap()
                .credentials[0];
            assert!(c.outside, "{to}");
        }
        let inside = format!(
            "{GOOD}{}",
            CREDENTIAL.replace("env:REAL_KEY", "file:keys/k")
        );
        assert!(!parse(&inside).unwrap().credentials[0].outside);
    }

    #[test]
    fn another_profiles_podman_secret_is_out_of_reach() {
        let with_secret = |name: &str| {
            format!(
                "{GOOD}{}",
                CREDENTIAL.replace("env:REAL_KEY", &format!("podman-secret:{name}"))
            )
        };
        for name in [
            "rbm-other-cred-X",
            "rbm-other-ca",
            "rbm-demox-cred-API_KEY",
            "rbm-",
        ] {
            let p = problems(&with_secret(name));
            assert!(
                has(
                    &p,
                    "credential[0].from",
                    "a secret rbm made for another profile"
                ) && has(&p, "credential[0].from", "must not start with rbm-"),
                "{name}: {p:?}"
            );
        }
        // The user's own secrets, and this profile's own (moniker demo).
        for name in ["my-token", "rbmx-token", "rbm-demo-cred-OTHER"] {
            assert!(parse(&with_secret(name)).is_ok(), "{name}");
        }
        // Not a name: an option podman would read, or what no secret is called.
        for name in ["-a", "--all", "a b", "x/y", ".a"] {
            let p = problems(&with_secret(name));
            assert!(
                has(&p, "credential[0].from", "not a Podman secret's name"),
                "{name}: {p:?}"
            );
        }
    }

    #[test]
    fn a_path_leaves_the_folder_by_its_text() {
        for out in [
            "/k",
            "..",
            "../k",
            "a/../../k",
            "a/..",
            "\\\\srv\\k",
            "C:\\k",
            "c:/k",
            "a\\..\\k",
        ] {
            assert!(crate::leaves_folder(out), "{out}");
        }
        for inside in ["k", "./k", "a/b", "..k", "k..", "a/.../k", "~/k"] {
            assert!(!crate::leaves_folder(inside), "{inside}");
        }
    }

    #[test]
    fn a_credential_may_name_its_own_headers_and_one_query_parameter() {
        let text = format!(
            "{GOOD}{CREDENTIAL}headers = [\"X-Custom-Key\", \"api-key\"]\nquery = \"key\"\n"
        );
        let c = &parse(&text).unwrap().credentials[0];
        assert_eq!(c.headers, ["x-custom-key", "api-key"]);
        assert_eq!(c.query.as_deref(), Some("key"));
        // An empty list leaves Authorization alone.
        let text = format!("{GOOD}{CREDENTIAL}headers = []\n");
        assert!(parse(&text).unwrap().credentials[0].headers.is_empty());
    }

    #[test]
    fn a_header_or_query_parameter_that_cannot_carry_a_credential_names_the_field_and_the_fix() {
        let bad = |extra: &str| {
            let text = format!("{GOOD}{CREDENTIAL}{extra}\n");
            let err = parse(&text).unwrap_err().to_string();
            assert!(
                err.contains("profiles/x.toml") && err.contains("fix:"),
                "{err}"
            );
            problems(&text)
        };
        let p = bad("headers = [\"x api key\"]");
        assert!(
            has(&p, "credential[0].headers[0]", "not an HTTP header name"),
            "{p:?}"
        );
        let p = bad("headers = [\"x-api-key\", \"Host\"]");
        assert!(
            has(&p, "credential[0].headers[1]", "host routes or frames"),
            "{p:?}"
        );
        let p = bad("headers = [\"x-key\", \"X-Key\"]");
        assert!(
            has(&p, "credential[0].headers[1]", "x-key is named twice"),
            "{p:?}"
        );
        // A place a host stores and shows, named by a shared profile.
        for name in ["x-title", "http-referer", "user-agent", "cookie"] {
            let p = bad(&format!("headers = [\"{name}\"]"));
            assert!(
                has(&p, "credential[0].headers[0]", "not named for a key"),
                "{name}: {p:?}"
            );
        }
        for name in ["title", "q"] {
            let p = bad(&format!("query = \"{name}\""));
            assert!(
                has(&p, "credential[0].query", "not named for a key"),
                "{p:?}"
            );
        }
        for name in ["", "a b", "k%65y", "key="] {
            let p = bad(&format!("query = \"{name}\""));
            assert!(
                has(&p, "credential[0].query", "not a query parameter name"),
                "{name:?}: {p:?}"
            );
        }
    }
}
