//! Decides one connection from its first bytes: which protocol, which
//! name, and whether a domain rule allows that name on that port.

use super::{http, tls, Seen};
use crate::policy::Policy;
use crate::profile::Ports;

/// What to do with a held connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Wait for more bytes.
    Hold,
    /// Forward it; `name` is the name it was allowed for, if it had one.
    Allow {
        name: Option<String>,
    },
    Deny(Denial),
}

/// Why a connection was refused, in words for status and the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: String,
    /// The name seen on the wire, when there was one.
    pub name: Option<String>,
}

fn deny(reason: impl Into<String>, name: Option<String>) -> Outcome {
    Outcome::Deny(Denial {
        reason: reason.into(),
        name,
    })
}

const HTTPS: u16 = 443;
const HTTP: u16 = 80;

/// A TCP connection to `port` whose stream starts with `stream`.
pub fn tcp(policy: &Policy, port: u16, stream: &[u8]) -> Outcome {
    let Some(first) = stream.first() else {
        return Outcome::Hold;
    };
    if *first == tls::HANDSHAKE {
        if port == HTTP {
            return deny("TLS on port 80, which carries only HTTP", None);
        }
        return names(policy, port, "TLS", tls::client_hello(stream));
    }
    if port == HTTPS {
        return deny("not TLS on port 443, which carries only TLS", None);
    }
    let outcome = match http::request(stream) {
        Seen::NotThis if port == HTTP => deny("not HTTP on port 80, which carries only HTTP", None),
        Seen::NotThis => Outcome::Allow { name: None },
        seen => names(policy, port, "HTTP", seen),
    };
    // In the clear, a credential's placeholder can be seen: it goes only
    // through the credential proxy, to its own hosts.
    // A stream still held is looked at too: a line protocol that has not
    // ended its first line may already carry it.
    let name = match &outcome {
        Outcome::Allow { name } => name.clone(),
        Outcome::Hold => None,
        Outcome::Deny(_) => return outcome,
    };
    match policy.placeholder_in(stream) {
        Some(env) => deny(
            format!("the placeholder of {env}, in the clear (it goes only to its hosts, over TLS)"),
            name,
        ),
        None => outcome,
    }
}

/// The server name of the ClientHello at the start of `stream`, if it is
/// complete and names one.
pub fn tls_name(stream: &[u8]) -> Option<String> {
    match tls::client_hello(stream) {
        Seen::Name(name) => Some(name),
        _ => None,
    }
}

/// A UDP flow to `port` from its datagrams so far. Only QUIC (UDP 443)
/// is held for a check; its name is in the first Initial packets.
/// `known`: the QUIC connections already allowed on this flow, whose keys
/// a later Initial of theirs uses.
pub fn udp(
    policy: &Policy,
    port: u16,
    datagrams: &[&[u8]],
    known: &[super::quic::Origin],
) -> Outcome {
    if port != HTTPS {
        return Outcome::Allow { name: None };
    }
    let seen = super::quic::initial_name_keyed(datagrams, known);
    names(policy, port, "QUIC", seen)
}

/// Whether a protocol's names are all allowed on `port`.
pub fn names(policy: &Policy, port: u16, proto: &str, seen: Seen) -> Outcome {
    let names = match seen {
        Seen::NeedMore => return Outcome::Hold,
        Seen::Name(name) => vec![name],
        Seen::Names(names) => names,
        Seen::NoName(what) | Seen::Malformed(what) => return deny(what, None),
        Seen::NotThis => return deny(format!("not {proto}"), None),
    };
    for name in &names {
        if name.ends_with('.') {
            // One trailing dot is cut before this; a second would be cut
            // by the rules' lookup, not by the proxy's (`github.com..`).
            return deny(
                format!("{proto} name {name} ends in two dots"),
                Some(name.clone()),
            );
        }
        match policy.grant_for(name) {
            None => {
                return deny(
                    format!("{proto} name {name} is not allowed"),
                    Some(name.clone()),
                )
            }
            Some(Ports::Only(ports)) if !ports.contains(&port) => {
                return deny(
                    format!("{proto} name {name} is not allowed on port {port}"),
                    Some(name.clone()),
                )
            }
            Some(_) => {}
        }
    }
    Outcome::Allow {
        name: names.into_iter().next_back(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::tests::policy;
    use crate::names::tls::tests::{hello, records};
    use crate::profile::Mode;

    fn p() -> Policy {
        policy(
            Mode::Allowlist,
            Mode::Allowlist,
            &["a.test", "ports.test:443", "*.cdn.test"],
        )
    }

    fn tls_for(name: &str) -> Vec<u8> {
        records(&hello(name, 100, false), 1 << 14)
    }

    fn denied(o: Outcome) -> String {
        match o {
            Outcome::Deny(d) => d.reason,
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    #[test]
    fn a_name_with_a_second_trailing_dot_is_denied() {
        // `a.test..` passed as `a.test.` (one dot cut), which the domain
        // rules read as a.test but the proxy did not know: spliced past
        // a.test's request rules.
        let p = p();
        let hello = hello("a.test..", 0, false);
        assert!(denied(tcp(&p, 443, &records(&hello, 4096))).contains("two dots"));
    }

    #[test]
    fn a_placeholder_in_the_clear_is_denied_naming_its_credential() {
        let mut p = p();
        p.placeholders = vec![("API_KEY".into(), b"rbm-0123456789abcdef".to_vec())];
        let request =
            b"GET / HTTP/1.1\r\nHost: a.test\r\nAuthorization: Bearer rbm-0123456789abcdef\r\n\r\n";
        assert_eq!(
            denied(tcp(&p, 80, request)),
            "the placeholder of API_KEY, in the clear (it goes only to its hosts, over TLS)"
        );
        assert!(denied(tcp(&p, 5432, b"user rbm-0123456789abcdef")).contains("API_KEY"));
        let clean = b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
        assert!(matches!(tcp(&p, 80, clean), Outcome::Allow { .. }));
    }

    #[test]
    fn allowed_names_pass_on_their_ports_only() {
        let p = p();
        assert_eq!(
            tcp(&p, 443, &tls_for("a.test")),
            Outcome::Allow {
                name: Some("a.test".into())
            }
        );
        assert!(matches!(
            tcp(&p, 443, &tls_for("x.cdn.test")),
            Outcome::Allow { .. }
        ));
        assert!(matches!(
            tcp(&p, 443, &tls_for("ports.test")),
            Outcome::Allow { .. }
        ));
        assert_eq!(
            denied(tcp(&p, 8443, &tls_for("ports.test"))),
            "TLS name ports.test is not allowed on port 8443"
        );
        assert_eq!(
            denied(tcp(&p, 443, &tls_for("evil.test"))),
            "TLS name evil.test is not allowed"
        );
    }

    #[test]
    fn ports_443_and_80_carry_only_their_protocol() {
        let p = p();
        assert_eq!(
            denied(tcp(&p, 443, b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")),
            "not TLS on port 443, which carries only TLS"
        );
        assert_eq!(
            denied(tcp(&p, 80, &tls_for("a.test"))),
            "TLS on port 80, which carries only HTTP"
        );
        assert_eq!(
            denied(tcp(&p, 80, b"SSH-2.0-x\r\n")),
            "not HTTP on port 80, which carries only HTTP"
        );
        assert_eq!(tcp(&p, 22, b"SSH-2.0-x\r\n"), Outcome::Allow { name: None });
    }

    #[test]
    fn http_hosts_are_checked_on_any_port() {
        let p = p();
        assert!(matches!(
            tcp(&p, 80, b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"),
            Outcome::Allow { .. }
        ));
        assert_eq!(
            denied(tcp(&p, 8080, b"GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n")),
            "HTTP name evil.test is not allowed"
        );
        assert_eq!(
            denied(tcp(
                &p,
                80,
                b"GET http://evil.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n"
            )),
            "HTTP name evil.test is not allowed"
        );
        assert_eq!(tcp(&p, 80, b"GET / HTTP/1.1\r\nHo"), Outcome::Hold);
    }

    #[test]
    fn http_a_lenient_server_reads_is_checked_on_any_port() {
        let p = p();
        for req in [
            &b"\r\nGET / HTTP/1.1\r\nHost: evil.test\r\n\r\n"[..],
            b"GET / HTTP/1.2\r\nHost: evil.test\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET xyz://evil.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n",
        ] {
            for port in [80, 8080] {
                assert!(
                    matches!(tcp(&p, port, req), Outcome::Deny(_)),
                    "{port} {:?}",
                    String::from_utf8_lossy(req)
                );
            }
        }
        assert_eq!(
            tcp(&p, 8080, b"\r\nGET / HTTP/1.1\r\n"),
            Outcome::Hold,
            "an incomplete head waits"
        );
        assert_eq!(
            tcp(&p, 5432, b"\0\0\0\x08\x04\xd2\x16\x2f"),
            Outcome::Allow { name: None },
            "a protocol that cannot be HTTP passes on other ports"
        );
    }
}
