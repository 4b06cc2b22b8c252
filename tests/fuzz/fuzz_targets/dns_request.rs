//! Any datagram from the bottle: the DNS proxy never panics, its answer encodes and decodes with the question echoed faithfully, and it refuses exactly what the policy refuses.
#![no_main]

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use libfuzzer_sys::fuzz_target;
use rbm_agent::dns::fuzz::exchange;
use rbm_agent::policy::Verdict;
use rbm_agent::profile::normalize;
use rbm_fuzz::{block_on, policy};

fuzz_target!(|data: &[u8]| {
    let policy = policy(false);
    // No upstream: whatever the proxy forwards gets SERVFAIL.
    let done = block_on(exchange(policy.clone(), data, None));
    assert!(
        done.learned.is_empty(),
        "learned without an upstream answer"
    );
    let Some(answer) = done.answer else { return };
    let bytes = answer.unwrap_or_else(|e| panic!("the answer does not encode: {e}"));
    let answer = Message::from_vec(&bytes).expect("the encoded answer decodes");
    assert_eq!(answer.metadata.message_type, MessageType::Response);
    assert_eq!(answer.metadata.id, u16::from_be_bytes([data[0], data[1]]));
    assert!(answer.answers.is_empty(), "records without an upstream");
    let rcode = answer.metadata.response_code;
    assert!(
        matches!(
            rcode,
            ResponseCode::NotImp
                | ResponseCode::FormErr
                | ResponseCode::Refused
                | ResponseCode::ServFail
        ),
        "{rcode}"
    );
    // The request as hickory reads it apart from the proxy: the answer
    // echoes its question faithfully or not at all (FORMERR), and what the
    // policy says of a single question is what the proxy did.
    let Ok(request) = Message::from_vec(data) else {
        return;
    };
    assert!(
        answer.queries.is_empty() || answer.queries == request.queries,
        "echoed {:?} for {:?}",
        answer.queries,
        request.queries
    );
    if request.metadata.op_code != OpCode::Query || request.queries.len() != 1 {
        assert!(
            matches!(rcode, ResponseCode::NotImp | ResponseCode::FormErr),
            "{rcode}"
        );
        return;
    }
    if rcode == ResponseCode::FormErr {
        assert!(answer.queries.is_empty(), "FORMERR for a plain question");
        return;
    }
    let question = &request.queries[0];
    let special = matches!(
        question.query_type,
        RecordType::ANY | RecordType::AXFR | RecordType::IXFR
    ) || question.query_class != DNSClass::IN;
    let refused =
        special || policy.verdict(&normalize(&question.name.to_ascii())) == Verdict::Refuse;
    let expected = if refused {
        ResponseCode::Refused
    } else {
        ResponseCode::ServFail
    };
    assert_eq!(rcode, expected, "for {question}");
});
