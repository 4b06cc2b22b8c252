//! The `[[requests]]` section of a profile: for a few hosts (GitHub, a
//! package registry) a name allowlist is not enough, so the sentry
//! terminates their TLS and lets through only the requests a rule allows
//! (`"GET *"`, `"POST /my-org/*/git-receive-pack"`). Its raw shape, its
//! checks, and what a rule means: how a request's path is normalised and
//! matched. No I/O; the agent applies the decision to each request.

use serde::Deserialize;

use crate::validate::Validator;
use crate::Uplink;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRequests {
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    allow: Vec<String>,
    upstream_ca: Option<String>,
    #[serde(default)]
    outside: bool,
}

/// Hosts whose every request must match one of `allow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRules {
    /// Exact names, lowercase, no trailing dot.
    pub hosts: Vec<String>,
    pub allow: Vec<RequestRule>,
    /// A CA file (PEM) the sentry also trusts for these hosts' real
    /// certificates, as written (relative to the profile's directory).
    pub upstream_ca: Option<String>,
    /// `upstream_ca` may lie outside the profile's folder.
    pub outside: bool,
}

/// One `"METHOD PATH"` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRule {
    /// As the profile wrote it, for messages.
    pub text: String,
    /// None: any method (`*`).
    pub method: Option<String>,
    pub path: PathPattern,
}

/// What a rule's path matches, segment by segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    /// `*`: any path (and the asterisk-form target of `OPTIONS *`).
    Any,
    /// `/a/*/c`, `/a/**`: one pattern per segment of the normalised path.
    Segments(Vec<Segment>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Text, with `*` standing for any run of characters inside one
    /// segment (never a `/`); normalised as a request's path is.
    Glob(String),
    /// `**`, last only: any number of segments, none included.
    Rest,
}

impl RequestRule {
    pub fn parse(text: &str) -> Result<RequestRule, String> {
        let mut words = text.split_whitespace();
        let (Some(method), Some(path), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!("{text:?} is not \"METHOD PATH\""));
        };
        let method = match method {
            "*" => None,
            m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase() || b == b'-') => {
                Some(m.to_string())
            }
            m => {
                return Err(format!(
                    "{m:?} is not an HTTP method (write it in capitals, e.g. GET, or * for any)"
                ))
            }
        };
        let path = if path == "*" {
            PathPattern::Any
        } else {
            PathPattern::Segments(pattern_segments(path)?)
        };
        Ok(RequestRule {
            text: text.split_whitespace().collect::<Vec<_>>().join(" "),
            method,
            path,
        })
    }

    /// Whether the rule allows `method` on `path` (normalised by
    /// `normalize_path`, or `*`).
    pub fn allows(&self, method: &str, path: &str) -> bool {
        if self.method.as_deref().is_some_and(|m| m != method) {
            return false;
        }
        match &self.path {
            PathPattern::Any => true,
            PathPattern::Segments(pattern) => {
                path != "*" && segments_match(pattern, &path_segments(path))
            }
        }
    }
}

fn pattern_segments(path: &str) -> Result<Vec<Segment>, String> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!("{path:?} is neither * nor a path starting with /"));
    };
    if path.contains(['?', '#']) {
        return Err(format!(
            "{path:?} has a query or fragment: a rule matches the path only"
        ));
    }
    let raw: Vec<&str> = rest.split('/').collect();
    let mut out = Vec::new();
    for (i, seg) in raw.iter().enumerate() {
        let last = i + 1 == raw.len();
        match *seg {
            "**" if last => out.push(Segment::Rest),
            "**" => {
                return Err(format!(
                    "{path:?} has ** before its last segment (** matches the rest of a path)"
                ))
            }
            "." | ".." => {
                return Err(format!(
                    "{path:?} has a . or .. segment, which no normalised path has"
                ))
            }
            "" if !last => {
                return Err(format!(
                    "{path:?} has an empty segment (//), which no normalised path has"
                ))
            }
            s => {
                // `*` is the rule's own; everything else is normalised as a
                // request's path is, so `%2D` and `-` are one.
                let parts: Result<Vec<String>, String> =
                    s.split("*").map(decode_unreserved).collect();
                let glob = parts.map_err(|e| format!("{path:?}: {e}"))?.join("*");
                out.push(Segment::Glob(glob));
            }
        }
    }
    Ok(out)
}

/// A request's path as the rules see it, and as the sentry sends it on:
/// percent-encoded unreserved characters decoded (`%2E` is `.`), the
/// other escapes in capitals, `.` and `..` segments resolved, and
/// duplicate slashes made one. So `/my-org/../other/x`,
/// `/my-org/%2e%2e/other/x` and `//other//x` are all `/other/x`. `Err`
/// (why) for what servers read differently and no rule should guess: an
/// encoded `/`, `\` or NUL, a literal `\`, a bad escape.
pub fn normalize_path(path: &str) -> Result<String, String> {
    if path == "*" {
        return Ok(path.into());
    }
    if !path.starts_with('/') {
        return Err(format!("a path that does not start with /: {path:?}"));
    }
    let decoded = decode_unreserved(path)?;
    let raw: Vec<&str> = decoded.split('/').skip(1).collect();
    let mut segs: Vec<&str> = Vec::new();
    for seg in &raw {
        // `..;x` is `..` to servers that cut path parameters (Tomcat,
        // Jetty): a segment that is a dot segment before its `;`.
        if seg.contains(';') && matches!(seg.split(';').next(), Some("." | "..")) {
            return Err(format!(
                "a dot segment with a parameter ({seg:?}), which some servers read as {:?}",
                seg.split(';').next().unwrap_or_default()
            ));
        }
        match *seg {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    let trailing = matches!(raw.last(), Some(&"") | Some(&".") | Some(&"..")) && !segs.is_empty();
    let mut out = format!("/{}", segs.join("/"));
    if trailing {
        out.push('/');
    }
    Ok(out)
}

/// `text` with escapes of unreserved characters decoded and the rest in
/// capitals; `Err` for an encoded `/`, `\` or NUL, a literal `\` or a
/// character outside a URL's.
fn decode_unreserved(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "a % that is not an escape (%XX)".to_string())?;
            match hex {
                b'%' => {
                    return Err(
                        "an encoded % (%25) in the path, which servers that decode twice read as another escape"
                            .into(),
                    )
                }
                b'/' | b'\\' | 0 => {
                    return Err(format!(
                        "an encoded {:?} (%{hex:02X}) in the path, which servers read differently",
                        hex as char
                    ))
                }
                h if is_unreserved(h) => out.push(h as char),
                h => out.push_str(&format!("%{h:02X}")),
            }
            i += 3;
            continue;
        }
        if b == b'\\' {
            return Err("a \\ in the path, which some servers read as /".into());
        }
        if !(b.is_ascii_graphic()) {
            return Err(format!("a byte 0x{b:02x} in the path"));
        }
        out.push(b as char);
        i += 1;
    }
    Ok(out)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

/// A normalised path's segments: `/a/b/` is `a`, `b`, `` (a trailing
/// slash is an empty last segment); `/` is one empty segment.
fn path_segments(path: &str) -> Vec<&str> {
    path.strip_prefix('/').unwrap_or(path).split('/').collect()
}

fn segments_match(pattern: &[Segment], path: &[&str]) -> bool {
    match (pattern.first(), path.first()) {
        (Some(Segment::Rest), _) => true,
        (None, None) => true,
        (Some(Segment::Glob(g)), Some(s)) => {
            glob(g.as_bytes(), s.as_bytes()) && segments_match(&pattern[1..], &path[1..])
        }
        _ => false,
    }
}

/// `*` matches any run of bytes; everything else itself.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|k| glob(rest, &text[k..])),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

/// The sentry's decision on one request to a host with rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send it on, with this path (normalised) in place of its own.
    Allow { path: String },
    /// Refuse it (403), saying why.
    Deny { reason: String },
}

/// Decides `method` on `path` (without its query) and `query` against the
/// rules of one host. A git smart-HTTP discovery (`GET P/info/refs?service=S`)
/// is the start of the operation it names: it is allowed when `POST P/S`
/// is, so a push the rules refuse fails at its first request, with the
/// reason in git's own error, before git sends anything.
pub fn decide(rules: &[&RequestRule], method: &str, path: &str, query: Option<&str>) -> Decision {
    let path = match normalize_path(path) {
        Ok(p) => p,
        Err(why) => return Decision::Deny { reason: why },
    };
    let allowed = |m: &str, p: &str| rules.iter().any(|r| r.allows(m, p));
    let services = git_services(&path, query);
    let ok = match (&services, method) {
        (Some(services), "GET" | "HEAD") => {
            let prefix = path.trim_end_matches("/info/refs");
            let refused = services.iter().find(|s| {
                !matches!(s.as_str(), "git-upload-pack" | "git-receive-pack")
                    || !allowed("POST", &format!("{prefix}/{s}"))
            });
            if let Some(service) = refused {
                return Decision::Deny {
                    reason: format!(
                        "{method} {path}?service={service} starts POST {prefix}/{service}, and no rule allows that"
                    ),
                };
            }
            true
        }
        _ => allowed(method, &path),
    };
    if ok {
        Decision::Allow { path }
    } else {
        Decision::Deny {
            reason: format!("no rule allows {method} {path}"),
        }
    }
}

/// The `service` parameters of a git discovery request (`…/info/refs`),
/// decoded as git http-backend decodes them; None for any other request.
fn git_services(path: &str, query: Option<&str>) -> Option<Vec<String>> {
    if !path.ends_with("/info/refs") {
        return None;
    }
    let services: Vec<String> = query?
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(k) == "service").then(|| form_decode(v))
        })
        .collect();
    (!services.is_empty()).then_some(services)
}

/// `application/x-www-form-urlencoded` decoding, lossy.
fn form_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(h) => {
                        out.push(h);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Validator {
    pub(crate) fn requests(&mut self, raw: &[RawRequests], uplink: &Uplink) -> Vec<RequestRules> {
        let mut out = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let field = |name: &str| format!("requests[{i}].{name}");
            if r.hosts.is_empty() {
                self.fail(
                    &field("hosts"),
                    "is empty: the rules would apply to no host",
                    "list the names whose requests these rules check, e.g. [\"github.com\", \"api.github.com\"]",
                );
            }
            let hosts = self.inspected_hosts(&field("hosts"), &r.hosts, uplink);
            for (j, host) in hosts.iter().enumerate() {
                if seen.contains(host) {
                    self.fail(
                        &format!("{}[{j}]", field("hosts")),
                        format!("{host} is in two [[requests]] tables"),
                        "give each host one table, with all its rules",
                    );
                }
                seen.push(host.clone());
            }
            if !uplink.name_binding {
                self.fail(
                    &field("hosts"),
                    "needs uplink.name_binding: without it a connection could reach these hosts at another allowed name's address, past the rules",
                    "remove uplink.name_binding = false (it is on by default)",
                );
            }
            if r.allow.is_empty() {
                self.fail(
                    &field("allow"),
                    "is empty: every request to these hosts would be refused",
                    "list what may pass, e.g. [\"GET *\", \"HEAD *\"]; to refuse a host altogether, take it out of uplink.domains",
                );
            }
            let mut allow = Vec::new();
            for (j, text) in r.allow.iter().enumerate() {
                match RequestRule::parse(text) {
                    Ok(rule) => allow.push(rule),
                    Err(e) => self.fail(
                        &format!("{}[{j}]", field("allow")),
                        e,
                        "write \"METHOD PATH\": a method in capitals or *, and * or a path from / where * stands for any text within a segment and a last ** for the rest, e.g. \"POST /my-org/*/git-receive-pack\"",
                    ),
                }
            }
            if let (Some(path), false) = (&r.upstream_ca, r.outside) {
                if crate::leaves_folder(path) {
                    self.fail(
                        &field("upstream_ca"),
                        format!("{path} is outside the profile's folder"),
                        "put the file in the profile's folder and name it by a relative path without `..`, or add `outside = true` to this table if you mean it",
                    );
                }
            }
            out.push(RequestRules {
                hosts,
                allow,
                upstream_ca: r.upstream_ca.clone(),
                outside: r.outside,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{has, parse, problems, GOOD};

    fn rules(texts: &[&str]) -> Vec<RequestRule> {
        texts
            .iter()
            .map(|t| RequestRule::parse(t).unwrap())
            .collect()
    }

    fn decided(rules: &[RequestRule], method: &str, target: &str) -> Decision {
        let refs: Vec<&RequestRule> = rules.iter().collect();
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        decide(&refs, method, path, query)
    }

    const GITHUB: &[&str] = &[
        "GET *",
        "HEAD *",
        "POST /*/*/git-upload-pack",
        "POST /my-org/*/git-receive-pack",
    ];

    #[test]
    fn read_only_github_clones_anything_and_pushes_to_my_org_only() {
        let r = rules(GITHUB);
        let allow = |m: &str, t: &str| matches!(decided(&r, m, t), Decision::Allow { .. });
        assert!(allow(
            "GET",
            "/other-org/tool.git/info/refs?service=git-upload-pack"
        ));
        assert!(allow("POST", "/other-org/tool.git/git-upload-pack"));
        assert!(allow(
            "GET",
            "/my-org/tool.git/info/refs?service=git-receive-pack"
        ));
        assert!(allow("POST", "/my-org/tool.git/git-receive-pack"));
        assert!(allow("HEAD", "/"));
        assert!(!allow("POST", "/other-org/tool.git/git-receive-pack"));
        assert!(!allow(
            "GET",
            "/other-org/tool.git/info/refs?service=git-receive-pack"
        ));
        assert!(!allow(
            "GET",
            "/other-org/tool.git/info/refs?a=1&servic%65=git-receive-pack"
        ));
        assert!(!allow(
            "GET",
            "/other-org/tool.git/info/refs?service=git-receive-pack&service=git-upload-pack"
        ));
        assert!(!allow("GET", "/x/y/info/refs?service=git-evil-pack"));
        assert!(!allow("PUT", "/my-org/tool.git/git-receive-pack"));
        assert!(!allow("post", "/my-org/tool.git/git-receive-pack"));
        assert!(!allow("POST", "/repos/my-org/tool/issues"));
        match decided(&r, "POST", "/other-org/tool.git/git-receive-pack") {
            Decision::Deny { reason } => {
                assert_eq!(
                    reason,
                    "no rule allows POST /other-org/tool.git/git-receive-pack"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn encoded_and_dot_segment_paths_do_not_escape_a_rule() {
        let r = rules(&["POST /my-org/*/git-receive-pack", "GET /my-org/**"]);
        let allow = |m: &str, t: &str| decided(&r, m, t);
        for target in [
            "/my-org/../other-org/tool.git/git-receive-pack",
            "/my-org/%2e%2e/other-org/tool.git/git-receive-pack",
            "/my-org/%2E%2E/%2E%2E/other-org/tool/git-receive-pack",
            "/my-org/./../other-org/t/git-receive-pack",
            "//other-org//tool//git-receive-pack",
            "/my-org/a/b/git-receive-pack",
            "/My-Org/tool/git-receive-pack",
        ] {
            assert!(
                matches!(allow("POST", target), Decision::Deny { .. }),
                "{target}"
            );
        }
        for target in [
            "/my-org%2F..%2Fother-org/t/git-receive-pack",
            "/my-org/t%5C..%5C/git-receive-pack",
            "/my-org/t/%00/git-receive-pack",
            "/my-org/t\\..\\x/git-receive-pack",
            "/my-org/%zz/git-receive-pack",
            "/my-org/..;/other-org/t/git-receive-pack",
            "/my-org/.;x/t/git-receive-pack",
            "/my-org/%252e%252e/other-org/t/git-receive-pack",
        ] {
            match allow("POST", target) {
                Decision::Deny { reason } => {
                    assert!(!reason.starts_with("no rule"), "{target}: {reason}")
                }
                other => panic!("{target}: {other:?}"),
            }
        }
        assert_eq!(
            allow("POST", "/%6dy-org//tool.git/./git-receive-pack"),
            Decision::Allow {
                path: "/my-org/tool.git/git-receive-pack".into()
            }
        );
        assert_eq!(
            allow("GET", "/my-org/x/../y/%41b%c3%a9/"),
            Decision::Allow {
                path: "/my-org/y/Ab%C3%A9/".into()
            }
        );
        assert!(matches!(allow("GET", "/my-org"), Decision::Allow { .. }));
        assert!(matches!(allow("GET", "/my-orgx/a"), Decision::Deny { .. }));
        assert!(matches!(allow("GET", "/my-org/"), Decision::Allow { .. }));
        assert!(matches!(allow("OPTIONS", "*"), Decision::Deny { .. }));
    }

    #[test]
    fn globs_stay_inside_a_segment() {
        let r = rules(&["GET /*/tool*.git/info/*"]);
        let allow = |t: &str| matches!(decided(&r, "GET", t), Decision::Allow { .. });
        assert!(allow("/a/tool.git/info/refs"));
        assert!(allow("/a/tools.git/info/x"));
        assert!(!allow("/a/b/tool.git/info/refs"));
        assert!(!allow("/a/tool.git/info/refs/x"));
        assert!(!allow("/a/x-tool.git/info/refs"));
    }

    #[test]
    fn requests_name_their_hosts_and_rules() {
        let text = format!(
            "{GOOD}\n[[requests]]\nhosts = [\"PyPI.org.\"]\nallow = [\"GET  *\", \"POST /my-org/*/git-receive-pack\"]\n"
        );
        let p = parse(&text).unwrap();
        assert_eq!(p.requests[0].hosts, ["pypi.org"]);
        assert_eq!(p.requests[0].allow[0].text, "GET *");
        assert_eq!(p.requests[0].allow[0].method.as_deref(), Some("GET"));
        let changed = parse(&text.replace("GET  *", "HEAD *")).unwrap();
        assert!(p.restart_fields(&changed).is_empty(), "rules reload");
        let moved = parse(
            &text
                .replace("\"PyPI.org.\"", "\"PyPI.org.\", \"github.com\"")
                .replace("domains = [", "domains = [\"github.com\", "),
        )
        .unwrap();
        assert_eq!(p.restart_fields(&moved), vec!["requests.hosts"]);
    }

    #[test]
    fn bad_requests_name_the_field_and_the_fix() {
        let with = |body: &str| problems(&format!("{GOOD}\n[[requests]]\n{body}"));
        let p = with("hosts = [\"pypi.org\"]\nallow = [\"get *\"]\n");
        assert!(
            has(&p, "requests[0].allow[0]", "not an HTTP method"),
            "{p:?}"
        );
        let p = with("hosts = [\"pypi.org\"]\nallow = [\"GET my-org\"]\n");
        assert!(
            has(&p, "requests[0].allow[0]", "neither * nor a path"),
            "{p:?}"
        );
        let p = with("hosts = [\"pypi.org\"]\nallow = [\"GET /a/**/b\"]\n");
        assert!(
            has(&p, "requests[0].allow[0]", "** before its last"),
            "{p:?}"
        );
        let p = with("hosts = [\"pypi.org\"]\nallow = [\"GET /a?x=1\"]\n");
        assert!(has(&p, "requests[0].allow[0]", "query"), "{p:?}");
        let p = with("hosts = [\"pypi.org\"]\nallow = [\"GET /a/../b\"]\n");
        assert!(has(&p, "requests[0].allow[0]", ". or .."), "{p:?}");
        let p = problems(&format!(
            "{}\n[[requests]]\nhosts = [\"pypi.org\"]\nallow = [\"GET *\"]\n",
            GOOD.replace("[uplink]", "[uplink]\nname_binding = false")
        ));
        assert!(
            has(&p, "requests[0].hosts", "needs uplink.name_binding"),
            "{p:?}"
        );
        let p = with("hosts = [\"pypi.org\"]\nallow = []\n");
        assert!(has(&p, "requests[0].allow", "is empty"), "{p:?}");
        let p = with("hosts = [\"evil.test\"]\nallow = [\"GET *\"]\n");
        assert!(
            has(&p, "requests[0].hosts[0]", "not allowed on port 443"),
            "{p:?}"
        );
        let p =
            with("hosts = [\"pypi.org\"]\nallow = [\"GET *\"]\nupstream_ca = \"/etc/ca.pem\"\n");
        assert!(
            has(
                &p,
                "requests[0].upstream_ca",
                "outside the profile's folder"
            ),
            "{p:?}"
        );
        let p = with("hosts = [\"pypi.org\"]\nallow = [\"GET *\"]\n[[requests]]\nhosts = [\"pypi.org\"]\nallow = [\"GET *\"]\n");
        assert!(
            has(&p, "requests[1].hosts[0]", "two [[requests]] tables"),
            "{p:?}"
        );
    }
}
