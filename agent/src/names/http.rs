//! HTTP/1.x: the names a request is for (its Host header, and the host of
//! an absolute or CONNECT target), once its header block is complete.

use super::Seen;

/// Longest method token looked for ("OPTIONS", "PROPFIND", ...).
const MAX_METHOD: usize = 16;

/// Whether `stream` can still become an HTTP/1.x request: a method token
/// of capital letters, then a space.
pub fn may_be_request(stream: &[u8]) -> bool {
    let method_len = stream.iter().take_while(|b| b.is_ascii_uppercase()).count();
    match stream.get(method_len) {
        None => method_len <= MAX_METHOD,
        Some(b' ') => (1..=MAX_METHOD).contains(&method_len),
        Some(_) => false,
    }
}

/// Reads the request at the start of a TCP stream. `NotThis` when its first
/// line is not `METHOD TARGET HTTP/1.x`; how long a header block may grow
/// is bounded by the flows that hold it (`flows::MAX_BYTES`).
pub fn request(stream: &[u8]) -> Seen {
    if !may_be_request(stream) {
        return Seen::NotThis;
    }
    let Some(line_end) = find(stream, b"\n") else {
        return Seen::NeedMore;
    };
    let line = trim_cr(&stream[..line_end]);
    let mut parts = line.split(|b| *b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Seen::NotThis;
    };
    if !matches!(version, b"HTTP/1.0" | b"HTTP/1.1") {
        return Seen::NotThis;
    }
    let Some(headers) = header_lines(&stream[line_end + 1..]) else {
        return Seen::NeedMore;
    };
    let mut names = Vec::new();
    if let Some(authority) = target_authority(method, target) {
        names.push(authority);
    }
    let mut hosts = headers.into_iter().filter_map(|h| {
        let colon = h.iter().position(|b| *b == b':')?;
        h[..colon]
            .eq_ignore_ascii_case(b"host")
            .then(|| h[colon + 1..].trim_ascii())
    });
    let host = match (hosts.next(), hosts.next()) {
        (Some(host), None) => host,
        (None, _) => return Seen::NoName("HTTP without a Host header"),
        (Some(_), Some(_)) => return Seen::Malformed("HTTP with several Host headers"),
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

/// The host of an absolute-form target (`http://host:port/...`), which a
/// server uses instead of Host, or of CONNECT's `host:port`.
fn target_authority(method: &[u8], target: &[u8]) -> Option<String> {
    let target = std::str::from_utf8(target).ok()?;
    if method == b"CONNECT" {
        return Some(host_of(target));
    }
    let (scheme, rest) = target.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    Some(host_of(authority))
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
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"get / HTTP/1.1\r\n",
            b"GETTINGVERYLONGMETHODNAME / HTTP/1.1\r\n",
        ] {
            assert_eq!(request(other), Seen::NotThis, "{other:?}");
        }
        assert!(may_be_request(b"GE"));
        assert!(may_be_request(b""));
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
