//! What the proxy does with a request, before any I/O: reject malformed or
//! unsupported requests, refuse what the policy refuses, forward the rest.
//! Pure logic.

use hickory_proto::op::{OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use hickory_server::zone_handler::Queries;

use crate::policy::{Policy, Verdict};
use crate::profile::Ports;

/// The proxy's decision for one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Answer REFUSED, send nothing upstream, record the name as refused.
    Refuse(RefuseReason),
    /// Ask upstream; learn the answered addresses with `grant` if set.
    Forward { grant: Option<Ports> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefuseReason {
    /// ANY, AXFR, IXFR: never proxied.
    QueryType,
    /// Only class IN is proxied.
    Class,
    /// The policy does not allow the name.
    Policy,
}

/// The error code for a request the proxy does not handle at all, if any:
/// only a standard QUERY with exactly one question is handled.
pub(crate) fn check_request(op_code: OpCode, questions: usize) -> Option<ResponseCode> {
    if op_code != OpCode::Query {
        Some(ResponseCode::NotImp)
    } else if questions != 1 {
        Some(ResponseCode::FormErr)
    } else {
        None
    }
}

/// Whether the question can be echoed as the client sent it: there is one,
/// and its name is written out in full. hickory-server echoes those very
/// bytes, so a compression pointer in them aims at the answer's header
/// instead of the request's, and the answer would name another question,
/// or none that decodes (no real client compresses its question: there is
/// no name before it to point at). More questions may not even fit in
/// 512 bytes, and hickory-server would send a bare SERVFAIL instead.
pub(crate) fn echoable(queries: &Queries) -> bool {
    let [query] = queries.queries() else {
        return false;
    };
    let mut plain = Vec::new();
    let mut encoder = BinEncoder::new(&mut plain);
    encoder.set_name_encoding(NameEncoding::Uncompressed);
    query.original().emit(&mut encoder).is_ok() && plain == queries.as_bytes()
}

/// Decides for one question; `name` is normalized (lowercase, no trailing dot).
pub(crate) fn decide(policy: &Policy, name: &str, qtype: RecordType, qclass: DNSClass) -> Decision {
    if matches!(qtype, RecordType::ANY | RecordType::AXFR | RecordType::IXFR) {
        return Decision::Refuse(RefuseReason::QueryType);
    }
    if qclass != DNSClass::IN {
        return Decision::Refuse(RefuseReason::Class);
    }
    match policy.verdict(name) {
        Verdict::Refuse => Decision::Refuse(RefuseReason::Policy),
        Verdict::Forward { grant } => Decision::Forward { grant },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::tests::policy;
    use crate::profile::Mode;

    #[test]
    fn only_a_standard_query_with_one_question_is_handled() {
        assert_eq!(check_request(OpCode::Query, 1), None);
        assert_eq!(check_request(OpCode::Query, 0), Some(ResponseCode::FormErr));
        assert_eq!(check_request(OpCode::Query, 2), Some(ResponseCode::FormErr));
        assert_eq!(check_request(OpCode::Update, 1), Some(ResponseCode::NotImp));
        assert_eq!(check_request(OpCode::Status, 1), Some(ResponseCode::NotImp));
        assert_eq!(
            check_request(OpCode::Unknown(9), 1),
            Some(ResponseCode::NotImp)
        );
    }

    /// `query`, a whole DNS message, as hickory-server decodes it.
    fn request(query: &[u8]) -> hickory_server::server::Request {
        hickory_server::server::Request::from_bytes(
            query.to_vec(),
            "10.242.0.3:40000".parse().unwrap(),
            hickory_server::net::xfer::Protocol::Udp,
        )
        .unwrap()
    }

    #[test]
    fn only_one_question_written_out_in_full_is_echoed() {
        let header = [0x42, 0x40, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        let a_test = [1, b'a', 4, b't', b'e', b's', b't', 0, 0, 1, 0, 1];
        assert!(echoable(&request(&[&header[..], &a_test].concat()).queries));
        // Found by the dns_request fuzz target: a pointer into the header
        // (here to byte 4, a zero: "x."), which the answer does not share.
        let pointer = [1, b'x', 0xc0, 4, 0, 1, 0, 1];
        let r = request(&[&header[..], &pointer].concat());
        assert_eq!(r.queries.queries()[0].name().to_string(), "x.");
        assert!(!echoable(&r.queries));
        let mut two = header;
        two[5] = 2;
        assert!(!echoable(
            &request(&[&two[..], &a_test, &a_test].concat()).queries
        ));
    }

    #[test]
    fn any_and_zone_transfers_are_refused_even_for_allowed_names() {
        let p = policy(Mode::Global, Mode::Global, &["a.test"]);
        for qtype in [RecordType::ANY, RecordType::AXFR, RecordType::IXFR] {
            assert_eq!(
                decide(&p, "a.test", qtype, DNSClass::IN),
                Decision::Refuse(RefuseReason::QueryType)
            );
        }
    }

    #[test]
    fn only_class_in_is_forwarded() {
        let p = policy(Mode::Global, Mode::Global, &[]);
        assert_eq!(
            decide(&p, "version.bind", RecordType::TXT, DNSClass::CH),
            Decision::Refuse(RefuseReason::Class)
        );
    }

    #[test]
    fn the_policy_verdict_maps_to_refuse_or_forward_with_its_grant() {
        let p = policy(Mode::Allowlist, Mode::Allowlist, &["a.test:443"]);
        let ports = Ports::Only([443].into());
        assert_eq!(
            decide(&p, "a.test", RecordType::A, DNSClass::IN),
            Decision::Forward { grant: Some(ports) }
        );
        assert_eq!(
            decide(&p, "b.test", RecordType::A, DNSClass::IN),
            Decision::Refuse(RefuseReason::Policy)
        );
        let p = policy(Mode::Global, Mode::Allowlist, &["a.test"]);
        assert_eq!(
            decide(&p, "b.test", RecordType::AAAA, DNSClass::IN),
            Decision::Forward { grant: None }
        );
        let p = policy(Mode::Disabled, Mode::Allowlist, &["a.test"]);
        assert_eq!(
            decide(&p, "a.test", RecordType::A, DNSClass::IN),
            Decision::Refuse(RefuseReason::Policy)
        );
    }
}
