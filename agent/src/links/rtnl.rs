//! rtnetlink on the wire: one NETLINK_ROUTE socket, the dumps and requests
//! `links` makes (links, addresses, default routes; a route deleted, an
//! address added, a link's IPv4 forwarding set), framed and read with the
//! netlink helpers of `firewall::wire`.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::firewall::wire::{
    self, Attrs, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REQUEST,
};

pub const RTM_GETLINK: u16 = 18;
pub const RTM_SETLINK: u16 = 19;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_GETADDR: u16 = 22;
pub const RTM_DELROUTE: u16 = 25;
pub const RTM_GETROUTE: u16 = 26;

const NLM_F_EXCL: u16 = 0x200;
/// The flags of `RTM_NEWADDR` and `RTM_SETLINK` (as rtnetlink set them).
pub const CREATE_EXCL: u16 = NLM_F_CREATE | NLM_F_EXCL;

const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;

const IFLA_IFNAME: u16 = 3;
const IFLA_AF_SPEC: u16 = 26;
/// `IFLA_INET_CONF`, in `IFLA_AF_SPEC`/`AF_INET`.
const IFLA_INET_CONF: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;

/// `ifinfomsg`, `ifaddrmsg` and `rtmsg`: the fixed part before the attributes.
const IFINFOMSG_LEN: usize = 16;
const IFADDRMSG_LEN: usize = 8;
const RTMSG_LEN: usize = 12;

pub const RT_TABLE_MAIN: u8 = 254;
const RTPROT_STATIC: u8 = 4;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;

/// A dump's answers come in parts of at most 32 KiB.
const RECV_BYTES: usize = 1 << 16;

/// The socket failed, or the kernel refused (an errno).
#[derive(Debug)]
pub enum RtnlError {
    Io(io::Error),
    Kernel(i32),
}

impl RtnlError {
    pub fn errno(&self) -> Option<i32> {
        match self {
            RtnlError::Kernel(code) => Some(*code),
            RtnlError::Io(_) => None,
        }
    }
}

impl fmt::Display for RtnlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RtnlError::Io(e) => e.fmt(f),
            // The words of the rtnetlink crate the agent used before.
            RtnlError::Kernel(code) => write!(
                f,
                "Received a netlink error message {}",
                io::Error::from_raw_os_error(*code)
            ),
        }
    }
}

impl From<io::Error> for RtnlError {
    fn from(e: io::Error) -> RtnlError {
        RtnlError::Io(e)
    }
}

pub struct Rtnl {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnl {
    pub fn open() -> io::Result<Rtnl> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Rtnl {
            socket,
            seq: 0,
            buf: vec![0; RECV_BYTES],
        })
    }

    fn send(&mut self, msg_type: u16, flags: u16, payload: &[u8]) -> Result<u32, RtnlError> {
        self.seq = self.seq.wrapping_add(1);
        self.socket
            .send(&message(msg_type, flags, self.seq, payload), 0)?;
        Ok(self.seq)
    }

    /// Sends a dump request (`header`: the fixed part of the message) and
    /// returns the answered messages' payloads.
    pub fn dump(&mut self, msg_type: u16, header: &[u8]) -> Result<Vec<Vec<u8>>, RtnlError> {
        let seq = self.send(msg_type, NLM_F_REQUEST | NLM_F_DUMP, header)?;
        let mut out = Vec::new();
        loop {
            let n = self.socket.recv(&mut &mut self.buf[..], 0)?;
            for m in wire::messages(&self.buf[..n]) {
                if m.seq != seq {
                    continue;
                }
                match m.msg_type {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => return Err(kernel_error(m.payload)),
                    _ => out.push(m.payload.to_vec()),
                }
            }
        }
    }

    /// Sends a request that the kernel acknowledges, and waits for that.
    pub fn request(&mut self, msg_type: u16, flags: u16, payload: &[u8]) -> Result<(), RtnlError> {
        let seq = self.send(msg_type, NLM_F_REQUEST | NLM_F_ACK | flags, payload)?;
        loop {
            let n = self.socket.recv(&mut &mut self.buf[..], 0)?;
            for m in wire::messages(&self.buf[..n]) {
                if m.seq == seq && m.msg_type == NLMSG_ERROR {
                    return match wire::error_code(m.payload) {
                        Some(0) => Ok(()),
                        _ => Err(kernel_error(m.payload)),
                    };
                }
            }
        }
    }
}

fn kernel_error(payload: &[u8]) -> RtnlError {
    RtnlError::Kernel(wire::error_code(payload).unwrap_or(-libc::EIO).abs())
}

/// One netlink message: header (port 0, the kernel), then `payload`.
fn message(msg_type: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + payload.len());
    out.extend_from_slice(&(16 + payload.len() as u32).to_ne_bytes());
    out.extend_from_slice(&msg_type.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(payload);
    out
}

/// The `ifinfomsg` of a dump of every link.
pub fn links_request() -> Vec<u8> {
    vec![0; IFINFOMSG_LEN]
}

/// The `ifaddrmsg` of a dump of every address.
pub fn addresses_request() -> Vec<u8> {
    vec![0; IFADDRMSG_LEN]
}

/// The `rtmsg` of a dump of the routes of one family (the header of a
/// main-table static unicast route, as rtnetlink's builder made it).
pub fn routes_request(v6: bool) -> Vec<u8> {
    let family = if v6 { AF_INET6 } else { AF_INET };
    let mut m = vec![0; RTMSG_LEN];
    m[0] = family;
    m[4] = RT_TABLE_MAIN;
    m[5] = RTPROT_STATIC;
    m[6] = RT_SCOPE_UNIVERSE;
    m[7] = RTN_UNICAST;
    m
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// A link's index and name (`IFLA_IFNAME`).
pub fn link_name(payload: &[u8]) -> Option<(u32, String)> {
    let index = u32_at(payload, 4)?;
    let attrs = wire::parse_attrs(payload.get(IFINFOMSG_LEN..)?);
    let (_, name) = attrs.into_iter().find(|(k, _)| *k == IFLA_IFNAME)?;
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Some((index, String::from_utf8_lossy(&name[..end]).into_owned()))
}

/// An address message's interface index and its IPv4 addresses
/// (`IFA_ADDRESS` and `IFA_LOCAL`).
pub fn address_v4s(payload: &[u8]) -> Option<(u32, Vec<Ipv4Addr>)> {
    let index = u32_at(payload, 4)?;
    let addrs = wire::parse_attrs(payload.get(IFADDRMSG_LEN..)?)
        .into_iter()
        .filter(|(k, _)| *k == IFA_ADDRESS || *k == IFA_LOCAL)
        .filter_map(|(_, v)| <[u8; 4]>::try_from(v).ok().map(Ipv4Addr::from))
        .collect();
    Some((index, addrs))
}

/// What `links` reads of a route message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub v6: bool,
    pub dst_len: u8,
    pub table: u8,
    pub oif: Option<u32>,
    pub gateway: Option<IpAddr>,
    /// `RTA_PRIORITY`, 0 without it.
    pub metric: u32,
}

pub fn route(payload: &[u8]) -> Option<Route> {
    let head = payload.get(..RTMSG_LEN)?;
    let (family, dst_len, table) = (head[0], head[1], head[4]);
    let attrs = wire::parse_attrs(&payload[RTMSG_LEN..]);
    let first = |kind: u16| attrs.iter().find(|(k, _)| *k == kind).map(|(_, v)| *v);
    let gateway = first(RTA_GATEWAY).and_then(|v| match family {
        AF_INET => <[u8; 4]>::try_from(v)
            .ok()
            .map(|a| Ipv4Addr::from(a).into()),
        AF_INET6 => <[u8; 16]>::try_from(v)
            .ok()
            .map(|a| Ipv6Addr::from(a).into()),
        _ => None,
    });
    Some(Route {
        v6: family == AF_INET6,
        dst_len,
        table,
        oif: first(RTA_OIF).and_then(|v| u32_at(v, 0)),
        gateway,
        metric: first(RTA_PRIORITY).and_then(|v| u32_at(v, 0)).unwrap_or(0),
    })
}

/// An `RTM_NEWADDR` payload: `ip/prefix` on link `index`, with its
/// broadcast address below /31 (as `ip addr add` and rtnetlink do).
pub fn new_address_v4(index: u32, ip: Ipv4Addr, prefix: u8) -> Vec<u8> {
    let mut m = vec![AF_INET, prefix, 0, 0];
    m.extend_from_slice(&index.to_ne_bytes());
    let mut a = Attrs::new();
    if !ip.is_multicast() {
        a.bytes(IFA_ADDRESS, &ip.octets())
            .bytes(IFA_LOCAL, &ip.octets());
        if prefix < 31 {
            let brd = Ipv4Addr::from(u32::MAX >> u32::from(prefix) | u32::from(ip));
            a.bytes(IFA_BROADCAST, &brd.octets());
        }
    }
    m.extend_from_slice(&a.0);
    m
}

/// An `RTM_SETLINK` payload for link `index` that carries only
/// `IFLA_AF_SPEC` / `AF_INET` / `inet_conf` (the nested devconf attributes).
pub fn set_inet_conf(index: u32, inet_conf: &[u8]) -> Vec<u8> {
    let mut m = vec![0; IFINFOMSG_LEN];
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    let mut a = Attrs::new();
    a.bytes(IFLA_AF_SPEC, &{
        let mut inet = Attrs::new();
        inet.bytes(u16::from(AF_INET), &{
            let mut conf = Attrs::new();
            conf.nested(IFLA_INET_CONF, |c| c.0.extend_from_slice(inet_conf));
            conf.0
        });
        inet.0
    });
    m.extend_from_slice(&a.0);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = Attrs::new();
        a.bytes(kind, value);
        a.0
    }

    #[test]
    fn a_routes_oif_gateway_and_metric_are_read() {
        let mut m = routes_request(false);
        m[1] = 0;
        m.extend(attr(RTA_GATEWAY, &[10, 0, 0, 1]));
        m.extend(attr(RTA_OIF, &7u32.to_ne_bytes()));
        m.extend(attr(RTA_PRIORITY, &100u32.to_ne_bytes()));
        let r = route(&m).unwrap();
        assert_eq!(
            r,
            Route {
                v6: false,
                dst_len: 0,
                table: RT_TABLE_MAIN,
                oif: Some(7),
                gateway: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
                metric: 100,
            }
        );
        let mut v6 = routes_request(true);
        v6.extend(attr(RTA_GATEWAY, &Ipv6Addr::LOCALHOST.octets()));
        assert_eq!(
            route(&v6).unwrap().gateway,
            Some(Ipv6Addr::LOCALHOST.into())
        );
        assert_eq!(route(&v6).unwrap().oif, None);
    }

    #[test]
    fn names_and_ipv4_addresses_are_read() {
        let mut link = vec![0; IFINFOMSG_LEN];
        link[4..8].copy_from_slice(&3u32.to_ne_bytes());
        link.extend(attr(IFLA_IFNAME, b"eth0\0"));
        assert_eq!(link_name(&link), Some((3, "eth0".to_string())));
        let addr = new_address_v4(5, Ipv4Addr::new(10, 242, 0, 2), 24);
        assert_eq!(
            address_v4s(&addr),
            Some((5, vec![Ipv4Addr::new(10, 242, 0, 2); 2]))
        );
    }

    #[test]
    fn a_new_address_carries_its_broadcast_below_31() {
        let attrs = |m: Vec<u8>| {
            wire::parse_attrs(&m[IFADDRMSG_LEN..])
                .iter()
                .map(|(k, v)| (*k, v.to_vec()))
                .collect::<Vec<_>>()
        };
        let ip = Ipv4Addr::new(10, 242, 0, 2);
        assert_eq!(
            attrs(new_address_v4(5, ip, 24)),
            [
                (IFA_ADDRESS, ip.octets().to_vec()),
                (IFA_LOCAL, ip.octets().to_vec()),
                (IFA_BROADCAST, vec![10, 242, 0, 255]),
            ]
        );
        assert_eq!(attrs(new_address_v4(5, ip, 31)).len(), 2);
    }

    #[test]
    fn the_forwarding_switch_is_nested_in_af_spec_inet() {
        let m = set_inet_conf(4, &[8, 0, 1, 0, 1, 0, 0, 0]);
        assert_eq!(u32_at(&m, 4), Some(4));
        let spec = wire::parse_attrs(&m[IFINFOMSG_LEN..]);
        assert_eq!(spec.len(), 1);
        assert_eq!(spec[0].0, IFLA_AF_SPEC);
        let inet = wire::parse_attrs(spec[0].1);
        assert_eq!(inet[0].0, u16::from(AF_INET));
        // The devconf list has the nested flag, as the kernel wants.
        assert_eq!(&inet[0].1[2..4], &(IFLA_INET_CONF | 0x8000).to_ne_bytes());
        let conf = wire::parse_attrs(inet[0].1);
        assert_eq!(conf[0].1, [8, 0, 1, 0, 1, 0, 0, 0]);
    }
}
