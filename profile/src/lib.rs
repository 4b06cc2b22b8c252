//! rbm-profile: the user-facing profile, shared by the agent and the
//! launcher. A TOML file that says what the bottle runs and what it may
//! reach. Parsing is strict (unknown fields are errors) and every problem
//! names the file, the field and the fix. Portable: no Linux-only crate, so
//! the launcher builds wherever Podman's client runs.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

mod credential;
mod requests;
mod rule;
mod validate;
mod volume;

use credential::RawCredential;
pub use credential::{Credential, Source};
use requests::RawRequests;
pub use requests::{
    decide, normalize_path, Decision, PathPattern, RequestRule, RequestRules, Segment,
};
pub use rule::{normalize, DomainRule, Mode, Ports, RuleError};
use validate::Validator;
pub use volume::{
    profile_outside, resolve_in, volume_holding, volumes_apart, ResolvedVolume, Volume,
};

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
    #[serde(default)]
    credential: Vec<RawCredential>,
    #[serde(default)]
    requests: Vec<RawRequests>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBottle {
    image: String,
    command: Option<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Each a string or a table (`volume`): read there, for messages
    /// that name the volume.
    #[serde(default)]
    volumes: Vec<toml::Value>,
    workdir: Option<String>,
    /// `"UID"` or `"UID:GID"`: read there, for the message.
    user: Option<String>,
    attach: Option<Vec<String>>,
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
    #[serde(default = "yes")]
    name_binding: bool,
}

fn yes() -> bool {
    true
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
    pub credentials: Vec<Credential>,
    /// Hosts whose requests the sentry checks one by one.
    pub requests: Vec<RequestRules>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bottle {
    pub image: String,
    pub command: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    /// Host folders the bottle gets; `Profile::resolve_volumes` says
    /// where they are on this machine.
    pub volumes: Vec<Volume>,
    pub workdir: Option<String>,
    /// The numeric user and group the bottle runs as (`--user`); the
    /// launcher maps this user, not bottle root, to the host user, so the
    /// files it writes in a volume are the user's. None: the image's user.
    pub user: Option<BottleUser>,
    /// What `rbm-launch run` attaches the terminal to in the bottle (a
    /// recipe's agent); None: /bin/sh.
    pub attach: Option<Vec<String>>,
}

/// A numeric user and group inside the bottle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BottleUser {
    pub uid: u32,
    pub gid: u32,
}

impl BottleUser {
    /// `UID` (the group is the same number) or `UID:GID`, numbers below
    /// 65536 (the ids a bottle has).
    pub fn parse(s: &str) -> Option<BottleUser> {
        let id = |t: &str| {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            t.parse::<u32>().ok().filter(|n| *n < 65536)
        };
        let (uid, gid) = match s.split_once(':') {
            Some((u, g)) => (id(u)?, id(g)?),
            None => (id(s)?, id(s)?),
        };
        Some(BottleUser { uid, gid })
    }
}

impl fmt::Display for BottleUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enclave {
    pub subnet: Ipv4Net,
    pub sentry_ip: Ipv4Addr,
    pub bottle_ip: Ipv4Addr,
}

impl Enclave {
    /// The address Podman gives the sentry on the enclave: the highest host
    /// address that is neither the sentry's nor the bottle's (.254 of a
    /// /24). `sentry_ip`, the bottle's gateway and resolver, is added by
    /// the agent itself once its filter is in force, so a sentry that
    /// starts again while its bottle runs takes nothing from it before.
    pub fn sentry_link_ip(&self) -> Ipv4Addr {
        let last = u32::from(self.subnet.broadcast());
        (1..=3)
            .map(|i| Ipv4Addr::from(last - i))
            .find(|ip| *ip != self.sentry_ip && *ip != self.bottle_ip)
            .unwrap_or(self.sentry_ip)
    }
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
    /// Connections to addresses that only names opened must carry an
    /// allowed name on the wire (TLS SNI, HTTP Host, QUIC); default on.
    pub name_binding: bool,
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
        let mut v = Validator {
            profile_file: file.file_name().map(Into::into),
            ..Validator::default()
        };
        // The same text as a plain table: every string in it, whatever
        // field it belongs to, is checked for control characters.
        if let Ok(table) = text.parse::<toml::Table>() {
            v.problems.extend(validate::control_characters(&table));
        }
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

    /// The volumes with their host paths resolved against `folder` (the
    /// folder holding the profile file), symbolic links included; the
    /// first one that leaves the folder without saying `outside = true`,
    /// or that lies inside another the bottle may write, is a problem.
    /// Touches nothing.
    pub fn resolve_volumes(&self, folder: &Path) -> Result<Vec<ResolvedVolume>, Problem> {
        self.bottle
            .volumes
            .iter()
            .enumerate()
            .map(|(i, v)| v.resolve(folder, &format!("bottle.volumes[{i}]")))
            .collect::<Result<Vec<_>, _>>()
            .and_then(|vols| volumes_apart(&vols).map(|()| vols))
    }

    /// Names of what rbm creates for this profile.
    pub fn names(&self) -> Names {
        Names::new(&self.moniker)
    }

    /// What a reload applies, in words (the fields `restart_fields` leaves).
    pub const RELOADABLE: &'static str =
        "the [uplink] policy (domains, cidrs, dns, access, min_ttl, name_binding) and the rules of [[requests]]";

    /// The fields that differ between the running profile (`self`) and
    /// `new` and that a live reload cannot apply: they shape the bottle,
    /// the networks or the sentry's own plumbing, not what the bottle may
    /// reach. Empty when `new` may be reloaded.
    pub fn restart_fields(&self, new: &Profile) -> Vec<&'static str> {
        let (a, b) = (self, new);
        let differs = [
            ("moniker", a.moniker != b.moniker),
            ("bottle.image", a.bottle.image != b.bottle.image),
            ("bottle.command", a.bottle.command != b.bottle.command),
            ("bottle.env", a.bottle.env != b.bottle.env),
            ("bottle.volumes", a.bottle.volumes != b.bottle.volumes),
            ("bottle.workdir", a.bottle.workdir != b.bottle.workdir),
            ("bottle.user", a.bottle.user != b.bottle.user),
            ("enclave.subnet", a.enclave.subnet != b.enclave.subnet),
            (
                "enclave.sentry_ip",
                a.enclave.sentry_ip != b.enclave.sentry_ip,
            ),
            (
                "enclave.bottle_ip",
                a.enclave.bottle_ip != b.enclave.bottle_ip,
            ),
            ("uplink.subnet", a.uplink.subnet != b.uplink.subnet),
            (
                "uplink.upstream_dns",
                a.uplink.upstream_dns != b.uplink.upstream_dns,
            ),
            ("entry", a.entries != b.entries),
            ("credential", a.credentials != b.credentials),
            // Their hosts are in the CA's name constraints and the
            // sentry's upstream trust; their rules reload.
            (
                "requests.hosts",
                a.requests
                    .iter()
                    .map(|r| (&r.hosts, &r.upstream_ca, r.outside))
                    .ne(b
                        .requests
                        .iter()
                        .map(|r| (&r.hosts, &r.upstream_ca, r.outside))),
            ),
        ];
        differs
            .into_iter()
            .filter(|(_, changed)| *changed)
            .map(|(field, _)| field)
            .collect()
    }
}

/// Whether a host path as a profile wrote it leaves the profile's folder
/// by its text alone: absolute (on any system rbm-launch runs on), or with
/// a `..` component. What a relative path resolves to (symlinks) only the
/// launcher can tell.
pub fn leaves_folder(path: &str) -> bool {
    let drive = path.as_bytes().get(1) == Some(&b':') && path.as_bytes()[0].is_ascii_alphabetic();
    path.starts_with('/')
        || path.starts_with('\\')
        || drive
        || Path::new(path).is_absolute()
        || path.split(['/', '\\']).any(|c| c == "..")
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

    pub(crate) fn parse(text: &str) -> Result<Profile, ProfileError> {
        Profile::parse(text, Path::new("profiles/x.toml"))
    }

    pub(crate) fn problems(text: &str) -> Vec<Problem> {
        match parse(text) {
            Err(ProfileError::Invalid { problems, .. }) => problems,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    pub(crate) fn with(from: &str, to: &str) -> String {
        assert!(GOOD.contains(from), "test bug: {from:?} not in GOOD");
        GOOD.replacen(from, to, 1)
    }

    #[test]
    fn reload_may_change_the_policy_but_not_the_bottle_or_networks() {
        let good = parse(GOOD).unwrap();
        let policy = with(
            "domains = [\"pypi.org\", \"*.pythonhosted.org\", \"github.com:22,443\"]",
            "domains = [\"pypi.org\"]\nname_binding = false",
        );
        let policy = with_text(&policy, "cidrs = [\"160.79.104.0/23\"]", "cidrs = []");
        let policy = with_text(
            &policy,
            "description = \"free text\"",
            "description = \"x\"",
        );
        assert!(good.restart_fields(&parse(&policy).unwrap()).is_empty());
        for (from, to, field) in [
            (
                "image = \"localhost/rbm-demo-bottle:latest\"",
                "image = \"other\"",
                "bottle.image",
            ),
            ("KEY = \"value\"", "KEY = \"other\"", "bottle.env"),
            (
                "bottle_ip = \"10.242.0.3\"",
                "bottle_ip = \"10.242.0.4\"",
                "enclave.bottle_ip",
            ),
            (
                "upstream_dns = [\"192.0.2.53\"]",
                "upstream_dns = []",
                "uplink.upstream_dns",
            ),
            (
                "subnet = \"10.243.0.0/24\"",
                "subnet = \"10.244.0.0/24\"",
                "uplink.subnet",
            ),
            ("bottle_port = 8888", "bottle_port = 8889", "entry"),
            ("moniker = \"demo\"", "moniker = \"other\"", "moniker"),
        ] {
            let changed = parse(&with(from, to)).unwrap();
            assert_eq!(good.restart_fields(&changed), vec![field], "{from} -> {to}");
        }
    }

    fn with_text(text: &str, from: &str, to: &str) -> String {
        assert!(text.contains(from), "test bug: {from:?} not in the text");
        text.replacen(from, to, 1)
    }

    pub(crate) fn has(problems: &[Problem], field: &str, needle: &str) -> bool {
        problems
            .iter()
            .any(|p| p.field == field && p.to_string().contains(needle))
    }

    #[test]
    fn an_image_that_podman_would_read_as_an_option_is_refused() {
        for image in ["--privileged", "-v", "--help", "a b"] {
            let text = GOOD.replace(
                "image = \"localhost/rbm-demo-bottle:latest\"",
                &format!("image = {image:?}"),
            );
            let p = problems(&text);
            assert!(
                has(&p, "bottle.image", "is not an image name"),
                "{image}: {p:?}"
            );
        }
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
            p.bottle.volumes,
            vec![Volume {
                host: "./work".into(),
                bottle: "/workspace".into(),
                read_only: false,
                outside: false
            }]
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
    fn the_bottles_user_is_numeric_and_attach_a_command() {
        let user = |u: &str| with("workdir =", &format!("user = {u:?}\nworkdir ="));
        let p = parse(&user("1000:1001")).unwrap();
        assert_eq!(
            p.bottle.user,
            Some(BottleUser {
                uid: 1000,
                gid: 1001
            })
        );
        assert_eq!(
            parse(&user("1000"))
                .unwrap()
                .bottle
                .user
                .unwrap()
                .to_string(),
            "1000:1000"
        );
        for bad in ["node", "1000:", ":1", "-1", "70000", "1000:staff", " 1000"] {
            assert!(
                has(&problems(&user(bad)), "bottle.user", "numeric"),
                "{bad}"
            );
        }
        assert!(parse(GOOD).unwrap().bottle.user.is_none());
        let attach = with("workdir =", "attach = [\"claude\", \"--x\"]\nworkdir =");
        assert_eq!(
            parse(&attach).unwrap().bottle.attach.unwrap(),
            ["claude", "--x"]
        );
        assert!(has(
            &problems(&with("workdir =", "attach = []\nworkdir =")),
            "bottle.attach",
            "empty"
        ));
        // A running bottle's user changes only with a restart.
        let a = parse(GOOD).unwrap();
        assert_eq!(
            a.restart_fields(&parse(&user("1")).unwrap()),
            ["bottle.user"]
        );
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

    #[test]
    fn the_sentrys_link_address_is_the_highest_free_host() {
        let e = |sentry: &str, bottle: &str| Enclave {
            subnet: "10.242.0.0/24".parse().unwrap(),
            sentry_ip: sentry.parse().unwrap(),
            bottle_ip: bottle.parse().unwrap(),
        };
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(
            e("10.242.0.2", "10.242.0.3").sentry_link_ip(),
            ip("10.242.0.254")
        );
        assert_eq!(
            e("10.242.0.254", "10.242.0.3").sentry_link_ip(),
            ip("10.242.0.253")
        );
        assert_eq!(
            e("10.242.0.254", "10.242.0.253").sentry_link_ip(),
            ip("10.242.0.252")
        );
    }
}
