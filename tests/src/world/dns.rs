//! Answering one DNS query from the world's zone.

use std::fmt;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::RecordType;

use super::zone::Zone;

/// The EDNS payload size the world advertises in its answers.
const WORLD_EDNS_PAYLOAD: u16 = 1232;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        })
    }
}

/// What to log for a received packet and what (if anything) to send back.
#[derive(Debug)]
pub struct Reply {
    /// The query-log line: `PROTO QNAME QTYPE`; QNAME is `?` and QTYPE is
    /// `MALFORMED` or `NOQUESTION` when the packet has no usable question.
    pub log_line: String,
    pub bytes: Option<Vec<u8>>,
}

/// Answers `request` authoritatively from `zone`. Over UDP, an answer larger
/// than the client's limit (512 bytes, or its EDNS payload size) is replaced
/// by an empty one with TC set.
pub fn answer(zone: &Zone, request: &[u8], proto: Proto) -> Reply {
    let query = match Message::from_vec(request) {
        Ok(query) => query,
        Err(_) => {
            let log_line = format!("{proto} ? MALFORMED");
            return Reply {
                log_line,
                bytes: error_for_garbage(request),
            };
        }
    };
    let Some(question) = query.queries.first().filter(|_| query.queries.len() == 1) else {
        let log_line = format!("{proto} ? NOQUESTION");
        return Reply {
            log_line,
            bytes: encode(&error_reply(&query, ResponseCode::FormErr)),
        };
    };
    let log_line = format!("{proto} {} {}", question.name(), question.query_type());
    if query.metadata.message_type != MessageType::Query {
        return Reply {
            log_line,
            bytes: None,
        }; // never answer a response
    }
    let mut response = error_reply(&query, ResponseCode::NoError);
    response.metadata.authoritative = true;
    let qtype = question.query_type();
    if query.metadata.op_code != OpCode::Query {
        response.metadata.response_code = ResponseCode::NotImp;
    } else if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        response.metadata.response_code = ResponseCode::Refused;
    } else {
        let lookup = zone.lookup(question.name(), qtype);
        response.metadata.response_code = lookup.rcode;
        response.answers = lookup.answers;
    }
    let mut bytes = encode(&response);
    if proto == Proto::Udp
        && bytes
            .as_ref()
            .is_some_and(|b| b.len() > query.max_payload().into())
    {
        bytes = encode(&response.truncate());
    }
    Reply { log_line, bytes }
}

/// A response to `query` (same id, question and flags) with `rcode`,
/// carrying an OPT record if the query had one.
fn error_reply(query: &Message, rcode: ResponseCode) -> Message {
    let mut response = Message::response(query.metadata.id, query.metadata.op_code);
    response.metadata = Metadata::response_from_request(&query.metadata);
    response.metadata.response_code = rcode;
    response.add_queries(query.queries.iter().cloned());
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(WORLD_EDNS_PAYLOAD);
        response.set_edns(edns);
    }
    response
}

/// FORMERR for an undecodable packet that still has a query header.
fn error_for_garbage(request: &[u8]) -> Option<Vec<u8>> {
    let is_query = request.len() >= 12 && request[2] & 0x80 == 0;
    if !is_query {
        return None;
    }
    let id = u16::from_be_bytes([request[0], request[1]]);
    encode(&Message::error_msg(
        id,
        OpCode::Query,
        ResponseCode::FormErr,
    ))
}

fn encode(message: &Message) -> Option<Vec<u8>> {
    match message.to_vec() {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            eprintln!("rbm-world: cannot encode a response: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    fn zone() -> Zone {
        let mut text = String::from("api.example.test A 60 198.51.100.10\n");
        for i in 1..=40 {
            text.push_str(&format!("big.example.test A 60 10.98.0.{i}\n"));
        }
        Zone::parse(&text).unwrap()
    }

    fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    fn decode(reply: &Reply) -> Message {
        Message::from_vec(reply.bytes.as_ref().unwrap()).unwrap()
    }

    #[test]
    fn answers_and_logs() {
        let reply = answer(
            &zone(),
            &query("API.example.test.", RecordType::A, None),
            Proto::Udp,
        );
        assert_eq!(reply.log_line, "udp API.example.test. A");
        let m = decode(&reply);
        assert!(m.metadata.authoritative);
        assert_eq!(m.answers.len(), 1);
        let nx = answer(
            &zone(),
            &query("no.example.test.", RecordType::A, None),
            Proto::Tcp,
        );
        assert_eq!(decode(&nx).metadata.response_code, ResponseCode::NXDomain);
    }

    #[test]
    fn truncates_big_udp_answers_only() {
        let q = query("big.example.test.", RecordType::A, None);
        let udp = decode(&answer(&zone(), &q, Proto::Udp));
        assert!(udp.metadata.truncation);
        assert!(udp.answers.is_empty());
        let tcp = decode(&answer(&zone(), &q, Proto::Tcp));
        assert!(!tcp.metadata.truncation);
        assert_eq!(tcp.answers.len(), 40);
        let edns = query("big.example.test.", RecordType::A, Some(1232));
        let udp_edns = decode(&answer(&zone(), &edns, Proto::Udp));
        assert!(!udp_edns.metadata.truncation);
        assert_eq!(udp_edns.answers.len(), 40);
    }

    #[test]
    fn refuses_transfers_and_rejects_garbage() {
        let axfr = answer(
            &zone(),
            &query("example.test.", RecordType::AXFR, None),
            Proto::Tcp,
        );
        assert_eq!(decode(&axfr).metadata.response_code, ResponseCode::Refused);
        let garbage = answer(
            &zone(),
            &[0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff],
            Proto::Udp,
        );
        assert_eq!(garbage.log_line, "udp ? MALFORMED");
        let formerr = decode(&garbage);
        assert_eq!(
            (formerr.metadata.id, formerr.metadata.response_code),
            (0x1234, ResponseCode::FormErr)
        );
        assert!(answer(&zone(), &[1, 2, 3], Proto::Udp).bytes.is_none());
    }
}
