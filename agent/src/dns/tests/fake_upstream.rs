//! A tiny upstream resolver on 127.0.0.1 (UDP and TCP on one port) with a
//! fixed zone; it records every question name it receives.
//!
//! - `www.allowed.test`: CNAME to `edge.cdn.test` (A 192.0.2.10, TTL 5;
//!   AAAA 2001:db8::10), plus injected records for other names.
//! - `big.test`: truncated (TC, no records) over UDP, A 192.0.2.20 over TCP.
//! - `silent.test`: never answered.
//! - `stray.test`: a reply with a wrong ID, one with a wrong question, then
//!   the real one (A 192.0.2.30).
//! - `many.test`: 40 A records (too many for 512 bytes).
//! - `other.test`: A 192.0.2.40. Anything else: NXDOMAIN.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::{a, aaaa, cname};
use crate::profile::normalize;

#[derive(Clone)]
pub(super) struct FakeUpstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

impl FakeUpstream {
    pub async fn start() -> FakeUpstream {
        // The same port number for UDP and TCP: another process may hold
        // the TCP one of a free UDP port, so try again on another.
        let (udp, addr, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = udp.local_addr().unwrap();
            if let Ok(tcp) = TcpListener::bind(addr).await {
                break (udp, addr, tcp);
            }
        };
        let fake = FakeUpstream {
            addr,
            seen: Arc::default(),
        };
        tokio::spawn(fake.clone().serve_udp(udp));
        tokio::spawn(fake.clone().serve_tcp(tcp));
        fake
    }

    /// Did any question for `name` (normalized) reach this upstream?
    pub fn saw(&self, name: &str) -> bool {
        self.seen.lock().unwrap().iter().any(|n| n == name)
    }

    pub fn questions(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn record(&self, request: &Message) {
        for q in &request.queries {
            self.seen
                .lock()
                .unwrap()
                .push(normalize(&q.name.to_ascii()));
        }
    }

    async fn serve_udp(self, socket: UdpSocket) {
        let mut buf = vec![0u8; 4096];
        loop {
            let (len, from) = socket.recv_from(&mut buf).await.unwrap();
            let Ok(request) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            self.record(&request);
            for reply in replies(&request, false) {
                socket
                    .send_to(&reply.to_vec().unwrap(), from)
                    .await
                    .unwrap();
            }
        }
    }

    async fn serve_tcp(self, listener: TcpListener) {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(self.clone().serve_tcp_conn(stream));
        }
    }

    async fn serve_tcp_conn(self, mut stream: TcpStream) {
        let Ok(len) = stream.read_u16().await else {
            return;
        };
        let mut buf = vec![0u8; usize::from(len)];
        if stream.read_exact(&mut buf).await.is_err() {
            return;
        }
        let Ok(request) = Message::from_vec(&buf) else {
            return;
        };
        self.record(&request);
        for reply in replies(&request, true) {
            let bytes = reply.to_vec().unwrap();
            let _ = stream.write_all(&(bytes.len() as u16).to_be_bytes()).await;
            let _ = stream.write_all(&bytes).await;
        }
    }
}

/// The replies to one request, in the order they are sent.
fn replies(request: &Message, over_tcp: bool) -> Vec<Message> {
    let q = &request.queries[0];
    let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
    reply.metadata.recursion_available = true;
    reply.add_query(q.clone());
    let is_a = q.query_type == hickory_proto::rr::RecordType::A;
    match normalize(&q.name.to_ascii()).as_str() {
        "www.allowed.test" => {
            reply.add_answer(a("evil.test", "203.0.113.66", 3600));
            reply.add_answer(cname("www.allowed.test", "edge.cdn.test"));
            reply.add_answer(if is_a {
                a("edge.cdn.test", "192.0.2.10", 5)
            } else {
                aaaa("edge.cdn.test", "2001:db8::10", 5)
            });
            reply.add_authority(a("ns.evil.test", "203.0.113.67", 3600));
            reply.add_additional(a("ns.evil.test", "203.0.113.68", 3600));
        }
        "big.test" if !over_tcp => reply.metadata.truncation = true,
        "big.test" => {
            reply.add_answer(a("big.test", "192.0.2.20", 60));
        }
        "silent.test" => return vec![],
        "stray.test" => return stray_replies(reply),
        "many.test" => {
            for i in 0..40 {
                reply.add_answer(a("many.test", &format!("198.51.100.{}", i + 1), 60));
            }
        }
        "other.test" => {
            reply.add_answer(a("other.test", "192.0.2.40", 60));
        }
        _ => reply.metadata.response_code = ResponseCode::NXDomain,
    }
    vec![reply]
}

/// A wrong ID, a wrong question, then the real answer.
fn stray_replies(mut reply: Message) -> Vec<Message> {
    reply.add_answer(a("stray.test", "192.0.2.30", 60));
    let mut wrong_id = reply.clone();
    wrong_id.metadata.id = reply.metadata.id.wrapping_add(1);
    wrong_id.answers = vec![a("stray.test", "203.0.113.1", 60)];
    let mut wrong_question = reply.clone();
    wrong_question.queries[0].name = super::name("other.test");
    wrong_question.answers = vec![a("stray.test", "203.0.113.2", 60)];
    vec![wrong_id, wrong_question, reply]
}
