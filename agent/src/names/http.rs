//! HTTP/1.x: the names a request is for (its Host header, and the host of
//! an absolute or CONNECT target), once its header block is complete.
//!
//! On a port other than 80 a stream that is "not HTTP" passes unchecked
//! (SSH, a database...), so "not HTTP" must mean that no server could take
//! it for a request: whatever a lenient server would still parse as one
//! (leading empty lines, a lower-case method, `HTTP/1.2`, `HTTP/2.0` prior
//! knowledge, HTTP/0.9) is read for its names, or refused.

use super::Seen;

/// What some server splits a request line on: Python's `http.server`
/// splits on any Unicode blank of Latin-1 (vertical tab, form feed, the
/// information separators, NEL, no-break space), not only space and tab.
fn is_blank(b: u8) -> bool {
    matches!(b, 0x09..=0x0d | 0x1c..=0x1f | b' ' | 0x85 | 0xa0)
}

/// RFC 9110's `tchar`: the bytes of a method token.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `stream` can still become an HTTP/1.x request: (after blanks
/// and empty lines, which servers skip) a method token, then a blank. A
/// NUL before the first line feed rules it out (binary protocols show one
/// early; no server that routes by Host takes one).
pub fn may_be_request(stream: &[u8]) -> bool {
    let line = skip_blank(stream);
    let line = &line[..find(line, b"\n").unwrap_or(line.len())];
    if line.contains(&0) {
        return false;
    }
    let method_len = line.iter().take_while(|b| is_tchar(**b)).count();
    match line.get(method_len) {
        None => true,
        Some(b) => method_len > 0 && is_blank(*b),
    }
}

/// `stream` without the blanks and empty lines before its first line.
fn skip_blank(stream: &[u8]) -> &[u8] {
    let start = stream
        .iter()
        .position(|b| !is_blank(*b))
        .unwrap_or(stream.len());
    &stream[start..]
}

/// Reads the request at the start of a TCP stream. `NotThis` only when no
/// server would read it as a request; how long a header block may grow is
/// bounded by the flows that hold it (`flows::MAX_BYTES`).
pub fn request(stream: &[u8]) -> Seen {
    if !may_be_request(stream) {
        return Seen::NotThis;
    }
    let stream = skip_blank(stream);
    let Some(line_end) = find(stream, b"\n") else {
        return Seen::NeedMore;
    };
    let line = stream[..line_end].trim_ascii();
    let words: Vec<&[u8]> = line
        .split(|b| is_blank(*b))
        .filter(|w| !w.is_empty())
        .collect();
    let (method, target) = match words[..] {
        [method, target, ..] => (method, target),
        _ => return Seen::NotThis,
    };
    let version = words[words.len() - 1];
    let has_version = version.len() >= 5 && version[..5].eq_ignore_ascii_case(b"HTTP/");
    let has_target = target.starts_with(b"/") || target == b"*" || find(target, b"://").is_some();
    let http09 = words.len() == 2 && has_target;
    if !(has_version || http09) {
        // "EHLO mail.test", "USER anonymous": a line protocol, not HTTP.
        return Seen::NotThis;
    }
    // A server reads HTTP/0.9 (no Host), HTTP/2 prior knowledge (names in
    // HPACK frames) or a target with blanks in it in ways the check does
    // not: refused rather than guessed.
    let plain = |b: &u8| *b == b' ' || *b == b'\t' || (0x20..0x7f).contains(b) || *b >= 0x80;
    if words.len() != 3 || !is_http1(version) || !line.iter().all(plain) {
        return Seen::Malformed("an HTTP request line the name check cannot read");
    }
    let Some(headers) = header_lines(&stream[line_end + 1..]) else {
        return Seen::NeedMore;
    };
    let mut names = Vec::new();
    match target_authority(method, target) {
        Ok(Some(authority)) => names.push(authority),
        Ok(None) => {}
        Err(why) => return Seen::Malformed(why),
    }
    let mut hosts = Vec::new();
    for h in headers {
        // A folded line continues the header before it (obs-fold): a
        // server that unfolds would read a Host the check did not.
        if h.starts_with(b" ") || h.starts_with(b"\t") {
            return Seen::Malformed("a folded HTTP header line");
        }
        let Some(colon) = h.iter().position(|b| *b == b':') else {
            return Seen::Malformed("an HTTP header line without a colon");
        };
        // "Host :" is refused by strict servers and read as Host by lax ones.
        if h[..colon].trim_ascii().eq_ignore_ascii_case(b"host") {
            hosts.push(h[colon + 1..].trim_ascii());
        }
    }
    let host = match hosts[..] {
        [host] => host,
        [] => return Seen::NoName("HTTP without a Host header"),
        _ => return Seen::Malformed("HTTP with several Host headers"),
    };
    let Ok(host) = std::str::from_utf8(host) else {
        return Seen::Malformed("a Host header that is not text");
    };
    names.push(host_of(host));
    if names.iter().any(|n| n.is_empty()) {
        return Seen::Malformed("an empty host in an HTTP request");
    }
    names.dedup();
    match names.len() {
        1 => Seen::Name(names.remove(0)),
        _ => Seen::Names(names),
    }
}

/// `HTTP/1.` and a minor version: servers read `HTTP/1.2` as HTTP/1.1.
fn is_http1(version: &[u8]) -> bool {
    version.len() > 7
        && version[..7].eq_ignore_ascii_case(b"HTTP/1.")
        && version[7..].iter().all(u8::is_ascii_digit)
}

/// The host of an absolute-form target (`scheme://host:port/...`, any
/// scheme: a server may route by it whatever it says), which a server uses
/// instead of Host, or of CONNECT's `host:port`. A target of no known form
/// is refused.
fn target_authority(method: &[u8], target: &[u8]) -> Result<Option<String>, &'static str> {
    let Ok(target) = std::str::from_utf8(target) else {
        return Err("an HTTP request target that is not text");
    };
    if method.eq_ignore_ascii_case(b"CONNECT") {
        return Ok(Some(host_of(target)));
    }
    if target.starts_with('/') || target == "*" {
        return Ok(None);
    }
    let Some((_, rest)) = target.split_once("://") else {
        return Err("an HTTP request target of no known form");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    Ok(Some(host_of(authority)))
}

/// `host`, `host:port` or `[v6]:port` -> the host, normalized.
fn host_of(authority: &str) -> String {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    super::normalize_host(host)
}

/// The header lines up to the empty line that ends them; `None` until it came.
fn header_lines(mut rest: &[u8]) -> Option<Vec<&[u8]>> {
    let mut lines = Vec::new();
    loop {
        let end = find(rest, b"\n")?;
        let line = trim_cr(&rest[..end]);
        if line.is_empty() {
            return Some(lines);
        }
        lines.push(line);
        rest = &rest[end + 1..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_is_read_once_the_head_is_complete() {
        let req = b"GET /simple HTTP/1.1\r\nUser-Agent: t\r\nhOsT:  Pypi.ORG:80 \r\n\r\nbody";
        let head_end = req.len() - 4;
        for end in 0..head_end {
            assert_eq!(request(&req[..end]), Seen::NeedMore, "at {end}");
        }
        assert_eq!(request(req), Seen::Name("pypi.org".into()));
    }

    #[test]
    fn other_protocols_are_not_http() {
        for other in [
            &b"SSH-2.0-OpenSSH_9.6\r\n"[..],
            b"\x16\x03\x01",
            b"EHLO mail.test\r\n",
            b"USER anonymous\r\n",
            b"\0\0\0\x08\x04\xd2\x16\x2f",
            b"*1\r\n$4\r\nPING\r\n",
        ] {
            assert_eq!(request(other), Seen::NotThis, "{other:?}");
        }
        assert!(may_be_request(b"GE"));
        assert!(may_be_request(b""));
        assert!(may_be_request(b"\r\n"));
    }

    #[test]
    fn what_a_lenient_server_reads_as_a_request_is_read_or_refused() {
        let evil = |req: &[u8]| {
            let seen = request(req);
            assert!(
                matches!(&seen, Seen::Name(n) if n == "evil.test")
                    || matches!(&seen, Seen::Names(n) if n.iter().any(|n| n == "evil.test"))
                    || matches!(seen, Seen::Malformed(_)),
                "{:?}: {seen:?}",
                String::from_utf8_lossy(req)
            );
        };
        // Servers skip empty lines before the request line.
        evil(b"\r\nGET / HTTP/1.1\r\nHost: evil.test\r\n\r\n");
        evil(b"\r\n\r\n \tGET / HTTP/1.1\r\nHost: evil.test\r\n\r\n");
        // Any HTTP/1 minor version, any method token, any case.
        evil(b"GET / HTTP/1.2\r\nHost: evil.test\r\n\r\n");
        evil(b"get / http/1.1\r\nHost: evil.test\r\n\r\n");
        evil(b"GETTINGVERYLONGMETHODNAME / HTTP/1.1\r\nHost: evil.test\r\n\r\n");
        evil(b"GET\t/\tHTTP/1.1\r\nHost: evil.test\r\n\r\n");
        // Python's http.server splits on any blank and takes control bytes.
        evil(b"GET\x0c/\x0cHTTP/1.1\r\nHost: evil.test\r\n\r\n");
        evil(b"GET\x1f/\xa0HTTP/1.1\r\nHost: evil.test\r\n\r\n");
        evil(b"GET /\x01 HTTP/1.1\r\nHost: evil.test\r\n\r\n");
        evil(b"\x0bGET / HTTP/1.1\r\nHost: evil.test\r\n\r\n");
        // An absolute target of any scheme names the host a server routes to.
        evil(b"GET xyz://evil.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n");
        // What the check cannot read is refused.
        for refused in [
            &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
            b"GET /\r\n\r\n",
            b"GET / HTTP/2\r\nHost: a.test\r\n\r\n",
            b"GET /a b HTTP/1.1\r\nHost: a.test\r\n\r\n",
            b"GET evil.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a.test\r\nX: 1\r\n evil.test\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a.test\r\nHost : evil.test\r\n\r\n",
        ] {
            assert!(
                matches!(request(refused), Seen::Malformed(_)),
                "{:?}",
                String::from_utf8_lossy(refused)
            );
        }
    }

    #[test]
    fn absolute_and_connect_targets_count_as_names() {
        assert_eq!(
            request(b"GET http://evil.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n"),
            Seen::Names(vec!["evil.test".into(), "a.test".into()])
        );
        assert_eq!(
            request(b"CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\n"),
            Seen::Name("evil.test".into())
        );
        assert_eq!(
            request(b"GET http://user@A.test:8080/ HTTP/1.1\r\nHost: a.test\r\n\r\n"),
            Seen::Name("a.test".into())
        );
    }

    #[test]
    fn missing_doubled_and_odd_hosts() {
        assert_eq!(
            request(b"GET / HTTP/1.0\r\n\r\n"),
            Seen::NoName("HTTP without a Host header")
        );
        assert!(matches!(
            request(b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n"),
            Seen::Malformed(_)
        ));
        assert!(matches!(
            request(b"GET / HTTP/1.1\r\nHost: \r\n\r\n"),
            Seen::Malformed(_)
        ));
        assert_eq!(
            request(b"GET / HTTP/1.1\nHost: [2001:db8::1]:80\n\n"),
            Seen::Name("2001:db8::1".into())
        );
    }
}
