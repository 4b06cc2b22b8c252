//! What of an upstream answer reaches the bottle, and what the firewall
//! learns from it. Pure logic.

use std::net::IpAddr;
use std::time::Duration;

use hickory_proto::rr::rdata::svcb::{Mandatory, SvcParamKey, SvcParamValue};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::firewall::Learn;
use crate::policy::Policy;
use crate::profile::Ports;

/// Longest CNAME chain followed; real chains have a handful of links.
const MAX_CHAIN: usize = 16;

/// Keeps only the answer records that answer `qname`/`qtype`: the CNAME
/// chain starting at `qname` and the `qtype` records at its end, in chain
/// order. Everything else (records for other names, which an upstream could
/// inject) is dropped. Names compare case-insensitively; a CNAME loop or an
/// over-long chain ends the walk.
pub(crate) fn cname_chain(qname: &Name, qtype: RecordType, records: &[Record]) -> Vec<Record> {
    let mut kept = Vec::new();
    let mut seen: Vec<Name> = Vec::new();
    let mut current = qname.clone();
    while !seen.contains(&current) && seen.len() < MAX_CHAIN {
        seen.push(current.clone());
        match cname_of(&current, qtype, records) {
            Some((record, target)) => {
                kept.push(record.clone());
                current = target;
            }
            None => {
                kept.extend(
                    records
                        .iter()
                        .filter(|r| owned_by(r, &current) && r.record_type() == qtype)
                        .cloned(),
                );
                break;
            }
        }
    }
    kept
}

/// The CNAME record at `name` and its target, unless CNAMEs are the
/// question itself (then they are the answer, not a link to follow).
fn cname_of<'r>(
    name: &Name,
    qtype: RecordType,
    records: &'r [Record],
) -> Option<(&'r Record, Name)> {
    if qtype == RecordType::CNAME {
        return None;
    }
    records
        .iter()
        .filter(|r| owned_by(r, name))
        .find_map(|r| match &r.data {
            RData::CNAME(target) => Some((r, target.0.clone())),
            _ => None,
        })
}

/// `Name` equality ignores case. A record with no data is not an answer
/// (RFC 2136 uses it in UPDATE only); a query's answer holding one does
/// not decode, and the bottle could not parse it.
fn owned_by(record: &Record, name: &Name) -> bool {
    record.dns_class == DNSClass::IN
        && &record.name == name
        && !matches!(record.data, RData::Update0(_))
}

fn address_of(record: &Record) -> Option<IpAddr> {
    match &record.data {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(a) => Some(IpAddr::V6(a.0)),
        _ => None,
    }
}

/// Drops the A/AAAA records whose address the policy protects (loopback,
/// link-local, the enclave...): an allowed name must not open the machine
/// itself. Returns the records kept and the addresses withheld.
pub(crate) fn withhold_protected(
    records: Vec<Record>,
    policy: &Policy,
) -> (Vec<Record>, Vec<IpAddr>) {
    let mut withheld = Vec::new();
    let kept = records
        .into_iter()
        .filter(|r| match address_of(r) {
            Some(ip) if !policy.may_learn(ip) => {
                withheld.push(ip);
                false
            }
            _ => true,
        })
        .collect();
    (kept, withheld)
}

/// HTTPS/SVCB parameters that would get around the filter: `ech` (an
/// Encrypted ClientHello hides the real server name behind the provider's)
/// and address hints (addresses that no A/AAAA answer opened). Without
/// them a client resolves A/AAAA, which opens its addresses, and sends its
/// real name in the clear.
const STRIPPED_PARAMS: [SvcParamKey; 3] = [
    SvcParamKey::EchConfigList,
    SvcParamKey::Ipv4Hint,
    SvcParamKey::Ipv6Hint,
];

/// Strips `STRIPPED_PARAMS` from HTTPS and SVCB records (and from their
/// `mandatory` lists, so the records stay valid). Returns how many
/// parameters went.
pub(crate) fn strip_service_params(records: &mut [Record]) -> usize {
    let mut stripped = 0;
    for record in records.iter_mut() {
        let svcb = match &mut record.data {
            RData::HTTPS(https) => &mut https.0,
            RData::SVCB(svcb) => svcb,
            _ => continue,
        };
        let before = svcb.svc_params.len();
        svcb.svc_params
            .retain(|(key, _)| !STRIPPED_PARAMS.contains(key));
        stripped += before - svcb.svc_params.len();
        for (_, value) in svcb.svc_params.iter_mut() {
            if let SvcParamValue::Mandatory(Mandatory(keys)) = value {
                keys.retain(|key| !STRIPPED_PARAMS.contains(key));
            }
        }
    }
    stripped
}

/// Lowers the TTL of `addr`'s records to `left` (whole seconds, rounded
/// down): the bottle must not cache an address longer than it stays open.
pub(crate) fn cap_ttl(records: &mut [Record], addr: IpAddr, left: Duration) {
    let left = u32::try_from(left.as_secs()).unwrap_or(u32::MAX);
    for r in records.iter_mut().filter(|r| address_of(r) == Some(addr)) {
        r.ttl = r.ttl.min(left);
    }
}

/// One `Learn` per A/AAAA record, open for the record's TTL raised to the
/// policy's floor.
pub(crate) fn learn_items(records: &[Record], ports: &Ports, policy: &Policy) -> Vec<Learn> {
    records
        .iter()
        .filter_map(|r| {
            let addr = address_of(r)?;
            let timeout = Duration::from_secs(u64::from(policy.learn_timeout(r.ttl)));
            Some(Learn {
                addr,
                ports: ports.clone(),
                timeout,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::tests::{a, aaaa, cname, name, policy};
    use crate::profile::Mode;
    use hickory_proto::rr::rdata::TXT;

    fn names(records: &[Record]) -> Vec<String> {
        records
            .iter()
            .map(|r| format!("{} {}", r.name, r.record_type()))
            .collect()
    }

    #[test]
    fn direct_answer_is_kept_and_injected_records_are_dropped() {
        let records = [
            a("evil.test", "203.0.113.66", 60),
            a("www.a.test", "192.0.2.1", 60),
            aaaa("www.a.test", "2001:db8::1", 60),
        ];
        let kept = cname_chain(&name("www.a.test"), RecordType::A, &records);
        assert_eq!(names(&kept), ["www.a.test. A"]);
    }

    #[test]
    fn cname_chain_is_followed_to_the_addresses_at_its_end() {
        let records = [
            a("edge.cdn.test", "192.0.2.10", 60),
            cname("www.a.test", "alias.a.test"),
            a("alias.a.test", "203.0.113.9", 60),
            cname("alias.a.test", "edge.cdn.test"),
            a("other.cdn.test", "203.0.113.7", 60),
        ];
        let kept = cname_chain(&name("www.a.test"), RecordType::A, &records);
        assert_eq!(
            names(&kept),
            [
                "www.a.test. CNAME",
                "alias.a.test. CNAME",
                "edge.cdn.test. A"
            ]
        );
    }

    #[test]
    fn names_compare_without_case() {
        let records = [
            cname("WWW.A.Test", "Edge.CDN.test"),
            a("edge.cdn.TEST", "192.0.2.10", 60),
        ];
        let kept = cname_chain(&name("www.a.test"), RecordType::A, &records);
        assert_eq!(kept.len(), 2);
    }

    #[test]
    fn cname_loops_end_the_walk() {
        let records = [
            cname("a.test", "b.test"),
            cname("b.test", "A.test"),
            a("a.test", "192.0.2.1", 60),
        ];
        let kept = cname_chain(&name("a.test"), RecordType::A, &records);
        assert_eq!(names(&kept), ["a.test. CNAME", "b.test. CNAME"]);
        let self_loop = [cname("a.test", "a.test")];
        assert_eq!(
            cname_chain(&name("a.test"), RecordType::A, &self_loop).len(),
            1
        );
    }

    #[test]
    fn long_chains_are_cut() {
        let records: Vec<Record> = (0..40)
            .map(|i| cname(&format!("n{i}.test"), &format!("n{}.test", i + 1)))
            .collect();
        assert_eq!(
            cname_chain(&name("n0.test"), RecordType::A, &records).len(),
            MAX_CHAIN
        );
    }

    #[test]
    fn a_cname_question_keeps_only_the_first_link() {
        let records = [cname("a.test", "b.test"), cname("b.test", "c.test")];
        assert_eq!(
            names(&cname_chain(&name("a.test"), RecordType::CNAME, &records)),
            ["a.test. CNAME"]
        );
    }

    #[test]
    fn other_classes_and_types_are_dropped() {
        let mut chaos = a("a.test", "192.0.2.1", 60);
        chaos.dns_class = DNSClass::CH;
        let txt = Record::from_rdata(name("a.test"), 60, RData::TXT(TXT::new(vec!["x".into()])));
        assert!(cname_chain(&name("a.test"), RecordType::A, &[chaos, txt]).is_empty());
    }

    #[test]
    fn records_with_no_data_are_dropped() {
        let empty = |owner, qtype| Record::from_rdata(name(owner), 60, RData::Update0(qtype));
        let records = [
            empty("a.test", RecordType::CNAME),
            empty("a.test", RecordType::HTTPS),
            a("a.test", "192.0.2.1", 60),
        ];
        assert_eq!(
            names(&cname_chain(&name("a.test"), RecordType::HTTPS, &records)),
            Vec::<String>::new()
        );
        assert_eq!(
            names(&cname_chain(&name("a.test"), RecordType::A, &records)),
            ["a.test. A"]
        );
    }

    #[test]
    fn learn_items_take_every_address_with_the_ttl_floor() {
        let p = policy(Mode::Allowlist, Mode::Allowlist, &["a.test"]);
        let records = [
            cname("a.test", "b.test"),
            a("b.test", "192.0.2.1", 5),
            aaaa("b.test", "2001:db8::1", 300),
        ];
        let ports = Ports::Only([443].into());
        let items = learn_items(&records, &ports, &p);
        assert_eq!(
            items,
            [
                Learn {
                    addr: "192.0.2.1".parse().unwrap(),
                    ports: ports.clone(),
                    timeout: Duration::from_secs(30)
                },
                Learn {
                    addr: "2001:db8::1".parse().unwrap(),
                    ports: ports.clone(),
                    timeout: Duration::from_secs(300)
                },
            ]
        );
    }

    #[test]
    fn protected_addresses_are_withheld_and_the_rest_kept() {
        let p = policy(Mode::Allowlist, Mode::Allowlist, &["a.test"]);
        let records = vec![
            cname("a.test", "b.test"),
            a("b.test", "127.0.0.1", 60),
            a("b.test", "169.254.169.254", 60),
            a("b.test", "10.242.0.3", 60),
            a("b.test", "192.0.2.1", 60),
            aaaa("b.test", "::1", 60),
        ];
        let (kept, withheld) = withhold_protected(records, &p);
        assert_eq!(kept.len(), 2, "the CNAME and 192.0.2.1: {kept:?}");
        assert_eq!(withheld.len(), 4);
        assert!(learn_items(&kept, &Ports::All, &p)
            .iter()
            .all(|l| l.addr == "192.0.2.1".parse::<IpAddr>().unwrap()));
    }

    #[test]
    fn the_podman_host_s_addresses_are_withheld_unless_cidrs_open_them() {
        let mut p = policy(Mode::Allowlist, Mode::Allowlist, &["a.test"]);
        p.host = vec![
            "192.168.1.20/32".parse().unwrap(),
            "10.88.0.0/16".parse().unwrap(),
        ];
        let records = || {
            vec![
                a("a.test", "192.168.1.20", 60),
                a("a.test", "10.88.0.1", 60),
                a("a.test", "192.0.2.1", 60),
            ]
        };
        let (kept, withheld) = withhold_protected(records(), &p);
        assert_eq!(kept, [a("a.test", "192.0.2.1", 60)]);
        assert_eq!(withheld.len(), 2);
        p.cidrs = vec!["192.168.1.0/24".parse().unwrap()];
        let (kept, withheld) = withhold_protected(records(), &p);
        assert_eq!(kept.len(), 2, "the LAN address is open by cidrs: {kept:?}");
        assert_eq!(withheld, ["10.88.0.1".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn ech_and_address_hints_are_stripped_from_https_records() {
        use hickory_proto::rr::rdata::svcb::{Alpn, EchConfigList, IpHint, SVCB};
        use hickory_proto::rr::rdata::{A, HTTPS};
        let params = vec![
            (
                SvcParamKey::Mandatory,
                SvcParamValue::Mandatory(Mandatory(vec![
                    SvcParamKey::Alpn,
                    SvcParamKey::EchConfigList,
                ])),
            ),
            (
                SvcParamKey::Alpn,
                SvcParamValue::Alpn(Alpn(vec!["h2".into()])),
            ),
            (
                SvcParamKey::Ipv4Hint,
                SvcParamValue::Ipv4Hint(IpHint(vec![A("203.0.113.99".parse().unwrap())])),
            ),
            (
                SvcParamKey::EchConfigList,
                SvcParamValue::EchConfigList(EchConfigList(vec![0, 4, 1, 2, 3, 4])),
            ),
        ];
        let https = RData::HTTPS(HTTPS(SVCB::new(1, Name::root(), params)));
        let mut records = vec![
            Record::from_rdata(name("a.test"), 60, https),
            a("a.test", "192.0.2.1", 60),
        ];
        assert_eq!(strip_service_params(&mut records), 2);
        let RData::HTTPS(HTTPS(svcb)) = &records[0].data else {
            panic!("still HTTPS")
        };
        let keys: Vec<SvcParamKey> = svcb.svc_params.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, [SvcParamKey::Mandatory, SvcParamKey::Alpn]);
        assert_eq!(
            svcb.svc_params[0].1,
            SvcParamValue::Mandatory(Mandatory(vec![SvcParamKey::Alpn]))
        );
        assert_eq!(strip_service_params(&mut records), 0);
    }

    #[test]
    fn ttl_is_capped_for_that_address_only() {
        let mut records = vec![a("b.test", "192.0.2.1", 300), a("b.test", "192.0.2.2", 300)];
        cap_ttl(
            &mut records,
            "192.0.2.1".parse().unwrap(),
            Duration::from_millis(41_900),
        );
        assert_eq!((records[0].ttl, records[1].ttl), (41, 300));
        cap_ttl(
            &mut records,
            "192.0.2.2".parse().unwrap(),
            Duration::from_secs(900),
        );
        assert_eq!(records[1].ttl, 300, "never raised");
    }
}
