//! Any upstream reply: no panic, the bottle's answer encodes and holds only the reply's records, every learned address is in the reply, unprotected, open as long as its TTL.
#![no_main]

use std::net::IpAddr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::svcb::SvcParamKey;
use hickory_proto::rr::{RData, Record};
use libfuzzer_sys::fuzz_target;
use rbm_agent::dns::fuzz::exchange;
use rbm_agent::policy::Verdict;
use rbm_agent::profile::normalize;
use rbm_fuzz::{block_on, policy, query, QUERY_ID};

fn address(record: &Record) -> Option<IpAddr> {
    match &record.data {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(a) => Some(IpAddr::V6(a.0)),
        _ => None,
    }
}

fn service_params(record: &Record) -> Vec<SvcParamKey> {
    let svcb = match &record.data {
        RData::HTTPS(https) => &https.0,
        RData::SVCB(svcb) => svcb,
        _ => return vec![],
    };
    svcb.svc_params.iter().map(|(key, _)| *key).collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&select, reply)) = data.split_first() else {
        return;
    };
    let policy = policy(select & 0x08 != 0);
    let query = query(usize::from(select));
    let question = query.queries[0].clone();
    let qname = normalize(&question.name.to_ascii());
    let Verdict::Forward { grant } = policy.verdict(&qname) else {
        return;
    };

    let done = block_on(exchange(
        policy.clone(),
        &query.to_vec().unwrap(),
        Some(reply),
    ));
    let bytes = done
        .answer
        .expect("a valid query is answered")
        .unwrap_or_else(|e| panic!("the answer does not encode: {e}"));
    let answer = Message::from_vec(&bytes).expect("the encoded answer decodes");
    assert_eq!(answer.metadata.message_type, MessageType::Response);
    assert_eq!(answer.metadata.id, QUERY_ID);
    assert_eq!(answer.queries, std::slice::from_ref(&question));

    // The reply as the upstream client decodes it; one it would not take
    // (undecodable, another opcode or question) is SERVFAIL, with nothing learned.
    let upstream = Message::from_vec(reply).ok().filter(|m| {
        m.metadata.message_type == MessageType::Response
            && m.metadata.op_code == OpCode::Query
            && m.queries == std::slice::from_ref(&question)
    });
    let Some(upstream) = upstream else {
        assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
        assert!(done.learned.is_empty());
        return;
    };
    let rcode = upstream.metadata.response_code;
    if query.edns.is_some() || rcode.high() == 0 {
        assert_eq!(answer.metadata.response_code, rcode);
    }

    let given: Vec<IpAddr> = upstream.answers.iter().filter_map(address).collect();
    for learn in &done.learned {
        assert!(
            given.contains(&learn.addr),
            "learned {} which the reply does not give",
            learn.addr
        );
        assert!(
            policy.may_learn(learn.addr),
            "learned protected {}",
            learn.addr
        );
        assert_eq!(
            Some(&learn.ports),
            grant.as_ref(),
            "learned {} with other ports",
            learn.addr
        );
        assert!(learn.timeout >= Duration::from_secs(u64::from(policy.min_ttl.max(1))));
    }
    if grant.is_none() || rcode != ResponseCode::NoError {
        assert!(
            done.learned.is_empty(),
            "learned without a grant or from an error"
        );
    }

    for record in &answer.answers {
        assert!(
            upstream
                .answers
                .iter()
                .any(|r| r.name == record.name && r.record_type() == record.record_type()),
            "{record} is not in the reply"
        );
        let params = service_params(record);
        for stripped in [
            SvcParamKey::EchConfigList,
            SvcParamKey::Ipv4Hint,
            SvcParamKey::Ipv6Hint,
        ] {
            assert!(
                !params.contains(&stripped),
                "{record} still has {stripped:?}"
            );
        }
        let Some(addr) = address(record) else {
            continue;
        };
        if grant.is_some() && rcode == ResponseCode::NoError {
            assert!(
                done.learned
                    .iter()
                    .any(|l| l.addr == addr
                        && l.timeout >= Duration::from_secs(u64::from(record.ttl))),
                "the bottle gets {record}, not open for its TTL"
            );
        }
    }
});
