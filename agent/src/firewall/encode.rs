//! Ruleset and learned addresses -> nf_tables netlink requests.

use std::net::IpAddr;

use super::ruleset::{
    addr_bytes, deny_log, marks, Action, ChainDef, ChainType, CtMarkSet, Hook, Match, Rule,
    Ruleset, SetDef, SetElem, SetKey, LEARNED_MAX,
};
use super::wire::{
    attr, Attrs, Cmd, Request, NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6, NFT_SET_ELEM_INTERVAL_END,
    NFT_SET_INTERVAL, NFT_SET_TIMEOUT, NLM_F_CREATE,
};

const NLM_F_APPEND: u16 = 0x800;
const REG_VERDICT: u32 = 0;
const REG_1: u32 = 1;
const REG_2: u32 = 2;
/// First 32-bit register: concatenations are loaded from here on.
const REG32_00: u32 = 8;

const META_MARK: u32 = 3;
const META_NFPROTO: u32 = 15;
const META_L4PROTO: u32 = 16;
const META_IIFNAME: u32 = 6;
const META_OIFNAME: u32 = 7;
const CT_KEY_STATE: u32 = 0;
const CT_KEY_STATUS: u32 = 2;
const CT_KEY_MARK: u32 = 3;
const CT_KEY_DIRECTION: u32 = 1;
const CT_KEY_PROTOCOL: u32 = 10;
const CT_KEY_PROTO_DST: u32 = 12;
const CT_KEY_DST_IP: u32 = 20;
const CT_KEY_DST_IP6: u32 = 22;
const IP_CT_DIR_ORIGINAL: u32 = 0;
const IP_CT_DIR_REPLY: u8 = 1;
const IPS_DST_NAT: u32 = 0x20;
const PAYLOAD_NETWORK: u32 = 1;
const PAYLOAD_TRANSPORT: u32 = 2;
const CMP_EQ: u32 = 0;
const CMP_NEQ: u32 = 1;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
const NFT_JUMP: u32 = (-3i32) as u32;
const NFT_GOTO: u32 = (-4i32) as u32;
const NFT_RETURN: u32 = (-5i32) as u32;
const NFT_REJECT_TCP_RST: u32 = 1;
const TCP: u8 = 6;
const UDP: u8 = 17;
/// TCP flag bits (the header's 14th byte).
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
const NAT_DNAT: u32 = 1;
const IFNAMSIZ: usize = 16;
const ICMPV6: u8 = 58;
/// Elements per set-element message; keeps each message well below limits.
const ELEMS_PER_MSG: usize = 512;

fn req(cmd: Cmd, flags: u16, attrs: Attrs) -> Request {
    Request {
        cmd,
        flags,
        family: NFPROTO_INET,
        attrs: attrs.0,
    }
}

/// The whole table, replaced atomically: create (so delete cannot fail),
/// delete, create again with everything in it.
pub fn ruleset(rs: &Ruleset) -> Vec<Request> {
    let table = || {
        let mut a = Attrs::new();
        a.str(attr::TABLE_NAME, rs.table)
            .u32be(attr::TABLE_FLAGS, 0);
        a
    };
    let mut out = vec![
        req(Cmd::NewTable, NLM_F_CREATE, table()),
        req(Cmd::DelTable, 0, table()),
        req(Cmd::NewTable, NLM_F_CREATE, table()),
    ];
    for (i, set) in rs.sets.iter().enumerate() {
        out.push(new_set(rs.table, set, i as u32 + 1));
        out.extend(set_elems(
            Cmd::NewSetElem,
            rs.table,
            set.name,
            &set.elements,
        ));
    }
    for chain in &rs.chains {
        out.push(new_chain(rs.table, chain));
        out.extend(
            chain
                .rules
                .iter()
                .map(|r| new_rule(rs.table, chain.name, r)),
        );
    }
    out
}

/// Deletes `table` with everything in it.
pub fn del_table(table: &str) -> Request {
    let mut a = Attrs::new();
    a.str(attr::TABLE_NAME, table);
    req(Cmd::DelTable, 0, a)
}

fn new_set(table: &str, set: &SetDef, id: u32) -> Request {
    let mut flags = 0;
    if set.interval {
        flags |= NFT_SET_INTERVAL;
    }
    if set.timeout {
        flags |= NFT_SET_TIMEOUT;
    }
    let mut a = Attrs::new();
    a.str(attr::SET_TABLE, table)
        .str(attr::SET_NAME, set.name)
        .u32be(attr::SET_FLAGS, flags)
        .u32be(attr::SET_KEY_TYPE, set.key.type_id())
        .u32be(attr::SET_KEY_LEN, set.key.key_len())
        .u32be(attr::SET_ID, id);
    if set.timeout {
        a.nested(attr::SET_DESC, |desc| {
            desc.u32be(attr::SET_DESC_SIZE, LEARNED_MAX);
        });
    }
    req(Cmd::NewSet, NLM_F_CREATE, a)
}

/// Set-element requests (add or delete), split into bounded messages.
pub fn set_elems(cmd: Cmd, table: &str, set: &str, elems: &[SetElem]) -> Vec<Request> {
    let flags = if cmd == Cmd::NewSetElem {
        NLM_F_CREATE
    } else {
        0
    };
    elems
        .chunks(ELEMS_PER_MSG)
        .map(|chunk| {
            let mut a = Attrs::new();
            a.str(attr::SET_ELEM_LIST_TABLE, table)
                .str(attr::SET_ELEM_LIST_SET, set);
            a.nested(attr::SET_ELEM_LIST_ELEMENTS, |list| {
                for e in chunk {
                    list.nested(attr::LIST_ELEM, |el| elem(el, cmd, e));
                }
            });
            req(cmd, flags, a)
        })
        .collect()
}

fn elem(el: &mut Attrs, cmd: Cmd, e: &SetElem) {
    el.nested(attr::SET_ELEM_KEY, |k| {
        k.bytes(attr::DATA_VALUE, &e.key);
    });
    if e.interval_end {
        el.u32be(attr::SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
    }
    if let (Cmd::NewSetElem, Some(ms)) = (cmd, e.timeout_ms) {
        el.u64be(attr::SET_ELEM_TIMEOUT, ms);
    }
}

fn new_chain(table: &str, c: &ChainDef) -> Request {
    if c.kind == ChainType::Regular {
        let mut a = Attrs::new();
        a.str(attr::CHAIN_TABLE, table)
            .str(attr::CHAIN_NAME, c.name);
        return req(Cmd::NewChain, NLM_F_CREATE, a);
    }
    let hooknum = match c.hook {
        Hook::Prerouting => 0,
        Hook::Input => 1,
        Hook::Forward => 2,
        Hook::Output => 3,
        Hook::Postrouting => 4,
    };
    let kind = match c.kind {
        ChainType::Filter => "filter",
        ChainType::Nat => "nat",
        ChainType::Regular => unreachable!("regular chains return above"),
    };
    let mut a = Attrs::new();
    a.str(attr::CHAIN_TABLE, table)
        .str(attr::CHAIN_NAME, c.name);
    a.nested(attr::CHAIN_HOOK, |h| {
        h.u32be(attr::HOOK_HOOKNUM, hooknum)
            .u32be(attr::HOOK_PRIORITY, c.priority as u32);
    });
    a.u32be(
        attr::CHAIN_POLICY,
        if c.policy_accept { NF_ACCEPT } else { NF_DROP },
    )
    .str(attr::CHAIN_TYPE, kind);
    req(Cmd::NewChain, NLM_F_CREATE, a)
}

fn new_rule(table: &str, chain: &str, r: &Rule) -> Request {
    let mut a = Attrs::new();
    a.str(attr::RULE_TABLE, table).str(attr::RULE_CHAIN, chain);
    a.nested(attr::RULE_EXPRESSIONS, |list| {
        let mut e = Exprs(list);
        for m in &r.matches {
            e.matcher(m);
        }
        e.counter();
        match r.set_ct_mark {
            None => {}
            Some(CtMarkSet::To(mark)) => e.immediate(REG_1, &mark.to_ne_bytes()),
            Some(CtMarkSet::Rebase(base)) => {
                e.ct(CT_KEY_MARK);
                e.bitwise(
                    &(!marks::GENERATION_MASK).to_ne_bytes(),
                    &base.to_ne_bytes(),
                );
            }
        }
        if r.set_ct_mark.is_some() {
            e.expr("ct", |d| {
                d.u32be(2, CT_KEY_MARK).u32be(4, REG_1);
            });
        }
        e.action(&r.action);
    });
    a.bytes(attr::RULE_USERDATA, &comment_udata(&r.comment));
    req(Cmd::NewRule, NLM_F_CREATE | NLM_F_APPEND, a)
}

/// nft's rule comment: a TLV of type 0 (NFTNL_UDATA_RULE_COMMENT), NUL ended.
pub fn comment_udata(comment: &str) -> Vec<u8> {
    let text = &comment.as_bytes()[..comment.len().min(250)];
    let mut v = vec![0u8, text.len() as u8 + 1];
    v.extend_from_slice(text);
    v.push(0);
    v
}

/// Writes expressions into a rule's expression list.
struct Exprs<'a>(&'a mut Attrs);

impl Exprs<'_> {
    fn expr(&mut self, name: &str, data: impl FnOnce(&mut Attrs)) {
        self.0.nested(attr::LIST_ELEM, |e| {
            e.str(attr::EXPR_NAME, name).nested(attr::EXPR_DATA, data);
        });
    }

    fn meta(&mut self, key: u32, dreg: u32) {
        self.expr("meta", |d| {
            d.u32be(1, dreg).u32be(2, key);
        });
    }

    fn payload(&mut self, base: u32, offset: u32, len: u32, dreg: u32) {
        self.expr("payload", |d| {
            d.u32be(1, dreg)
                .u32be(2, base)
                .u32be(3, offset)
                .u32be(4, len);
        });
    }

    fn cmp(&mut self, op: u32, data: &[u8]) {
        self.expr("cmp", |d| {
            d.u32be(1, REG_1).u32be(2, op).nested(3, |v| {
                v.bytes(attr::DATA_VALUE, data);
            });
        });
    }

    /// reg1 = reg1 & mask (host-endian u32), then reg1 != 0.
    fn ct_bits(&mut self, key: u32, mask: u32) {
        self.ct(key);
        self.and(&mask.to_ne_bytes());
        self.cmp(CMP_NEQ, &0u32.to_ne_bytes());
    }

    fn ct(&mut self, key: u32) {
        self.expr("ct", |d| {
            d.u32be(1, REG_1).u32be(2, key);
        });
    }

    /// reg1 = reg1 & mask (as many bytes as `mask`).
    fn and(&mut self, mask: &[u8]) {
        self.bitwise(mask, &vec![0u8; mask.len()]);
    }

    /// reg1 = (reg1 & mask) ^ xor.
    fn bitwise(&mut self, mask: &[u8], xor: &[u8]) {
        self.expr("bitwise", |d| {
            d.u32be(1, REG_1)
                .u32be(2, REG_1)
                .u32be(3, mask.len() as u32);
            d.nested(4, |v| {
                v.bytes(attr::DATA_VALUE, mask);
            });
            d.nested(5, |v| {
                v.bytes(attr::DATA_VALUE, xor);
            });
        });
    }

    /// A conntrack key of the connection's original direction.
    fn ct_original(&mut self, key: u32, dreg: u32) {
        self.expr("ct", |d| {
            d.u32be(1, dreg)
                .u32be(2, key)
                .u8(3, IP_CT_DIR_ORIGINAL as u8);
        });
    }

    fn l4proto(&mut self, proto: u8) {
        self.meta(META_L4PROTO, REG_1);
        self.cmp(CMP_EQ, &[proto]);
    }

    /// A TCP segment whose IP length is exactly its headers' length.
    fn tcp_no_payload(&mut self, v6: bool, doff: u8) {
        let tcp_header = u16::from(doff) * 4;
        if v6 {
            // Version, traffic class and flow label aside: payload length
            // and next header (TCP, so no extension header).
            self.nfproto(NFPROTO_IPV6);
            self.payload(PAYLOAD_NETWORK, 4, 3, REG_1);
            let [hi, lo] = tcp_header.to_be_bytes();
            self.cmp(CMP_EQ, &[hi, lo, TCP]);
        } else {
            // Version 4 with a 5-word header, and total length.
            self.nfproto(NFPROTO_IPV4);
            self.payload(PAYLOAD_NETWORK, 0, 1, REG_1);
            self.cmp(CMP_EQ, &[0x45]);
            self.l4proto(TCP);
            self.payload(PAYLOAD_NETWORK, 2, 2, REG_1);
            self.cmp(CMP_EQ, &(20 + tcp_header).to_be_bytes());
        }
        self.payload(PAYLOAD_TRANSPORT, 12, 1, REG_1);
        self.and(&[0xf0]);
        self.cmp(CMP_EQ, &[doff << 4]);
    }

    fn ifname(&mut self, key: u32, name: &str) {
        let mut padded = [0u8; IFNAMSIZ];
        let n = name.len().min(IFNAMSIZ - 1);
        padded[..n].copy_from_slice(&name.as_bytes()[..n]);
        self.meta(key, REG_1);
        self.cmp(CMP_EQ, &padded);
    }

    fn nfproto(&mut self, family: u8) {
        self.meta(META_NFPROTO, REG_1);
        self.cmp(CMP_EQ, &[family]);
    }

    fn daddr(&mut self, v6: bool, dreg: u32) {
        let (off, len) = if v6 { (24, 16) } else { (16, 4) };
        self.nfproto(if v6 { NFPROTO_IPV6 } else { NFPROTO_IPV4 });
        self.payload(PAYLOAD_NETWORK, off, len, dreg);
    }

    fn matcher(&mut self, m: &Match) {
        match m {
            Match::IifName(n) => self.ifname(META_IIFNAME, n),
            Match::OifName(n) => self.ifname(META_OIFNAME, n),
            Match::CtState(bits) => self.ct_bits(CT_KEY_STATE, *bits),
            Match::CtStatusDnat => self.ct_bits(CT_KEY_STATUS, IPS_DST_NAT),
            Match::ProtoPort(proto, port) => {
                self.l4proto(*proto);
                self.payload(PAYLOAD_TRANSPORT, 2, 2, REG_1);
                self.cmp(CMP_EQ, &port.to_be_bytes());
            }
            Match::Tcp4Port(port) => {
                self.nfproto(NFPROTO_IPV4);
                self.l4proto(TCP);
                self.payload(PAYLOAD_TRANSPORT, 2, 2, REG_1);
                self.cmp(CMP_EQ, &port.to_be_bytes());
            }
            Match::Tcp4PortNot(port) => {
                self.nfproto(NFPROTO_IPV4);
                self.l4proto(TCP);
                self.payload(PAYLOAD_TRANSPORT, 2, 2, REG_1);
                self.cmp(CMP_NEQ, &port.to_be_bytes());
            }
            Match::Daddr(ip) => {
                self.daddr(ip.is_ipv6(), REG_1);
                self.cmp(CMP_EQ, &addr_bytes(*ip));
            }
            Match::Saddr4Not(ip) => {
                self.nfproto(NFPROTO_IPV4);
                self.payload(PAYLOAD_NETWORK, 12, 4, REG_1);
                self.cmp(CMP_NEQ, &ip.octets());
            }
            Match::Icmpv6Type(t) => {
                self.nfproto(NFPROTO_IPV6);
                self.meta(META_L4PROTO, REG_1);
                self.cmp(CMP_EQ, &[ICMPV6]);
                self.payload(PAYLOAD_TRANSPORT, 0, 1, REG_1);
                self.cmp(CMP_EQ, &[*t]);
            }
            Match::InSet(set, key) => self.lookup(set, *key),
            Match::CtMark(mark) => {
                self.ct(CT_KEY_MARK);
                self.cmp(CMP_EQ, &mark.to_ne_bytes());
            }
            Match::CtMarkMasked { mask, value, equal } => {
                self.ct(CT_KEY_MARK);
                self.and(&mask.to_ne_bytes());
                self.cmp(if *equal { CMP_EQ } else { CMP_NEQ }, &value.to_ne_bytes());
            }
            Match::CtOriginalInSet(set, key) => self.ct_original_lookup(set, *key),
            Match::PacketMark(mark) => {
                self.meta(META_MARK, REG_1);
                self.cmp(CMP_EQ, &mark.to_ne_bytes());
            }
            Match::CtReply => {
                self.ct(CT_KEY_DIRECTION);
                self.cmp(CMP_EQ, &[IP_CT_DIR_REPLY]);
            }
            Match::L4Proto(proto) => self.l4proto(*proto),
            Match::TcpNoPayload { v6, doff } => self.tcp_no_payload(*v6, *doff),
            Match::TcpSyn => {
                self.l4proto(TCP);
                self.payload(PAYLOAD_TRANSPORT, 13, 1, REG_1);
                self.and(&[TCP_FIN | TCP_SYN | TCP_RST | TCP_ACK]);
                self.cmp(CMP_EQ, &[TCP_SYN]);
            }
            Match::QuicLongHeader => {
                self.l4proto(UDP);
                self.payload(PAYLOAD_TRANSPORT, 8, 1, REG_1);
                self.and(&[0x80]);
                self.cmp(CMP_EQ, &[0x80]);
            }
            Match::Limit { per_second, burst } => self.expr("limit", |d| {
                d.u64be(1, *per_second)
                    .u64be(2, 1)
                    .u32be(3, *burst)
                    .u32be(4, 0)
                    .u32be(5, 0);
            }),
        }
    }

    fn lookup(&mut self, set: &str, key: SetKey) {
        let sreg = match key {
            SetKey::Addr4 | SetKey::Addr6 => {
                self.daddr(key == SetKey::Addr6, REG_1);
                REG_1
            }
            SetKey::Addr4ProtoPort | SetKey::Addr6ProtoPort => {
                let v6 = key == SetKey::Addr6ProtoPort;
                let words = if v6 { 4 } else { 1 };
                self.daddr(v6, REG32_00);
                self.meta(META_L4PROTO, REG32_00 + words);
                self.payload(PAYLOAD_TRANSPORT, 2, 2, REG32_00 + words + 1);
                REG32_00
            }
        };
        self.expr("lookup", |d| {
            d.str(1, set).u32be(2, sreg);
        });
    }

    /// Like `lookup`, from the connection's original tuple: the same for
    /// a packet of either direction.
    fn ct_original_lookup(&mut self, set: &str, key: SetKey) {
        let v6 = matches!(key, SetKey::Addr6 | SetKey::Addr6ProtoPort);
        self.nfproto(if v6 { NFPROTO_IPV6 } else { NFPROTO_IPV4 });
        let addr = if v6 { CT_KEY_DST_IP6 } else { CT_KEY_DST_IP };
        let sreg = match key {
            SetKey::Addr4 | SetKey::Addr6 => {
                self.ct_original(addr, REG_1);
                REG_1
            }
            SetKey::Addr4ProtoPort | SetKey::Addr6ProtoPort => {
                let words = if v6 { 4 } else { 1 };
                self.ct_original(addr, REG32_00);
                self.expr("ct", |d| {
                    d.u32be(1, REG32_00 + words).u32be(2, CT_KEY_PROTOCOL);
                });
                self.ct_original(CT_KEY_PROTO_DST, REG32_00 + words + 1);
                REG32_00
            }
        };
        self.expr("lookup", |d| {
            d.str(1, set).u32be(2, sreg);
        });
    }

    fn counter(&mut self) {
        self.expr("counter", |d| {
            d.u64be(attr::COUNTER_BYTES, 0)
                .u64be(attr::COUNTER_PACKETS, 0);
        });
    }

    fn verdict(&mut self, code: u32) {
        self.verdict_to(code, None);
    }

    fn verdict_to(&mut self, code: u32, chain: Option<&str>) {
        self.expr("immediate", |d| {
            d.u32be(1, REG_VERDICT).nested(2, |data| {
                data.nested(attr::DATA_VERDICT, |v| {
                    v.u32be(attr::VERDICT_CODE, code);
                    if let Some(chain) = chain {
                        v.str(attr::VERDICT_CHAIN, chain);
                    }
                });
            });
        });
    }

    fn immediate(&mut self, dreg: u32, value: &[u8]) {
        self.expr("immediate", |d| {
            d.u32be(1, dreg).nested(2, |data| {
                data.bytes(attr::DATA_VALUE, value);
            });
        });
    }

    fn log(&mut self, prefix: &str) {
        self.expr("log", |d| {
            d.u16be(1, deny_log::GROUP)
                .str(2, prefix)
                .u32be(3, deny_log::SNAPLEN);
        });
    }

    fn action(&mut self, a: &Action) {
        match a {
            Action::Accept => self.verdict(NF_ACCEPT),
            Action::Drop => self.verdict(NF_DROP),
            Action::Masquerade => self.expr("masq", |_| {}),
            Action::Goto(chain) => self.verdict_to(NFT_GOTO, Some(chain)),
            Action::Jump(chain) => self.verdict_to(NFT_JUMP, Some(chain)),
            Action::Return => self.verdict(NFT_RETURN),
            Action::Log(prefix) => self.log(prefix),
            // xtables' NFQUEUE through nft_compat (kernels without the
            // native `queue` expression have it). Revision 0 is a queue
            // number and nothing else: it has no bypass flag.
            Action::Queue => self.expr("target", |d| {
                d.str(1, "NFQUEUE").u32be(2, 0).bytes(3, &[0u8; 4]);
            }),
            Action::LogDrop(prefix) => {
                self.log(prefix);
                self.verdict(NF_DROP);
            }
            Action::RejectTcpReset => self.expr("reject", |d| {
                d.u32be(1, NFT_REJECT_TCP_RST).u8(2, 0);
            }),
            Action::Redirect(port) => {
                self.immediate(REG_1, &port.to_be_bytes());
                self.expr("redir", |d| {
                    d.u32be(1, REG_1).u32be(2, REG_1);
                });
            }
            Action::Dnat { addr, port } => {
                self.immediate(REG_1, &addr.octets());
                self.immediate(REG_2, &port.to_be_bytes());
                self.expr("nat", |d| {
                    d.u32be(1, NAT_DNAT)
                        .u32be(2, NFPROTO_IPV4 as u32)
                        .u32be(3, REG_1)
                        .u32be(5, REG_2);
                });
            }
        }
    }
}

/// The key of a learned address with a protocol and port, as stored in the
/// `learned*_ports` sets: address, then proto and port each padded to 4 bytes.
pub fn proto_port_key(ip: IpAddr, proto: u8, port: u16) -> Vec<u8> {
    let mut k = addr_bytes(ip);
    k.extend_from_slice(&[proto, 0, 0, 0]);
    k.extend_from_slice(&port.to_be_bytes());
    k.extend_from_slice(&[0, 0]);
    k
}

#[cfg(test)]
mod tests {
    use super::super::ruleset::{FirewallInput, Interfaces};
    use super::super::wire::parse_attrs;
    use super::*;
    use crate::profile::Mode;

    fn rs() -> Ruleset {
        Ruleset::build(&FirewallInput {
            access: Mode::Allowlist,
            cidrs: vec!["203.0.113.0/28".parse().unwrap()],
            upstream_dns: vec!["192.0.2.53".parse().unwrap()],
            bottle_ip: "10.242.0.3".parse().unwrap(),
            entries: vec![],
            interfaces: Interfaces {
                enclave: "eth1".into(),
                uplink: "eth0".into(),
            },
            name_binding: true,
            generation: 0,
            intercept: None,
            only_via_proxy: false,
        })
    }

    #[test]
    fn table_is_replaced_whole_first() {
        let reqs = ruleset(&rs());
        let cmds: Vec<Cmd> = reqs.iter().take(3).map(|r| r.cmd).collect();
        assert_eq!(cmds, vec![Cmd::NewTable, Cmd::DelTable, Cmd::NewTable]);
        let sets = reqs.iter().filter(|r| r.cmd == Cmd::NewSet).count();
        assert_eq!(sets, 10);
        // Every set comes before the first rule, so lookups resolve.
        let first_rule = reqs.iter().position(|r| r.cmd == Cmd::NewRule).unwrap();
        let last_set = reqs.iter().rposition(|r| r.cmd == Cmd::NewSet).unwrap();
        assert!(last_set < first_rule);
        // And every chain before a rule that jumps to it.
        let chain_at = |name: &str| {
            reqs.iter()
                .position(|r| {
                    r.cmd == Cmd::NewChain
                        && r.attrs.windows(name.len()).any(|w| w == name.as_bytes())
                })
                .unwrap()
        };
        let name_open_rule = reqs
            .iter()
            .position(|r| r.cmd == Cmd::NewRule && r.attrs.windows(9).any(|w| w == b"name-open"))
            .unwrap();
        assert!(chain_at("name-check") < chain_at("name-open"));
        assert!(chain_at("refuse") < chain_at("recheck"));
        assert!(chain_at("name-open") < name_open_rule);
    }

    #[test]
    fn rules_carry_counter_and_comment() {
        let reqs = ruleset(&rs());
        let established = comment_udata("accept:established");
        let rule = reqs
            .iter()
            .filter(|r| r.cmd == Cmd::NewRule)
            .find(|r| r.attrs.windows(established.len()).any(|w| w == established))
            .unwrap();
        let attrs = parse_attrs(&rule.attrs);
        let udata = attrs
            .iter()
            .find(|(k, _)| *k == attr::RULE_USERDATA)
            .unwrap()
            .1;
        assert_eq!(udata, &comment_udata("accept:established")[..]);
        let exprs = attrs
            .iter()
            .find(|(k, _)| *k == attr::RULE_EXPRESSIONS)
            .unwrap()
            .1;
        let names: Vec<String> = parse_attrs(exprs)
            .iter()
            .map(|(_, e)| {
                let name = parse_attrs(e)[0].1;
                String::from_utf8_lossy(&name[..name.len() - 1]).into_owned()
            })
            .collect();
        assert_eq!(names, vec!["ct", "bitwise", "cmp", "counter", "immediate"]);
    }

    #[test]
    fn element_messages_are_chunked_and_deletes_have_no_timeout() {
        let elems: Vec<SetElem> = (0..1100u32)
            .map(|i| SetElem {
                key: i.to_be_bytes().to_vec(),
                interval_end: false,
                timeout_ms: Some(1000),
            })
            .collect();
        assert_eq!(
            set_elems(Cmd::NewSetElem, "rbm", "learned4", &elems).len(),
            3
        );
        let del = set_elems(Cmd::DelSetElem, "rbm", "learned4", &elems[..1]);
        assert!(!del[0].attrs.windows(8).any(|w| w == 1000u64.to_be_bytes()));
    }

    #[test]
    fn proto_port_key_layout() {
        let k = proto_port_key("198.51.100.10".parse().unwrap(), 6, 443);
        assert_eq!(k, vec![198, 51, 100, 10, 6, 0, 0, 0, 1, 187, 0, 0]);
        assert_eq!(proto_port_key("::1".parse().unwrap(), 17, 53).len(), 24);
    }
}
