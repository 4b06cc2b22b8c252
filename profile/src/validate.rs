//! Checks a raw profile field by field and collects every problem, each
//! with the field and the fix.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};

use super::{
    Bottle, BottleUser, DomainRule, Enclave, Entry, Mode, Problem, Profile, RawBottle, RawEnclave,
    RawEntry, RawProfile, RawUplink, Uplink, DEFAULT_MIN_TTL, MAX_MIN_TTL,
};

#[derive(Default)]
pub(super) struct Validator {
    pub(super) problems: Vec<Problem>,
    /// The profile file's name, for the rule that the bottle may not
    /// write it (`bottle.volumes`).
    pub(super) profile_file: Option<std::ffi::OsString>,
}

impl Validator {
    pub(crate) fn fail(&mut self, field: &str, message: impl Into<String>, fix: impl Into<String>) {
        self.problems.push(Problem {
            field: field.to_string(),
            message: message.into(),
            fix: fix.into(),
        });
    }

    pub(super) fn profile(&mut self, raw: RawProfile) -> Profile {
        self.moniker(&raw.moniker);
        let bottle = self.bottle(raw.bottle);
        let enclave = self.enclave(&raw.enclave);
        let uplink = self.uplink(raw.uplink, enclave.as_ref());
        let entries = self.entries(&raw.entry);
        let credentials = self.credentials(&raw.credential, &uplink, &bottle, &raw.moniker);
        let requests = self.requests(&raw.requests, &uplink);
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
            credentials,
            requests,
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
        } else if raw.image.starts_with('-') || raw.image.contains(char::is_whitespace) {
            // `podman run` would read "--privileged" as its own option.
            self.fail(
                "bottle.image",
                format!("{:?} is not an image name", raw.image),
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
            if !is_env_name(key) {
                self.fail(
                    &format!("bottle.env.{key}"),
                    "is not a valid environment variable name",
                    "use letters, digits and _ only, not starting with a digit",
                );
            }
        }
        let file = self.profile_file.clone();
        let volumes = self.volumes(&raw.volumes, file.as_deref());
        if let Some(w) = &raw.workdir {
            if !w.starts_with('/') {
                self.fail(
                    "bottle.workdir",
                    format!("{w:?} is not an absolute path"),
                    "write the path inside the bottle starting with /",
                );
            }
        }
        let user = raw.user.as_deref().and_then(|u| {
            let parsed = BottleUser::parse(u);
            if parsed.is_none() {
                self.fail(
                    "bottle.user",
                    format!("{u:?} is not a numeric user (and group) below 65536"),
                    "write the ids the image's USER has, e.g. \"1000:1000\" (names cannot be mapped to your user)",
                );
            }
            parsed
        });
        if raw.attach.as_ref().is_some_and(Vec::is_empty) {
            self.fail(
                "bottle.attach",
                "is an empty list",
                "remove it to attach a shell, or give the program and its arguments",
            );
        }
        Bottle {
            image: raw.image,
            command: raw.command,
            env: raw.env,
            volumes,
            workdir: raw.workdir,
            user,
            attach: raw.attach,
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
            name_binding: raw.name_binding,
        }
    }

    fn host_bits_set(&mut self, field: &str, s: &str, network: &dyn std::fmt::Display) {
        self.fail(
            field,
            format!("{s} has host bits set"),
            format!("write {network}"),
        );
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
            self.host_bits_set(field, s, &net.trunc());
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
        let mut seen = HashSet::new();
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
            self.host_bits_set(field, s, &net.trunc());
            return None;
        }
        Some(net)
    }
}

/// Every string of the profile, keys included, is data: none may hold a
/// control character. A newline in a value that goes into a unit file
/// (Quadlet's `WorkingDir=`, `Exec=`, ...) would start a key of its own
/// there, e.g. `ExecStartPre=` running as root at boot; a tab, NUL or
/// carriage return changes how systemd, podman or a terminal reads it.
/// One problem per string, named by its place (`bottle.command[2]`,
/// `bottle.env.K`, `credential[0].from`).
pub(super) fn control_characters(table: &toml::Table) -> Vec<Problem> {
    let mut problems = Vec::new();
    walk_table(table, "", &mut problems);
    problems
}

fn walk_table(table: &toml::Table, at: &str, problems: &mut Vec<Problem>) {
    for (key, value) in table {
        let field = if at.is_empty() {
            key.clone()
        } else {
            format!("{at}.{key}")
        };
        if let Some(c) = key.chars().find(|c| c.is_control()) {
            problems.push(control_problem(&format!("{field:?}"), "its name", c));
        }
        walk(value, &field, problems);
    }
}

fn walk(value: &toml::Value, field: &str, problems: &mut Vec<Problem>) {
    match value {
        toml::Value::String(s) => {
            if let Some(c) = s.chars().find(|c| c.is_control()) {
                problems.push(control_problem(field, "the value", c));
            }
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &format!("{field}[{i}]"), problems);
            }
        }
        toml::Value::Table(t) => walk_table(t, field, problems),
        _ => {}
    }
}

fn control_problem(field: &str, what: &str, c: char) -> Problem {
    let name = match c {
        '\n' => "a newline".to_string(),
        '\r' => "a carriage return".to_string(),
        '\t' => "a tab".to_string(),
        '\0' => "a NUL".to_string(),
        '\u{7f}' => "a DEL".to_string(),
        c => format!("the control character U+{:04X}", c as u32),
    };
    Problem {
        field: field.to_string(),
        message: format!("{what} holds {name}: a profile's strings are data, and a control character could be read as syntax (a newline starts a new key in a unit file)"),
        fix: "write it on one line without control characters (no \\n, \\t or \\u escapes of them); a command's arguments go in separate list items".to_string(),
    }
}

/// Letters, digits and `_`, not starting with a digit.
pub(crate) fn is_env_name(key: &str) -> bool {
    key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn first_host(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + 1)
}

#[cfg(test)]
mod tests {
    use crate::tests::{has, parse, problems, with, GOOD};

    const INJECTED: &str =
        r#"/tmp\n[Service]\nExecStartPre=/bin/sh -c \"id > /tmp/rbm-pwned\"\n[Container]"#;

    #[test]
    fn a_newline_in_any_string_is_refused_with_its_field() {
        let credential = "\n[[credential]]\nenv = \"API_KEY\"\nfrom = \"env:REAL_KEY\"\nhosts = [\"pypi.org\"]\nupstream_ca = \"./ca.pem\"\n";
        for (from, to, field) in [
            (
                "\"/workspace\"",
                format!("\"{INJECTED}\""),
                "bottle.workdir",
            ),
            ("\"free text\"", "\"a\\nb\"".into(), "description"),
            (
                "\"localhost/rbm-demo-bottle:latest\"",
                "\"img\\n[Service]\"".into(),
                "bottle.image",
            ),
            (
                "[\"sleep\", \"infinity\"]",
                "[\"sleep\", \"x\", \"1\\nExecStartPre=/bin/id\"]".into(),
                "bottle.command[2]",
            ),
            ("\"value\"", "\"v\\r\\nX=1\"".into(), "bottle.env.KEY"),
            (
                "\"./work:/workspace\"",
                "\"./work:/workspace:ro\\nExecStartPre=/bin/id\"".into(),
                "bottle.volumes[0]",
            ),
            (
                "\"./work:/workspace\"",
                "{ host = \"./w\\tx\", bottle = \"/w\" }".into(),
                "bottle.volumes[0].host",
            ),
            (
                "\"pypi.org\",",
                "\"pypi.org\\u0000\",".into(),
                "uplink.domains[0]",
            ),
            (
                "\"192.0.2.53\"",
                "\"192.0.2.53\\u007f\"".into(),
                "uplink.upstream_dns[0]",
            ),
        ] {
            let p = problems(&with(from, &to));
            assert!(
                has(&p, field, "control character") || has(&p, field, "holds a"),
                "{field}: {p:?}"
            );
            assert!(
                has(&p, field, "fix: write it on one line"),
                "{field}: {p:?}"
            );
        }
        let text = format!("{GOOD}{}", credential.replace("env:REAL_KEY", "file:/k\\n"));
        assert!(has(&problems(&text), "credential[0].from", "a newline"));
        let text = format!(
            "{GOOD}{}",
            credential.replace("./ca.pem", "./ca\\u001b.pem")
        );
        assert!(has(&problems(&text), "credential[0].upstream_ca", "U+001B"));
    }

    #[test]
    fn a_multi_line_string_is_refused_too() {
        let p = problems(&with("\"free text\"", "\"\"\"\nline one\nline two\"\"\""));
        assert!(has(&p, "description", "a newline"), "{p:?}");
    }

    #[test]
    fn percent_dollar_quotes_and_backslashes_are_plain_data() {
        let text = with("\"value\"", r#""%h ${HOME} $HOME \"q\" 'q' \\ ;""#);
        let p = parse(&with_workdir(&text, "/w/%h/$HOME")).unwrap();
        assert_eq!(p.bottle.env["KEY"], r#"%h ${HOME} $HOME "q" 'q' \ ;"#);
        assert_eq!(p.bottle.workdir.as_deref(), Some("/w/%h/$HOME"));
    }

    fn with_workdir(text: &str, workdir: &str) -> String {
        text.replacen("\"/workspace\"\n", &format!("{workdir:?}\n"), 1)
    }
}
