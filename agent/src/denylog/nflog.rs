//! NFLOG over netlink (nfnetlink_log): bind the ruleset's log group and
//! receive the headers of the packets it logs, with their prefix.

use std::io;

use netlink_sys::Socket;

use crate::firewall::netlink::{netfilter_socket, request_acked};
use crate::firewall::ruleset::deny_log;
use crate::firewall::wire::{self, Attrs, NLM_F_ACK};

const NFNL_SUBSYS_ULOG: u16 = 4;
const NFULNL_MSG_PACKET: u16 = 0;
const NFULNL_MSG_CONFIG: u16 = 1;
const NFULA_PAYLOAD: u16 = 9;
const NFULA_PREFIX: u16 = 10;
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULA_CFG_TIMEOUT: u16 = 4;
const NFULA_CFG_QTHRESH: u16 = 5;
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_COPY_PACKET: u8 = 2;

/// One logged packet: where it was dropped and its first bytes (from the
/// network header on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub prefix: String,
    pub packet: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot bind the deny log (NFLOG group {group}): {source}; is nfnetlink_log available?", group = deny_log::GROUP)]
pub struct NfLogError {
    #[source]
    source: io::Error,
}

pub struct NfLog {
    socket: Socket,
    buf: Vec<u8>,
}

fn message(msg: u16, flags: u16, seq: u32, attrs: &Attrs) -> Vec<u8> {
    wire::nfnl_message(NFNL_SUBSYS_ULOG, msg, flags, seq, deny_log::GROUP, attrs)
}

impl NfLog {
    /// Binds the group and asks for each packet at once, headers only.
    pub fn open() -> Result<NfLog, NfLogError> {
        let err = |source| NfLogError { source };
        let socket = netfilter_socket().map_err(err)?;
        let mut attrs = Attrs::new();
        attrs.bytes(NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND]);
        let mut mode = deny_log::SNAPLEN.to_be_bytes().to_vec();
        mode.extend_from_slice(&[NFULNL_COPY_PACKET, 0]);
        attrs.bytes(NFULA_CFG_MODE, &mode);
        attrs.u32be(NFULA_CFG_QTHRESH, 1);
        attrs.u32be(NFULA_CFG_TIMEOUT, 0);
        request_acked(
            &socket,
            &message(NFULNL_MSG_CONFIG, NLM_F_ACK, 1, &attrs),
            1,
        )
        .map_err(err)?;
        Ok(NfLog {
            socket,
            buf: vec![0u8; 1 << 16],
        })
    }

    /// Blocks until the kernel logs something.
    pub fn recv(&mut self) -> io::Result<Vec<LogEntry>> {
        match self.socket.recv(&mut &mut self.buf[..], 0) {
            Ok(n) => Ok(parse_entries(&self.buf[..n])),
            // Entries lost to a full socket buffer: the rest go on.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

/// The logged packets in one netlink read.
pub fn parse_entries(buf: &[u8]) -> Vec<LogEntry> {
    wire::nfnl_messages(buf, NFNL_SUBSYS_ULOG, NFULNL_MSG_PACKET)
        .into_iter()
        .filter_map(|attrs| {
            let prefix = attrs.get(NFULA_PREFIX).unwrap_or_default();
            Some(LogEntry {
                prefix: String::from_utf8_lossy(prefix)
                    .trim_end_matches('\0')
                    .to_string(),
                packet: attrs.get(NFULA_PAYLOAD)?.to_vec(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_carry_prefix_and_packet() {
        let mut attrs = Attrs::new();
        attrs.str(NFULA_PREFIX, "forward");
        attrs.bytes(NFULA_PAYLOAD, b"\x45\x00");
        let msg = message(NFULNL_MSG_PACKET, 0, 0, &attrs);
        assert_eq!(
            parse_entries(&msg),
            vec![LogEntry {
                prefix: "forward".into(),
                packet: b"\x45\x00".to_vec()
            }]
        );
    }
}
