//! What the proxy does with a request, before any I/O: reject malformed or
//! unsupported requests, refuse what the policy refuses, forward the rest.
//! Pure logic.

use hickory_proto::op::{OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};

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
