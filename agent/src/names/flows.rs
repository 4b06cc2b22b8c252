//! Packets held until their connection is judged. A connection's first
//! payload packets wait here (the kernel keeps them queued); once the name
//! is known every one of them gets the same verdict, in the order they
//! came. Memory is bounded: so many connections, so many bytes each, so
//! long; past any bound the connection is denied.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::judge::{self, Denial, Outcome};
use super::packet::{FlowKey, Packet, Transport, UDP};
use super::quic::{self, Again, Origin};
use crate::policy::Policy;

/// How long a connection may take to show its name.
pub const HOLD_FOR: Duration = Duration::from_secs(3);
/// Connections waiting at once.
pub const MAX_HELD: usize = 1024;
/// Bytes held per connection (a ClientHello is a few kilobytes).
pub const MAX_BYTES: usize = 48 << 10;
/// How long a verdict is remembered for packets that were already queued
/// when it was given (the connection's mark stops the rest in the kernel).
const REMEMBER: Duration = Duration::from_secs(10);
const MAX_REMEMBERED: usize = 8192;
/// Where each TCP connection's stream starts, from its SYN, kept this long
/// for a client that connects first and speaks later.
const START_KEPT: Duration = Duration::from_secs(600);
const MAX_STARTS: usize = 16384;
/// QUIC connections allowed on one UDP flow, remembered at most.
const MAX_ORIGINS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Forward, and mark the connection allowed.
    Allow,
    /// Refuse (a TCP reset), and mark the connection denied.
    Deny,
    /// Forward this packet only; the connection stays undecided.
    Pass,
}

/// What one packet (or a sweep) led to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Queue ids and their verdicts, in the order to send them.
    pub verdicts: Vec<(u32, Verdict)>,
    /// A connection just decided, for status.
    pub decided: Vec<(FlowKey, Outcome)>,
}

struct Held {
    since: Instant,
    bytes: usize,
    /// Queue id, TCP sequence number (0 for UDP), payload; as they came.
    packets: Vec<(u32, u32, Vec<u8>)>,
}

#[derive(Default)]
pub struct Flows {
    held: HashMap<FlowKey, Held>,
    decided: HashMap<FlowKey, (Verdict, Instant)>,
    /// The sequence number of each connection's first byte of data. The
    /// stream is read from there and nowhere else: a client that sends a
    /// later segment first must not make the check read from its middle.
    starts: HashMap<FlowKey, (u32, Instant)>,
    /// The QUIC connections allowed on each UDP flow, and when it was last
    /// seen: the kernel hands the agent every long-header datagram of an
    /// allowed flow, and one that opens another connection is checked.
    quic: HashMap<FlowKey, (Vec<Origin>, Instant)>,
}

impl Flows {
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// One packet from the queue (`None`: one that does not parse as TCP
    /// or UDP, refused).
    pub fn packet(
        &mut self,
        policy: &Policy,
        now: Instant,
        id: u32,
        packet: Option<Packet<'_>>,
    ) -> Step {
        let pass = |verdict| Step {
            verdicts: vec![(id, verdict)],
            decided: vec![],
        };
        // The kernel queues only TCP and UDP 443 here, whole (conntrack
        // reassembled them): one the agent cannot read (an IPv6 extension
        // header it does not know, an atomic fragment) could carry a name
        // past the check, so its connection is refused.
        let Some(packet) = packet else {
            return pass(Verdict::Deny);
        };
        let key = packet.key;
        let held = self.held.contains_key(&key);
        if let Transport::Tcp { seq, syn: true } = packet.transport {
            // A SYN starts a connection: what was decided for an earlier
            // one on the same addresses and ports is not its verdict (a
            // client that reuses its source port would otherwise send any
            // name on an allowed connection's verdict).
            let start = seq.wrapping_add(1);
            let earlier = self.decided.remove(&key).is_some();
            let moved = self.starts.get(&key).is_some_and(|(s, _)| *s != start);
            if moved && !earlier {
                // A second SYN with another sequence number on a connection
                // not yet judged: a raw socket moving where the check reads,
                // so that a decoy sent "before" the real start is what it
                // judges while the server reads on from the first SYN.
                return self.refuse_now(key, id, now, "a second SYN with another start");
            }
            self.remember_start(key, start, now);
        } else if !held {
            if self.quic.contains_key(&key) {
                return self.quic_again(policy, now, id, &packet);
            }
            if let Some((verdict, _)) = self.decided.get(&key) {
                return pass(*verdict);
            }
        }
        if packet.payload.is_empty() {
            return pass(Verdict::Pass);
        }
        if !self.held.contains_key(&key) && self.held.len() >= MAX_HELD {
            let full = denial("too many connections are waiting for their name");
            self.remember(key, Verdict::Deny, now);
            return Step {
                verdicts: vec![(id, Verdict::Deny)],
                decided: vec![(key, full)],
            };
        }
        let seq = match packet.transport {
            Transport::Tcp { seq, syn } => seq.wrapping_add(u32::from(syn)),
            Transport::Udp => 0,
        };
        let start = self.starts.get(&key).map(|(s, _)| *s);
        let held = self.held.entry(key).or_insert_with(|| Held {
            since: now,
            bytes: 0,
            packets: Vec::new(),
        });
        held.bytes += packet.payload.len();
        held.packets.push((id, seq, packet.payload.to_vec()));
        let known = self.quic.get(&key).map_or(&[][..], |(k, _)| &k[..]);
        let outcome = judge_held(policy, &key, start, held, known);
        self.finish(key, outcome, now)
    }

    /// A datagram of a UDP flow whose QUIC connection was allowed: it
    /// passes unless it opens another QUIC connection, whose name is then
    /// read as a new flow's.
    fn quic_again(&mut self, policy: &Policy, now: Instant, id: u32, packet: &Packet) -> Step {
        let key = packet.key;
        let (known, seen) = self.quic.get_mut(&key).expect("the caller looked");
        *seen = now;
        let why = match quic::again(packet.payload, known) {
            Again::Known => {
                return Step {
                    verdicts: vec![(id, Verdict::Pass)],
                    decided: vec![],
                }
            }
            Again::Refused(why) => why,
            Again::New => {
                let held = self.held.entry(key).or_insert(Held {
                    since: now,
                    bytes: packet.payload.len(),
                    packets: vec![(id, 0, packet.payload.to_vec())],
                });
                let known = self.quic.get(&key).map_or(&[][..], |(k, _)| &k[..]);
                let outcome = judge_held(policy, &key, None, held, known);
                return self.finish(key, outcome, now);
            }
        };
        self.refuse_now(key, id, now, why)
    }

    /// Denies the connection at this packet (and any it held).
    fn refuse_now(&mut self, key: FlowKey, id: u32, now: Instant, why: &str) -> Step {
        let mut step = match self.held.contains_key(&key) {
            true => self.finish(key, denial(why), now),
            false => Step {
                verdicts: vec![],
                decided: vec![(key, denial(why))],
            },
        };
        self.starts.remove(&key);
        self.quic.remove(&key);
        self.remember(key, Verdict::Deny, now);
        step.verdicts.push((id, Verdict::Deny));
        step
    }

    /// Denies every connection held longer than `HOLD_FOR`.
    pub fn expire(&mut self, now: Instant) -> Step {
        let late: Vec<FlowKey> = self
            .held
            .iter()
            .filter(|(_, h)| now.duration_since(h.since) >= HOLD_FOR)
            .map(|(k, _)| *k)
            .collect();
        let mut step = Step::default();
        for key in late {
            let outcome = denial("no complete name within 3 s");
            let more = self.finish(key, outcome, now);
            step.verdicts.extend(more.verdicts);
            step.decided.extend(more.decided);
        }
        self.decided
            .retain(|_, (_, at)| now.duration_since(*at) < REMEMBER);
        self.starts
            .retain(|_, (_, at)| now.duration_since(*at) < START_KEPT);
        self.quic
            .retain(|_, (_, at)| now.duration_since(*at) < START_KEPT);
        step
    }

    fn remember_start(&mut self, key: FlowKey, start: u32, now: Instant) {
        if self.starts.len() >= MAX_STARTS {
            self.starts
                .retain(|_, (_, at)| now.duration_since(*at) < START_KEPT);
            if self.starts.len() >= MAX_STARTS {
                // The oldest half goes: their first data, if it ever comes,
                // is denied (the start is unknown).
                let mut ages: Vec<Instant> = self.starts.values().map(|(_, at)| *at).collect();
                ages.sort();
                let cut = ages[ages.len() / 2];
                self.starts.retain(|_, (_, at)| *at > cut);
            }
        }
        self.starts.insert(key, (start, now));
    }

    fn finish(&mut self, key: FlowKey, outcome: Outcome, now: Instant) -> Step {
        let verdict = match &outcome {
            Outcome::Hold => return Step::default(),
            Outcome::Allow { .. } => Verdict::Allow,
            Outcome::Deny(_) => Verdict::Deny,
        };
        let held = self.held.remove(&key);
        self.starts.remove(&key);
        self.remember(key, verdict, now);
        if key.proto == UDP {
            self.remember_quic(key, verdict, held.as_ref(), now);
        }
        Step {
            verdicts: held
                .into_iter()
                .flat_map(|h| h.packets)
                .map(|(id, _, _)| (id, verdict))
                .collect(),
            decided: vec![(key, outcome)],
        }
    }

    /// After a UDP flow's verdict: the QUIC connection it allowed joins
    /// those known on the flow; a denied flow keeps none.
    fn remember_quic(&mut self, key: FlowKey, verdict: Verdict, held: Option<&Held>, now: Instant) {
        if verdict != Verdict::Allow {
            self.quic.remove(&key);
            return;
        }
        let origin = held
            .and_then(|h| h.packets.first())
            .and_then(|(_, _, d)| quic::initial_origin(d).ok().flatten());
        let Some(origin) = origin else { return };
        if !self.quic.contains_key(&key) && self.quic.len() >= MAX_STARTS {
            self.quic
                .retain(|_, (_, at)| now.duration_since(*at) < START_KEPT / 4);
        }
        let (known, seen) = self.quic.entry(key).or_insert_with(|| (Vec::new(), now));
        *seen = now;
        if !known.contains(&origin) {
            if known.len() >= MAX_ORIGINS {
                known.remove(0);
            }
            known.push(origin);
        }
    }

    fn remember(&mut self, key: FlowKey, verdict: Verdict, now: Instant) {
        if self.decided.len() >= MAX_REMEMBERED {
            self.decided
                .retain(|_, (_, at)| now.duration_since(*at) < REMEMBER / 4);
            if self.decided.len() >= MAX_REMEMBERED {
                self.decided.clear();
            }
        }
        self.decided.insert(key, (verdict, now));
    }
}

fn denial(reason: &str) -> Outcome {
    Outcome::Deny(Denial {
        reason: reason.into(),
        name: None,
    })
}

fn judge_held(
    policy: &Policy,
    key: &FlowKey,
    start: Option<u32>,
    held: &Held,
    known: &[Origin],
) -> Outcome {
    let port = key.dst.port();
    let outcome = if key.proto == super::packet::TCP {
        let Some(start) = start else {
            return denial("data on a connection whose start the agent did not see");
        };
        match stream(start, &held.packets) {
            Ok(stream) => judge::tcp(policy, port, &stream),
            Err(why) => denial(why),
        }
    } else {
        let datagrams: Vec<&[u8]> = held.packets.iter().map(|(_, _, d)| &d[..]).collect();
        judge::udp(policy, port, &datagrams, known)
    };
    if outcome == Outcome::Hold && held.bytes > MAX_BYTES {
        return denial("no complete name in the first 48 KiB");
    }
    unchecked_requests(policy, outcome)
}

/// A connection the name check would allow, refused if its name has
/// request rules: those hosts' connections go to the proxy that checks
/// each request (their addresses are redirected there), so one that comes
/// here was aimed at another name's address, or fronted (`SNI: github.com`
/// to another allowed host's address that GitHub's front end also serves),
/// and its requests would pass unchecked.
fn unchecked_requests(policy: &Policy, outcome: Outcome) -> Outcome {
    match &outcome {
        Outcome::Allow { name: Some(name) } if policy.rules_for(name).is_some() => {
            Outcome::Deny(Denial {
                reason: format!(
                    "{name} has request rules, and this connection does not go through the sentry's request check (another name's address)"
                ),
                name: Some(name.clone()),
            })
        }
        _ => outcome,
    }
}

/// The contiguous bytes from `start` (the first byte after the SYN).
/// Bytes before it are cut, as the server's TCP cuts them. Segments that
/// overlap must agree: a client that sends the same bytes twice with
/// different content could show the check one name and the server another.
fn stream(start: u32, packets: &[(u32, u32, Vec<u8>)]) -> Result<Vec<u8>, &'static str> {
    let mut segments: Vec<(usize, &[u8])> = packets
        .iter()
        .filter_map(|(_, seq, data)| {
            let at = seq.wrapping_sub(start) as i32;
            if at >= 0 {
                return Some((at as usize, &data[..]));
            }
            let cut = at.unsigned_abs() as usize;
            (cut < data.len()).then(|| (0, &data[cut..]))
        })
        .collect();
    segments.sort_by_key(|(at, _)| *at);
    let mut out: Vec<u8> = Vec::new();
    for (at, data) in segments {
        if at > out.len() {
            break;
        }
        let overlap = (out.len() - at).min(data.len());
        if out[at..at + overlap] != data[..overlap] {
            return Err("retransmitted bytes that differ from the first ones");
        }
        out.extend_from_slice(&data[overlap..]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::tests::policy;
    use crate::names::packet::{parse, tests::tcp4, tests::SYN_SEQ};
    use crate::names::tls::tests::{hello, records};
    use crate::profile::Mode;
    use std::net::SocketAddr;

    fn p() -> Policy {
        policy(Mode::Allowlist, Mode::Allowlist, &["a.test"])
    }

    const DST: &str = "198.51.100.10:443";

    fn feed(flows: &mut Flows, id: u32, seq: u32, data: &[u8], now: Instant) -> Step {
        let dst: SocketAddr = DST.parse().unwrap();
        let bytes = tcp4(dst, seq, data);
        flows.packet(&p(), now, id, parse(&bytes))
    }

    /// A flow table that saw the SYN; data starts at `SYN_SEQ + 1`.
    fn connected(now: Instant) -> Flows {
        let mut flows = Flows::default();
        let step = feed(&mut flows, 100, SYN_SEQ, b"", now);
        assert_eq!(step.verdicts, vec![(100, Verdict::Pass)]);
        flows
    }

    const DATA: u32 = SYN_SEQ.wrapping_add(1);

    #[test]
    fn a_split_hello_is_held_then_released_in_order() {
        let hello = records(&hello("a.test", 2000, true), 1 << 14);
        let (one, two) = hello.split_at(1200);
        let now = Instant::now();
        let mut flows = connected(now);
        assert_eq!(feed(&mut flows, 1, DATA, one, now), Step::default());
        assert_eq!(flows.held(), 1);
        let step = feed(&mut flows, 2, DATA.wrapping_add(1200), two, now);
        assert_eq!(
            step.verdicts,
            vec![(1, Verdict::Allow), (2, Verdict::Allow)]
        );
        assert_eq!(flows.held(), 0);
        assert_eq!(
            feed(&mut flows, 3, DATA.wrapping_add(3000), b"more", now).verdicts,
            vec![(3, Verdict::Allow)],
            "a packet queued before the mark took effect"
        );
    }

    #[test]
    fn segments_in_any_order_make_one_stream() {
        let hello = records(&hello("evil.test", 2000, true), 1 << 14);
        let (one, two) = hello.split_at(1200);
        let now = Instant::now();
        let mut flows = connected(now);
        let later = feed(&mut flows, 2, DATA.wrapping_add(1200), two, now);
        assert!(
            later.verdicts.is_empty(),
            "a later segment alone decides nothing"
        );
        let step = feed(&mut flows, 1, DATA, one, now);
        assert_eq!(step.verdicts, vec![(2, Verdict::Deny), (1, Verdict::Deny)]);
        assert!(
            matches!(&step.decided[0].1, Outcome::Deny(d) if d.name.as_deref() == Some("evil.test"))
        );
    }

    #[test]
    fn bytes_before_the_start_are_cut_and_an_unknown_start_is_denied() {
        let hello = records(&hello("evil.test", 100, true), 1 << 14);
        let now = Instant::now();
        let mut flows = connected(now);
        // One byte that overlaps the SYN, then the hello: the server drops
        // that byte, and so does the check.
        let sneaky = [b"X".as_slice(), &hello].concat();
        let step = feed(&mut flows, 1, SYN_SEQ, &sneaky, now);
        assert!(
            matches!(&step.decided[0].1, Outcome::Deny(d) if d.name.as_deref() == Some("evil.test"))
        );
        let mut unseen = Flows::default();
        let step = feed(&mut unseen, 1, DATA, b"SSH-2.0-x\r\n", now);
        assert_eq!(step.verdicts, vec![(1, Verdict::Deny)]);
    }

    #[test]
    fn retransmissions_must_agree() {
        let hello = records(&hello("a.test", 2000, true), 1 << 14);
        let now = Instant::now();
        let mut flows = connected(now);
        assert!(feed(&mut flows, 1, DATA, &hello[..1200], now)
            .verdicts
            .is_empty());
        let mut forged = hello[..1200].to_vec();
        forged[1100] ^= 1;
        let step = feed(&mut flows, 2, DATA, &forged, now);
        assert_eq!(step.verdicts, vec![(1, Verdict::Deny), (2, Verdict::Deny)]);
    }

    #[test]
    fn slow_or_endless_hellos_are_denied() {
        let hello = records(&hello("a.test", 2000, true), 1 << 14);
        let now = Instant::now();
        let mut flows = connected(now);
        assert!(feed(&mut flows, 1, DATA, &hello[..100], now)
            .verdicts
            .is_empty());
        assert!(flows.expire(now + HOLD_FOR / 2).verdicts.is_empty());
        let step = flows.expire(now + HOLD_FOR);
        assert_eq!(step.verdicts, vec![(1, Verdict::Deny)]);

        let mut flows = connected(now);
        let mut endless = vec![22, 3, 1, 0x40, 0, 1, 0x7f, 0, 0];
        endless.resize(1400, 0);
        let mut seq = DATA;
        let mut last = Step::default();
        for id in 0..40 {
            last = feed(&mut flows, id, seq, &endless, now);
            seq = seq.wrapping_add(endless.len() as u32);
            endless.fill(0);
            if !last.verdicts.is_empty() {
                break;
            }
        }
        assert!(last.verdicts.iter().all(|(_, v)| *v == Verdict::Deny));
        assert!(!last.verdicts.is_empty(), "denied before 48 KiB");
    }

    #[test]
    fn a_new_connection_on_a_reused_source_port_is_checked_again() {
        let now = Instant::now();
        let mut flows = connected(now);
        let allowed = records(&hello("a.test", 100, true), 1 << 14);
        let step = feed(&mut flows, 1, DATA, &allowed, now);
        assert_eq!(step.verdicts, vec![(1, Verdict::Allow)]);
        // A reset, then a SYN from the same port to the same address.
        let step = feed(&mut flows, 2, SYN_SEQ, b"", now);
        assert_eq!(
            step.verdicts,
            vec![(2, Verdict::Pass)],
            "not the old verdict"
        );
        let evil = records(&hello("evil.test", 100, true), 1 << 14);
        let step = feed(&mut flows, 3, DATA, &evil, now);
        assert_eq!(step.verdicts, vec![(3, Verdict::Deny)]);
    }

    #[test]
    fn a_second_syn_cannot_move_where_the_check_reads() {
        let now = Instant::now();
        let mut flows = connected(now);
        // A decoy hello placed "before" the real start by a raw SYN whose
        // sequence number is lower: the server never reads it.
        let decoy = records(&hello("a.test", 100, true), 1 << 14);
        let earlier = SYN_SEQ.wrapping_sub(decoy.len() as u32);
        let mut syn = tcp4(DST.parse().unwrap(), earlier, b"");
        syn[33] = 0x02; // the flags: SYN alone
        let step = flows.packet(&p(), now, 2, parse(&syn));
        assert_eq!(step.verdicts, vec![(2, Verdict::Deny)]);
        let step = feed(&mut flows, 3, earlier.wrapping_add(1), &decoy, now);
        assert_eq!(
            step.verdicts,
            vec![(3, Verdict::Deny)],
            "refused from then on"
        );
        // The same SYN again (a retransmission) changes nothing.
        let mut flows = connected(now);
        let step = feed(&mut flows, 4, SYN_SEQ, b"", now);
        assert_eq!(step.verdicts, vec![(4, Verdict::Pass)]);
    }

    fn datagram<'a>(payload: &'a [u8]) -> Packet<'a> {
        Packet {
            key: FlowKey {
                proto: UDP,
                src: "10.242.0.3:40000".parse().unwrap(),
                dst: DST.parse().unwrap(),
            },
            transport: Transport::Udp,
            payload,
        }
    }

    #[test]
    fn a_second_quic_connection_on_an_allowed_flow_is_checked() {
        use crate::names::quic::tests::{initial, initial_keyed};
        const V1: u32 = 1;
        let now = Instant::now();
        let mut flows = Flows::default();
        let first = initial(V1, b"first-id", 0, 0, &hello("a.test", 100, false));
        let step = flows.packet(&p(), now, 1, Some(datagram(&first)));
        assert_eq!(step.verdicts, vec![(1, Verdict::Allow)]);
        // The same connection's later Initial (the server's ID, the first
        // keys), and a short-header packet: they pass.
        let later = initial_keyed(V1, b"first-id", b"server-id", 1, 0, b"");
        let step = flows.packet(&p(), now, 2, Some(datagram(&later)));
        assert_eq!(step.verdicts, vec![(2, Verdict::Pass)]);
        let step = flows.packet(&p(), now, 3, Some(datagram(b"\x40short")));
        assert_eq!(step.verdicts, vec![(3, Verdict::Pass)]);
        // Another allowed connection on the same flow, then a refused one.
        let second = initial(V1, b"second-id", 0, 0, &hello("a.test", 100, false));
        let step = flows.packet(&p(), now, 4, Some(datagram(&second)));
        assert_eq!(step.verdicts, vec![(4, Verdict::Allow)]);
        let evil = initial(V1, b"evil-id", 0, 0, &hello("evil.test", 100, false));
        let step = flows.packet(&p(), now, 5, Some(datagram(&evil)));
        assert_eq!(step.verdicts, vec![(5, Verdict::Deny)]);
        assert!(
            matches!(&step.decided[0].1, Outcome::Deny(d) if d.name.as_deref() == Some("evil.test"))
        );
        // The flow is refused from then on.
        let step = flows.packet(&p(), now, 6, Some(datagram(&later)));
        assert_eq!(step.verdicts, vec![(6, Verdict::Deny)]);
    }

    #[test]
    fn a_second_quic_hello_over_two_datagrams_is_held_then_judged() {
        use crate::names::quic::tests::initial;
        const V1: u32 = 1;
        let now = Instant::now();
        let mut flows = Flows::default();
        let first = initial(V1, b"first-id", 0, 0, &hello("a.test", 100, false));
        flows.packet(&p(), now, 1, Some(datagram(&first)));
        let evil = hello("evil.test", 3000, false);
        let (one, two) = evil.split_at(1000);
        let one = initial(V1, b"evil-id", 0, 0, one);
        let two = initial(V1, b"evil-id", 1, 1000, two);
        assert!(flows
            .packet(&p(), now, 2, Some(datagram(&one)))
            .verdicts
            .is_empty());
        let step = flows.packet(&p(), now, 3, Some(datagram(&two)));
        assert_eq!(step.verdicts, vec![(2, Verdict::Deny), (3, Verdict::Deny)]);
    }

    #[test]
    fn packets_without_payload_pass_and_unreadable_ones_are_refused() {
        let now = Instant::now();
        let mut flows = connected(now);
        assert_eq!(
            feed(&mut flows, 9, DATA, b"", now).verdicts,
            vec![(9, Verdict::Pass)]
        );
        assert_eq!(
            flows.packet(&p(), now, 8, None).verdicts,
            vec![(8, Verdict::Deny)],
            "what cannot be read is refused"
        );
    }
}
