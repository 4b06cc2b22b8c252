//! `rbm-probe tcp`, `udp` and `serve`: plain connectivity.
//!
//! Report of `tcp`/`udp`: `{"ok":bool,"reply":"world ... sees ..."|null,"error":null|"KIND: ..."}`.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::net::{
    connect, connect_from, describe, error_kind, read_to_eof_by, reset_on_close, timed_out,
    unspecified_for,
};
use super::Report;

/// What a datagram probe sends.
const UDP_PAYLOAD: &[u8] = b"rbm-probe\n";

#[derive(Debug, Serialize)]
pub struct ConnReport {
    pub ok: bool,
    pub reply: Option<String>,
    pub error: Option<String>,
}

fn report(result: Result<String, String>) -> Report {
    let ok = result.is_ok();
    let (reply, error) = match result {
        Ok(reply) => (Some(reply), None),
        Err(error) => (None, Some(error)),
    };
    Report::new(&ConnReport { ok, reply, error }, ok)
}

/// `tcp`: connect, read the server's line until it closes.
pub fn run_tcp(addr: SocketAddr, timeout: Duration) -> Report {
    report(tcp_line(addr, timeout))
}

/// How `send` carries its bytes.
pub enum Carrier {
    Tcp {
        split: Option<usize>,
        /// From this local port, ended with a reset.
        from_port: Option<u16>,
    },
    /// Each of these datagrams in turn; the first reply counts. `before`:
    /// datagrams sent first on the same socket, whose reply is awaited.
    Udp {
        before: Vec<Vec<u8>>,
        datagrams: Vec<Vec<u8>>,
    },
}

/// `send`: over TCP, connect, send `data` (in two writes at `split`, apart
/// in time, so that they leave as two segments), then read the server's
/// answer until it closes. Over UDP: the datagrams, then one reply.
pub fn run_send(addr: SocketAddr, data: &[u8], carrier: Carrier, timeout: Duration) -> Report {
    match carrier {
        Carrier::Tcp { split, from_port } => {
            report(tcp_send(addr, data, split, from_port, timeout))
        }
        Carrier::Udp { before, datagrams } => report(
            UdpSocket::bind(unspecified_for(&addr))
                .map_err(|e| describe("bind", &e))
                .and_then(|socket| {
                    if !before.is_empty() {
                        udp_exchange(&socket, addr, &before, timeout)
                            .map_err(|e| format!("before: {e}"))?;
                        // The other datagrams' replies: a late one must not
                        // pass for the answer to what is sent next.
                        drain(&socket, Duration::from_millis(300));
                    }
                    udp_exchange(&socket, addr, &datagrams, timeout)
                }),
        ),
    }
}

/// Connects, sends `data` and waits for the first byte of the answer (the
/// `ttfb` benchmark's one connection).
pub fn first_byte(addr: SocketAddr, data: &[u8], timeout: Duration) -> Result<(), String> {
    let mut stream =
        connect(addr, timeout).map_err(|e| describe(&format!("connect {addr}"), &e))?;
    let fail = |e: io::Error| describe(&format!("{addr}"), &e);
    stream.set_nodelay(true).map_err(fail)?;
    stream.set_read_timeout(Some(timeout)).map_err(fail)?;
    stream.write_all(data).map_err(fail)?;
    let mut byte = [0u8; 1];
    match io::Read::read(&mut stream, &mut byte).map_err(fail)? {
        0 => Err(format!("closed: {addr} answered nothing")),
        _ => Ok(()),
    }
}

fn tcp_send(
    addr: SocketAddr,
    data: &[u8],
    split: Option<usize>,
    from_port: Option<u16>,
    timeout: Duration,
) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let mut stream = match from_port {
        Some(port) => connect_from(addr, port, timeout),
        None => connect(addr, timeout),
    }
    .map_err(|e| describe(&format!("connect {addr}"), &e))?;
    let fail = |e: io::Error| describe(&format!("send to {addr}"), &e);
    stream.set_nodelay(true).map_err(fail)?;
    if from_port.is_some() {
        reset_on_close(&stream).map_err(fail)?;
    }
    let (first, second) = data.split_at(split.unwrap_or(data.len()).min(data.len()));
    stream.write_all(first).map_err(fail)?;
    if !second.is_empty() {
        std::thread::sleep(Duration::from_millis(50));
        stream.write_all(second).map_err(fail)?;
    }
    let answer = read_to_eof_by(&mut stream, deadline, timeout)
        .map_err(|e| describe(&format!("read from {addr}"), &e))?;
    Ok(String::from_utf8_lossy(&answer).trim().to_string())
}

#[derive(Debug, Serialize)]
pub struct FloodReport {
    pub sent: u32,
    pub replies: u32,
    pub error: Option<String>,
}

/// `flood`: a datagram to `addr` every `every`, for `lasting`, from one
/// socket; counts the replies. Always succeeds: the counts are the result
/// (e.g. none may come back while the sentry restarts its agent).
pub fn run_flood(addr: SocketAddr, lasting: Duration, every: Duration) -> Report {
    let mut report = FloodReport {
        sent: 0,
        replies: 0,
        error: None,
    };
    let result = (|| -> io::Result<()> {
        let socket = UdpSocket::bind(unspecified_for(&addr))?;
        socket.connect(addr)?;
        socket.set_read_timeout(Some(every.max(Duration::from_millis(1))))?;
        let end = Instant::now() + lasting;
        let mut buf = vec![0u8; 2048];
        while Instant::now() < end {
            // A refused datagram (ICMP) shows up as an error on a later
            // send or recv: keep going, it is not a reply.
            if socket.send(UDP_PAYLOAD).is_ok() {
                report.sent += 1;
            }
            if let Ok(n) = socket.recv(&mut buf) {
                if n > 0 {
                    report.replies += 1;
                }
            }
        }
        Ok(())
    })();
    report.error = result.err().map(|e| describe("flood", &e));
    Report::new(&report, true)
}

/// `udp`: one datagram, no retry, one reply.
pub fn run_udp(addr: SocketAddr, timeout: Duration) -> Report {
    report(udp_reply(addr, timeout))
}

/// Sends one datagram to `addr` from a fresh socket and returns the reply (trimmed).
pub fn udp_reply(addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    UdpSocket::bind(unspecified_for(&addr))
        .map_err(|e| describe("bind", &e))
        .and_then(|socket| udp_line(&socket, addr, timeout))
}

/// Connects to `addr` and returns what it writes before closing (trimmed).
pub fn tcp_line(addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let mut stream =
        connect(addr, timeout).map_err(|e| describe(&format!("connect {addr}"), &e))?;
    let data = read_to_eof_by(&mut stream, deadline, timeout)
        .map_err(|e| describe(&format!("read from {addr}"), &e))?;
    Ok(String::from_utf8_lossy(&data).trim().to_string())
}

/// Reads and drops what arrives on `socket` until it is quiet for `quiet`.
fn drain(socket: &UdpSocket, quiet: Duration) {
    let mut buf = vec![0u8; 65535];
    if socket.set_read_timeout(Some(quiet)).is_ok() {
        while socket.recv(&mut buf).is_ok() {}
    }
}

/// Sends one datagram to `addr` from `socket` and waits for one reply from it.
pub fn udp_line(socket: &UdpSocket, addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    udp_exchange(socket, addr, &[UDP_PAYLOAD.to_vec()], timeout)
}

fn udp_exchange(
    socket: &UdpSocket,
    addr: SocketAddr,
    datagrams: &[Vec<u8>],
    timeout: Duration,
) -> Result<String, String> {
    let what = format!("udp {addr}");
    let fail = |e: io::Error| describe(&what, &e);
    socket.connect(addr).map_err(fail)?;
    for datagram in datagrams {
        socket.send(datagram).map_err(fail)?;
    }
    socket.set_read_timeout(Some(timeout)).map_err(fail)?;
    let mut buf = vec![0u8; 65535];
    match socket.recv(&mut buf) {
        Ok(len) => Ok(String::from_utf8_lossy(&buf[..len]).trim().to_string()),
        Err(e) if error_kind(&e) == "timeout" => Err(fail(timed_out("recv", timeout))),
        Err(e) => Err(fail(e)),
    }
}

/// `serve`: listens on `addr` over TCP and UDP, prints `ready`, and to
/// each connection (and each datagram) answers `bottle LOCAL sees PEER\n`
/// (closing a connection after it). Returns only on error.
pub fn serve(addr: SocketAddr) -> Report {
    let bound = TcpListener::bind(addr)
        .map_err(|e| describe(&format!("bind tcp {addr}"), &e))
        .and_then(|tcp| {
            let udp =
                UdpSocket::bind(addr).map_err(|e| describe(&format!("bind udp {addr}"), &e))?;
            Ok((tcp, udp))
        });
    let (listener, socket) = match bound {
        Ok(both) => both,
        Err(e) => return report(Err(e)),
    };
    println!("ready");
    let _ = io::stdout().flush();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65535];
        while let Ok((_, peer)) = socket.recv_from(&mut buf) {
            if let Ok(local) = socket.local_addr() {
                let _ = socket.send_to(format!("bottle {local} sees {peer}\n").as_bytes(), peer);
            }
        }
    });
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        if let (Ok(local), Ok(peer)) = (stream.local_addr(), stream.peer_addr()) {
            let _ = stream.write_all(format!("bottle {local} sees {peer}\n").as_bytes());
        }
    }
    report(Err("io: listener closed".into()))
}
