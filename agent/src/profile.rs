//! The user-facing profile: a TOML file that says what the bottle runs and
//! what it may reach. Parsing is strict (unknown fields are errors) and every
//! problem names the file, the field and the fix.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

use crate::policy::{DomainRule, Mode};

/// One thing wrong with a profile: where, what, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "field `{}`: {}; fix: {}",
            self.field, self.message, self.fix
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read profile {file}: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("profile {file} is not valid TOML for rbm: {message}")]
    Syntax { file: PathBuf, message: String },
    #[error("profile {file} is invalid:\n{}", list(.problems))]
    Invalid {
        file: PathBuf,
        problems: Vec<Problem>,
    },
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Raw shape of the file, as serde reads it. Numbers are wide so that
/// out-of-range values get our message, not serde's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    moniker: String,
    #[serde(default)]
    description: String,
    bottle: RawBottle,
    enclave: RawEnclave,
    uplink: RawUplink,
    #[serde(default)]
    entry: Vec<RawEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBottle {
    image: String,
    command: Option<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    volumes: Vec<String>,
    workdir: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnclave {
    subnet: String,
    sentry_ip: String,
    bottle_ip: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUplink {
    dns: Mode,
    access: Mode,
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default)]
    cidrs: Vec<String>,
    #[serde(default)]
    upstream_dns: Vec<String>,
    min_ttl: Option<i64>,
    subnet: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    host_port: i64,
    bottle_port: i64,
    #[serde(default)]
    protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
    /// IANA protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }
}

/// A validated profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub moniker: String,
    pub description: String,
    pub bottle: Bottle,
    pub enclave: Enclave,
    pub uplink: Uplink,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bottle {
    pub image: String,
    pub command: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    /// As written in the profile (podman -v syntax, host part maybe relative).
    pub volumes: Vec<String>,
    pub workdir: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enclave {
    pub subnet: Ipv4Net,
    pub sentry_ip: Ipv4Addr,
    pub bottle_ip: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uplink {
    pub dns: Mode,
    pub access: Mode,
    pub domains: Vec<DomainRule>,
    pub cidrs: Vec<IpNet>,
    pub upstream_dns: Vec<IpAddr>,
    pub min_ttl: u32,
    pub subnet: Option<Ipv4Net>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub host_port: u16,
    pub bottle_port: u16,
    pub protocol: Protocol,
}

pub const DEFAULT_MIN_TTL: u32 = 30;
const MAX_MIN_TTL: i64 = 86_400;

impl Profile {
    /// Reads and validates a profile file.
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Profile::parse(&text, path)
    }

    /// Parses and validates profile text; `file` is only used in messages.
    pub fn parse(text: &str, file: &Path) -> Result<Profile, ProfileError> {
        let raw: RawProfile = toml::from_str(text).map_err(|e| ProfileError::Syntax {
            file: file.to_path_buf(),
            message: syntax_message(&e),
        })?;
        let mut v = Validator::default();
        let profile = v.profile(raw);
        if v.problems.is_empty() {
            Ok(profile)
        } else {
            Err(ProfileError::Invalid {
                file: file.to_path_buf(),
                problems: v.problems,
            })
        }
    }

    /// Volumes with relative host paths made absolute against `base`
    /// (the directory holding the profile file).
    pub fn volumes_resolved(&self, base: &Path) -> Vec<String> {
        self.bottle
            .volumes
            .iter()
            .map(|v| {
                let (host, rest) = v.split_once(':').unwrap_or((v.as_str(), ""));
                let host_path = if host.starts_with('/') {
                    PathBuf::from(host)
                } else {
                    base.join(host)
                };
                format!("{}:{}", host_path.display(), rest)
            })
            .collect()
    }

    /// Names of what rbm creates for this profile.
    pub fn names(&self) -> Names {
        Names::new(&self.moniker)
    }
}

fn syntax_message(e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_string();
    let hint = if msg.contains("unknown field") {
        "; remove it or check its spelling (see README.md, \"Profile format\")"
    } else if msg.contains("missing field") {
        "; add it (see README.md, \"Profile format\")"
    } else if msg.contains("unknown variant") {
        "; use one of the listed values"
    } else {
        ""
    };
    match e.span() {
        Some(span) => format!("{msg}{hint} (at byte {})", span.start),
        None => format!("{msg}{hint}"),
    }
}

/// The names of the Podman objects that belong to one profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub sentry: String,
    pub bottle: String,
    pub enclave: String,
    pub uplink: String,
}

impl Names {
    pub fn new(moniker: &str) -> Names {
        Names {
            sentry: format!("rbm-{moniker}-sentry"),
            bottle: format!("rbm-{moniker}-bottle"),
            enclave: format!("rbm-{moniker}-enclave"),
            uplink: format!("rbm-{moniker}-uplink"),
        }
    }
}

#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
}

impl Validator {
    fn fail(&mut self, field: &str, message: impl Into<String>, fix: impl Into<String>) {
        self.problems.push(Problem {
            field: field.to_string(),
            message: message.into(),
            fix: fix.into(),
        });
    }

    fn profile(&mut self, raw: RawProfile) -> Profile {
        self.moniker(&raw.moniker);
        let bottle = self.bottle(raw.bottle);
        let enclave = self.enclave(&raw.enclave);
        let uplink = self.uplink(raw.uplink, enclave.as_ref());
        let entries = self.entries(&raw.entry);
        let enclave = enclave.unwrap_or(Enclave {
            subnet: Ipv4Net::default(),
            sentry_ip: Ipv4Addr::UNSPECIFIED,
            bottle_ip: Ipv4Addr::UNSPECIFIED,
        });
        Profile {
            moniker: raw.moniker,
            description: raw.description,
            bottle,
            enclave,
            uplink,
            entries,
        }
    }

    fn moniker(&mut self, m: &str) {
        let ok = (2..=12).contains(&m.len())
            && m.starts_with(|c: char| c.is_ascii_lowercase())
            && m.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !ok {
            self.fail(
                "moniker",
                format!("{m:?} must be 2 to 12 characters: a lowercase letter, then lowercase letters or digits"),
                "use a short name such as \"demo\" or \"agent1\"",
            );
        }
    }

    fn bottle(&mut self, raw: RawBottle) -> Bottle {
        if raw.image.trim().is_empty() {
            self.fail(
                "bottle.image",
                "is empty",
                "name a local image, e.g. \"localhost/rbm-demo-bottle:latest\"",
            );
        }
        if let Some(cmd) = &raw.command {
            if cmd.is_empty() {
                self.fail(
                    "bottle.command",
                    "is an empty list",
                    "remove it to use the image's command, or give the program and its arguments",
                );
            }
        }
        for key in raw.env.keys() {
            let ok = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                self.fail(
                    &format!("bottle.env.{key}"),
                    "is not a valid environment variable name",
                    "use letters, digits and _ only, not starting with a digit",
                );
            }
        }
        for (i, vol) in raw.volumes.iter().enumerate() {
            self.volume(i, vol);
        }
        if let Some(w) = &raw.workdir {
            if !w.starts_with('/') {
                self.fail(
                    "bottle.workdir",
                    format!("{w:?} is not an absolute path"),
                    "write the path inside the bottle starting with /",
                );
            }
        }
        Bottle {
            image: raw.image,
            command: raw.command,
            env: raw.env,
            volumes: raw.volumes,
            workdir: raw.workdir,
        }
    }

    fn volume(&mut self, i: usize, vol: &str) {
        let field = format!("bottle.volumes[{i}]");
        let parts: Vec<&str> = vol.split(':').collect();
        let fix = "write HOST_PATH:BOTTLE_PATH[:OPTIONS], e.g. \"./work:/workspace\" or \"/data:/data:ro\"";
        if !(2..=3).contains(&parts.len()) || parts[0].is_empty() {
            self.fail(&field, format!("{vol:?} is not in podman -v form"), fix);
        } else if !parts[1].starts_with('/') {
            self.fail(
                &field,
                format!("bottle path {:?} is not absolute", parts[1]),
                fix,
            );
        }
    }

    fn enclave(&mut self, raw: &RawEnclave) -> Option<Enclave> {
        let subnet = self.ipv4_net("enclave.subnet", &raw.subnet, "\"10.242.0.0/24\"");
        let sentry_ip = self.ipv4("enclave.sentry_ip", &raw.sentry_ip);
        let bottle_ip = self.ipv4("enclave.bottle_ip", &raw.bottle_ip);
        let (subnet, sentry_ip, bottle_ip) = (subnet?, sentry_ip?, bottle_ip?);
        if subnet.prefix_len() > 29 {
            self.fail(
                "enclave.subnet",
                format!("{subnet} is too small"),
                "use a /29 or larger, e.g. /24",
            );
            return None;
        }
        for (field, ip) in [
            ("enclave.sentry_ip", sentry_ip),
            ("enclave.bottle_ip", bottle_ip),
        ] {
            if !subnet.contains(&ip) {
                self.fail(
                    field,
                    format!("{ip} is outside enclave.subnet {subnet}"),
                    format!("pick an address inside {subnet}"),
                );
            } else if ip == subnet.network() || ip == subnet.broadcast() {
                self.fail(
                    field,
                    format!("{ip} is the network or broadcast address of {subnet}"),
                    format!(
                        "pick a host address between {} and {}",
                        subnet.hosts().next().unwrap_or(ip),
                        subnet.hosts().last().unwrap_or(ip)
                    ),
                );
            } else if ip == first_host(subnet) {
                self.fail(field, format!("{ip} is the first host of {subnet}, which Podman keeps for the network's gateway"), "use .2 for the sentry and .3 for the bottle");
            }
        }
        if sentry_ip == bottle_ip {
            self.fail(
                "enclave.bottle_ip",
                format!("is the same address as enclave.sentry_ip ({sentry_ip})"),
                "give the bottle its own address",
            );
        }
        Some(Enclave {
            subnet,
            sentry_ip,
            bottle_ip,
        })
    }

    fn uplink(&mut self, raw: RawUplink, enclave: Option<&Enclave>) -> Uplink {
        let domains = raw
            .domains
            .iter()
            .enumerate()
            .filter_map(|(i, d)| match DomainRule::parse(d) {
                Ok(rule) => Some(rule),
                Err(e) => {
                    self.fail(
                        &format!("uplink.domains[{i}]"),
                        format!("{d:?}: {}", e.message),
                        e.fix,
                    );
                    None
                }
            })
            .collect();
        if raw.domains.is_empty() && raw.dns == Mode::Allowlist {
            self.fail(
                "uplink.domains",
                "is empty while uplink.dns = \"allowlist\": the bottle could resolve no name at all",
                "list the names the bottle may reach, or say so with uplink.dns = \"disabled\"",
            );
        }
        let cidrs = raw
            .cidrs
            .iter()
            .enumerate()
            .filter_map(|(i, c)| self.cidr(&format!("uplink.cidrs[{i}]"), c))
            .collect();
        let upstream_dns = raw
            .upstream_dns
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.upstream(&format!("uplink.upstream_dns[{i}]"), s, enclave))
            .collect();
        let min_ttl = match raw.min_ttl {
            None => DEFAULT_MIN_TTL,
            Some(t) if (0..=MAX_MIN_TTL).contains(&t) => t as u32,
            Some(t) => {
                self.fail(
                    "uplink.min_ttl",
                    format!("{t} is out of range"),
                    format!("use 0 to {MAX_MIN_TTL} seconds"),
                );
                DEFAULT_MIN_TTL
            }
        };
        let subnet = raw.subnet.as_deref().and_then(|s| {
            let net = self.ipv4_net("uplink.subnet", s, "\"10.243.0.0/24\"")?;
            if let Some(e) = enclave {
                if net.contains(&e.subnet.network()) || e.subnet.contains(&net.network()) {
                    self.fail(
                        "uplink.subnet",
                        format!("{net} overlaps enclave.subnet {}", e.subnet),
                        "use a separate range",
                    );
                }
            }
            Some(net)
        });
        Uplink {
            dns: raw.dns,
            access: raw.access,
            domains,
            cidrs,
            upstream_dns,
            min_ttl,
            subnet,
        }
    }

    fn cidr(&mut self, field: &str, s: &str) -> Option<IpNet> {
        let net: IpNet = match s.parse() {
            Ok(n) => n,
            Err(_) => {
                self.fail(
                    field,
                    format!("{s:?} is not a CIDR"),
                    "write ADDRESS/PREFIX, e.g. \"160.79.104.0/23\" or \"2001:db8::/32\"",
                );
                return None;
            }
        };
        if net.trunc() != net {
            self.fail(
                field,
                format!("{s} has host bits set"),
                format!("write {}", net.trunc()),
            );
            return None;
        }
        if net.prefix_len() == 0 {
            self.fail(
                field,
                format!("{s} would allow every address"),
                "set uplink.access = \"global\" if that is what you mean",
            );
            return None;
        }
        Some(net)
    }

    fn upstream(&mut self, field: &str, s: &str, enclave: Option<&Enclave>) -> Option<IpAddr> {
        let Ok(ip) = s.parse::<IpAddr>() else {
            self.fail(
                field,
                format!("{s:?} is not an IP address"),
                "write a resolver address such as \"192.0.2.53\"",
            );
            return None;
        };
        if let (IpAddr::V4(v4), Some(e)) = (ip, enclave) {
            if e.subnet.contains(&v4) {
                self.fail(
                    field,
                    format!("{ip} is inside the enclave"),
                    "name a resolver on the uplink side",
                );
            }
        }
        Some(ip)
    }

    fn entries(&mut self, raw: &[RawEntry]) -> Vec<Entry> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (i, e) in raw.iter().enumerate() {
            let host = self.port(&format!("entry[{i}].host_port"), e.host_port);
            let bottle = self.port(&format!("entry[{i}].bottle_port"), e.bottle_port);
            let (Some(host_port), Some(bottle_port)) = (host, bottle) else {
                continue;
            };
            if !seen.insert((host_port, e.protocol)) {
                self.fail(
                    &format!("entry[{i}].host_port"),
                    format!("{host_port}/{} is published twice", e.protocol.as_str()),
                    "give each entry its own host_port",
                );
                continue;
            }
            out.push(Entry {
                host_port,
                bottle_port,
                protocol: e.protocol,
            });
        }
        out
    }

    fn port(&mut self, field: &str, p: i64) -> Option<u16> {
        match u16::try_from(p) {
            Ok(p) if p != 0 => Some(p),
            _ => {
                self.fail(field, format!("{p} is not a port"), "use 1 to 65535");
                None
            }
        }
    }

    fn ipv4(&mut self, field: &str, s: &str) -> Option<Ipv4Addr> {
        match s.parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.fail(
                    field,
                    format!("{s:?} is not an IPv4 address"),
                    "write it like \"10.242.0.2\"",
                );
                None
            }
        }
    }

    fn ipv4_net(&mut self, field: &str, s: &str, example: &str) -> Option<Ipv4Net> {
        let net: Ipv4Net = match s.parse() {
            Ok(n) => n,
            Err(_) => {
                self.fail(
                    field,
                    format!("{s:?} is not an IPv4 CIDR"),
                    format!("write it like {example}"),
                );
                return None;
            }
        };
        if net.trunc() != net {
            self.fail(
                field,
                format!("{s} has host bits set"),
                format!("write {}", net.trunc()),
            );
            return None;
        }
        Some(net)
    }
}

fn first_host(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const GOOD: &str = r#"
moniker = "demo"
description = "free text"

[bottle]
image = "localhost/rbm-demo-bottle:latest"
command = ["sleep", "infinity"]
env = { KEY = "value" }
volumes = ["./work:/workspace"]
workdir = "/workspace"

[enclave]
subnet = "10.242.0.0/24"
sentry_ip = "10.242.0.2"
bottle_ip = "10.242.0.3"

[uplink]
dns = "allowlist"
access = "allowlist"
domains = ["pypi.org", "*.pythonhosted.org", "github.com:22,443"]
cidrs = ["160.79.104.0/23"]
upstream_dns = ["192.0.2.53"]
min_ttl = 30
subnet = "10.243.0.0/24"

[[entry]]
host_port = 8890
bottle_port = 8888
protocol = "tcp"
"#;

    fn parse(text: &str) -> Result<Profile, ProfileError> {
        Profile::parse(text, Path::new("profiles/x.toml"))
    }

    fn problems(text: &str) -> Vec<Problem> {
        match parse(text) {
            Err(ProfileError::Invalid { problems, .. }) => problems,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    fn with(from: &str, to: &str) -> String {
        assert!(GOOD.contains(from), "test bug: {from:?} not in GOOD");
        GOOD.replacen(from, to, 1)
    }

    fn has(problems: &[Problem], field: &str, needle: &str) -> bool {
        problems
            .iter()
            .any(|p| p.field == field && p.to_string().contains(needle))
    }

    #[test]
    fn good_profile_parses() {
        let p = parse(GOOD).unwrap();
        assert_eq!(p.moniker, "demo");
        assert_eq!(p.uplink.domains.len(), 3);
        assert_eq!(
            p.entries,
            vec![Entry {
                host_port: 8890,
                bottle_port: 8888,
                protocol: Protocol::Tcp
            }]
        );
        assert_eq!(p.names().sentry, "rbm-demo-sentry");
        assert_eq!(
            p.volumes_resolved(Path::new("/p")),
            vec!["/p/./work:/workspace".to_string()]
        );
    }

    #[test]
    fn unknown_field_names_file_and_field() {
        let err = parse(&with("workdir =", "wrkdir ="))
            .unwrap_err()
            .to_string();
        assert!(err.contains("profiles/x.toml"), "{err}");
        assert!(err.contains("wrkdir"), "{err}");
        assert!(err.contains("remove it or check its spelling"), "{err}");
    }

    #[test]
    fn bad_mode_is_syntax_error() {
        let err = parse(&with("dns = \"allowlist\"", "dns = \"some\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("some") && err.contains("allowlist"), "{err}");
    }

    #[test]
    fn moniker_rules() {
        assert!(has(
            &problems(&with("\"demo\"", "\"Demo\"")),
            "moniker",
            "lowercase"
        ));
        assert!(has(
            &problems(&with("\"demo\"", "\"d\"")),
            "moniker",
            "2 to 12"
        ));
        assert!(has(
            &problems(&with("\"demo\"", "\"abcdefghijklm\"")),
            "moniker",
            "2 to 12"
        ));
        assert!(has(
            &problems(&with("\"demo\"", "\"1demo\"")),
            "moniker",
            "lowercase letter"
        ));
    }

    #[test]
    fn enclave_rules() {
        let p = problems(&with(
            "bottle_ip = \"10.242.0.3\"",
            "bottle_ip = \"10.242.1.3\"",
        ));
        assert!(has(&p, "enclave.bottle_ip", "outside enclave.subnet"));
        let p = problems(&with(
            "bottle_ip = \"10.242.0.3\"",
            "bottle_ip = \"10.242.0.2\"",
        ));
        assert!(has(&p, "enclave.bottle_ip", "same address"));
        let p = problems(&with(
            "bottle_ip = \"10.242.0.3\"",
            "bottle_ip = \"10.242.0.255\"",
        ));
        assert!(has(&p, "enclave.bottle_ip", "broadcast"));
        let p = problems(&with(
            "sentry_ip = \"10.242.0.2\"",
            "sentry_ip = \"10.242.0.0\"",
        ));
        assert!(has(&p, "enclave.sentry_ip", "network or broadcast"));
        let p = problems(&with(
            "sentry_ip = \"10.242.0.2\"",
            "sentry_ip = \"10.242.0.1\"",
        ));
        assert!(has(&p, "enclave.sentry_ip", "gateway"));
        let p = problems(&with(
            "subnet = \"10.242.0.0/24\"",
            "subnet = \"10.242.0.0/33\"",
        ));
        assert!(has(&p, "enclave.subnet", "not an IPv4 CIDR"));
        let p = problems(&with(
            "subnet = \"10.242.0.0/24\"",
            "subnet = \"10.242.0.7/24\"",
        ));
        assert!(has(&p, "enclave.subnet", "write 10.242.0.0/24"));
        let p = problems(&with(
            "subnet = \"10.243.0.0/24\"",
            "subnet = \"10.242.0.0/16\"",
        ));
        assert!(has(&p, "uplink.subnet", "overlaps"));
    }

    #[test]
    fn domain_rules_are_checked_with_index() {
        let p = problems(&with(
            "\"pypi.org\",",
            "\"pypi..org\", \"a.*.org\", \"x.org:0\", \"y.org:70000\",",
        ));
        assert!(has(&p, "uplink.domains[0]", "empty label"));
        assert!(has(&p, "uplink.domains[1]", "wildcard"));
        assert!(has(&p, "uplink.domains[2]", "port"));
        assert!(has(&p, "uplink.domains[3]", "port"));
        let long_label = "a".repeat(64);
        let p = problems(&with("\"pypi.org\",", &format!("\"{long_label}.org\",")));
        assert!(has(&p, "uplink.domains[0]", "63"));
    }

    #[test]
    fn empty_domains_with_allowlist_dns_is_explained() {
        let text = with(
            "domains = [\"pypi.org\", \"*.pythonhosted.org\", \"github.com:22,443\"]",
            "domains = []",
        );
        let p = problems(&text);
        assert!(has(&p, "uplink.domains", "could resolve no name"));
        let text = text.replace("dns = \"allowlist\"", "dns = \"disabled\"");
        assert!(parse(&text).is_ok());
    }

    #[test]
    fn cidr_rules() {
        let p = problems(&with(
            "\"160.79.104.0/23\"",
            "\"160.79.105.0/23\", \"nope\", \"0.0.0.0/0\"",
        ));
        assert!(has(&p, "uplink.cidrs[0]", "write 160.79.104.0/23"));
        assert!(has(&p, "uplink.cidrs[1]", "not a CIDR"));
        assert!(has(&p, "uplink.cidrs[2]", "access = \"global\""));
    }

    #[test]
    fn entry_rules() {
        let two = "[[entry]]\nhost_port = 8890\nbottle_port = 1\n";
        let p = problems(&format!("{GOOD}{two}"));
        assert!(has(&p, "entry[1].host_port", "published twice"));
        let p = problems(&with("host_port = 8890", "host_port = 0"));
        assert!(has(&p, "entry[0].host_port", "1 to 65535"));
        let p = problems(&with("bottle_port = 8888", "bottle_port = 65536"));
        assert!(has(&p, "entry[0].bottle_port", "1 to 65535"));
        let udp = "[[entry]]\nhost_port = 8890\nbottle_port = 1\nprotocol = \"udp\"\n";
        assert!(parse(&format!("{GOOD}{udp}")).is_ok());
    }

    #[test]
    fn other_rules() {
        assert!(has(
            &problems(&with("min_ttl = 30", "min_ttl = -1")),
            "uplink.min_ttl",
            "out of range"
        ));
        assert!(has(
            &problems(&with("\"192.0.2.53\"", "\"10.242.0.9\"")),
            "uplink.upstream_dns[0]",
            "inside the enclave"
        ));
        assert!(has(
            &problems(&with("\"192.0.2.53\"", "\"dns.google\"")),
            "uplink.upstream_dns[0]",
            "not an IP"
        ));
        assert!(has(
            &problems(&with("\"./work:/workspace\"", "\"./work\"")),
            "bottle.volumes[0]",
            "podman -v"
        ));
        assert!(has(
            &problems(&with("\"./work:/workspace\"", "\"./work:workspace\"")),
            "bottle.volumes[0]",
            "not absolute"
        ));
        assert!(has(
            &problems(&with("workdir = \"/workspace\"", "workdir = \"w\"")),
            "bottle.workdir",
            "absolute"
        ));
        assert!(has(
            &problems(&with("KEY =", "\"1KEY\" =")),
            "bottle.env.1KEY",
            "environment variable"
        ));
    }

    #[test]
    fn several_problems_are_reported_together() {
        let text = with("\"demo\"", "\"D\"").replace("min_ttl = 30", "min_ttl = 999999");
        let p = problems(&text);
        assert!(p.len() >= 2, "{p:?}");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("profiles/x.toml is invalid"), "{err}");
        assert!(err.contains("fix:"), "{err}");
    }
}
