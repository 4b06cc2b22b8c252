//! Decisions on a request's head inside a credential host's TLS, made
//! before anything is swapped or sent: which host it names, and which
//! change of protocol it asks for. No I/O; `exchange` acts on them.

use http::header::{HOST, UPGRADE};
use http::uri::Authority;
use http::{HeaderMap, Method, Uri};

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
                "a request whose {what} names {value:?}, not {host}"
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

/// The change of protocol a request asks for, of those that may pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    None,
    WebSocket,
}

/// The change of protocol a request asks for; `Err` (why) for any but
/// WebSocket.
///
/// After a switch the proxy copies bytes both ways and redacts nothing:
/// the real value, reflected into the new protocol, would reach the
/// bottle. WebSocket is let through because the APIs that take keys use it
/// (realtime APIs) and the README names it, with its frames unredacted, as
/// a known gap; any other upgrade (`h2c`, a TLS upgrade) or a CONNECT
/// tunnel would open the same gap for no client's need, so they are
/// refused.
pub fn upgrade(method: &Method, headers: &HeaderMap) -> Result<Upgrade, String> {
    if method == Method::CONNECT {
        return Err("a CONNECT: a tunnel's bytes would pass unredacted".into());
    }
    let asked = protocols(headers);
    match asked.as_slice() {
        [] => Ok(Upgrade::None),
        [one] if is_websocket(one) => Ok(Upgrade::WebSocket),
        _ => Err(format!(
            "an Upgrade to {}: only WebSocket upgrades pass (what comes back after any switch is not redacted)",
            asked.join(", ")
        )),
    }
}

/// Whether a 101 answer switched to WebSocket and nothing else.
pub fn switched_to_websocket(headers: &HeaderMap) -> bool {
    matches!(protocols(headers).as_slice(), [one] if is_websocket(one))
}

/// The protocols of a head's Upgrade headers, in order.
fn protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(UPGRADE)
        .iter()
        .flat_map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn is_websocket(protocol: &str) -> bool {
    protocol.eq_ignore_ascii_case("websocket")
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

    #[test]
    fn only_a_websocket_upgrade_is_let_through() {
        let asked = |method: Method, values: &[&'static str]| {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append(UPGRADE, http::HeaderValue::from_static(v));
            }
            upgrade(&method, &headers)
        };
        assert_eq!(asked(Method::GET, &[]), Ok(Upgrade::None));
        assert_eq!(asked(Method::GET, &["WebSocket"]), Ok(Upgrade::WebSocket));
        for values in [&["h2c"][..], &["websocket, h2c"], &["websocket", "TLS/1.2"]] {
            assert!(asked(Method::GET, values).is_err(), "{values:?}");
        }
        assert!(asked(Method::CONNECT, &[]).is_err());
    }
}
