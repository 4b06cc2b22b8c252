//! The proxy on bytes in memory, for the fuzz targets (tests/fuzz): a query
//! as the bottle sent it and the upstream's reply as it came back go through
//! the very handler the agent serves, without sockets or a firewall.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, Query};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;

use super::handler::Proxy;
use super::upstream::{answers, build_request, Resolve};
use super::{DnsError, Learner};
use crate::firewall::{FirewallError, Learn};
use crate::learning::Then;
use crate::policy::{Policy, PolicyCell};
use crate::state::Shared;

/// Where the queries come from: the bottle's usual address.
const BOTTLE: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(10, 242, 0, 3)), 40000);

/// An answer as encoded for the bottle, or why it does not encode.
pub type Encoded = Result<Vec<u8>, String>;

/// What the proxy did with one query.
#[derive(Debug)]
pub struct Exchange {
    /// The answer to the bottle, encoded as for UDP. `None` when the proxy
    /// never saw the query: hickory-server drops a datagram that is a
    /// response or whose header does not decode, and answers FORMERR
    /// itself to one whose body does not. `Err` when the answer does not
    /// encode (the server would send a bare SERVFAIL instead).
    pub answer: Option<Encoded>,
    /// What the firewall was asked to open, batch after batch.
    pub learned: Vec<Learn>,
}

/// `query`, a UDP datagram from the bottle, through the proxy with `policy`
/// in force. A forwarded question gets `upstream` as the upstream's reply,
/// decoded and matched to the question as the upstream client does (its ID
/// taken as right: the real one is random); none, or one that does not
/// decode or match, is an upstream failure. Needs a Tokio runtime: the
/// learner runs on its blocking pool.
pub async fn exchange(policy: Policy, query: &[u8], upstream: Option<&[u8]>) -> Exchange {
    let recorder = Arc::new(Recorder::default());
    let proxy = Proxy::new(
        Arc::new(PolicyCell::new(policy)),
        recorder.clone(),
        Arc::new(Shared::default()),
        Canned(upstream.map(<[u8]>::to_vec)),
    );
    let sink = Sink::default();
    let answer = match Request::from_bytes(query.to_vec(), BOTTLE, Protocol::Udp) {
        Ok(request) if request.metadata.message_type == MessageType::Query => {
            proxy
                .handle_request::<_, TokioTime>(&request, sink.clone())
                .await;
            sink.0.lock().unwrap().take()
        }
        _ => None,
    };
    let learned = std::mem::take(&mut *recorder.0.lock().unwrap());
    Exchange { answer, learned }
}

/// The upstream's reply, given in memory.
struct Canned(Option<Vec<u8>>);

impl Resolve for Canned {
    async fn resolve(&self, query: &Query) -> Result<Message, DnsError> {
        let bytes = self.0.as_deref().ok_or(DnsError::NoUpstreams)?;
        let reply = Message::from_vec(bytes).map_err(|e| DnsError::Message(e.to_string()))?;
        let mut request = build_request(query);
        request.metadata.id = reply.metadata.id;
        if !answers(&request, &reply) {
            return Err(DnsError::Message(
                "the reply answers another question".into(),
            ));
        }
        Ok(reply)
    }
}

/// Takes every batch at once, as a firewall that never fails.
#[derive(Default)]
struct Recorder(Mutex<Vec<Learn>>);

#[async_trait::async_trait]
impl Learner for Recorder {
    async fn learn(
        &self,
        _qname: &str,
        items: Vec<Learn>,
        then: Then,
    ) -> Result<(), FirewallError> {
        self.0.lock().unwrap().extend_from_slice(&items);
        then(&items);
        Ok(())
    }
}

/// Keeps the answer, encoded as hickory-server's `ResponseHandle` encodes
/// it for UDP: at most the client's EDNS size, 512 bytes without EDNS.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Option<Encoded>>>);

#[async_trait::async_trait]
impl ResponseHandler for Sink {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let max_size = response.edns().map_or(512, |edns| edns.max_payload());
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max_size);
        let emitted = response.destructive_emit(&mut encoder);
        let mut kept = self.0.lock().unwrap();
        match emitted {
            Ok(info) => {
                *kept = Some(Ok(bytes));
                Ok(info)
            }
            Err(error) => {
                *kept = Some(Err(error.to_string()));
                Err(error.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::tests::{a, name, policy};
    use crate::profile::Mode;
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::{Name, RecordType};

    fn query(qname: &str) -> Message {
        let mut m = Message::query();
        m.metadata.id = 7;
        m.add_query(Query::query(name(qname), RecordType::A));
        m
    }

    fn run(policy: Policy, query: &Message, reply: Option<&Message>) -> (Message, Vec<Learn>) {
        let reply = reply.map(|r| r.to_vec().unwrap());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let done = rt.block_on(exchange(policy, &query.to_vec().unwrap(), reply.as_deref()));
        let bytes = done.answer.expect("answered").expect("encodes");
        (Message::from_vec(&bytes).unwrap(), done.learned)
    }

    #[test]
    fn an_allowed_name_is_answered_from_the_given_reply_and_learned() {
        let p = policy(Mode::Allowlist, Mode::Allowlist, &["a.test:443"]);
        let q = query("a.test");
        let mut reply = Message::response(99, q.metadata.op_code);
        reply.add_queries(q.queries.clone());
        reply.add_answer(a("a.test", "192.0.2.1", 60));
        reply.add_answer(a("evil.test", "192.0.2.66", 60));
        let (answer, learned) = run(p, &q, Some(&reply));
        assert_eq!(answer.metadata.id, 7);
        assert_eq!(answer.answers, [a("a.test", "192.0.2.1", 60)]);
        let addrs: Vec<_> = learned.iter().map(|l| l.addr.to_string()).collect();
        assert_eq!(addrs, ["192.0.2.1"]);
    }

    #[test]
    fn a_question_with_a_pointer_into_the_header_gets_formerr_that_decodes() {
        // The dns_request fuzz target's find: echoed as sent, the pointer
        // aimed at the answer's header and the answer did not decode.
        let query = [
            0x42, 0x40, 0x01, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x01, 0x61,
            0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0x00, 0x01, 0x00, 0x01, 0x04, 0x65, 0x76, 0x69,
            0x6c, 0xc0, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x29, 0x04, 0xd0, 0x00, 0x00,
            0x01, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        let p = policy(Mode::Allowlist, Mode::Allowlist, &["a.test"]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let done = rt.block_on(exchange(p, &query, None));
        let bytes = done.answer.expect("answered").expect("encodes");
        let answer = Message::from_vec(&bytes).expect("decodes");
        assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);
        assert!(answer.queries.is_empty());
    }

    #[test]
    fn many_questions_get_formerr_that_fits_in_512_bytes() {
        // The dns_request fuzz target's find: seven questions (519 bytes),
        // echoed, did not fit and hickory-server sent a bare SERVFAIL.
        let mut query = Message::query();
        for c in b'a'..b'd' {
            let label = String::from_utf8(vec![c; 63]).unwrap();
            let long = format!("{label}.{label}.{label}.test.");
            query.add_query(Query::query(Name::from_ascii(long).unwrap(), RecordType::A));
        }
        let p = policy(Mode::Allowlist, Mode::Allowlist, &["a.test"]);
        let (answer, _) = run(p, &query, None);
        assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);
        assert!(answer.queries.is_empty());
    }

    #[test]
    fn a_refused_name_or_a_reply_to_another_question_learns_nothing() {
        let p = policy(Mode::Allowlist, Mode::Allowlist, &["a.test"]);
        let (answer, learned) = run(p.clone(), &query("b.test"), None);
        assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
        assert!(learned.is_empty());

        let mut other = Message::response(1, query("a.test").metadata.op_code);
        other.add_queries(query("c.test").queries);
        other.add_answer(a("a.test", "192.0.2.1", 60));
        let (answer, learned) = run(p, &query("a.test"), Some(&other));
        assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
        assert!(learned.is_empty());
    }

    #[test]
    fn an_update_reply_with_an_empty_https_record_never_reaches_the_bottle() {
        // The dns_answer fuzz target's find: an upstream reply with the
        // UPDATE opcode may hold records with no data (RFC 2136), and its
        // empty HTTPS record went into a query's answer, which hickory
        // (and so the bottle) cannot decode: InvalidEmptyRecord.
        let reply = [
            0x9a, 0x9a, 0xab, 0x80, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01, 0x61,
            0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0x00, 0x41, 0x00, 0x01, 0xc0, 0x0c, 0x00, 0x41,
            0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x2c, 0x00, 0x27, 0x00, 0x01,
            0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x01, 0x00, 0x05, 0x00, 0x01, 0x00, 0x06, 0x02,
            0x68, 0x33, 0x02, 0x68, 0x32, 0x00, 0x04, 0x00, 0x04, 0x9a, 0x9a, 0x80, 0x80, 0x00,
            0x01, 0x10, 0x01, 0x00, 0x00, 0x00, 0x00, 0x03, 0x61, 0x70, 0x69, 0x04, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x00, 0x00, 0x71, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x9a, 0x9a, 0x00, 0x06, 0x02,
            0x01, 0x62, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0xcb, 0x00, 0x01,
            0x00, 0x00, 0x1a, 0x00, 0x06, 0x00, 0x00, 0x7f, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2d, 0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00,
            0x00, 0x2e, 0x74, 0x65, 0x73, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x01, 0x02, 0x00,
            0x00, 0x00, 0x03, 0x04,
        ];
        let p = policy(Mode::Allowlist, Mode::Allowlist, &["a.test:443"]);
        let mut q = Message::query();
        q.metadata.id = 0x4242;
        q.metadata.recursion_desired = true;
        q.add_query(Query::query(name("a.test"), RecordType::HTTPS));
        let mut edns = hickory_proto::op::Edns::new();
        edns.set_max_payload(1232);
        q.set_edns(edns);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let done = rt.block_on(exchange(p, &q.to_vec().unwrap(), Some(&reply)));
        let bytes = done.answer.expect("answered").expect("encodes");
        let answer = Message::from_vec(&bytes).expect("the answer decodes");
        assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
        assert!(answer.answers.is_empty(), "{:?}", answer.answers);
        assert!(done.learned.is_empty());
    }
}
