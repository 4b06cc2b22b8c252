//! Bytes on the nfnetlink wire: attribute (NLA) builder and parser, message
//! framing, and the constants of linux/netfilter/nf_tables.h that rbm uses.

pub const NLA_F_NESTED: u16 = 0x8000;
pub const NLA_TYPE_MASK: u16 = 0x3fff;

pub const NLM_F_REQUEST: u16 = 0x01;
pub const NLM_F_ACK: u16 = 0x04;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_CREATE: u16 = 0x400;

pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
pub const NFNL_MSG_BATCH_END: u16 = 0x11;
pub const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// ctnetlink (linux/netfilter/nfnetlink_conntrack.h): the conntrack table.
pub const NFNL_SUBSYS_CTNETLINK: u16 = 1;
pub const IPCTNL_MSG_CT_GET: u16 = 1;

pub const NFPROTO_INET: u8 = 1;
pub const NFPROTO_IPV4: u8 = 2;
pub const NFPROTO_IPV6: u8 = 10;

/// nf_tables message commands (NFT_MSG_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Cmd {
    NewTable = 0,
    DelTable = 2,
    NewChain = 3,
    NewRule = 6,
    GetRule = 7,
    NewSet = 9,
    NewSetElem = 12,
    GetSetElem = 13,
    DelSetElem = 14,
}

pub mod attr {
    pub const TABLE_NAME: u16 = 1;
    pub const TABLE_FLAGS: u16 = 2;

    pub const CHAIN_TABLE: u16 = 1;
    pub const CHAIN_NAME: u16 = 3;
    pub const CHAIN_HOOK: u16 = 4;
    pub const CHAIN_POLICY: u16 = 5;
    pub const CHAIN_TYPE: u16 = 7;
    pub const HOOK_HOOKNUM: u16 = 1;
    pub const HOOK_PRIORITY: u16 = 2;

    pub const RULE_TABLE: u16 = 1;
    pub const RULE_CHAIN: u16 = 2;
    pub const RULE_HANDLE: u16 = 3;
    pub const RULE_EXPRESSIONS: u16 = 4;
    pub const RULE_USERDATA: u16 = 7;

    pub const SET_TABLE: u16 = 1;
    pub const SET_NAME: u16 = 2;
    pub const SET_FLAGS: u16 = 3;
    pub const SET_KEY_TYPE: u16 = 4;
    pub const SET_KEY_LEN: u16 = 5;
    pub const SET_DESC: u16 = 9;
    pub const SET_DESC_SIZE: u16 = 1;
    pub const SET_ID: u16 = 10;

    pub const SET_ELEM_LIST_TABLE: u16 = 1;
    pub const SET_ELEM_LIST_SET: u16 = 2;
    pub const SET_ELEM_LIST_ELEMENTS: u16 = 3;
    pub const SET_ELEM_LIST_SET_ID: u16 = 4;
    pub const SET_ELEM_KEY: u16 = 1;
    pub const SET_ELEM_FLAGS: u16 = 3;
    pub const SET_ELEM_TIMEOUT: u16 = 4;
    pub const SET_ELEM_EXPIRATION: u16 = 5;

    pub const LIST_ELEM: u16 = 1;
    pub const EXPR_NAME: u16 = 1;
    pub const EXPR_DATA: u16 = 2;
    pub const DATA_VALUE: u16 = 1;
    pub const DATA_VERDICT: u16 = 2;
    pub const VERDICT_CODE: u16 = 1;
    pub const VERDICT_CHAIN: u16 = 2;

    pub const COUNTER_BYTES: u16 = 1;
    pub const COUNTER_PACKETS: u16 = 2;

    pub const CTA_TUPLE_ORIG: u16 = 1;
    pub const CTA_TUPLE_IP: u16 = 1;
    pub const CTA_IP_V4_DST: u16 = 2;
    pub const CTA_IP_V6_DST: u16 = 4;
    pub const CTA_STATUS: u16 = 3;
    pub const CTA_MARK: u16 = 8;
}

/// conntrack status bits (IPS_*): the connection saw a reply, or is
/// assured (a reply, and for TCP a completed handshake).
pub const IPS_SEEN_REPLY: u32 = 1 << 1;
pub const IPS_ASSURED: u32 = 1 << 2;

pub const NFT_SET_INTERVAL: u32 = 0x4;
pub const NFT_SET_TIMEOUT: u32 = 0x10;
pub const NFT_SET_ELEM_INTERVAL_END: u32 = 0x1;

/// Appends netlink attributes (4-byte aligned TLVs, host-endian header).
#[derive(Debug, Default, Clone)]
pub struct Attrs(pub Vec<u8>);

impl Attrs {
    pub fn new() -> Attrs {
        Attrs(Vec::new())
    }

    pub fn bytes(&mut self, kind: u16, data: &[u8]) -> &mut Attrs {
        let len = 4 + data.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(data);
        self.pad();
        self
    }

    pub fn str(&mut self, kind: u16, s: &str) -> &mut Attrs {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.bytes(kind, &v)
    }

    pub fn u8(&mut self, kind: u16, v: u8) -> &mut Attrs {
        self.bytes(kind, &[v])
    }

    pub fn u16be(&mut self, kind: u16, v: u16) -> &mut Attrs {
        self.bytes(kind, &v.to_be_bytes())
    }

    pub fn u32be(&mut self, kind: u16, v: u32) -> &mut Attrs {
        self.bytes(kind, &v.to_be_bytes())
    }

    pub fn u64be(&mut self, kind: u16, v: u64) -> &mut Attrs {
        self.bytes(kind, &v.to_be_bytes())
    }

    pub fn nested(&mut self, kind: u16, fill: impl FnOnce(&mut Attrs)) -> &mut Attrs {
        let mut inner = Attrs::new();
        fill(&mut inner);
        self.bytes(kind | NLA_F_NESTED, &inner.0)
    }

    fn pad(&mut self) {
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
    }
}

/// One nfnetlink message of another subsystem than nf_tables (the queue,
/// the log): header, `nfgenmsg` with `res_id` (a queue or group number),
/// attributes.
pub fn nfnl_message(
    subsys: u16,
    msg: u16,
    flags: u16,
    seq: u32,
    res_id: u16,
    attrs: &Attrs,
) -> Vec<u8> {
    let mut body = vec![0u8, 0];
    body.extend_from_slice(&res_id.to_be_bytes());
    body.extend_from_slice(&attrs.0);
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(&(16 + body.len() as u32).to_ne_bytes());
    out.extend_from_slice(&((subsys << 8) | msg).to_ne_bytes());
    out.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&body);
    out
}

/// The attributes of one nfnetlink message (after its `nfgenmsg`).
pub struct NfnlAttrs<'a>(Vec<(u16, &'a [u8])>);

impl<'a> NfnlAttrs<'a> {
    /// The first attribute of `kind`.
    pub fn get(&self, kind: u16) -> Option<&'a [u8]> {
        self.0.iter().find(|(k, _)| *k == kind).map(|(_, v)| *v)
    }
}

/// The messages of `subsys`'s type `msg` in one netlink read, as their
/// attributes (the queue's packets, the log's entries).
pub fn nfnl_messages(buf: &[u8], subsys: u16, msg: u16) -> Vec<NfnlAttrs<'_>> {
    let msg_type = (subsys << 8) | msg;
    messages(buf)
        .into_iter()
        .filter(|m| m.msg_type == msg_type)
        .filter_map(|m| Some(NfnlAttrs(parse_attrs(m.payload.get(4..)?))))
        .collect()
}

/// One nf_tables request, before framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub cmd: Cmd,
    pub flags: u16,
    pub family: u8,
    pub attrs: Vec<u8>,
}

fn frame(
    out: &mut Vec<u8>,
    msg_type: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    attrs: &[u8],
) {
    let len = 16 + 4 + attrs.len();
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&msg_type.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.push(family);
    out.push(0); // NFNETLINK_V0
    out.extend_from_slice(&res_id.to_be_bytes());
    out.extend_from_slice(attrs);
}

/// Frames `reqs` as one nfnetlink batch (BEGIN, requests, END) starting at
/// sequence number `seq`, into `out` (cleared first). Every request asks
/// for an ACK: request `i` is answered under sequence number `seq + 1 + i`.
pub fn batch(reqs: &[Request], seq: u32, out: &mut Vec<u8>) {
    out.clear();
    frame(
        out,
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        seq,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    for (i, r) in reqs.iter().enumerate() {
        let s = seq.wrapping_add(1 + i as u32);
        let ty = (NFNL_SUBSYS_NFTABLES << 8) | r.cmd as u16;
        frame(
            out,
            ty,
            NLM_F_REQUEST | NLM_F_ACK | r.flags,
            s,
            r.family,
            0,
            &r.attrs,
        );
    }
    let end = seq.wrapping_add(1 + reqs.len() as u32);
    frame(
        out,
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        end,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
}

/// A single (non-batch) request, e.g. a dump.
pub fn single(req: &Request, seq: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let ty = (NFNL_SUBSYS_NFTABLES << 8) | req.cmd as u16;
    frame(
        &mut out,
        ty,
        NLM_F_REQUEST | req.flags,
        seq,
        req.family,
        0,
        &req.attrs,
    );
    out
}

/// A received netlink message: type, sequence number and payload after the
/// 16-byte header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received<'a> {
    pub msg_type: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

/// Splits a receive buffer into messages. Stops at a truncated message.
pub fn messages(buf: &[u8]) -> Vec<Received<'_>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
        if len < 16 || at + len > buf.len() {
            break;
        }
        out.push(Received {
            msg_type: u16::from_ne_bytes(buf[at + 4..at + 6].try_into().unwrap()),
            seq: u32::from_ne_bytes(buf[at + 8..at + 12].try_into().unwrap()),
            payload: &buf[at + 16..at + len],
        });
        at += (len + 3) & !3;
    }
    out
}

/// Iterates the attributes in `buf`: (type without flags, value).
pub fn parse_attrs(buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= buf.len() {
        let len = u16::from_ne_bytes([buf[at], buf[at + 1]]) as usize;
        let kind = u16::from_ne_bytes([buf[at + 2], buf[at + 3]]) & NLA_TYPE_MASK;
        if len < 4 || at + len > buf.len() {
            break;
        }
        out.push((kind, &buf[at + 4..at + len]));
        at += (len + 3) & !3;
    }
    out
}

/// The errno of an NLMSG_ERROR payload (0 is an ACK).
pub fn error_code(payload: &[u8]) -> Option<i32> {
    payload
        .get(0..4)
        .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attrs_are_padded_and_nested() {
        let mut a = Attrs::new();
        a.str(1, "ab").nested(2, |n| {
            n.u32be(3, 7);
        });
        let parsed = parse_attrs(&a.0);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0], (1, &b"ab\0"[..]));
        assert_eq!(a.0.len() % 4, 0);
        let inner = parse_attrs(parsed[1].1);
        assert_eq!(inner, vec![(3, &7u32.to_be_bytes()[..])]);
    }

    #[test]
    fn batch_is_framed_with_begin_and_end() {
        let r = Request {
            cmd: Cmd::NewTable,
            flags: NLM_F_CREATE,
            family: NFPROTO_INET,
            attrs: vec![],
        };
        let mut bytes = vec![1, 2, 3];
        batch(&[r.clone(), r], 100, &mut bytes);
        let msgs = messages(&bytes);
        assert_eq!(msgs.len(), 4);
        assert_eq!(msgs[0].msg_type, NFNL_MSG_BATCH_BEGIN);
        assert_eq!(msgs[1].msg_type, (10 << 8) | Cmd::NewTable as u16);
        assert_eq!(msgs[3].msg_type, NFNL_MSG_BATCH_END);
        let seqs: Vec<u32> = msgs.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, vec![100, 101, 102, 103], "requests from seq + 1");
        // res_id of BEGIN carries the nftables subsystem, big-endian.
        assert_eq!(&msgs[0].payload[2..4], &[0, 10]);
    }

    #[test]
    fn truncated_input_does_not_panic() {
        assert!(messages(&[1, 2, 3]).is_empty());
        assert!(parse_attrs(&[200, 0, 1, 0]).is_empty());
    }
}
