//! The credential proxy: the bottle's TCP connections to port 443 of
//! addresses that credential hosts' names answered are redirected here
//! (nat prerouting). For each one it reads the ClientHello:
//! - a credential host: TLS is terminated with the profile CA's
//!   certificate for that host, the sentry opens its own TLS connection to
//!   the real host (verified against the public roots and the profile's
//!   extra CA) and passes HTTP/1.1 or HTTP/2 exchanges between them, the
//!   placeholder swapped for the real value on the way out and the real
//!   value redacted on the way back (streamed);
//! - another allowed name on the same address: the bytes pass untouched
//!   to where the bottle was going (still end to end);
//! - a name not allowed: the connection is closed.
//!
//! Any error ends that connection or request; nothing goes anywhere
//! unmodified instead.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{anyhow, Context};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::{Acceptor, ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::{LazyConfigAcceptor, TlsConnector};

use super::ca::Authority;
use super::swap::{self, Redactor, Secret};
use super::Credential;
use crate::names::judge::{self, Outcome};
use crate::names::tls::MAX_HELLO;
use crate::policy::PolicyCell;
use crate::state::{unix_now, Denied, NameDenial, Shared};

/// How long a client may take to send its ClientHello.
const HELLO_WITHIN: Duration = Duration::from_secs(5);
/// How long the real host may take to accept a connection.
const CONNECT_WITHIN: Duration = Duration::from_secs(10);
const HTTPS: u16 = 443;

type ProxyBody = BoxBody<Bytes, hyper::Error>;

pub struct Proxy {
    creds: Vec<Credential>,
    authority: Arc<Authority>,
    /// Per credential host: how the sentry verifies the real host.
    upstream: HashMap<String, Arc<rustls::ClientConfig>>,
    policy: Arc<PolicyCell>,
    shared: Arc<Shared>,
    /// The socket mark of the sentry's own connections to the real hosts
    /// (the output chain lets only those out).
    mark: u32,
    /// Open HTTP/2 connections to real hosts, shared by the bottle's
    /// connections to the same host and address.
    pool: std::sync::Mutex<HashMap<(String, SocketAddr), H2Send>>,
}

type H2Send = hyper::client::conn::http2::SendRequest<Incoming>;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Proxy {
    pub fn new(
        creds: Vec<Credential>,
        authority: Arc<Authority>,
        policy: Arc<PolicyCell>,
        shared: Arc<Shared>,
        mark: u32,
    ) -> anyhow::Result<Proxy> {
        let mut upstream = HashMap::new();
        for c in &creds {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            if let Some(pem) = &c.upstream_ca {
                for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                    let cert = cert.map_err(|e| {
                        anyhow!(
                            "credential {}: its upstream_ca is not PEM: {e}",
                            c.secret.env
                        )
                    })?;
                    roots.add(cert).with_context(|| {
                        format!("credential {}: its upstream_ca is not a CA", c.secret.env)
                    })?;
                }
            }
            let config = rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            let config = Arc::new(config);
            for host in &c.hosts {
                upstream.insert(host.clone(), config.clone());
            }
        }
        Ok(Proxy {
            creds,
            authority,
            upstream,
            policy,
            shared,
            mark,
            pool: std::sync::Mutex::default(),
        })
    }

    /// A live pooled HTTP/2 connection to `host` at `dst`, if one is open.
    fn pooled(&self, host: &str, dst: SocketAddr) -> Option<H2Send> {
        let mut pool = self.pool.lock().unwrap();
        let key = (host.to_string(), dst);
        match pool.get(&key) {
            Some(send) if send.is_ready() => Some(send.clone()),
            Some(_) => {
                pool.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Binds `listen` and serves every connection redirected there.
    pub async fn serve(
        self: Arc<Self>,
        listen: SocketAddr,
    ) -> io::Result<tokio::task::JoinHandle<()>> {
        let listener = TcpListener::bind(listen).await?;
        Ok(tokio::spawn(async move {
            loop {
                let Ok((client, peer)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let _ = client.set_nodelay(true);
                let proxy = self.clone();
                tokio::spawn(async move {
                    if let Err(error) = proxy.connection(client).await {
                        tracing::info!(%peer, error = %format!("{error:#}"), "credential proxy: connection ended");
                    }
                });
            }
        }))
    }

    fn secrets_for(&self, host: &str) -> (Vec<Secret>, Vec<Secret>) {
        let (here, others): (Vec<&Credential>, Vec<&Credential>) = self
            .creds
            .iter()
            .partition(|c| c.hosts.iter().any(|h| h == host));
        let secrets = |v: Vec<&Credential>| v.into_iter().map(|c| c.secret.clone()).collect();
        (secrets(here), secrets(others))
    }

    async fn connection(&self, mut client: TcpStream) -> anyhow::Result<()> {
        let dst = original_dst(&client).context("no original destination")?;
        let (head, outcome) = tokio::time::timeout(HELLO_WITHIN, self.read_hello(&mut client))
            .await
            .map_err(|_| anyhow!("no ClientHello within {HELLO_WITHIN:?}"))??;
        let name = match outcome {
            Outcome::Allow { name } => name,
            Outcome::Deny(denial) => {
                self.shared.record_name_denial(NameDenial {
                    at: unix_now(),
                    proto: "tcp".into(),
                    dst,
                    name: denial.name.clone(),
                    reason: denial.reason.clone(),
                });
                drop(client);
                return Ok(());
            }
            Outcome::Hold => unreachable!("read_hello reads until a decision"),
        };
        match name.filter(|n| self.upstream.contains_key(n)) {
            Some(host) => self.intercept(client, head, dst, host).await,
            None => splice(client, head, dst, self.mark).await,
        }
    }

    /// Reads until the name check can decide (as for forwarded
    /// connections; without name binding, only the name is read).
    async fn read_hello(&self, client: &mut TcpStream) -> anyhow::Result<(Vec<u8>, Outcome)> {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let policy = self.policy.get();
            let outcome = judge::tcp(&policy, HTTPS, &head);
            let outcome = match outcome {
                Outcome::Deny(_) if !policy.binds_names() => Outcome::Allow {
                    name: judge::tls_name(&head),
                },
                other => other,
            };
            if !matches!(outcome, Outcome::Hold) {
                return Ok((head, outcome));
            }
            if head.len() > MAX_HELLO {
                return Err(anyhow!("a ClientHello too large to be real"));
            }
            let n = client.read(&mut buf).await?;
            if n == 0 {
                return Err(anyhow!("the client closed before its ClientHello"));
            }
            head.extend_from_slice(&buf[..n]);
        }
    }

    async fn intercept(
        &self,
        client: TcpStream,
        head: Vec<u8>,
        dst: SocketAddr,
        host: String,
    ) -> anyhow::Result<()> {
        let start = LazyConfigAcceptor::new(Acceptor::default(), Prefixed::new(head, client))
            .await
            .context("reading the ClientHello")?;
        let offered: Vec<Vec<u8>> = start
            .client_hello()
            .alpn()
            .map(|list| list.map(<[u8]>::to_vec).collect())
            .unwrap_or_default();
        let alpn: Vec<Vec<u8>> = offered
            .into_iter()
            .filter(|p| p == b"h2" || p == b"http/1.1")
            .collect();
        // An HTTP/2 connection to the real host serves every bottle
        // connection that speaks HTTP/2 too: no new upstream handshake.
        let pooled = if alpn.iter().any(|p| p == b"h2") {
            self.pooled(&host, dst)
        } else {
            None
        };
        let (sender, negotiated) = match pooled {
            Some(send) => (Sender::H2(send), Some(b"h2".to_vec())),
            None => {
                // The real host first: the bottle gets the protocol it chose.
                let tcp = connect_marked(dst, self.mark).await?;
                let mut config = (*self.upstream[&host]).clone();
                config.alpn_protocols = alpn;
                let server_name = ServerName::try_from(host.clone())?;
                let up = TlsConnector::from(Arc::new(config))
                    .connect(server_name, tcp)
                    .await
                    .with_context(|| format!("TLS to {host} at {dst}"))?;
                let negotiated = up.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                let sender = Sender::connect(up, negotiated.as_deref() == Some(b"h2")).await?;
                if let Sender::H2(send) = &sender {
                    self.pool
                        .lock()
                        .unwrap()
                        .insert((host.clone(), dst), send.clone());
                }
                (sender, negotiated)
            }
        };
        let leaf = self
            .authority
            .leaf(&host)
            .with_context(|| format!("no certificate for {host}"))?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(leaf)));
        server.alpn_protocols = negotiated.iter().cloned().collect();
        let down = start
            .into_stream(Arc::new(server))
            .await
            .context("TLS with the bottle")?;
        let h2 = negotiated.as_deref() == Some(b"h2");
        let (here, others) = self.secrets_for(&host);
        let exchange = Arc::new(Exchange {
            sender,
            here,
            others,
            host,
            dst,
            shared: self.shared.clone(),
        });
        let service = hyper::service::service_fn(move |req| {
            let exchange = exchange.clone();
            async move { Ok::<_, Infallible>(exchange.pass(req).await) }
        });
        let io = TokioIo::new(down);
        if h2 {
            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(io, service)
                .await?;
        } else {
            hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .with_upgrades()
                .await?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// The sentry's connection to the real host, one request at a time
/// (HTTP/1.1) or many (HTTP/2).
enum Sender {
    H1(tokio::sync::Mutex<hyper::client::conn::http1::SendRequest<Incoming>>),
    H2(H2Send),
}

impl Sender {
    async fn connect(
        up: tokio_rustls::client::TlsStream<TcpStream>,
        h2: bool,
    ) -> anyhow::Result<Sender> {
        let io = TokioIo::new(up);
        Ok(if h2 {
            let (send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            Sender::H2(send)
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn.with_upgrades());
            Sender::H1(tokio::sync::Mutex::new(send))
        })
    }

    async fn send(&self, req: Request<Incoming>) -> hyper::Result<Response<Incoming>> {
        match self {
            Sender::H1(send) => {
                let mut send = send.lock().await;
                send.ready().await?;
                send.send_request(req).await
            }
            Sender::H2(send) => {
                let mut send = send.clone();
                send.ready().await?;
                send.send_request(req).await
            }
        }
    }
}

/// What one terminated connection needs for each exchange.
struct Exchange {
    sender: Sender,
    /// This host's credentials: swapped in.
    here: Vec<Secret>,
    /// Other hosts' credentials: their placeholder here is refused.
    others: Vec<Secret>,
    host: String,
    dst: SocketAddr,
    shared: Arc<Shared>,
}

impl Exchange {
    /// Records a credential denial (status and deny log) and answers the
    /// bottle with `status` and the reason.
    fn deny(&self, status: StatusCode, reason: String) -> Response<ProxyBody> {
        let body = format!("rbm: {reason}\n");
        self.shared.record_denied(Denied {
            at: unix_now(),
            kind: "credential".into(),
            proto: Some("https".into()),
            dst: Some(self.dst),
            name: Some(self.host.clone()),
            reason,
        });
        plain(status, &body)
    }

    async fn pass(&self, mut req: Request<Incoming>) -> Response<ProxyBody> {
        if let Some(env) = self.foreign(&req) {
            let reason = format!(
                "the placeholder of {env} sent to {}, not one of its hosts",
                self.host
            );
            tracing::warn!(host = %self.host, %env, "credential: foreign placeholder refused");
            return self.deny(StatusCode::FORBIDDEN, reason);
        }
        self.swap(&mut req);
        ask_uncompressed(req.headers_mut());
        let client_upgrade = is_upgrade(&req).then(|| hyper::upgrade::on(&mut req));
        let mut resp = match self.sender.send(req).await {
            Ok(resp) => resp,
            Err(error) => {
                tracing::warn!(host = %self.host, %error, "credential: the real host failed");
                return plain(
                    StatusCode::BAD_GATEWAY,
                    &format!("rbm: {} did not answer: {error}\n", self.host),
                );
            }
        };
        if let Some(encoding) = unreadable_encoding(resp.headers()) {
            let reason = format!(
                "{} answered with Content-Encoding {encoding}, from which the real value could not be redacted",
                self.host
            );
            tracing::warn!(host = %self.host, %encoding, "credential: compressed answer refused");
            return self.deny(StatusCode::BAD_GATEWAY, reason);
        }
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                let server_upgrade = hyper::upgrade::on(&mut resp);
                tokio::spawn(async move {
                    if let (Ok(a), Ok(b)) = (client_upgrade.await, server_upgrade.await) {
                        let (mut a, mut b) = (TokioIo::new(a), TokioIo::new(b));
                        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                    }
                });
            }
        }
        let redactor = Redactor::new(&self.here);
        // Redaction may change the body's length: it goes without one
        // (chunked, or HTTP/2 frames) instead.
        resp.headers_mut().remove(http::header::CONTENT_LENGTH);
        for value in resp.headers_mut().values_mut() {
            if let Some(v) = redactor.redact_all(value.as_bytes()) {
                if let Ok(v) = HeaderValue::from_bytes(&v) {
                    *value = v;
                }
            }
        }
        resp.map(|body| {
            Redacting {
                inner: body,
                redactor,
                trailers: None,
                done: false,
            }
            .boxed()
        })
    }

    /// The env name of another host's credential whose placeholder the
    /// request carries (in its target or headers).
    fn foreign(&self, req: &Request<Incoming>) -> Option<String> {
        let uri = req.uri().to_string();
        std::iter::once(uri.as_bytes())
            .chain(req.headers().values().map(HeaderValue::as_bytes))
            .find_map(|v| {
                swap::placeholders_in(v, &self.others)
                    .first()
                    .map(|s| s.env.clone())
            })
    }

    /// The placeholders of this host's credentials, real in the head.
    fn swap(&self, req: &mut Request<Incoming>) {
        for value in req.headers_mut().values_mut() {
            if let Some(v) = swap::swap_value(value.as_bytes(), &self.here) {
                if let Ok(v) = HeaderValue::from_bytes(&v) {
                    *value = v;
                }
            }
        }
        let uri = req.uri().to_string();
        if let Some(v) = swap::swap_value(uri.as_bytes(), &self.here) {
            if let Ok(uri) = Uri::try_from(v) {
                *req.uri_mut() = uri;
            }
        }
    }
}

/// Asks the real host for its answer uncompressed: the redactor reads plain
/// bytes, and a real value the host reflects in a compressed body would
/// reach the bottle unseen.
fn ask_uncompressed(headers: &mut http::HeaderMap) {
    headers.insert(
        http::header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
}

/// The Content-Encoding of an answer that the redactor cannot read (any
/// but identity), if any: such an answer is refused, not passed on.
fn unreadable_encoding(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .flat_map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split(',')
                .map(|e| e.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .find(|e| !e.is_empty() && e != "identity")
}

fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.headers().contains_key(http::header::UPGRADE)
}

fn plain(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(
        Full::new(Bytes::from(text.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp
}

/// A response body with the real values redacted as it streams.
struct Redacting {
    inner: Incoming,
    redactor: Redactor,
    trailers: Option<Frame<Bytes>>,
    done: bool,
}

impl Body for Redacting {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        loop {
            if let Some(trailers) = self.trailers.take() {
                return Poll::Ready(Some(Ok(trailers)));
            }
            if self.done {
                return Poll::Ready(None);
            }
            let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(frame) => frame,
            };
            match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let out = self.redactor.push(&data);
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                        }
                    }
                    Err(trailers) => {
                        self.trailers = Some(trailers);
                        let rest = self.redactor.finish();
                        if !rest.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(rest)))));
                        }
                    }
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    self.done = true;
                    let rest = self.redactor.finish();
                    if !rest.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(rest)))));
                    }
                }
            }
        }
    }
}

/// Another name on a credential host's address: its bytes go, untouched,
/// where the bottle sent them.
async fn splice(
    mut client: TcpStream,
    head: Vec<u8>,
    dst: SocketAddr,
    mark: u32,
) -> anyhow::Result<()> {
    let mut up = connect_marked(dst, mark).await?;
    tokio::io::AsyncWriteExt::write_all(&mut up, &head).await?;
    tokio::io::copy_bidirectional(&mut client, &mut up).await?;
    Ok(())
}

/// Where a redirected connection was going (SO_ORIGINAL_DST).
fn original_dst(s: &TcpStream) -> io::Result<SocketAddr> {
    const SO_ORIGINAL_DST: libc::c_int = 80;
    // SAFETY: a zeroed sockaddr_in is valid; getsockopt writes at most `len`.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_IP,
            SO_ORIGINAL_DST,
            &mut addr as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
        u16::from_be(addr.sin_port),
    )))
}

/// A TCP connection from the sentry itself, carrying `mark`.
async fn connect_marked(dst: SocketAddr, mark: u32) -> anyhow::Result<TcpStream> {
    let socket = if dst.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // SAFETY: setsockopt with a u32 option value of its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MARK,
            &mark as *const u32 as *const libc::c_void,
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error()).context("marking the upstream socket");
    }
    let stream = tokio::time::timeout(CONNECT_WITHIN, socket.connect(dst))
        .await
        .map_err(|_| anyhow!("{dst} did not accept within {CONNECT_WITHIN:?}"))?
        .with_context(|| format!("connecting to {dst}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A stream that first yields bytes already read from it.
struct Prefixed<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    fn new(prefix: Vec<u8>, inner: S) -> Prefixed<S> {
        Prefixed {
            prefix,
            at: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.prefix[at..at + n]);
            self.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_host_is_asked_for_an_uncompressed_answer() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, br"),
        );
        ask_uncompressed(&mut headers);
        let asked: Vec<_> = headers
            .get_all(http::header::ACCEPT_ENCODING)
            .iter()
            .collect();
        assert_eq!(asked, ["identity"]);
    }

    #[test]
    fn a_compressed_answer_is_unreadable_for_the_redactor() {
        let encoded = |values: &[&'static str]| {
            let mut headers = http::HeaderMap::new();
            for v in values {
                headers.append(http::header::CONTENT_ENCODING, HeaderValue::from_static(v));
            }
            unreadable_encoding(&headers)
        };
        assert_eq!(encoded(&[]), None);
        assert_eq!(encoded(&["identity"]), None);
        assert_eq!(encoded(&["gzip"]).as_deref(), Some("gzip"));
        assert_eq!(encoded(&["identity, BR"]).as_deref(), Some("br"));
        assert_eq!(
            encoded(&["identity", "deflate"]).as_deref(),
            Some("deflate")
        );
    }
}
