//! The world's sockets: authoritative DNS over UDP and TCP, and "who do you
//! see" servers that tell each client its source address as seen here.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::timeout;

use super::dns::{answer, Proto};
use super::log::QueryLogWriter;
use super::zone::Zone;

/// How long a DNS-over-TCP connection may stay idle.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Everything one rbm-world process serves.
pub struct WorldConfig {
    pub zone: Zone,
    pub log: QueryLogWriter,
    pub dns: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    pub udp: Vec<SocketAddr>,
    /// "What did you get" servers, TCP and UDP.
    pub recv: Vec<SocketAddr>,
    /// TCP servers that answer `ok` at a client's first bytes.
    pub answer: Vec<SocketAddr>,
    /// TCP echo servers.
    pub echo: Vec<SocketAddr>,
    /// HTTPS servers that log each request.
    pub https: Vec<super::https::HttpsServer>,
    /// The key the HTTPS servers' model API stand-ins take (none: no key).
    pub api_key: Option<String>,
    /// The git sites every HTTPS server serves.
    pub git: Vec<super::git_http::GitSite>,
}

/// How long a "what did you get" server waits for more bytes.
const RECV_IDLE: Duration = Duration::from_millis(500);
/// Most bytes it reads from one connection.
const RECV_MAX: usize = 64 << 10;

struct Dns {
    zone: Zone,
    log: QueryLogWriter,
}

/// The line a "who do you see" server sends: `world LOCAL sees PEER\n`.
pub fn sees_line(local: SocketAddr, peer: SocketAddr) -> String {
    format!("world {local} sees {peer}\n")
}

/// Binds every socket, prints `ready`, and serves until SIGTERM or SIGINT.
pub async fn serve(config: WorldConfig) -> Result<()> {
    let mut term = signal(SignalKind::terminate()).context("cannot catch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot catch SIGINT")?;
    let dns = Arc::new(Dns {
        zone: config.zone,
        log: config.log,
    });
    for addr in &config.dns {
        tokio::spawn(dns_udp(bind_udp(*addr).await?, Arc::clone(&dns)));
        tokio::spawn(dns_tcp(bind_tcp(*addr).await?, Arc::clone(&dns)));
    }
    for addr in &config.tcp {
        tokio::spawn(sees_tcp(bind_tcp(*addr).await?));
    }
    for addr in &config.udp {
        tokio::spawn(sees_udp(bind_udp(*addr).await?));
    }
    for addr in &config.answer {
        tokio::spawn(answer_tcp(bind_tcp(*addr).await?));
    }
    for addr in &config.echo {
        tokio::spawn(echo_tcp(bind_tcp(*addr).await?));
    }
    let backends = super::https::Backends {
        api_key: config.api_key,
        git: config.git,
    };
    for server in &config.https {
        let log = Arc::clone(&dns);
        let record: super::https::Record = Arc::new(move |line: &str| log.log.record(line));
        tokio::spawn(super::https::bind(server, record, backends.clone()).await?);
    }
    for addr in &config.recv {
        tokio::spawn(recv_tcp(bind_tcp(*addr).await?, Arc::clone(&dns)));
        tokio::spawn(recv_udp(bind_udp(*addr).await?, Arc::clone(&dns)));
    }
    println!("ready");
    io::Write::flush(&mut io::stdout())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

async fn bind_udp(addr: SocketAddr) -> Result<UdpSocket> {
    UdpSocket::bind(addr)
        .await
        .with_context(|| bind_error("udp", addr))
}

async fn bind_tcp(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| bind_error("tcp", addr))
}

fn bind_error(proto: &str, addr: SocketAddr) -> String {
    format!("cannot bind {proto} {addr} (is the address local in this namespace?)")
}

async fn dns_udp(socket: UdpSocket, dns: Arc<Dns>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let (len, peer) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) => {
                eprintln!("rbm-world: dns udp recv: {e}");
                continue;
            }
        };
        let reply = answer(&dns.zone, &buf[..len], Proto::Udp);
        dns.log.record(&reply.log_line);
        if let Some(bytes) = reply.bytes {
            if let Err(e) = socket.send_to(&bytes, peer).await {
                eprintln!("rbm-world: dns udp send to {peer}: {e}");
            }
        }
    }
}

async fn dns_tcp(listener: TcpListener, dns: Arc<Dns>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(dns_tcp_conn(stream, Arc::clone(&dns)));
            }
            Err(e) => accept_failed(e).await,
        }
    }
}

/// Serves length-prefixed queries on one connection until EOF or idle.
async fn dns_tcp_conn(mut stream: TcpStream, dns: Arc<Dns>) {
    loop {
        let Ok(Ok(len)) = timeout(TCP_IDLE, stream.read_u16()).await else {
            return;
        };
        let mut query = vec![0u8; len.into()];
        if !matches!(
            timeout(TCP_IDLE, stream.read_exact(&mut query)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let reply = answer(&dns.zone, &query, Proto::Tcp);
        dns.log.record(&reply.log_line);
        let Some(bytes) = reply.bytes else { return };
        let Ok(len) = u16::try_from(bytes.len()) else {
            return;
        };
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}

async fn sees_tcp(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((mut stream, peer)) => {
                tokio::spawn(async move {
                    if let Ok(local) = stream.local_addr() {
                        let _ = stream.write_all(sees_line(local, peer).as_bytes()).await;
                    }
                    let _ = stream.shutdown().await;
                });
            }
            Err(e) => accept_failed(e).await,
        }
    }
}

async fn sees_udp(socket: UdpSocket) {
    let Ok(local) = socket.local_addr() else {
        return;
    };
    let mut buf = vec![0u8; 65535];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((_, peer)) => {
                let _ = socket
                    .send_to(sees_line(local, peer).as_bytes(), peer)
                    .await;
            }
            Err(e) => eprintln!("rbm-world: udp {local} recv: {e}"),
        }
    }
}

/// The line a "what did you get" server logs: `recv PROTO LOCAL PEER BYTES`.
pub fn receipt_line(proto: &str, local: SocketAddr, peer: SocketAddr, bytes: usize) -> String {
    format!("recv {proto} {local} {peer} {bytes}")
}

/// Reads what each client sends until it pauses (or closes), logs how many
/// bytes came, and answers `world LOCAL got N bytes`.
async fn recv_tcp(listener: TcpListener, dns: Arc<Dns>) {
    loop {
        match listener.accept().await {
            Ok((mut stream, peer)) => {
                let dns = Arc::clone(&dns);
                tokio::spawn(async move {
                    let Ok(local) = stream.local_addr() else {
                        return;
                    };
                    let mut got = Vec::new();
                    let mut buf = vec![0u8; 16 << 10];
                    while got.len() < RECV_MAX {
                        match timeout(RECV_IDLE, stream.read(&mut buf)).await {
                            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                            _ => break,
                        }
                    }
                    dns.log.record(&receipt_line("tcp", local, peer, got.len()));
                    let answer = format!("world {local} got {} bytes\n", got.len());
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
            Err(e) => accept_failed(e).await,
        }
    }
}

/// Answers `ok` as soon as a client's first bytes arrive, then closes.
async fn answer_tcp(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((mut stream, _)) => {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 << 10];
                    if let Ok(Ok(n)) = timeout(RECV_IDLE, stream.read(&mut buf)).await {
                        if n > 0 {
                            let _ = stream.write_all(b"ok\n").await;
                        }
                    }
                    let _ = stream.shutdown().await;
                });
            }
            Err(e) => accept_failed(e).await,
        }
    }
}

/// Sends back every byte, until the client closes or the connection breaks.
async fn echo_tcp(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.into_split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
            Err(e) => accept_failed(e).await,
        }
    }
}

async fn recv_udp(socket: UdpSocket, dns: Arc<Dns>) {
    let Ok(local) = socket.local_addr() else {
        return;
    };
    let mut buf = vec![0u8; 65535];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, peer)) => {
                dns.log.record(&receipt_line("udp", local, peer, n));
                let answer = format!("world {local} got {n} bytes\n");
                let _ = socket.send_to(answer.as_bytes(), peer).await;
            }
            Err(e) => eprintln!("rbm-world: udp {local} recv: {e}"),
        }
    }
}

/// Reports an accept error and backs off briefly (e.g. out of descriptors).
async fn accept_failed(e: io::Error) {
    eprintln!("rbm-world: accept: {e}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Raises the soft open-files limit to the hard limit (hundreds of sockets).
pub fn raise_nofile_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read or write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
