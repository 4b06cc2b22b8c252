//! Asks the upstream resolvers: over UDP from a fresh socket (random source
//! port) with a fresh random ID, over TCP to the same server when the UDP
//! answer is truncated, each server in order until one answers.

use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, Query};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::time::{timeout, timeout_at, Instant};

use super::DnsError;

/// All tries for one query together never take longer than this.
const TOTAL_BUDGET: Duration = Duration::from_secs(5);
/// The UDP payload size we announce upstream (the DNS flag day value).
const EDNS_PAYLOAD: u16 = 1232;
/// Receive buffer for UDP answers; larger than anything we announce.
const UDP_BUFFER: usize = 4096;
/// Upstream queries in flight at once; a flood from the bottle waits (within
/// the budget) instead of using up the sentry's sockets.
const MAX_IN_FLIGHT: usize = 256;
/// Receive buffers kept for the next queries once a burst is over.
const BUFFERS_KEPT: usize = 8;

/// Where the proxy's forwarded questions get their answers: the upstream
/// resolvers, or (`dns::fuzz`) an answer given in memory.
pub(crate) trait Resolve: Send + Sync + Unpin + 'static {
    /// The first answer to `query`, whatever its rcode, that passed
    /// `answers` (same ID and question as what was asked).
    fn resolve(&self, query: &Query) -> impl Future<Output = Result<Message, DnsError>> + Send;
}

pub(crate) struct Upstream {
    servers: Vec<SocketAddr>,
    try_timeout: Duration,
    in_flight: Semaphore,
    buffers: Buffers,
}

/// Receive buffers of UDP answers, kept for the next query: musl's
/// allocator maps a fresh 4 KiB buffer's pages in and unmaps them when it
/// is freed, two system calls and a TLB flush on every fresh name.
#[derive(Default)]
struct Buffers(Mutex<Vec<Box<[u8]>>>);

/// A buffer taken from `Buffers`, given back when dropped.
struct Buffer<'a> {
    kept: &'a Buffers,
    bytes: Box<[u8]>,
}

impl Buffers {
    fn take(&self) -> Buffer<'_> {
        let kept = self.0.lock().unwrap().pop();
        Buffer {
            kept: self,
            bytes: kept.unwrap_or_else(|| vec![0u8; UDP_BUFFER].into_boxed_slice()),
        }
    }
}

impl Drop for Buffer<'_> {
    fn drop(&mut self) {
        let mut kept = self.kept.0.lock().unwrap();
        if kept.len() < BUFFERS_KEPT {
            kept.push(std::mem::take(&mut self.bytes));
        }
    }
}

impl Upstream {
    pub(crate) fn new(servers: Vec<SocketAddr>, try_timeout: Duration) -> Upstream {
        Upstream {
            servers,
            try_timeout,
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
            buffers: Buffers::default(),
        }
    }

    /// One server: UDP, then TCP if the UDP answer was truncated.
    async fn ask(
        &self,
        server: SocketAddr,
        query: &Query,
        deadline: Instant,
    ) -> Result<Message, DnsError> {
        let request = build_request(query);
        let bytes = request
            .to_vec()
            .map_err(|e| DnsError::Message(e.to_string()))?;
        let mut buf = self.buffers.take();
        let answer = self
            .bounded(
                server,
                deadline,
                ask_udp(server, &request, &bytes, &mut buf.bytes),
            )
            .await?;
        drop(buf);
        if !answer.metadata.truncation {
            return Ok(answer);
        }
        tracing::debug!(%server, name = %query.name, "truncated over UDP, asking again over TCP");
        self.bounded(server, deadline, ask_tcp(server, &request, &bytes))
            .await
    }

    /// Runs one try within the per-try timeout and what is left of the budget.
    async fn bounded(
        &self,
        server: SocketAddr,
        deadline: Instant,
        attempt: impl std::future::Future<Output = Result<Message, DnsError>>,
    ) -> Result<Message, DnsError> {
        let after = self
            .try_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        timeout(after, attempt)
            .await
            .map_err(|_| DnsError::UpstreamTimeout { server, after })?
    }
}

impl Resolve for Upstream {
    async fn resolve(&self, query: &Query) -> Result<Message, DnsError> {
        let deadline = Instant::now() + TOTAL_BUDGET;
        let _permit = match timeout_at(deadline, self.in_flight.acquire()).await {
            Ok(Ok(permit)) => permit,
            _ => return Err(DnsError::Busy(MAX_IN_FLIGHT)),
        };
        let mut last = DnsError::NoUpstreams;
        for &server in &self.servers {
            match self.ask(server, query, deadline).await {
                Ok(answer) => return Ok(answer),
                Err(e) => {
                    tracing::warn!(%server, name = %query.name, error = %e, "upstream DNS server failed");
                    last = e;
                }
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        Err(last)
    }
}

/// A recursive query for `query` alone, with a fresh random ID and EDNS.
pub(crate) fn build_request(query: &Query) -> Message {
    let mut request = Message::query();
    request.metadata.recursion_desired = true;
    request.add_query(Query::query(query.name.clone(), query.query_type));
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    request.set_edns(edns);
    request
}

/// Is `answer` the response to `request`: same ID, same opcode, same
/// single question? Another opcode is not an answer: an UPDATE message may
/// carry records with no data, which no query's answer may hold.
pub(crate) fn answers(request: &Message, answer: &Message) -> bool {
    answer.metadata.message_type == MessageType::Response
        && answer.metadata.id == request.metadata.id
        && answer.metadata.op_code == request.metadata.op_code
        && answer.queries.len() == 1
        && request
            .queries
            .first()
            .is_some_and(|q| same_question(q, &answer.queries[0]))
}

/// `Name` equality ignores case, as DNS does.
fn same_question(a: &Query, b: &Query) -> bool {
    a.name == b.name && a.query_type == b.query_type && a.query_class == b.query_class
}

/// Sends from a fresh socket and waits for the matching reply; replies with
/// a wrong ID or question, or that do not decode, are ignored (they may be
/// spoofing attempts) and the wait goes on until the caller's timeout.
async fn ask_udp(
    server: SocketAddr,
    request: &Message,
    bytes: &[u8],
    buf: &mut [u8],
) -> Result<Message, DnsError> {
    let io_err = |source| DnsError::UpstreamIo { server, source };
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = std::net::UdpSocket::bind(local).map_err(io_err)?;
    // connect(): the kernel drops datagrams from any other address.
    socket.connect(server).map_err(io_err)?;
    socket.set_nonblocking(true).map_err(io_err)?;
    // Sent at once: the runtime would first wait for the new socket to be
    // reported writable, one more trip through epoll on every fresh name.
    let sent = socket.send(bytes);
    let socket = UdpSocket::from_std(socket).map_err(io_err)?;
    match sent {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            socket.send(bytes).await.map_err(io_err)?;
        }
        Err(e) => return Err(io_err(e)),
    }
    loop {
        let len = socket.recv(buf).await.map_err(io_err)?;
        match Message::from_vec(&buf[..len]) {
            Ok(answer) if answers(request, &answer) => return Ok(answer),
            Ok(_) => tracing::debug!(%server, "ignoring a UDP reply with a wrong ID or question"),
            Err(e) => tracing::debug!(%server, error = %e, "ignoring an undecodable UDP reply"),
        }
    }
}

/// One query on a fresh TCP connection (2-byte length prefix, RFC 1035 4.2.2).
async fn ask_tcp(server: SocketAddr, request: &Message, bytes: &[u8]) -> Result<Message, DnsError> {
    let io_err = |source| DnsError::UpstreamIo { server, source };
    let len = u16::try_from(bytes.len())
        .map_err(|_| DnsError::Message("query longer than 65535 bytes".into()))?;
    let mut stream = TcpStream::connect(server).await.map_err(io_err)?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await.map_err(io_err)?;
    let len = stream.read_u16().await.map_err(io_err)?;
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await.map_err(io_err)?;
    let answer = Message::from_vec(&buf)
        .map_err(|e| DnsError::Message(format!("from {server} over TCP: {e}")))?;
    if !answers(request, &answer) {
        return Err(DnsError::UpstreamMismatch { server });
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::tests::name;
    use hickory_proto::rr::RecordType;

    fn reply_to(request: &Message) -> Message {
        let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
        reply.add_queries(request.queries.iter().cloned());
        reply
    }

    #[test]
    fn requests_carry_one_question_rd_edns_and_fresh_ids() {
        let q = Query::query(name("a.test"), RecordType::AAAA);
        let ids: std::collections::BTreeSet<u16> =
            (0..20).map(|_| build_request(&q).metadata.id).collect();
        assert!(ids.len() > 1, "IDs must be random");
        let r = build_request(&q);
        assert!(r.metadata.recursion_desired);
        assert_eq!(r.queries, [q]);
        assert_eq!(r.edns.as_ref().map(|e| e.max_payload()), Some(EDNS_PAYLOAD));
    }

    #[test]
    fn only_a_reply_with_the_same_id_opcode_and_question_is_accepted() {
        let request = build_request(&Query::query(name("a.test"), RecordType::A));
        assert!(answers(&request, &reply_to(&request)));

        let mut upper = reply_to(&request);
        upper.queries[0].name = name("A.TEST");
        assert!(answers(&request, &upper), "case may differ");

        let mut wrong_id = reply_to(&request);
        wrong_id.metadata.id = request.metadata.id.wrapping_add(1);
        assert!(!answers(&request, &wrong_id));

        let mut wrong_name = reply_to(&request);
        wrong_name.queries[0].name = name("b.test");
        assert!(!answers(&request, &wrong_name));

        let mut wrong_type = reply_to(&request);
        wrong_type.queries[0].query_type = RecordType::AAAA;
        assert!(!answers(&request, &wrong_type));

        let mut no_question = reply_to(&request);
        no_question.queries.clear();
        assert!(!answers(&request, &no_question));

        let mut a_query = reply_to(&request);
        a_query.metadata.message_type = MessageType::Query;
        assert!(!answers(&request, &a_query));

        let mut an_update = reply_to(&request);
        an_update.metadata.op_code = hickory_proto::op::OpCode::Update;
        assert!(!answers(&request, &an_update));
    }
}
