//! `rbm-probe dns`: one DNS query, one answer, no automatic retry over TCP
//! (so truncation stays visible).
//!
//! Report: `{"rcode":"NoError"|"NXDomain"|"Refused"|"ServFail"|...|null,
//! "answers":[{"name","type","ttl","data"}], "addrs":[...], "truncated":bool,
//! "error":null|"timeout: ..."}`.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde::Serialize;

use super::net::{connect, describe, read_exact_by, remaining, timed_out, unspecified_for};
use super::Report;

/// One query to send.
#[derive(Debug, Clone)]
pub struct DnsRequest {
    pub name: String,
    pub qtype: RecordType,
    pub server: SocketAddr,
    pub tcp: bool,
    pub timeout: Duration,
}

#[derive(Debug, Default, Serialize)]
pub struct DnsReport {
    pub rcode: Option<String>,
    pub answers: Vec<Answer>,
    pub addrs: Vec<String>,
    pub truncated: bool,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Answer {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub ttl: u32,
    pub data: String,
}

/// Runs the `dns` command: exit 0 if any response arrived, whatever its rcode.
pub fn run(request: &DnsRequest) -> Report {
    let report = resolve(request);
    let ok = report.error.is_none();
    Report::new(&report, ok)
}

/// Sends the query and decodes the response into a report.
pub fn resolve(request: &DnsRequest) -> DnsReport {
    match exchange(request) {
        Ok(message) => report_of(&message),
        Err(error) => DnsReport {
            error: Some(error),
            ..DnsReport::default()
        },
    }
}

fn exchange(request: &DnsRequest) -> Result<Message, String> {
    let (id, query) = build_query(&request.name, request.qtype)?;
    let proto = if request.tcp { "tcp" } else { "udp" };
    let what = format!("dns {proto} {}", request.server);
    let reply = if request.tcp {
        exchange_tcp(&query, request.server, request.timeout, true)
    } else {
        exchange_udp(&query, request.server, request.timeout, Some(id))
    };
    let reply = reply.map_err(|e| describe(&what, &e))?;
    Message::from_vec(&reply).map_err(|e| format!("malformed: {what}: undecodable reply: {e}"))
}

/// A recursive query for `name`/`qtype` with a random id.
pub fn build_query(name: &str, qtype: RecordType) -> Result<(u16, Vec<u8>), String> {
    let fqdn = if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    };
    let name = Name::from_ascii(&fqdn).map_err(|e| format!("usage: bad name {name:?}: {e}"))?;
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(name, qtype));
    let bytes = message
        .to_vec()
        .map_err(|e| format!("usage: cannot encode the query: {e}"))?;
    Ok((message.metadata.id, bytes))
}

/// Sends one datagram to `server` and waits for one reply from it (with id
/// `expect_id` if given; other datagrams are ignored).
pub fn exchange_udp(
    query: &[u8],
    server: SocketAddr,
    timeout: Duration,
    expect_id: Option<u16>,
) -> io::Result<Vec<u8>> {
    let socket = UdpSocket::bind(unspecified_for(&server))?;
    socket.connect(server)?;
    socket.send(query)?;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65535];
    loop {
        socket.set_read_timeout(Some(remaining(deadline, "recv", timeout)?))?;
        let len = match socket.recv(&mut buf) {
            Ok(len) => len,
            Err(e) if super::net::error_kind(&e) == "timeout" => {
                return Err(timed_out("recv", timeout))
            }
            Err(e) => return Err(e),
        };
        let id = (len >= 2).then(|| u16::from_be_bytes([buf[0], buf[1]]));
        if expect_id.is_none() || id == expect_id {
            return Ok(buf[..len].to_vec());
        }
    }
}

/// Sends `query` over TCP (with the 2-byte length prefix if `prefix`) and
/// reads one length-prefixed reply.
pub fn exchange_tcp(
    query: &[u8],
    server: SocketAddr,
    timeout: Duration,
    prefix: bool,
) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect(server, timeout)?;
    stream.set_write_timeout(Some(remaining(deadline, "send", timeout)?))?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    if prefix {
        let len = u16::try_from(query.len()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "query longer than 65535 bytes")
        })?;
        framed.extend_from_slice(&len.to_be_bytes());
    }
    framed.extend_from_slice(query);
    stream.write_all(&framed)?;
    let mut len = [0u8; 2];
    read_exact_by(&mut stream, &mut len, deadline, timeout)?;
    let mut reply = vec![0u8; u16::from_be_bytes(len).into()];
    read_exact_by(&mut stream, &mut reply, deadline, timeout)?;
    Ok(reply)
}

fn report_of(message: &Message) -> DnsReport {
    let answers: Vec<Answer> = message.answers.iter().map(answer_of).collect();
    let addrs = message.answers.iter().filter_map(|r| match &r.data {
        RData::A(a) => Some(a.0.to_string()),
        RData::AAAA(a) => Some(a.0.to_string()),
        _ => None,
    });
    DnsReport {
        rcode: Some(format!("{:?}", message.metadata.response_code)),
        addrs: addrs.collect(),
        answers,
        truncated: message.metadata.truncation,
        error: None,
    }
}

fn answer_of(record: &Record) -> Answer {
    let mut data = String::new();
    if write!(data, "{}", record.data).is_err() {
        data = "<undisplayable>".into();
    }
    Answer {
        name: record.name.to_string(),
        rtype: record.record_type().to_string(),
        ttl: record.ttl,
        data,
    }
}
