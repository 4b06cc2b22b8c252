//! NFQUEUE over netlink (nfnetlink_queue): bind queue 0, receive the held
//! packets whole, send verdicts. A `PacketQueue` trait keeps the service
//! testable without a kernel.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use netlink_sys::Socket;

use super::flows::Verdict;
use crate::firewall::netlink::{netfilter_socket, request_acked};
use crate::firewall::ruleset::marks;
use crate::firewall::wire::{self, Attrs, NLM_F_ACK};

const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_MARK: u16 = 3;
const NFQA_PAYLOAD: u16 = 10;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_COPY_PACKET: u8 = 2;
const NF_ACCEPT: u32 = 1;
const NF_REPEAT: u32 = 4;
const SOL_NETLINK: libc::c_int = 270;
const NETLINK_NO_ENOBUFS: libc::c_int = 5;

/// The queue the ruleset sends to.
pub const QUEUE_NUM: u16 = 0;
/// Packets the kernel holds for us; past this it drops (fail closed).
const MAX_LEN: u32 = 4096;
/// Whole packets: a ClientHello segment is at most one MTU.
const COPY_RANGE: u32 = 0xffff;

/// One packet the kernel holds until its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub id: u32,
    /// From the network header on.
    pub packet: Vec<u8>,
}

pub trait PacketQueue: Send {
    /// The packets that arrived, or none after `wait`.
    fn recv(&mut self, wait: Duration) -> io::Result<Vec<Queued>>;
    fn verdict(&mut self, id: u32, verdict: Verdict) -> io::Result<()>;
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot open the netlink socket for the name-check queue (the agent needs CAP_NET_ADMIN): {0}")]
    Socket(#[source] io::Error),
    #[error("the kernel refused to bind the name-check queue {QUEUE_NUM}: {0}; is nfnetlink_queue available (CONFIG_NETFILTER_NETLINK_QUEUE), and is no other process bound to it?")]
    Bind(#[source] io::Error),
}

pub struct NfQueue {
    socket: Socket,
    buf: Vec<u8>,
}

fn header(msg: u16, flags: u16, seq: u32, attrs: &Attrs) -> Vec<u8> {
    wire::nfnl_message(NFNL_SUBSYS_QUEUE, msg, flags, seq, QUEUE_NUM, attrs)
}

fn set_opt(socket: &Socket, level: libc::c_int, opt: libc::c_int, value: &[u8]) {
    // SAFETY: setsockopt reads `value.len()` bytes from a live slice.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            opt,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        );
    }
}

impl NfQueue {
    /// Binds queue 0, copying whole packets. Errors before the agent says
    /// ready: without the queue, held packets would only ever be dropped.
    pub fn open() -> Result<NfQueue, QueueError> {
        let socket = netfilter_socket().map_err(QueueError::Socket)?;
        set_opt(
            &socket,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &(8i32 << 20).to_ne_bytes(),
        );
        // A lost notification must not end the loop; the packet it was
        // about stays held until the client retransmits it.
        set_opt(
            &socket,
            SOL_NETLINK,
            NETLINK_NO_ENOBUFS,
            &1i32.to_ne_bytes(),
        );
        let mut attrs = Attrs::new();
        attrs.bytes(NFQA_CFG_CMD, &[NFQNL_CFG_CMD_BIND, 0, 0, 0]);
        let mut params = COPY_RANGE.to_be_bytes().to_vec();
        params.push(NFQNL_COPY_PACKET);
        attrs.bytes(NFQA_CFG_PARAMS, &params);
        attrs.u32be(NFQA_CFG_QUEUE_MAXLEN, MAX_LEN);
        let queue = NfQueue {
            socket,
            buf: vec![0u8; 1 << 17],
        };
        let config = header(NFQNL_MSG_CONFIG, NLM_F_ACK, 1, &attrs);
        request_acked(&queue.socket, &config, 1).map_err(QueueError::Bind)?;
        Ok(queue)
    }

    /// Waits until a read would not block, or `wait` passed.
    fn readable(&self, wait: Duration) -> io::Result<bool> {
        let mut fd = libc::pollfd {
            fd: self.socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = wait.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: one live pollfd.
        match unsafe { libc::poll(&mut fd, 1, ms) } {
            n if n < 0 => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
            n => Ok(n > 0),
        }
    }
}

/// The packets in one netlink read.
pub fn parse_packets(buf: &[u8]) -> Vec<Queued> {
    wire::nfnl_messages(buf, NFNL_SUBSYS_QUEUE, NFQNL_MSG_PACKET)
        .into_iter()
        .filter_map(|attrs| {
            let hdr = attrs.get(NFQA_PACKET_HDR)?;
            let id = u32::from_be_bytes(hdr.get(..4)?.try_into().ok()?);
            Some(Queued {
                id,
                packet: attrs.get(NFQA_PAYLOAD).unwrap_or_default().to_vec(),
            })
        })
        .collect()
}

/// The verdict message: allow and deny send the packet through the
/// forward chain again with a mark that decides the connection.
pub fn verdict_message(id: u32, verdict: Verdict) -> Vec<u8> {
    let (code, mark) = match verdict {
        Verdict::Allow => (NF_REPEAT, Some(marks::PACKET_ALLOW)),
        Verdict::Deny => (NF_REPEAT, Some(marks::PACKET_DENY)),
        Verdict::Pass => (NF_ACCEPT, None),
    };
    let mut attrs = Attrs::new();
    let mut hdr = code.to_be_bytes().to_vec();
    hdr.extend_from_slice(&id.to_be_bytes());
    attrs.bytes(NFQA_VERDICT_HDR, &hdr);
    if let Some(mark) = mark {
        attrs.u32be(NFQA_MARK, mark);
    }
    header(NFQNL_MSG_VERDICT, 0, 0, &attrs)
}

impl PacketQueue for NfQueue {
    fn recv(&mut self, wait: Duration) -> io::Result<Vec<Queued>> {
        if !self.readable(wait)? {
            return Ok(Vec::new());
        }
        match self.socket.recv(&mut &mut self.buf[..], libc::MSG_DONTWAIT) {
            Ok(n) => Ok(parse_packets(&self.buf[..n])),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(Vec::new())
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    fn verdict(&mut self, id: u32, verdict: Verdict) -> io::Result<()> {
        self.socket
            .send(&verdict_message(id, verdict), 0)
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_carry_the_deciding_mark() {
        let msg = verdict_message(7, Verdict::Deny);
        assert_eq!(u16::from_ne_bytes([msg[4], msg[5]]), 0x0301);
        let attrs = wire::parse_attrs(&msg[20..]);
        assert_eq!(attrs[0], (NFQA_VERDICT_HDR, &[0, 0, 0, 4, 0, 0, 0, 7][..]));
        assert_eq!(attrs[1].1, marks::PACKET_DENY.to_be_bytes());
        let pass = verdict_message(8, Verdict::Pass);
        assert_eq!(wire::parse_attrs(&pass[20..]).len(), 1, "no mark");
    }

    #[test]
    fn packets_are_read_from_a_netlink_read() {
        let mut attrs = Attrs::new();
        attrs.bytes(NFQA_PACKET_HDR, &[0, 0, 1, 2, 0x08, 0, 2]);
        attrs.bytes(NFQA_PAYLOAD, b"\x45abc");
        let mut msg = header(NFQNL_MSG_PACKET, 0, 0, &attrs);
        msg.extend(header(NFQNL_MSG_PACKET, 0, 0, &attrs));
        let got = parse_packets(&msg);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id, 258);
        assert_eq!(got[0].packet, b"\x45abc");
    }
}
