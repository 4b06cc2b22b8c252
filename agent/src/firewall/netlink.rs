//! The real transport: one NETLINK_NETFILTER socket, batches with ACKs, and
//! rule dumps for the counters.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use super::wire::{self, attr, Cmd, Request, NFPROTO_INET, NLMSG_DONE, NLMSG_ERROR, NLM_F_DUMP};
use super::{ElemTimes, FirewallError, RuleCounter, Transport};

/// Socket buffers large enough for a 10,000-address batch and its answers.
const BUF_BYTES: libc::c_int = 8 << 20;

/// What one recv can bring: the kernel's answers to a whole batch.
const RECV_BYTES: usize = 1 << 20;

pub struct NetlinkTransport {
    socket: Socket,
    seq: u32,
    /// The receive buffer, made once: allocating a zeroed megabyte for every
    /// recv cost an mmap and a munmap each time, on every learned answer.
    buf: Vec<u8>,
    /// The batch being sent, kept for the next one for the same reason.
    out: Vec<u8>,
    /// Which requests of the batch still await their answer.
    pending: Vec<bool>,
}

/// A NETLINK_NETFILTER socket bound to a port of its own and connected to
/// the kernel (nf_tables here, nfnetlink_queue for the name check).
pub fn netfilter_socket() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    Ok(socket)
}

/// Sends `message` (with NLM_F_ACK and sequence number `seq`) and waits
/// for the kernel's answer to it: Ok, or the error it gives.
pub fn request_acked(socket: &Socket, message: &[u8], seq: u32) -> io::Result<()> {
    socket.send(message, 0)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = socket.recv(&mut &mut buf[..], 0)?;
        for m in wire::messages(&buf[..n]) {
            if m.msg_type == NLMSG_ERROR && m.seq == seq {
                return match wire::error_code(m.payload) {
                    Some(0) => Ok(()),
                    Some(code) => Err(io::Error::from_raw_os_error(-code)),
                    None => Err(io::Error::other("an unreadable netlink answer")),
                };
            }
        }
    }
}

impl NetlinkTransport {
    pub fn open() -> Result<NetlinkTransport, FirewallError> {
        let socket = netfilter_socket().map_err(FirewallError::Socket)?;
        // Best effort: FORCE needs CAP_NET_ADMIN, which the agent has anyway.
        for opt in [libc::SO_SNDBUFFORCE, libc::SO_RCVBUFFORCE] {
            set_int_opt(&socket, opt, BUF_BYTES);
        }
        let _ = socket.set_cap_ack(true);
        Ok(NetlinkTransport {
            socket,
            seq: std::process::id().wrapping_mul(1 << 12),
            buf: vec![0u8; RECV_BYTES],
            out: Vec::new(),
            pending: Vec::new(),
        })
    }

    fn next_seq(&mut self, n: usize) -> u32 {
        let s = self.seq;
        self.seq = self.seq.wrapping_add(n as u32 + 2);
        s
    }

    /// Receives what is already queued (the kernel answers a batch while
    /// we are still inside send()), or blocks for it if `wait`, into
    /// `self.buf`; the number of bytes received.
    fn recv_queued(&mut self, wait: bool) -> Result<Option<usize>, FirewallError> {
        let flags = if wait { 0 } else { libc::MSG_DONTWAIT };
        // SAFETY: self.buf is valid for writes of its length.
        let n = unsafe {
            libc::recv(
                self.socket.as_raw_fd(),
                self.buf.as_mut_ptr().cast(),
                self.buf.len(),
                flags,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                return Ok(None);
            }
            return Err(FirewallError::Io(e));
        }
        Ok(Some(n as usize))
    }
}

fn set_int_opt(socket: &Socket, opt: libc::c_int, value: libc::c_int) {
    // SAFETY: plain setsockopt with a c_int value on a valid fd.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

impl NetlinkTransport {
    /// Sends an nf_tables dump request and hands each answered message's
    /// attributes to `each`; a table or set that does not exist is an
    /// empty dump.
    fn dump(
        &mut self,
        cmd: Cmd,
        attrs: wire::Attrs,
        what: &str,
        each: impl FnMut(&[u8]),
    ) -> Result<(), FirewallError> {
        let req = Request {
            cmd,
            flags: NLM_F_DUMP,
            family: NFPROTO_INET,
            attrs: attrs.0,
        };
        let seq = self.next_seq(0);
        self.dump_message(&wire::single(&req, seq), seq, what, each)
    }

    /// Sends `message`, a dump request framed with `seq`, and hands each
    /// answer's attributes (after its `nfgenmsg`) to `each`.
    fn dump_message(
        &mut self,
        message: &[u8],
        seq: u32,
        what: &str,
        mut each: impl FnMut(&[u8]),
    ) -> Result<(), FirewallError> {
        self.socket.send(message, 0).map_err(FirewallError::Io)?;
        loop {
            let Some(n) = self.recv_queued(true)? else {
                continue;
            };
            for m in wire::messages(&self.buf[..n]) {
                if m.seq != seq {
                    continue;
                }
                match m.msg_type {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let code = wire::error_code(m.payload).unwrap_or(-libc::EIO);
                        if code == -libc::ENOENT {
                            return Ok(());
                        }
                        return Err(FirewallError::Rejected {
                            what: what.into(),
                            source: io::Error::from_raw_os_error(-code),
                        });
                    }
                    _ => each(m.payload.get(4..).unwrap_or_default()),
                }
            }
        }
    }
}

impl Transport for NetlinkTransport {
    fn apply(&mut self, reqs: &[Request]) -> Result<(), FirewallError> {
        if reqs.is_empty() {
            return Ok(());
        }
        let seq = self.next_seq(reqs.len());
        wire::batch(reqs, seq, &mut self.out);
        self.socket.send(&self.out, 0).map_err(FirewallError::Io)?;
        self.pending.clear();
        self.pending.resize(reqs.len(), true);
        let mut left = reqs.len();
        let mut first_error = None;
        while let Some(n) = self.recv_queued(false)? {
            for m in wire::messages(&self.buf[..n]) {
                // Request i's answer comes under seq + 1 + i.
                let idx = m.seq.wrapping_sub(seq.wrapping_add(1)) as usize;
                if m.msg_type != NLMSG_ERROR || !self.pending.get(idx).copied().unwrap_or(false) {
                    continue;
                }
                self.pending[idx] = false;
                left -= 1;
                let code = wire::error_code(m.payload).unwrap_or(-libc::EIO);
                if code != 0 && first_error.is_none() {
                    let what = reqs
                        .get(idx)
                        .map(|r| format!("{:?}", r.cmd))
                        .unwrap_or_default();
                    first_error = Some(FirewallError::Rejected {
                        what,
                        source: io::Error::from_raw_os_error(-code),
                    });
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None if left > 0 => Err(FirewallError::Unanswered(left)),
            None => Ok(()),
        }
    }

    fn dump_rules(&mut self, table: &str) -> Result<Vec<RuleCounter>, FirewallError> {
        let mut a = wire::Attrs::new();
        a.str(attr::RULE_TABLE, table);
        let mut out = Vec::new();
        self.dump(Cmd::GetRule, a, "rule dump", |attrs| {
            out.extend(super::decode::rule_counter(attrs))
        })?;
        Ok(out)
    }

    fn dump_set_timeouts(
        &mut self,
        table: &str,
        set: &str,
    ) -> Result<Vec<ElemTimes>, FirewallError> {
        let mut a = wire::Attrs::new();
        a.str(attr::SET_ELEM_LIST_TABLE, table)
            .str(attr::SET_ELEM_LIST_SET, set);
        let mut out = Vec::new();
        self.dump(Cmd::GetSetElem, a, "set element dump", |attrs| {
            out.extend(super::decode::set_elem_timeouts(attrs))
        })?;
        Ok(out)
    }

    fn dump_set_elements(
        &mut self,
        table: &str,
        set: &str,
    ) -> Result<Vec<(Vec<u8>, u64)>, FirewallError> {
        let mut a = wire::Attrs::new();
        a.str(attr::SET_ELEM_LIST_TABLE, table)
            .str(attr::SET_ELEM_LIST_SET, set);
        let mut out = Vec::new();
        self.dump(Cmd::GetSetElem, a, "set element dump", |attrs| {
            out.extend(super::decode::set_elem_keys(attrs))
        })?;
        Ok(out)
    }

    fn conntrack_destinations(
        &mut self,
        each: &mut dyn FnMut(IpAddr),
    ) -> Result<(), FirewallError> {
        let seq = self.next_seq(0);
        // Family 0: connections of both IPv4 and IPv6.
        let message = wire::nfnl_message(
            wire::NFNL_SUBSYS_CTNETLINK,
            wire::IPCTNL_MSG_CT_GET,
            NLM_F_DUMP,
            seq,
            0,
            &wire::Attrs::new(),
        );
        self.dump_message(&message, seq, "conntrack dump", |attrs| {
            if let Some(dst) = super::decode::conntrack_orig_dst(attrs) {
                each(dst);
            }
        })
    }
}
