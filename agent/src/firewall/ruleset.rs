//! The nftables ruleset as typed values, built from the policy. Nothing here
//! talks to the kernel; `encode` turns it into netlink requests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::creds::PROXY_PORT;
use crate::policy::Policy;
use crate::profile::Mode;
use crate::profile::Protocol;

pub const TABLE: &str = "rbm";

/// The two interfaces of the sentry, as found over rtnetlink.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Interfaces {
    pub enclave: String,
    pub uplink: String,
}

/// What the firewall needs to know, and nothing more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallInput {
    pub access: Mode,
    pub cidrs: Vec<IpNet>,
    pub upstream_dns: Vec<IpAddr>,
    pub bottle_ip: Ipv4Addr,
    pub entries: Vec<crate::profile::Entry>,
    pub interfaces: Interfaces,
    /// Hold the first payload of connections that names opened until the
    /// agent has checked the name on the wire (see `name_check_chains`).
    pub name_binding: bool,
    /// The policy's generation: every reload that takes something away
    /// starts a new one, and connections of an older one are checked
    /// again on their next packet (see `recheck_chain`).
    pub generation: u16,
    /// Credential hosts' connections (TCP 443 to the addresses in
    /// `sets::CRED4`) go to the sentry's credential proxy on this port.
    pub intercept: Option<u16>,
    /// Hosts have request rules: the addresses in `sets::CRED4` are
    /// reached through the proxy only, nothing is forwarded to them.
    pub only_via_proxy: bool,
}

impl FirewallInput {
    pub fn new(
        policy: &Policy,
        upstream_dns: Vec<IpAddr>,
        interfaces: Interfaces,
    ) -> FirewallInput {
        FirewallInput {
            access: policy.access,
            cidrs: policy.cidrs.clone(),
            upstream_dns,
            bottle_ip: policy.enclave.bottle_ip,
            entries: policy.entries.clone(),
            interfaces,
            name_binding: policy.name_binding,
            generation: 0,
            intercept: (!policy.intercept_hosts.is_empty()).then_some(PROXY_PORT),
            only_via_proxy: !policy.requests.is_empty(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetKey {
    Addr4,
    Addr6,
    /// ipv4_addr . inet_proto . inet_service
    Addr4ProtoPort,
    Addr6ProtoPort,
}

impl SetKey {
    /// Key length in bytes as the kernel stores it (concat fields padded to 4).
    pub fn key_len(self) -> u32 {
        match self {
            SetKey::Addr4 => 4,
            SetKey::Addr6 => 16,
            SetKey::Addr4ProtoPort => 12,
            SetKey::Addr6ProtoPort => 24,
        }
    }

    /// nft's datatype id, so that `nft list` shows the set's type.
    pub fn type_id(self) -> u32 {
        const IPV4: u32 = 7;
        const IPV6: u32 = 8;
        const PROTO: u32 = 12;
        const SERVICE: u32 = 13;
        let concat = |a: u32| (((a << 6) | PROTO) << 6) | SERVICE;
        match self {
            SetKey::Addr4 => IPV4,
            SetKey::Addr6 => IPV6,
            SetKey::Addr4ProtoPort => concat(IPV4),
            SetKey::Addr6ProtoPort => concat(IPV6),
        }
    }
}

/// The most elements a set with timeouts (what DNS answers open) may hold:
/// when it is full the kernel refuses the add, and the answer gets SERVFAIL.
/// A flood of fresh names cannot grow the kernel's memory, nor the agent's
/// record of what is open, without bound.
pub const LEARNED_MAX: u32 = 131_072;

/// Named sets of the rbm table.
pub mod sets {
    pub const ALLOW4: &str = "allow4";
    pub const ALLOW6: &str = "allow6";
    pub const LEARNED4: &str = "learned4";
    pub const LEARNED6: &str = "learned6";
    pub const LEARNED4_PORTS: &str = "learned4_ports";
    pub const LEARNED6_PORTS: &str = "learned6_ports";
    /// What a reload kept open of the addresses names had opened before it
    /// (no timeouts: only connections of an older generation look here).
    pub const KEPT4: &str = "kept4";
    pub const KEPT6: &str = "kept6";
    pub const KEPT4_PORTS: &str = "kept4_ports";
    pub const KEPT6_PORTS: &str = "kept6_ports";
    /// Addresses that credential hosts' names answered (with timeouts).
    pub const CRED4: &str = "cred4";
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetDef {
    pub name: &'static str,
    pub key: SetKey,
    pub interval: bool,
    pub timeout: bool,
    pub elements: Vec<SetElem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetElem {
    pub key: Vec<u8>,
    pub interval_end: bool,
    pub timeout_ms: Option<u64>,
}

/// Set elements by the name of their set, in the names' order. A few sets
/// at most, so a vector: a `BTreeMap`'s first node takes 456 bytes, which
/// musl's allocator mapped and unmapped again on every learn.
#[derive(Debug, Default)]
pub struct BySet(Vec<(&'static str, Vec<SetElem>)>);

impl BySet {
    /// `set`'s elements, none yet if it had none.
    pub fn entry(&mut self, set: &'static str) -> &mut Vec<SetElem> {
        let at = match self.find(set) {
            Ok(at) => at,
            Err(at) => {
                self.0.insert(at, (set, Vec::new()));
                at
            }
        };
        &mut self.0[at].1
    }

    pub fn get(&self, set: &str) -> Option<&[SetElem]> {
        let at = self.find(set).ok()?;
        Some(&self.0[at].1)
    }

    /// Where `set` is, or would go.
    fn find(&self, set: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(name, _)| (*name).cmp(set))
    }

    /// Every set with its elements, in the order of the sets' names.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &[SetElem])> {
        self.0.iter().map(|(name, elems)| (*name, elems.as_slice()))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Vec<SetElem>> {
        self.0.iter_mut().map(|(_, elems)| elems)
    }

    /// `other`'s elements added to this one's.
    pub fn extend(&mut self, other: BySet) {
        for (set, elems) in other.0 {
            self.entry(set).extend(elems);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainType {
    Filter,
    Nat,
    /// No hook: entered only by a `goto` from another chain (its `hook`,
    /// `priority` and `policy_accept` mean nothing).
    Regular,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainDef {
    pub name: &'static str,
    pub hook: Hook,
    pub kind: ChainType,
    pub priority: i32,
    /// true: accept by default; false: drop.
    pub policy_accept: bool,
    pub rules: Vec<Rule>,
}

/// conntrack state bits (NF_CT_STATE_*).
pub const CT_INVALID: u32 = 1;
pub const CT_ESTABLISHED: u32 = 2;
pub const CT_RELATED: u32 = 4;
pub const CT_NEW: u32 = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    IifName(String),
    OifName(String),
    /// Any of these conntrack state bits.
    CtState(u32),
    /// The connection was destination-NATed (an entry port).
    CtStatusDnat,
    /// The packet's destination TCP port, over IPv4.
    Tcp4Port(u16),
    /// A TCP packet over IPv4 whose destination port is not this one.
    Tcp4PortNot(u16),
    /// Layer-4 protocol (6 tcp, 17 udp), then `th dport`.
    ProtoPort(u8, u16),
    Daddr(IpAddr),
    /// An IPv4 packet whose source is not this address.
    Saddr4Not(Ipv4Addr),
    /// An ICMPv6 message of this type (IPv6 neighbour discovery needs them).
    Icmpv6Type(u8),
    /// Destination (and for port sets, protocol and port) in a named set.
    InSet(&'static str, SetKey),
    /// The connection's conntrack mark is exactly this.
    CtMark(u32),
    /// `ct mark & mask` is (`equal`) or is not `value`.
    CtMarkMasked {
        mask: u32,
        value: u32,
        equal: bool,
    },
    /// The connection's original destination (and for port sets, its
    /// protocol and original destination port) is in a named set: true for
    /// the packets of both directions.
    CtOriginalInSet(&'static str, SetKey),
    /// The packet's mark (set only by the agent's queue verdicts).
    PacketMark(u32),
    /// The packet goes from the server back to the client.
    CtReply,
    /// Layer-4 protocol.
    L4Proto(u8),
    /// A TCP segment without payload whose header is `doff` 32-bit words,
    /// over IPv4 without options or IPv6 without extension headers.
    TcpNoPayload {
        v6: bool,
        doff: u8,
    },
    /// A TCP segment that opens a connection: SYN, and none of ACK, RST
    /// or FIN.
    TcpSyn,
    /// A UDP datagram whose first payload byte has its high bit set: a
    /// QUIC long-header packet (Initial, 0-RTT, Handshake, Retry).
    QuicLongHeader,
    /// At most `per_second` packets a second (after a burst), across all
    /// packets this rule sees: past it the rule does not match.
    Limit {
        per_second: u64,
        burst: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Accept,
    Drop,
    Masquerade,
    Dnat {
        addr: Ipv4Addr,
        port: u16,
    },
    /// Continue in a regular chain, never to come back.
    Goto(&'static str),
    /// Continue in a regular chain, then here after it (or its `Return`).
    Jump(&'static str),
    /// Back to the chain that jumped here.
    Return,
    /// Send the packet's headers to the deny log with this prefix and go
    /// on with the next rule.
    Log(&'static str),
    /// Answer a TCP segment with a reset (then drop it).
    RejectTcpReset,
    /// Deliver to the sentry itself, on this port (nat, IPv4).
    Redirect(u16),
    /// Hand the packet to the agent on queue 0. With nobody listening, or
    /// the queue full, the kernel drops it: fail closed.
    Queue,
    /// Send the packet's headers to the agent's deny log (NFLOG group
    /// `deny_log::GROUP`) with this prefix, then drop it.
    LogDrop(&'static str),
}

/// The deny log: dropped packets the kernel copies to the agent.
pub mod deny_log {
    /// The NFLOG group the agent listens on.
    pub const GROUP: u16 = 1;
    /// Prefixes: where the packet was dropped.
    pub const FORWARD: &str = "forward";
    pub const INPUT: &str = "input";
    /// A connection a reload closed.
    pub const REVOKED: &str = "revoked";
    /// A flood of drops must not swamp the agent: the kernel logs at most
    /// this many a second (after a burst) and drops the rest unlogged.
    pub const PER_SECOND: u64 = 20;
    pub const BURST: u32 = 50;
    /// Bytes of each packet copied: the headers.
    pub const SNAPLEN: u32 = 128;
}

/// A rule always counts what it sees; its comment names it for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub matches: Vec<Match>,
    /// Set the connection's mark before the action.
    pub set_ct_mark: Option<CtMarkSet>,
    pub action: Action,
    pub comment: String,
}

fn rule(matches: Vec<Match>, action: Action, comment: &str) -> Rule {
    Rule {
        matches,
        set_ct_mark: None,
        action,
        comment: comment.to_string(),
    }
}

/// How a rule sets the connection's mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtMarkSet {
    To(u32),
    /// Keep the kind (`marks::KIND_MASK`), take this generation's base.
    Rebase(u32),
}

impl Rule {
    fn marking(mut self, mark: u32) -> Rule {
        self.set_ct_mark = Some(CtMarkSet::To(mark));
        self
    }

    fn rebasing(mut self, base: u32) -> Rule {
        self.set_ct_mark = Some(CtMarkSet::Rebase(base));
        self
    }
}

/// Connection marks: `SIGNATURE | generation << 8 | kind`. Every
/// connection the forward chain lets start is marked with the policy's
/// generation: `PLAIN` for address rules, `NAMED` for one a name opened,
/// until the agent has seen its first payload, then `ALLOWED` or `DENIED`.
/// The agent answers a held packet with `NF_REPEAT` and a packet mark: the
/// forward chain sees it again and turns the packet mark into the
/// connection's mark. Nothing else sets marks in the sentry, and a packet's
/// mark does not cross from the bottle's namespace.
pub mod marks {
    pub const SIGNATURE: u32 = 0x7200_0000;
    /// Signature and generation: a connection of another generation (or
    /// none: mark 0) differs here.
    pub const GENERATION_MASK: u32 = 0xffff_ff00;
    /// Signature and kind, any generation.
    pub const KIND_MASK: u32 = 0xff00_00ff;
    pub const PLAIN: u32 = 0;
    pub const NAMED: u32 = 1;
    pub const ALLOWED: u32 = 2;
    pub const DENIED: u32 = 3;
    pub const PACKET_ALLOW: u32 = 0x7262_0102;
    pub const PACKET_DENY: u32 = 0x7262_0103;
    /// The socket mark of the credential proxy's own connections to the
    /// real hosts: the output chain lets only those out (besides DNS).
    pub const UPSTREAM: u32 = 0x7262_0201;

    /// The mark of `kind` in `generation`.
    pub fn ct(generation: u16, kind: u32) -> u32 {
        SIGNATURE | u32::from(generation) << 8 | kind
    }
}

/// The regular chains.
pub mod chains {
    pub const NAME_OPEN: &str = "name-open";
    pub const NAME_CHECK: &str = "name-check";
    /// A TCP reset for the client, silence otherwise.
    pub const REFUSE: &str = "refuse";
    /// Connections of an older generation, on their next packet.
    pub const RECHECK: &str = "recheck";
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    pub table: &'static str,
    pub sets: Vec<SetDef>,
    pub chains: Vec<ChainDef>,
}

impl Ruleset {
    pub fn build(input: &FirewallInput) -> Ruleset {
        let mut chains = vec![refuse_chain(), recheck_chain(input)];
        if binds_names(input) {
            chains.extend(name_check_chains(input.generation));
        }
        chains.extend([
            forward_chain(input),
            input_chain(&input.interfaces, input.bottle_ip, input.intercept),
            output_chain(input),
            prerouting_chain(input),
            local_entry_chain(input),
            postrouting_chain(input),
        ]);
        Ruleset {
            table: TABLE,
            sets: build_sets(&input.cidrs, input.intercept.is_some()),
            chains,
        }
    }
}

impl Ruleset {
    /// Adds elements to the named sets (addresses a reload carries over).
    pub fn fill(&mut self, elements: BySet) {
        for (name, elems) in elements.0 {
            if let Some(set) = self.sets.iter_mut().find(|s| s.name == name) {
                set.elements.extend(elems);
            }
        }
    }

    /// The first thing the agent installs, before it knows its interfaces:
    /// nothing is forwarded and the sentry takes nothing in.
    pub fn lockdown() -> Ruleset {
        let chain = |name, hook| ChainDef {
            name,
            hook,
            kind: ChainType::Filter,
            priority: 0,
            policy_accept: false,
            rules: vec![],
        };
        Ruleset {
            table: TABLE,
            sets: vec![],
            chains: vec![chain("forward", Hook::Forward), chain("input", Hook::Input)],
        }
    }
}

fn build_sets(cidrs: &[IpNet], intercept: bool) -> Vec<SetDef> {
    let set = |name, key, interval, timeout, elements| SetDef {
        name,
        key,
        interval,
        timeout,
        elements,
    };
    let v4: Vec<IpNet> = cidrs
        .iter()
        .filter(|n| n.addr().is_ipv4())
        .copied()
        .collect();
    let v6: Vec<IpNet> = cidrs
        .iter()
        .filter(|n| n.addr().is_ipv6())
        .copied()
        .collect();
    vec![
        set(
            sets::ALLOW4,
            SetKey::Addr4,
            true,
            false,
            interval_elements(&v4),
        ),
        set(
            sets::ALLOW6,
            SetKey::Addr6,
            true,
            false,
            interval_elements(&v6),
        ),
        set(sets::LEARNED4, SetKey::Addr4, false, true, vec![]),
        set(sets::LEARNED6, SetKey::Addr6, false, true, vec![]),
        set(
            sets::LEARNED4_PORTS,
            SetKey::Addr4ProtoPort,
            false,
            true,
            vec![],
        ),
        set(
            sets::LEARNED6_PORTS,
            SetKey::Addr6ProtoPort,
            false,
            true,
            vec![],
        ),
        set(sets::KEPT4, SetKey::Addr4, false, false, vec![]),
        set(sets::KEPT6, SetKey::Addr6, false, false, vec![]),
        set(
            sets::KEPT4_PORTS,
            SetKey::Addr4ProtoPort,
            false,
            false,
            vec![],
        ),
        set(
            sets::KEPT6_PORTS,
            SetKey::Addr6ProtoPort,
            false,
            false,
            vec![],
        ),
    ]
    .into_iter()
    .chain(intercept.then(|| set(sets::CRED4, SetKey::Addr4, false, true, vec![])))
    .collect()
}

/// Interval-set elements for CIDRs: merged, each a start key and an
/// end key (first address past the range) flagged as interval end.
pub fn interval_elements(nets: &[IpNet]) -> Vec<SetElem> {
    let mut out = Vec::new();
    for net in IpNet::aggregate(&nets.to_vec()) {
        let start = addr_bytes(net.network());
        out.push(SetElem {
            key: start,
            interval_end: false,
            timeout_ms: None,
        });
        if let Some(end) = next_addr(net.broadcast()) {
            out.push(SetElem {
                key: addr_bytes(end),
                interval_end: true,
                timeout_ms: None,
            });
        }
    }
    out
}

fn next_addr(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V4(a) => u32::from(a)
            .checked_add(1)
            .map(|n| IpAddr::V4(Ipv4Addr::from(n))),
        IpAddr::V6(a) => u128::from(a)
            .checked_add(1)
            .map(|n| IpAddr::V6(Ipv6Addr::from(n))),
    }
}

pub fn addr_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Name binding applies only where names open addresses.
fn binds_names(input: &FirewallInput) -> bool {
    input.name_binding && input.access == Mode::Allowlist
}

/// The verdicts the agent sent back (as packet marks) become the
/// connection's mark; a connection still undecided goes to the name check
/// again.
fn name_verdict_rules(generation: u16) -> Vec<Rule> {
    use marks::*;
    let allowed = || Match::CtMark(ct(generation, ALLOWED));
    vec![
        rule(
            vec![Match::PacketMark(PACKET_ALLOW)],
            Action::Accept,
            "accept:name-allowed",
        )
        .marking(ct(generation, ALLOWED)),
        rule(
            vec![Match::PacketMark(PACKET_DENY)],
            Action::Goto(chains::REFUSE),
            "drop:name-denied",
        )
        .marking(ct(generation, DENIED)),
        // The fast path of every decided connection, both ways...
        rule(
            vec![allowed(), Match::CtReply],
            Action::Accept,
            "accept:name-decided-reply",
        ),
        // ...but a new connection on the same addresses and ports: after a
        // reset, conntrack keeps the old entry (and its mark) for a SYN
        // from the same source port, and a new ClientHello would pass
        // unread. Checked again from its SYN.
        rule(
            vec![allowed(), Match::TcpSyn],
            Action::Goto(chains::NAME_CHECK),
            "name:syn-again",
        )
        .marking(ct(generation, NAMED)),
        // ...and a QUIC Initial on an allowed UDP flow may open a second
        // QUIC connection (new connection IDs, another name) on the same
        // 4-tuple: the agent reads every long-header packet.
        rule(
            vec![
                allowed(),
                Match::ProtoPort(Protocol::Udp.number(), 443),
                Match::QuicLongHeader,
            ],
            Action::Queue,
            "name:quic-long-header",
        ),
        rule(vec![allowed()], Action::Accept, "accept:name-decided"),
        rule(
            vec![Match::CtMark(ct(generation, NAMED))],
            Action::Goto(chains::NAME_CHECK),
            "name:undecided",
        ),
    ]
}

/// A connection refused once stays refused, whatever its generation.
fn refused_rule() -> Rule {
    rule(
        vec![Match::CtMarkMasked {
            mask: marks::KIND_MASK,
            value: marks::SIGNATURE | marks::DENIED,
            equal: true,
        }],
        Action::Goto(chains::REFUSE),
        "drop:refused-before",
    )
}

/// `refuse`: a TCP reset for the client, silence otherwise.
fn refuse_chain() -> ChainDef {
    let tcp = Protocol::Tcp.number();
    regular_chain(
        chains::REFUSE,
        vec![
            rule(
                vec![Match::L4Proto(tcp)],
                Action::RejectTcpReset,
                "drop:refuse-reset",
            ),
            rule(vec![], Action::Drop, "drop:refuse"),
        ],
    )
}

fn regular_chain(name: &'static str, rules: Vec<Rule>) -> ChainDef {
    ChainDef {
        name,
        hook: Hook::Forward,
        kind: ChainType::Regular,
        priority: 0,
        policy_accept: false,
        rules,
    }
}

/// `recheck`: the next packet (either way) of a connection that started
/// under an older generation of the policy, or unmarked. If the policy in
/// force still allows where it goes (an entry, global access, a CIDR, or
/// what the reload kept of the learned addresses), it is moved to this
/// generation, keeping its kind, and goes on through the forward chain.
/// Else it is closed: logged, marked refused, and reset or dropped.
fn recheck_chain(input: &FirewallInput) -> ChainDef {
    let base = marks::ct(input.generation, marks::PLAIN);
    let kept = |m: Vec<Match>, comment| rule(m, Action::Return, comment).rebasing(base);
    let mut rules = vec![kept(vec![Match::CtStatusDnat], "recheck:entry")];
    match input.access {
        Mode::Global => rules.push(kept(vec![], "recheck:global")),
        Mode::Allowlist => {
            for (set, key, comment) in [
                (sets::ALLOW4, SetKey::Addr4, "recheck:cidr4"),
                (sets::ALLOW6, SetKey::Addr6, "recheck:cidr6"),
                (sets::KEPT4, SetKey::Addr4, "recheck:kept4"),
                (sets::KEPT6, SetKey::Addr6, "recheck:kept6"),
                (
                    sets::KEPT4_PORTS,
                    SetKey::Addr4ProtoPort,
                    "recheck:kept4-ports",
                ),
                (
                    sets::KEPT6_PORTS,
                    SetKey::Addr6ProtoPort,
                    "recheck:kept6-ports",
                ),
            ] {
                rules.push(kept(vec![Match::CtOriginalInSet(set, key)], comment));
            }
        }
        Mode::Disabled => {}
    }
    let closed = marks::ct(input.generation, marks::DENIED);
    rules.extend([
        rule(
            vec![Match::Limit {
                per_second: deny_log::PER_SECOND,
                burst: deny_log::BURST,
            }],
            Action::Log(deny_log::REVOKED),
            "log:revoked",
        ),
        rule(vec![], Action::Goto(chains::REFUSE), "drop:revoked").marking(closed),
    ]);
    regular_chain(chains::RECHECK, rules)
}

/// Deepest TCP header, in 32-bit words (the 4-bit data offset).
const TCP_DOFF: std::ops::RangeInclusive<u8> = 5..=15;

/// `name-open`: a new connection to an address only a name opened. TCP and
/// QUIC (UDP 443) are marked and checked; other traffic keeps the address
/// and port rules. `name-check`: replies and TCP segments without payload
/// (but the SYN) pass, everything else waits in the queue for the agent's
/// verdict.
fn name_check_chains(generation: u16) -> Vec<ChainDef> {
    let tcp = Protocol::Tcp.number();
    let named = marks::ct(generation, marks::NAMED);
    let open = vec![
        rule(
            vec![Match::L4Proto(tcp)],
            Action::Goto(chains::NAME_CHECK),
            "name:tcp",
        )
        .marking(named),
        rule(
            vec![Match::ProtoPort(Protocol::Udp.number(), 443)],
            Action::Goto(chains::NAME_CHECK),
            "name:quic",
        )
        .marking(named),
        rule(vec![], Action::Accept, "accept:name-other")
            .marking(marks::ct(generation, marks::PLAIN)),
    ];
    // The SYN too: where the stream starts is read from it, so that a
    // client cannot make the check read from the middle of its stream.
    let mut check = vec![
        rule(vec![Match::CtReply], Action::Accept, "accept:name-reply"),
        rule(
            vec![Match::CtState(CT_NEW), Match::L4Proto(tcp)],
            Action::Queue,
            "name:syn",
        ),
        // A SYN on a conntrack entry kept from an earlier connection.
        rule(vec![Match::TcpSyn], Action::Queue, "name:syn-reused"),
    ];
    for v6 in [false, true] {
        check.extend(TCP_DOFF.map(|doff| {
            rule(
                vec![Match::TcpNoPayload { v6, doff }],
                Action::Accept,
                "accept:name-no-payload",
            )
        }));
    }
    check.push(rule(vec![], Action::Queue, "name:queue"));
    vec![
        regular_chain(chains::NAME_CHECK, check),
        regular_chain(chains::NAME_OPEN, open),
    ]
}

fn forward_chain(input: &FirewallInput) -> ChainDef {
    let Interfaces { enclave, uplink } = &input.interfaces;
    let out_of_enclave = || {
        vec![
            Match::IifName(enclave.clone()),
            Match::OifName(uplink.clone()),
        ]
    };
    let names = binds_names(input);
    let generation = input.generation;
    let plain = marks::ct(generation, marks::PLAIN);
    let mut rules = vec![
        spoofed_source(&input.interfaces, input.bottle_ip),
        rule(
            vec![
                Match::CtState(CT_ESTABLISHED | CT_RELATED),
                Match::CtMarkMasked {
                    mask: marks::GENERATION_MASK,
                    value: plain,
                    equal: false,
                },
            ],
            Action::Jump(chains::RECHECK),
            "recheck:older",
        ),
        refused_rule(),
    ];
    if names {
        rules.extend(name_verdict_rules(generation));
    }
    rules.extend([
        rule(
            vec![Match::CtState(CT_ESTABLISHED | CT_RELATED)],
            Action::Accept,
            "accept:established",
        ),
        rule(
            vec![Match::CtState(CT_INVALID)],
            Action::Drop,
            "drop:invalid",
        ),
    ]);
    if !input.entries.is_empty() {
        let m = vec![
            Match::OifName(enclave.clone()),
            Match::Daddr(IpAddr::V4(input.bottle_ip)),
            Match::CtStatusDnat,
        ];
        rules.push(rule(m, Action::Accept, "accept:entry").marking(plain));
    }
    match input.access {
        Mode::Global => {
            rules.push(rule(out_of_enclave(), Action::Accept, "accept:global").marking(plain))
        }
        Mode::Allowlist => {
            if input.intercept.is_some() && input.only_via_proxy {
                // A host with request rules may have answered these
                // addresses: SSH or any other protocol to them under
                // another name that opened them on every port (a shared
                // address) would carry a push past the rules. So only TCP
                // 443 (redirected to the proxy, never here) and TCP 80
                // reach them: on 80 the name check wants an allowed name
                // on port 80, which a ruled host never is. UDP (QUIC
                // included) is dropped.
                for last in [
                    Match::L4Proto(Protocol::Udp.number()),
                    Match::Tcp4PortNot(80),
                ] {
                    let mut m = out_of_enclave();
                    m.extend([Match::InSet(sets::CRED4, SetKey::Addr4), last]);
                    rules.push(rule(m, Action::Drop, "drop:inspected-elsewhere"));
                }
            } else if input.intercept.is_some() {
                // QUIC would pass the credential proxy by: the client
                // falls back to TCP, which the proxy gets.
                let mut m = out_of_enclave();
                m.extend([
                    Match::InSet(sets::CRED4, SetKey::Addr4),
                    Match::ProtoPort(Protocol::Udp.number(), 443),
                ]);
                rules.push(rule(m, Action::Drop, "drop:credential-quic"));
            }
            let allow = [
                (sets::ALLOW4, SetKey::Addr4, "accept:cidr4"),
                (sets::ALLOW6, SetKey::Addr6, "accept:cidr6"),
                (sets::LEARNED4, SetKey::Addr4, "accept:learned4"),
                (sets::LEARNED6, SetKey::Addr6, "accept:learned6"),
                (
                    sets::LEARNED4_PORTS,
                    SetKey::Addr4ProtoPort,
                    "accept:learned4-ports",
                ),
                (
                    sets::LEARNED6_PORTS,
                    SetKey::Addr6ProtoPort,
                    "accept:learned6-ports",
                ),
            ];
            for (set, key, comment) in allow {
                let mut m = out_of_enclave();
                m.push(Match::InSet(set, key));
                let opened_by_names = !matches!(set, sets::ALLOW4 | sets::ALLOW6);
                rules.push(if names && opened_by_names {
                    rule(m, Action::Goto(chains::NAME_OPEN), comment)
                } else {
                    rule(m, Action::Accept, comment).marking(plain)
                });
            }
        }
        Mode::Disabled => {}
    }
    rules.push(logged_drop(
        enclave,
        deny_log::FORWARD,
        "drop:forward-logged",
    ));
    rules.push(rule(vec![], Action::Drop, "drop:forward"));
    ChainDef {
        name: "forward",
        hook: Hook::Forward,
        kind: ChainType::Filter,
        priority: 0,
        policy_accept: false,
        rules,
    }
}

/// What the bottle sends that is about to be dropped goes to the deny log
/// first, as fast as the limit lets it.
fn logged_drop(enclave: &str, prefix: &'static str, comment: &str) -> Rule {
    rule(
        vec![
            Match::IifName(enclave.to_string()),
            Match::Limit {
                per_second: deny_log::PER_SECOND,
                burst: deny_log::BURST,
            },
        ],
        Action::LogDrop(prefix),
        comment,
    )
}

/// ICMPv6 neighbour solicitation and advertisement: without them the
/// bottle cannot find the sentry over IPv6, and learned IPv6 addresses would
/// be unreachable (they are the IPv6 ARP, not traffic to the world).
const NEIGHBOUR_DISCOVERY: [u8; 2] = [135, 136];

/// What the sentry's own input and output always accept: loopback (`lo`
/// matched on the chain's side), replies, and neighbour discovery.
fn sentry_own(lo: Match) -> Vec<Rule> {
    let mut rules = vec![
        rule(vec![lo], Action::Accept, "accept:loopback"),
        rule(
            vec![Match::CtState(CT_ESTABLISHED | CT_RELATED)],
            Action::Accept,
            "accept:established",
        ),
    ];
    rules.extend(NEIGHBOUR_DISCOVERY.into_iter().map(|t| {
        rule(
            vec![Match::Icmpv6Type(t)],
            Action::Accept,
            "accept:neighbour-discovery",
        )
    }));
    rules
}

/// Drops an IPv4 packet from the enclave whose source is not the bottle's
/// address: a bottle with raw sockets could otherwise pass as the upstream
/// resolver (and inject answers into the agent's open queries, or make the
/// sentry send ICMP errors quoting its bytes to an uplink host) or as an
/// uplink host (and have the DNS proxy answer to it: a reflection). First
/// in input and forward, ahead of `established`.
fn spoofed_source(ifs: &Interfaces, bottle_ip: Ipv4Addr) -> Rule {
    rule(
        vec![
            Match::IifName(ifs.enclave.clone()),
            Match::Saddr4Not(bottle_ip),
        ],
        Action::Drop,
        "drop:spoofed-source",
    )
}

fn input_chain(ifs: &Interfaces, bottle_ip: Ipv4Addr, intercept: Option<u16>) -> ChainDef {
    let dns = |proto| {
        vec![
            Match::IifName(ifs.enclave.clone()),
            Match::ProtoPort(proto, 53),
        ]
    };
    let mut rules = vec![spoofed_source(ifs, bottle_ip)];
    rules.extend(sentry_own(Match::IifName("lo".into())));
    rules.extend([
        rule(
            dns(Protocol::Udp.number()),
            Action::Accept,
            "accept:dns-udp",
        ),
        rule(
            dns(Protocol::Tcp.number()),
            Action::Accept,
            "accept:dns-tcp",
        ),
    ]);
    if let Some(port) = intercept {
        rules.push(rule(
            vec![
                Match::IifName(ifs.enclave.clone()),
                Match::Tcp4Port(port),
                Match::CtStatusDnat,
            ],
            Action::Accept,
            "accept:credential-proxy",
        ));
    }
    rules.extend([
        logged_drop(&ifs.enclave, deny_log::INPUT, "drop:input-logged"),
        rule(vec![], Action::Drop, "drop:input"),
    ]);
    ChainDef {
        name: "input",
        hook: Hook::Input,
        kind: ChainType::Filter,
        priority: 0,
        policy_accept: false,
        rules,
    }
}

fn output_chain(input: &FirewallInput) -> ChainDef {
    let mut rules = sentry_own(Match::OifName("lo".into()));
    for ip in &input.upstream_dns {
        for proto in [Protocol::Udp, Protocol::Tcp] {
            let m = vec![
                Match::OifName(input.interfaces.uplink.clone()),
                Match::Daddr(*ip),
                Match::ProtoPort(proto.number(), 53),
            ];
            rules.push(rule(m, Action::Accept, "accept:upstream-dns"));
        }
    }
    if input.intercept.is_some() {
        let m = vec![
            Match::OifName(input.interfaces.uplink.clone()),
            Match::PacketMark(marks::UPSTREAM),
            Match::Tcp4Port(443),
        ];
        rules.push(rule(m, Action::Accept, "accept:credential-upstream"));
    }
    rules.push(rule(vec![], Action::Drop, "drop:output"));
    ChainDef {
        name: "output",
        hook: Hook::Output,
        kind: ChainType::Filter,
        priority: 0,
        policy_accept: false,
        rules,
    }
}

/// One DNAT rule per entry port, matching `matches` plus the entry's
/// protocol and host port.
fn entry_dnat(input: &FirewallInput, matches: Match) -> Vec<Rule> {
    input
        .entries
        .iter()
        .map(|e| {
            let m = vec![
                matches.clone(),
                Match::ProtoPort(e.protocol.number(), e.host_port),
            ];
            rule(
                m,
                Action::Dnat {
                    addr: input.bottle_ip,
                    port: e.bottle_port,
                },
                "nat:entry",
            )
        })
        .collect()
}

/// Entry ports as rootful Podman delivers them: netavark DNATs the
/// workstation's port to the sentry's uplink address, so the connection
/// arrives on the uplink.
fn prerouting_chain(input: &FirewallInput) -> ChainDef {
    ChainDef {
        name: "prerouting",
        hook: Hook::Prerouting,
        kind: ChainType::Nat,
        priority: -100,
        policy_accept: true,
        rules: {
            let mut rules = entry_dnat(input, Match::IifName(input.interfaces.uplink.clone()));
            if let Some(port) = input.intercept {
                rules.push(rule(
                    vec![
                        Match::IifName(input.interfaces.enclave.clone()),
                        Match::InSet(sets::CRED4, SetKey::Addr4),
                        Match::Tcp4Port(443),
                    ],
                    Action::Redirect(port),
                    "nat:credential-proxy",
                ));
            }
            rules
        },
    }
}

/// Entry ports as rootless Podman delivers them: `rootlessport` accepts on
/// the workstation and connects from inside the sentry's own network
/// namespace to the sentry's uplink address, so the connection is the
/// sentry's own and leaves through loopback. Its DNAT sends it to the
/// bottle instead (the filter's output hook still sees `lo`; postrouting
/// masquerades it toward the enclave like the rootful path).
fn local_entry_chain(input: &FirewallInput) -> ChainDef {
    ChainDef {
        name: "entry-local",
        hook: Hook::Output,
        kind: ChainType::Nat,
        priority: -100,
        policy_accept: true,
        rules: entry_dnat(input, Match::OifName("lo".into())),
    }
}

fn postrouting_chain(input: &FirewallInput) -> ChainDef {
    let ifs = &input.interfaces;
    let mut rules = vec![rule(
        vec![Match::OifName(ifs.uplink.clone())],
        Action::Masquerade,
        "nat:masquerade",
    )];
    if !input.entries.is_empty() {
        // Without this the bottle answers the host's bridge address directly
        // and the reply never comes back (see shared/PODMAN5.md).
        let m = vec![
            Match::OifName(ifs.enclave.clone()),
            Match::Daddr(IpAddr::V4(input.bottle_ip)),
            Match::CtStatusDnat,
        ];
        rules.push(rule(m, Action::Masquerade, "nat:entry-masquerade"));
    }
    ChainDef {
        name: "postrouting",
        hook: Hook::Postrouting,
        kind: ChainType::Nat,
        priority: 100,
        policy_accept: true,
        rules,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Entry, Protocol};

    fn input(access: Mode) -> FirewallInput {
        FirewallInput {
            access,
            cidrs: vec![
                "203.0.113.0/28".parse().unwrap(),
                "203.0.113.16/28".parse().unwrap(),
                "2001:db8::/64".parse().unwrap(),
            ],
            upstream_dns: vec!["192.0.2.53".parse().unwrap()],
            bottle_ip: "10.242.0.3".parse().unwrap(),
            entries: vec![Entry {
                host_port: 8890,
                bottle_port: 8888,
                protocol: Protocol::Tcp,
            }],
            interfaces: Interfaces {
                enclave: "eth1".into(),
                uplink: "eth0".into(),
            },
            name_binding: true,
            generation: 0,
            intercept: None,
            only_via_proxy: false,
        }
    }

    fn chain<'a>(r: &'a Ruleset, name: &str) -> &'a ChainDef {
        r.chains.iter().find(|c| c.name == name).unwrap()
    }

    fn comments(c: &ChainDef) -> Vec<&str> {
        c.rules.iter().map(|r| r.comment.as_str()).collect()
    }

    #[test]
    fn forward_is_default_deny_and_ends_in_counted_drop() {
        for access in [Mode::Allowlist, Mode::Global, Mode::Disabled] {
            let r = Ruleset::build(&input(access));
            let f = chain(&r, "forward");
            assert!(!f.policy_accept);
            assert_eq!(f.rules.last().unwrap().action, Action::Drop);
            let established = comments(f)
                .iter()
                .position(|c| *c == "accept:established")
                .unwrap();
            let names = access == Mode::Allowlist;
            assert_eq!(established, if names { 10 } else { 3 });
        }
    }

    #[test]
    fn name_binding_holds_named_connections_before_anything_accepts_them() {
        let r = Ruleset::build(&input(Mode::Allowlist));
        let f = chain(&r, "forward");
        assert_eq!(
            comments(f)[..11],
            [
                "drop:spoofed-source",
                "recheck:older",
                "drop:refused-before",
                "accept:name-allowed",
                "drop:name-denied",
                "accept:name-decided-reply",
                "name:syn-again",
                "name:quic-long-header",
                "accept:name-decided",
                "name:undecided",
                "accept:established"
            ]
        );
        let mark = |kind| Some(CtMarkSet::To(marks::ct(0, kind)));
        assert_eq!(f.rules[3].set_ct_mark, mark(marks::ALLOWED));
        assert_eq!(f.rules[4].set_ct_mark, mark(marks::DENIED));
        assert_eq!(
            f.rules[6].set_ct_mark,
            mark(marks::NAMED),
            "a new connection on an allowed one's ports is checked again"
        );
        assert_eq!(f.rules[7].action, Action::Queue);
        for r in f
            .rules
            .iter()
            .filter(|r| r.comment.starts_with("accept:cidr"))
        {
            assert_eq!(r.action, Action::Accept, "CIDRs stay address-only");
        }
        for r in f
            .rules
            .iter()
            .filter(|r| r.comment.starts_with("accept:learned"))
        {
            assert_eq!(r.action, Action::Goto(chains::NAME_OPEN));
        }
        let check = chain(&r, chains::NAME_CHECK);
        assert_eq!(check.kind, ChainType::Regular);
        assert_eq!(check.rules.last().unwrap().action, Action::Queue);
        assert_eq!(check.rules[1].action, Action::Queue, "the SYN");
        assert_eq!(
            check
                .rules
                .iter()
                .filter(|r| matches!(r.matches.first(), Some(Match::TcpNoPayload { .. })))
                .count(),
            22
        );
        let open = chain(&r, chains::NAME_OPEN);
        assert!(open.rules[..2]
            .iter()
            .all(|r| r.set_ct_mark == mark(marks::NAMED)));
        let mut off = input(Mode::Allowlist);
        off.name_binding = false;
        let r = Ruleset::build(&off);
        assert!(r
            .chains
            .iter()
            .all(|c| c.name != chains::NAME_CHECK && c.name != chains::NAME_OPEN));
        assert_eq!(comments(chain(&r, "forward"))[3], "accept:established");
    }

    #[test]
    fn every_connection_let_start_carries_the_generation_and_older_ones_are_rechecked() {
        let mut i = input(Mode::Allowlist);
        i.name_binding = false;
        i.generation = 7;
        let r = Ruleset::build(&i);
        let f = chain(&r, "forward");
        assert_eq!(
            f.rules[1].matches[1],
            Match::CtMarkMasked {
                mask: marks::GENERATION_MASK,
                value: marks::ct(7, marks::PLAIN),
                equal: false
            }
        );
        assert_eq!(f.rules[1].action, Action::Jump(chains::RECHECK));
        for rule in f
            .rules
            .iter()
            .filter(|r| r.comment.starts_with("accept:") && r.comment != "accept:established")
        {
            assert_eq!(
                rule.set_ct_mark,
                Some(CtMarkSet::To(marks::ct(7, marks::PLAIN))),
                "{}",
                rule.comment
            );
        }
        let recheck = chain(&r, chains::RECHECK);
        let kept: Vec<&Rule> = recheck
            .rules
            .iter()
            .filter(|r| r.action == Action::Return)
            .collect();
        assert_eq!(kept.len(), 7, "entry, 2 CIDR sets, 4 kept sets");
        assert!(kept
            .iter()
            .all(|r| r.set_ct_mark == Some(CtMarkSet::Rebase(marks::ct(7, marks::PLAIN)))));
        let last = recheck.rules.last().unwrap();
        assert_eq!(last.action, Action::Goto(chains::REFUSE));
        assert_eq!(
            last.set_ct_mark,
            Some(CtMarkSet::To(marks::ct(7, marks::DENIED)))
        );
    }

    #[test]
    fn allowlist_accepts_only_through_sets_from_enclave_to_uplink() {
        let r = Ruleset::build(&input(Mode::Allowlist));
        let f = chain(&r, "forward");
        for rule in f.rules.iter().filter(|r| {
            r.comment.starts_with("accept:cidr") || r.comment.starts_with("accept:learned")
        }) {
            assert_eq!(rule.matches[0], Match::IifName("eth1".into()));
            assert_eq!(rule.matches[1], Match::OifName("eth0".into()));
            assert!(matches!(rule.matches[2], Match::InSet(..)));
        }
        assert!(!comments(f).contains(&"accept:global"));
        let d = Ruleset::build(&input(Mode::Disabled));
        assert_eq!(
            comments(chain(&d, "forward")),
            vec![
                "drop:spoofed-source",
                "recheck:older",
                "drop:refused-before",
                "accept:established",
                "drop:invalid",
                "accept:entry",
                "drop:forward-logged",
                "drop:forward"
            ]
        );
        let g = Ruleset::build(&input(Mode::Global));
        assert!(comments(chain(&g, "forward")).contains(&"accept:global"));
    }

    #[test]
    fn drops_from_the_enclave_are_logged_within_a_limit_then_dropped_anyway() {
        let r = Ruleset::build(&input(Mode::Allowlist));
        for (chain_name, prefix) in [("forward", deny_log::FORWARD), ("input", deny_log::INPUT)] {
            let rules = &chain(&r, chain_name).rules;
            let [.., logged, last] = &rules[..] else {
                panic!("too few rules")
            };
            assert_eq!(logged.action, Action::LogDrop(prefix));
            assert_eq!(logged.matches[0], Match::IifName("eth1".into()));
            assert!(matches!(logged.matches[1], Match::Limit { .. }));
            assert_eq!((last.matches.len(), &last.action), (0, &Action::Drop));
        }
    }

    #[test]
    fn sentry_accepts_only_dns_from_enclave_and_talks_only_to_upstreams() {
        let r = Ruleset::build(&input(Mode::Allowlist));
        let i = chain(&r, "input");
        assert!(!i.policy_accept);
        assert_eq!(
            i.rules[0].matches,
            vec![
                Match::IifName("eth1".into()),
                Match::Saddr4Not("10.242.0.3".parse().unwrap())
            ]
        );
        assert_eq!(i.rules[0].action, Action::Drop);
        assert_eq!(
            i.rules[5].matches,
            vec![Match::IifName("eth1".into()), Match::ProtoPort(17, 53)]
        );
        assert_eq!(
            i.rules[6].matches,
            vec![Match::IifName("eth1".into()), Match::ProtoPort(6, 53)]
        );
        let nd: Vec<_> = i
            .rules
            .iter()
            .filter(|r| r.comment == "accept:neighbour-discovery")
            .map(|r| r.matches.clone())
            .collect();
        assert_eq!(
            nd,
            vec![vec![Match::Icmpv6Type(135)], vec![Match::Icmpv6Type(136)]],
            "only neighbour discovery, no other ICMPv6"
        );
        let o = chain(&r, "output");
        assert!(!o.policy_accept);
        let ups: Vec<_> = o
            .rules
            .iter()
            .filter(|r| r.comment == "accept:upstream-dns")
            .collect();
        assert_eq!(ups.len(), 2);
        assert!(ups.iter().all(|r| r
            .matches
            .contains(&Match::Daddr("192.0.2.53".parse().unwrap()))));
    }

    #[test]
    fn entries_are_dnatted_from_the_uplink_and_from_the_sentry_itself() {
        let r = Ruleset::build(&input(Mode::Allowlist));
        let p = chain(&r, "prerouting");
        assert_eq!(
            p.rules[0].action,
            Action::Dnat {
                addr: "10.242.0.3".parse().unwrap(),
                port: 8888
            }
        );
        assert_eq!(p.rules[0].matches[1], Match::ProtoPort(6, 8890));
        let post = chain(&r, "postrouting");
        assert_eq!(
            comments(post),
            vec!["nat:masquerade", "nat:entry-masquerade"]
        );
        let local = chain(&r, "entry-local");
        assert_eq!((local.hook, local.kind), (Hook::Output, ChainType::Nat));
        assert_eq!(
            local.rules[0].matches,
            vec![Match::OifName("lo".into()), Match::ProtoPort(6, 8890)]
        );
        assert_eq!(local.rules[0].action, p.rules[0].action);
        let mut no_entry = input(Mode::Allowlist);
        no_entry.entries.clear();
        let r = Ruleset::build(&no_entry);
        assert!(chain(&r, "prerouting").rules.is_empty());
        assert!(chain(&r, "entry-local").rules.is_empty());
        assert_eq!(comments(chain(&r, "postrouting")), vec!["nat:masquerade"]);
    }

    #[test]
    fn cidrs_become_merged_intervals() {
        let r = Ruleset::build(&input(Mode::Allowlist));
        let allow4 = r.sets.iter().find(|s| s.name == sets::ALLOW4).unwrap();
        assert!(allow4.interval);
        // 203.0.113.0/28 and .16/28 merge into 203.0.113.0/27: [.0, .32)
        assert_eq!(allow4.elements.len(), 2);
        assert_eq!(allow4.elements[0].key, vec![203, 0, 113, 0]);
        assert_eq!(allow4.elements[1].key, vec![203, 0, 113, 32]);
        assert!(allow4.elements[1].interval_end);
        let allow6 = r.sets.iter().find(|s| s.name == sets::ALLOW6).unwrap();
        assert_eq!(allow6.elements.len(), 2);
        let top: IpNet = "255.255.255.0/24".parse().unwrap();
        assert_eq!(
            interval_elements(&[top]).len(),
            1,
            "no end element past the last address"
        );
    }

    #[test]
    fn learned_sets_time_out() {
        let r = Ruleset::build(&input(Mode::Allowlist));
        for s in r.sets.iter().filter(|s| s.name.starts_with("learned")) {
            assert!(s.timeout && !s.interval && s.elements.is_empty());
        }
        assert_eq!(SetKey::Addr4ProtoPort.key_len(), 12);
        assert_eq!(SetKey::Addr6ProtoPort.key_len(), 24);
        assert_eq!(SetKey::Addr4ProtoPort.type_id(), 29453);
    }
}
