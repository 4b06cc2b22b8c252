//! Reading back from the kernel: each rule's counter and comment, each
//! set element's timeout, each connection's original destination.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::wire::{attr, parse_attrs};
use super::{ElemTimes, RuleCounter};

/// Parses one NEWRULE message's attributes into its chain, comment and counter.
pub fn rule_counter(attrs: &[u8]) -> Option<RuleCounter> {
    let mut chain = None;
    let mut comment = String::new();
    let mut counts = None;
    for (kind, value) in parse_attrs(attrs) {
        match kind {
            attr::RULE_CHAIN => chain = Some(c_string(value)),
            attr::RULE_USERDATA => comment = udata_comment(value).unwrap_or_default(),
            attr::RULE_EXPRESSIONS => counts = find_counter(value),
            _ => {}
        }
    }
    let (packets, bytes) = counts?;
    Some(RuleCounter {
        chain: chain?,
        comment,
        packets,
        bytes,
    })
}

/// The attributes of each element in one NEWSETELEM message's attributes.
fn set_elems(attrs: &[u8]) -> impl Iterator<Item = Vec<(u16, &[u8])>> {
    parse_attrs(attrs)
        .into_iter()
        .filter(|(kind, _)| *kind == attr::SET_ELEM_LIST_ELEMENTS)
        .flat_map(|(_, list)| parse_attrs(list))
        .map(|(_, elem)| parse_attrs(elem))
}

/// The value of attribute `wanted` among `attrs`.
fn value<'a>(attrs: &[(u16, &'a [u8])], wanted: u16) -> Option<&'a [u8]> {
    attrs
        .iter()
        .find(|(kind, _)| *kind == wanted)
        .map(|(_, v)| *v)
}

/// The big-endian u64 of attribute `wanted` among `attrs`.
fn u64_value(attrs: &[(u16, &[u8])], wanted: u16) -> Option<u64> {
    Some(u64::from_be_bytes(value(attrs, wanted)?.try_into().ok()?))
}

/// The timeout and the time left (ms) of each element in one NEWSETELEM
/// message's attributes.
pub fn set_elem_timeouts(attrs: &[u8]) -> Vec<ElemTimes> {
    set_elems(attrs)
        .filter_map(|elem| {
            Some(ElemTimes {
                timeout_ms: u64_value(&elem, attr::SET_ELEM_TIMEOUT)?,
                expires_in_ms: u64_value(&elem, attr::SET_ELEM_EXPIRATION)?,
            })
        })
        .collect()
}

/// The original direction's destination address of one ctnetlink
/// connection (CTA_TUPLE_ORIG / CTA_TUPLE_IP / CTA_IP_V4_DST or _V6_DST),
/// if it is one that counts as a use: the other end answered it (a
/// datagram the bottle sends on and on to an address that never replies,
/// or a SYN, keeps an entry alive without any use) and the name check did
/// not refuse it (its mark is not DENIED).
pub fn conntrack_orig_dst(attrs: &[u8]) -> Option<IpAddr> {
    use super::ruleset::marks;
    let find = |buf, kind| {
        parse_attrs(buf)
            .into_iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| v)
    };
    let u32_of = |kind| {
        find(attrs, kind)
            .and_then(|v| <[u8; 4]>::try_from(v).ok())
            .map(u32::from_be_bytes)
    };
    let status = u32_of(attr::CTA_STATUS)?;
    if status & (super::wire::IPS_SEEN_REPLY | super::wire::IPS_ASSURED) == 0 {
        return None;
    }
    let refused = marks::SIGNATURE | marks::DENIED;
    if u32_of(attr::CTA_MARK).is_some_and(|m| m & marks::KIND_MASK == refused) {
        return None;
    }
    let ip = find(find(attrs, attr::CTA_TUPLE_ORIG)?, attr::CTA_TUPLE_IP)?;
    if let Some(v4) = find(ip, attr::CTA_IP_V4_DST) {
        return Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(v4).ok()?)));
    }
    let v6 = find(ip, attr::CTA_IP_V6_DST)?;
    Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(v6).ok()?)))
}

/// The key and the time left (ms) of each element with a timeout in one
/// NEWSETELEM message's attributes.
pub fn set_elem_keys(attrs: &[u8]) -> Vec<(Vec<u8>, u64)> {
    set_elems(attrs)
        .filter_map(|elem| {
            let key = value(
                &parse_attrs(value(&elem, attr::SET_ELEM_KEY)?),
                attr::DATA_VALUE,
            )?;
            let left = u64_value(&elem, attr::SET_ELEM_EXPIRATION)?;
            Some((key.to_vec(), left))
        })
        .collect()
}

fn c_string(v: &[u8]) -> String {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

fn udata_comment(v: &[u8]) -> Option<String> {
    let mut at = 0;
    while at + 2 <= v.len() {
        let (ty, len) = (v[at], v[at + 1] as usize);
        let value = v.get(at + 2..at + 2 + len)?;
        if ty == 0 {
            return Some(c_string(value));
        }
        at += 2 + len;
    }
    None
}

fn find_counter(list: &[u8]) -> Option<(u64, u64)> {
    for (_, elem) in parse_attrs(list) {
        let attrs = parse_attrs(elem);
        let name = attrs
            .iter()
            .find(|(k, _)| *k == attr::EXPR_NAME)
            .map(|(_, v)| c_string(v));
        if name.as_deref() != Some("counter") {
            continue;
        }
        let data = attrs.iter().find(|(k, _)| *k == attr::EXPR_DATA)?.1;
        let mut packets = 0;
        let mut bytes = 0;
        for (k, v) in parse_attrs(data) {
            let n = v
                .get(..8)
                .map(|b| u64::from_be_bytes(b.try_into().unwrap()))
                .unwrap_or(0);
            match k {
                attr::COUNTER_PACKETS => packets = n,
                attr::COUNTER_BYTES => bytes = n,
                _ => {}
            }
        }
        return Some((packets, bytes));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::encode;
    use super::super::ruleset::{FirewallInput, Interfaces, Ruleset};
    use super::*;
    use crate::profile::Mode;

    #[test]
    fn encoded_rules_decode_to_their_comments() {
        let rs = Ruleset::build(&FirewallInput {
            access: Mode::Allowlist,
            cidrs: vec![],
            upstream_dns: vec![],
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
        });
        let decoded: Vec<RuleCounter> = encode::ruleset(&rs)
            .iter()
            .filter(|r| r.cmd == super::super::wire::Cmd::NewRule)
            .filter_map(|r| rule_counter(&r.attrs))
            .collect();
        let expected: usize = rs.chains.iter().map(|c| c.rules.len()).sum();
        assert_eq!(decoded.len(), expected);
        let first_forward = decoded.iter().find(|r| r.chain == "forward").unwrap();
        assert_eq!(first_forward.comment, "drop:spoofed-source");
        assert_eq!(first_forward.packets, 0);
        assert_eq!(decoded[0].chain, "refuse");
    }

    #[test]
    fn garbage_decodes_to_nothing() {
        assert!(rule_counter(&[1, 2, 3, 4, 5]).is_none());
        assert!(udata_comment(&[0, 200]).is_none());
    }

    #[test]
    fn a_connection_s_original_destination_is_read_for_both_families() {
        use super::super::wire::Attrs;
        let with = |kind, dst: &[u8], status: u32, mark: u32| {
            let mut a = Attrs::new();
            a.u32be(attr::CTA_STATUS, status)
                .u32be(attr::CTA_MARK, mark);
            a.nested(attr::CTA_TUPLE_ORIG, |t| {
                t.nested(attr::CTA_TUPLE_IP, |ip| {
                    ip.bytes(kind - 1, &vec![9; dst.len()]).bytes(kind, dst);
                });
            });
            a.0
        };
        let answered = super::super::wire::IPS_SEEN_REPLY;
        let conn = |kind, dst: &[u8]| with(kind, dst, answered, 0);
        let v4 = conn(attr::CTA_IP_V4_DST, &[198, 51, 100, 10]);
        assert_eq!(
            conntrack_orig_dst(&v4),
            Some("198.51.100.10".parse().unwrap())
        );
        let six: Ipv6Addr = "fd00:99::10".parse().unwrap();
        let v6 = conn(attr::CTA_IP_V6_DST, &six.octets());
        assert_eq!(conntrack_orig_dst(&v6), Some(IpAddr::V6(six)));
        assert_eq!(conntrack_orig_dst(&v4[..v4.len() - 2]), None, "truncated");
        let dst = [198, 51, 100, 10];
        let unanswered = with(attr::CTA_IP_V4_DST, &dst, 0, 0);
        assert_eq!(conntrack_orig_dst(&unanswered), None, "never answered");
        let refused = super::super::ruleset::marks::ct(3, super::super::ruleset::marks::DENIED);
        let denied = with(attr::CTA_IP_V4_DST, &dst, answered, refused);
        assert_eq!(
            conntrack_orig_dst(&denied),
            None,
            "refused by the name check"
        );
    }
}
