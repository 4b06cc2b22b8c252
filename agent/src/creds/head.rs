//! Decisions on a request's head inside a credential host's TLS, made
//! before anything is swapped or sent: which host it names, and which
//! change of protocol it asks for. No I/O; `exchange` acts on them.

use http::header::HOST;
use http::uri::Authority;
use http::{HeaderMap, Uri};

/// Whether a request names `host` on `port` (the port the bottle's
/// connection went to), and only it: its Host header, its `:authority`
/// (HTTP/2) or absolute-form target, whichever it has. `Err` says why not.
///
/// The real value goes into this request: one that names another host
/// would carry it to whatever that name reaches behind the credential
/// host's address (another site of a shared front end, a proxy that
/// forwards by Host), so it is refused, not sent.
pub fn names_only(host: &str, port: u16, uri: &Uri, headers: &HeaderMap) -> Result<(), String> {
    let hosts = headers.get_all(HOST);
    if hosts.iter().count() > 1 {
        // Front ends disagree about which of two Host headers counts;
        // whatever this check read, the other could be the one obeyed.
        return Err("a request with two Host headers".into());
    }
    let mut named = false;
    for (what, value) in uri
        .authority()
        .map(|a| ("target", a.as_str()))
        .into_iter()
        .chain(
            hosts
                .iter()
                .map(|v| ("Host", v.to_str().unwrap_or("\u{fffd}"))),
        )
    {
        named = true;
        if !names(host, port, value) {
            return Err(format!(
                "a request whose {what} names {value:?}, not {host} (the real value goes to {host} only)"
            ));
        }
    }
    if !named {
        // Without a name the real host's front end picks a site itself.
        return Err(format!(
            "a request that names no host (it must name {host})"
        ));
    }
    Ok(())
}

/// Whether an authority (`name` or `name:port`) is `host` on `port`: the
/// name compared without regard to case or one trailing dot, and a port,
/// if any, the same. User information (`user@name`) is refused: some read
/// the name after it, some before.
fn names(host: &str, port: u16, value: &str) -> bool {
    let Ok(authority) = value.parse::<Authority>() else {
        return false;
    };
    if authority.as_str().contains('@') {
        return false;
    }
    let name = authority.host();
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case(host) && authority.port_u16().is_none_or(|p| p == port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(uri: &str, hosts: &[&'static str]) -> (Uri, HeaderMap) {
        let mut headers = HeaderMap::new();
        for h in hosts {
            headers.append(HOST, http::HeaderValue::from_static(h));
        }
        (uri.parse().unwrap(), headers)
    }

    #[test]
    fn only_the_credential_host_on_the_connections_port_is_named() {
        let ok = |uri: &str, hosts: &[&'static str]| {
            let (uri, headers) = head(uri, hosts);
            names_only("api.a.test", 443, &uri, &headers)
        };
        assert_eq!(ok("/", &["api.a.test"]), Ok(()));
        assert_eq!(ok("/", &["API.a.test.:443"]), Ok(()));
        assert_eq!(ok("https://api.a.test/x", &[]), Ok(()));
        assert_eq!(ok("https://api.a.test:443/x", &["api.a.test"]), Ok(()));
        for (uri, hosts) in [
            ("/", &["evil.test"][..]),
            ("/", &["api.a.test:8443"]),
            ("/", &["api.a.test.evil.test"]),
            ("/", &["evil@api.a.test"]),
            ("/", &["api.a.test", "api.a.test"]),
            ("/", &[]),
            ("https://evil.test/", &["api.a.test"]),
            ("https://api.a.test/", &["evil.test"]),
        ] {
            assert!(ok(uri, hosts).is_err(), "{uri} {hosts:?}");
        }
    }
}
