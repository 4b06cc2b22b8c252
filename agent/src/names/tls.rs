//! TLS: the server name (SNI) a ClientHello asks for, from the first bytes
//! of a connection, across as many records and segments as it spans.

use tls_parser::{
    parse_tls_client_hello_extensions, parse_tls_message_handshake, TlsExtension, TlsMessage,
    TlsMessageHandshake,
};

use super::Seen;

/// The first byte of a TLS handshake record.
pub const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const RECORD_HEADER: usize = 5;
/// A record's fragment is at most 2^14 bytes (RFC 8446, section 5.1).
const MAX_FRAGMENT: usize = 1 << 14;
/// Real ClientHellos are a few kilobytes, post-quantum key shares included.
pub const MAX_HELLO: usize = 32 << 10;

/// Reads the ClientHello at the start of a TCP stream: its records are
/// joined and the handshake message parsed once it is complete.
pub fn client_hello(stream: &[u8]) -> Seen {
    let mut message = Vec::new();
    let mut rest = stream;
    loop {
        if let Some(seen) = complete_hello(&message) {
            return seen;
        }
        if rest.len() < RECORD_HEADER {
            return Seen::NeedMore;
        }
        if rest[0] != HANDSHAKE || rest[1] != 3 {
            return Seen::Malformed("a TLS record other than a handshake before the ClientHello");
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if len == 0 || len > MAX_FRAGMENT {
            return Seen::Malformed("a TLS record of impossible length");
        }
        let Some(fragment) = rest.get(RECORD_HEADER..RECORD_HEADER + len) else {
            return Seen::NeedMore;
        };
        message.extend_from_slice(fragment);
        rest = &rest[RECORD_HEADER + len..];
    }
}

/// `None` while the handshake message is still incomplete.
fn complete_hello(message: &[u8]) -> Option<Seen> {
    if message.len() < 4 {
        return None;
    }
    if message[0] != CLIENT_HELLO {
        return Some(Seen::Malformed(
            "the first handshake message is not a ClientHello",
        ));
    }
    let len = u32::from_be_bytes([0, message[1], message[2], message[3]]) as usize;
    if len > MAX_HELLO {
        return Some(Seen::Malformed("a ClientHello too large to be real"));
    }
    let whole = message.get(..4 + len)?;
    Some(hello_name(whole))
}

/// The name in one complete ClientHello handshake message (as TLS records
/// carry it, and as QUIC's CRYPTO frames do).
pub fn hello_name(message: &[u8]) -> Seen {
    let hello = match parse_tls_message_handshake(message) {
        Ok((_, TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello)))) => hello,
        _ => return Seen::Malformed("an undecodable ClientHello"),
    };
    let Some(ext) = hello.ext else {
        return Seen::NoName("TLS without a server name");
    };
    let Ok((_, extensions)) = parse_tls_client_hello_extensions(ext) else {
        return Seen::Malformed("undecodable ClientHello extensions");
    };
    let mut names = Vec::new();
    for extension in &extensions {
        if let TlsExtension::SNI(list) = extension {
            names.extend(list.iter().filter(|(kind, _)| kind.0 == 0).map(|(_, n)| *n));
        }
    }
    match names.as_slice() {
        [] => Seen::NoName("TLS without a server name"),
        [name] => match std::str::from_utf8(name) {
            Ok(name) => Seen::Name(super::normalize_host(name)),
            Err(_) => Seen::Malformed("a server name that is not text"),
        },
        _ => Seen::Malformed("a ClientHello with several server names"),
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A ClientHello for `name` (none if empty), with `pad` extra bytes in a
    /// padding extension placed AFTER the server name unless `sni_last`.
    pub fn hello(name: &str, pad: usize, sni_last: bool) -> Vec<u8> {
        let mut sni = Vec::new();
        if !name.is_empty() {
            let n = name.as_bytes();
            let list_len = 3 + n.len();
            sni.extend_from_slice(&[0, 0]);
            sni.extend_from_slice(&((list_len + 2) as u16).to_be_bytes());
            sni.extend_from_slice(&(list_len as u16).to_be_bytes());
            sni.push(0);
            sni.extend_from_slice(&(n.len() as u16).to_be_bytes());
            sni.extend_from_slice(n);
        }
        let mut padding = vec![0x00, 0x15];
        padding.extend_from_slice(&(pad as u16).to_be_bytes());
        padding.extend(std::iter::repeat_n(0u8, pad));
        let exts = if sni_last {
            [padding, sni].concat()
        } else {
            [sni, padding].concat()
        };
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7u8; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut msg = vec![CLIENT_HELLO];
        msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend_from_slice(&body);
        msg
    }

    /// `msg` in TLS records of at most `chunk` bytes each.
    pub fn records(msg: &[u8], chunk: usize) -> Vec<u8> {
        msg.chunks(chunk)
            .flat_map(|c| {
                let mut r = vec![HANDSHAKE, 3, 1];
                r.extend_from_slice(&(c.len() as u16).to_be_bytes());
                r.extend_from_slice(c);
                r
            })
            .collect()
    }

    #[test]
    fn the_name_is_read_from_one_record() {
        let bytes = records(&hello("API.Example.test.", 0, false), 1 << 14);
        assert_eq!(client_hello(&bytes), Seen::Name("api.example.test".into()));
    }

    #[test]
    fn every_prefix_asks_for_more_and_the_whole_decides() {
        let bytes = records(&hello("a.test", 1500, true), 1 << 14);
        for end in 0..bytes.len() {
            assert_eq!(client_hello(&bytes[..end]), Seen::NeedMore, "at {end}");
        }
        assert_eq!(client_hello(&bytes), Seen::Name("a.test".into()));
    }

    #[test]
    fn a_hello_split_over_records_is_joined() {
        let bytes = records(&hello("a.test", 3000, true), 700);
        assert_eq!(client_hello(&bytes), Seen::Name("a.test".into()));
    }

    #[test]
    fn no_name_and_garbage_are_told_apart() {
        assert_eq!(
            client_hello(&records(&hello("", 10, false), 1 << 14)),
            Seen::NoName("TLS without a server name")
        );
        assert!(matches!(
            client_hello(&[23, 3, 3, 0, 1, 0]),
            Seen::Malformed(_)
        ));
        assert!(matches!(
            client_hello(&[22, 3, 1, 0, 0]),
            Seen::Malformed(_)
        ));
        let mut server_hello = hello("a.test", 0, false);
        server_hello[0] = 2;
        assert!(matches!(
            client_hello(&records(&server_hello, 1 << 14)),
            Seen::Malformed(_)
        ));
        let mut huge = vec![HANDSHAKE, 3, 1, 0, 4, CLIENT_HELLO];
        huge.extend_from_slice(&[0xff, 0xff, 0xff]);
        assert!(matches!(client_hello(&huge), Seen::Malformed(_)));
    }
}
