//! `rbm-probe raw-dns`: arbitrary bytes as a DNS query (malformed-packet tests).
//!
//! Report: `{"reply_hex":"..."|null,"error":null|"KIND: ..."}`. No reply
//! (timeout, connection closed) is not a failure: exit 0 with `reply_hex`
//! null. Failing to send at all (refused, unreachable) is.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use super::dns::{exchange_tcp, exchange_udp};
use super::net::{describe, error_kind};
use super::Report;

#[derive(Debug, Serialize)]
pub struct RawReport {
    pub reply_hex: Option<String>,
    pub error: Option<String>,
}

/// How the bytes are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    /// TCP with the 2-byte length prefix added.
    Tcp,
    /// TCP with the bytes sent exactly as given.
    TcpUnframed,
}

pub fn run(server: SocketAddr, bytes: &[u8], transport: Transport, timeout: Duration) -> Report {
    let result = match transport {
        Transport::Udp => exchange_udp(bytes, server, timeout, None),
        Transport::Tcp => exchange_tcp(bytes, server, timeout, true),
        Transport::TcpUnframed => exchange_tcp(bytes, server, timeout, false),
    };
    match result {
        Ok(reply) => Report::new(
            &RawReport {
                reply_hex: Some(to_hex(&reply)),
                error: None,
            },
            true,
        ),
        Err(e) => {
            let no_reply = matches!(error_kind(&e), "timeout" | "closed" | "reset");
            let error = Some(describe(&format!("raw dns {server}"), &e));
            Report::new(
                &RawReport {
                    reply_hex: None,
                    error,
                },
                no_reply,
            )
        }
    }
}

/// Decodes hex digits; whitespace, `:` and a leading `0x` are ignored.
pub fn from_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text
        .trim_start_matches("0x")
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b':')
        .collect();
    let pairs = digits.chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return Err(format!("usage: odd number of hex digits in {text:?}"));
    }
    pairs
        .map(|pair| {
            let pair = std::str::from_utf8(pair).unwrap_or("zz");
            u8::from_str_radix(pair, 16).map_err(|_| format!("usage: not hex: {pair:?}"))
        })
        .collect()
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        assert_eq!(from_hex("0x00 ff:10").unwrap(), vec![0, 255, 16]);
        assert_eq!(to_hex(&[0, 255, 16]), "00ff10");
        assert!(from_hex("abc").is_err());
        assert!(from_hex("zz").is_err());
    }
}
