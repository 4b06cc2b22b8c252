//! The packets the queue delivers: IPv4 or IPv6, then TCP or UDP. Only
//! what the name check needs: the connection, the TCP sequence number and
//! the payload.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;

/// One direction of a connection, as the client sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub proto: u8,
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `syn`: the connection's first segment; its data (TCP Fast Open)
    /// starts at `seq + 1`.
    Tcp {
        seq: u32,
        syn: bool,
    },
    Udp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    pub key: FlowKey,
    pub transport: Transport,
    pub payload: &'a [u8],
}

/// IPv6 extension headers that may sit between the header and TCP/UDP.
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const DEST_OPTS: u8 = 60;
const FRAGMENT: u8 = 44;

/// The IP layer of a packet: protocol, addresses, and what follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpHeader<'a> {
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The transport header and payload (cut to what was copied).
    pub l4: &'a [u8],
    /// A fragment other than the first (no transport header here).
    pub later_fragment: bool,
}

/// `None` for anything that is not a whole TCP or UDP packet (ICMP, a
/// fragment, a truncated header, an unknown IPv6 extension header): the
/// name check refuses those, as it cannot read them.
pub fn parse(ip: &[u8]) -> Option<Packet<'_>> {
    let h = ip_header(ip)?;
    let fragmented = match ip[0] >> 4 {
        4 => u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0,
        _ => h.later_fragment,
    };
    if fragmented {
        return None;
    }
    transport(h.proto, h.src, h.dst, h.l4)
}

/// The IP header of IPv4 or IPv6 (extension headers skipped).
pub fn ip_header(ip: &[u8]) -> Option<IpHeader<'_>> {
    match ip.first()? >> 4 {
        4 => parse_v4(ip),
        6 => parse_v6(ip),
        _ => None,
    }
}

fn parse_v4(ip: &[u8]) -> Option<IpHeader<'_>> {
    let header = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let fragment = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]);
    if header < 20 || ip.len() < header {
        return None;
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    Some(IpHeader {
        proto: ip[9],
        src: src.into(),
        dst: dst.into(),
        l4: ip.get(header..total.min(ip.len()).max(header))?,
        later_fragment: fragment & 0x1fff != 0,
    })
}

fn parse_v6(ip: &[u8]) -> Option<IpHeader<'_>> {
    let payload_len = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
    let addr = |at: usize| -> Option<Ipv6Addr> {
        let bytes: [u8; 16] = ip.get(at..at + 16)?.try_into().ok()?;
        Some(Ipv6Addr::from(bytes))
    };
    let (src, dst) = (addr(8)?, addr(24)?);
    let mut next = ip[6];
    let mut at = 40;
    let end = (40 + payload_len).min(ip.len());
    while matches!(next, HOP_BY_HOP | ROUTING | DEST_OPTS) {
        let len = (usize::from(*ip.get(at + 1)?) + 1) * 8;
        next = *ip.get(at)?;
        at += len;
    }
    Some(IpHeader {
        proto: next,
        src: src.into(),
        dst: dst.into(),
        l4: ip.get(at..end.max(at))?,
        later_fragment: next == FRAGMENT,
    })
}

fn transport(proto: u8, src: IpAddr, dst: IpAddr, l4: &[u8]) -> Option<Packet<'_>> {
    let port = |at: usize| Some(u16::from_be_bytes([*l4.get(at)?, *l4.get(at + 1)?]));
    let key = FlowKey {
        proto,
        src: SocketAddr::new(src, port(0)?),
        dst: SocketAddr::new(dst, port(2)?),
    };
    let (transport, header) = match proto {
        TCP => {
            let seq = u32::from_be_bytes(l4.get(4..8)?.try_into().ok()?);
            let offset = usize::from(*l4.get(12)? >> 4) * 4;
            let syn = l4.get(13)? & 0x02 != 0;
            (Transport::Tcp { seq, syn }, offset.max(20))
        }
        UDP => (Transport::Udp, 8),
        _ => return None,
    };
    Some(Packet {
        key,
        transport,
        payload: l4.get(header..)?,
    })
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// An IPv4 TCP segment from 10.242.0.3:40000 to `dst` (a SYN if
    /// `seq` is `SYN_SEQ` and there is no payload).
    pub fn tcp4(dst: SocketAddr, seq: u32, payload: &[u8]) -> Vec<u8> {
        let IpAddr::V4(d) = dst.ip() else {
            panic!("v4 only")
        };
        let total = 40 + payload.len();
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, TCP, 0, 0, 10, 242, 0, 3];
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p.extend_from_slice(&d.octets());
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&dst.port().to_be_bytes());
        p.extend_from_slice(&seq.to_be_bytes());
        let flags = if seq == SYN_SEQ && payload.is_empty() {
            0x02
        } else {
            0x18
        };
        p.extend_from_slice(&[0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        p.extend_from_slice(payload);
        p
    }

    /// The test connections' initial sequence number.
    pub const SYN_SEQ: u32 = u32::MAX - 100;

    #[test]
    fn tcp_over_ipv4() {
        let dst: SocketAddr = "198.51.100.10:443".parse().unwrap();
        let bytes = tcp4(dst, 7, b"hello");
        let p = parse(&bytes).unwrap();
        assert_eq!(p.key.dst, dst);
        assert_eq!(p.key.src, "10.242.0.3:40000".parse().unwrap());
        assert_eq!(p.transport, Transport::Tcp { seq: 7, syn: false });
        let syn = tcp4(dst, SYN_SEQ, b"");
        assert!(matches!(
            parse(&syn).unwrap().transport,
            Transport::Tcp { syn: true, .. }
        ));
        assert_eq!(p.payload, b"hello");
    }

    #[test]
    fn udp_over_ipv6_with_an_extension_header() {
        let mut p = vec![0x60, 0, 0, 0, 0, 0, DEST_OPTS, 64];
        p.extend_from_slice(&"fd00::3".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&"fd00:99::10".parse::<Ipv6Addr>().unwrap().octets());
        let mut rest = vec![UDP, 0, 0, 0, 0, 0, 0, 0];
        rest.extend_from_slice(&[0x9c, 0x40, 0x01, 0xbb, 0, 11, 0, 0, b'q', b'u', b'i']);
        p[4..6].copy_from_slice(&(rest.len() as u16).to_be_bytes());
        p.extend_from_slice(&rest);
        let parsed = parse(&p).unwrap();
        assert_eq!(parsed.key.dst.port(), 443);
        assert_eq!(parsed.transport, Transport::Udp);
        assert_eq!(parsed.payload, b"qui");
    }

    #[test]
    fn fragments_other_protocols_and_scraps_are_not_judged() {
        let dst: SocketAddr = "198.51.100.10:443".parse().unwrap();
        let mut frag = tcp4(dst, 1, b"x");
        frag[6] = 0x20;
        assert_eq!(parse(&frag), None);
        let mut icmp = tcp4(dst, 1, b"x");
        icmp[9] = 1;
        assert_eq!(parse(&icmp), None);
        assert_eq!(parse(&[0x45, 0, 0]), None);
        assert_eq!(parse(&[]), None);
    }

    #[test]
    fn an_ipv4_header_cut_short_is_not_a_packet() {
        // Found by the names fuzz target: 13 bytes read up to index 15.
        let whole = tcp4("198.51.100.10:443".parse().unwrap(), 1, b"x");
        for len in 8..20 {
            assert_eq!(parse(&whole[..len]), None, "{len} bytes");
        }
        let mut options = whole.clone();
        options[0] = 0x4f; // 60 bytes of header, more than the packet has
        assert_eq!(parse(&options), None);
    }
}
