//! QUIC: the server name in a client's Initial packets.

use super::Seen;

/// Not read yet: every QUIC flow is refused, so HTTP/3 clients fall back
/// to TCP, where the name is checked.
pub fn initial_name(_datagrams: &[&[u8]]) -> Seen {
    Seen::NoName("QUIC, whose name rbm does not read yet (HTTP/3 falls back to TCP)")
}
