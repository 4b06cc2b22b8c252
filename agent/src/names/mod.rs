//! Name binding: a connection to an address that only a name opened must
//! carry an allowed name on the wire. The kernel holds its first payload
//! packets on a queue (`firewall::ruleset`'s name chains); the agent reads
//! the TLS server name, HTTP Host or QUIC Initial from them and answers
//! allow or deny. Once decided, the connection is marked and the kernel
//! forwards the rest without asking.
//!
//! `tls`, `http` and `quic` read names from bytes, `packet` parses what the
//! queue delivers, `judge` decides one connection, `flows` holds packets
//! until a decision, `queue` talks NFQUEUE over netlink, `service` runs it.

pub mod flows;
pub mod http;
pub mod judge;
pub mod packet;
pub mod queue;
pub mod quic;
pub mod service;
pub mod tls;

/// What the first bytes of a connection tell about its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Not enough bytes yet to tell.
    NeedMore,
    Name(String),
    /// Several names that must all be allowed (an HTTP request whose
    /// target and Host differ).
    Names(Vec<String>),
    /// The protocol, without a name (e.g. TLS without SNI).
    NoName(&'static str),
    /// The protocol, but broken or ambiguous.
    Malformed(&'static str),
    /// Not this protocol at all.
    NotThis,
}

/// Lowercase, without a trailing dot, as the profile's names are.
pub fn normalize_host(name: &str) -> String {
    crate::profile::normalize(name.trim())
}
