//! `rbm-probe https-bench`: HTTPS requests in a row, each timed until its
//! whole answer arrived: on one connection (HTTP/2 or HTTP/1.1), or on a
//! new TCP and TLS connection each. Reports the rate, latency percentiles
//! and bytes (the throughput of one large answer).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::Report;

/// How long one request (and its whole answer) may take.
const REQUEST_WITHIN: Duration = Duration::from_secs(30);

pub struct Bench {
    /// Where to connect (the name goes in SNI and Host).
    pub connect: SocketAddr,
    pub name: String,
    pub path: String,
    /// `NAME: VALUE` headers.
    pub headers: Vec<String>,
    /// The CA file (PEM) to trust.
    pub ca: String,
    pub count: u32,
    /// A new connection for every request.
    pub new_connections: bool,
    pub http1: bool,
}

#[derive(Serialize)]
struct BenchReport {
    requests: u32,
    seconds: f64,
    per_second: f64,
    p50_us: f64,
    p99_us: f64,
    bytes: u64,
    protocol: String,
    error: Option<String>,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

async fn connect(b: &Bench, tls: &TlsConnector) -> anyhow::Result<(Sender, String)> {
    let tcp = TcpStream::connect(b.connect).await?;
    tcp.set_nodelay(true)?;
    let stream = tls
        .connect(ServerName::try_from(b.name.clone())?, tcp)
        .await?;
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(stream);
    Ok(if h2 {
        let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        (Sender::H2(send), "HTTP/2".into())
    } else {
        let (send, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        (Sender::H1(send), "HTTP/1.1".into())
    })
}

async fn request(b: &Bench, sender: &mut Sender) -> anyhow::Result<u64> {
    let mut req = hyper::Request::builder()
        .uri(format!("https://{}{}", b.name, b.path))
        .header("host", &b.name);
    for h in &b.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("header {h:?} is not NAME: VALUE"))?;
        req = req.header(name.trim(), value.trim());
    }
    let resp = match sender {
        Sender::H1(s) => {
            s.ready().await?;
            let req = req.uri(b.path.as_str()).body(Empty::new())?;
            s.send_request(req).await?
        }
        Sender::H2(s) => {
            s.ready().await?;
            s.send_request(req.body(Empty::new())?).await?
        }
    };
    anyhow::ensure!(resp.status().is_success(), "status {}", resp.status());
    let mut body = resp.into_body();
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            bytes += data.len() as u64;
        }
    }
    Ok(bytes)
}

async fn run_async(b: &Bench) -> anyhow::Result<(Vec<Duration>, u64, String, Duration)> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(Path::new(&b.ca))? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = if b.http1 {
        vec![b"http/1.1".to_vec()]
    } else {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    };
    // A new connection resumes no session: each is a full handshake.
    config.resumption = rustls::client::Resumption::disabled();
    let tls = TlsConnector::from(Arc::new(config));
    let mut times = Vec::with_capacity(b.count as usize);
    let mut bytes = 0;
    let started = Instant::now();
    let (mut sender, mut protocol) = connect(b, &tls).await?;
    for i in 0..b.count {
        let t0 = Instant::now();
        if b.new_connections && i > 0 {
            (sender, protocol) = connect(b, &tls).await?;
        }
        bytes += tokio::time::timeout(REQUEST_WITHIN, request(b, &mut sender))
            .await
            .map_err(|_| anyhow::anyhow!("no whole answer within {REQUEST_WITHIN:?}"))??;
        times.push(t0.elapsed());
    }
    Ok((times, bytes, protocol, started.elapsed()))
}

pub fn run(b: &Bench) -> Report {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    match runtime.block_on(run_async(b)) {
        Ok((mut times, bytes, protocol, total)) => {
            times.sort();
            let pct = |p: f64| {
                let i = ((times.len() as f64 - 1.0) * p).round() as usize;
                times.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
            };
            let report = BenchReport {
                requests: times.len() as u32,
                seconds: total.as_secs_f64(),
                per_second: times.len() as f64 / total.as_secs_f64(),
                p50_us: pct(0.5),
                p99_us: pct(0.99),
                bytes,
                protocol,
                error: None,
            };
            Report::new(&report, true)
        }
        Err(e) => Report::new(&serde_json::json!({ "error": format!("{e:#}") }), false),
    }
}
