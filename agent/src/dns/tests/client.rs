//! A test client: builds queries with hickory-proto and exchanges them with
//! the proxy over UDP or TCP on loopback, every wait bounded.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

use super::name;

/// Longer than any answer the proxy may take (its budget is 5 s).
const WAIT: Duration = Duration::from_secs(8);

/// A recursive query for one name and type, without EDNS.
pub(super) fn query(qname: &str, qtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name(qname), qtype));
    m
}

/// `query` announcing an EDNS UDP size.
pub(super) fn query_edns(qname: &str, qtype: RecordType, size: u16) -> Message {
    let mut m = query(qname, qtype);
    let mut edns = Edns::new();
    edns.set_max_payload(size);
    m.set_edns(edns);
    m
}

pub(super) async fn udp(server: SocketAddr, request: &Message) -> Message {
    let reply = udp_raw(server, &request.to_vec().unwrap(), WAIT)
        .await
        .expect("no UDP answer from the proxy");
    Message::from_vec(&reply).unwrap()
}

/// Sends raw bytes from a fresh socket; the first datagram back, if any
/// comes within `wait`.
pub(super) async fn udp_raw(server: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(bytes, server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (len, _) = timeout(wait, socket.recv_from(&mut buf))
        .await
        .ok()?
        .unwrap();
    buf.truncate(len);
    Some(buf)
}

pub(super) async fn tcp(server: SocketAddr, request: &Message) -> Message {
    timeout(WAIT, tcp_exchange(server, request))
        .await
        .expect("no TCP answer from the proxy")
}

async fn tcp_exchange(server: SocketAddr, request: &Message) -> Message {
    let bytes = request.to_vec().unwrap();
    let mut stream = TcpStream::connect(server).await.unwrap();
    stream
        .write_all(&(bytes.len() as u16).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(&bytes).await.unwrap();
    let len = stream.read_u16().await.unwrap();
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}
