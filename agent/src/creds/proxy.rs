//! The sentry's proxy: the bottle's TCP connections to port 443 of
//! addresses that inspected hosts' names answered (credential hosts and
//! hosts with request rules) are redirected here (nat prerouting). For
//! each one it reads the ClientHello:
//! - an inspected host: TLS is terminated with the profile CA's
//!   certificate for that host, the sentry opens its own TLS connection to
//!   the real host (verified against the public roots and the profile's
//!   extra CA) and passes HTTP/1.1 or HTTP/2 exchanges between them, each
//!   request checked against the host's rules, the placeholder swapped
//!   for the real value on the way out and the real value redacted on the
//!   way back (streamed);
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
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::{Acceptor, ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::{LazyConfigAcceptor, TlsConnector};

use super::ca::Authority;
use super::exchange::{Exchange, H2Send, Sender};
use super::swap::Secret;
use super::Credential;
use crate::names::judge::{self, Outcome};
use crate::names::tls::MAX_HELLO;
use crate::policy::PolicyCell;
use crate::state::{unix_now, NameDenial, Shared};

/// How long a client may take to send its ClientHello.
const HELLO_WITHIN: Duration = Duration::from_secs(5);
/// How long the real host may take to accept a connection.
const CONNECT_WITHIN: Duration = Duration::from_secs(10);
const HTTPS: u16 = 443;

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

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Proxy {
    /// `extra_cas`: for hosts with request rules, the extra CA (PEM) the
    /// profile gave for their real certificates. Every inspected host
    /// (`policy.intercept_hosts`) is verified against the public roots and
    /// the extra CAs given for it.
    pub fn new(
        creds: Vec<Credential>,
        extra_cas: &HashMap<String, String>,
        authority: Arc<Authority>,
        policy: Arc<PolicyCell>,
        shared: Arc<Shared>,
        mark: u32,
    ) -> anyhow::Result<Proxy> {
        let mut upstream = HashMap::new();
        for host in &policy.get().intercept_hosts {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let given = creds
                .iter()
                .filter(|c| c.hosts.contains(host))
                .filter_map(|c| {
                    c.upstream_ca
                        .as_ref()
                        .map(|pem| (c.secret.env.clone(), pem))
                })
                .chain(
                    extra_cas
                        .get(host)
                        .map(|pem| (format!("the requests of {host}"), pem)),
                );
            for (whose, pem) in given {
                for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                    let cert =
                        cert.map_err(|e| anyhow!("{whose}: its upstream_ca is not PEM: {e}"))?;
                    roots
                        .add(cert)
                        .with_context(|| format!("{whose}: its upstream_ca is not a CA"))?;
                }
            }
            let config = rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            upstream.insert(host.clone(), Arc::new(config));
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
        let name = name.map(|n| crate::profile::normalize(&n));
        match name.clone().filter(|n| self.upstream.contains_key(n)) {
            Some(host) => self.intercept(client, head, dst, host).await,
            // Another name, passed untouched, may ask the front end behind
            // a ruled host's address for that host (Host inside): not at
            // such an address.
            None if self.shared.is_ruled(dst.ip()) => {
                self.shared.record_name_denial(NameDenial {
                    at: unix_now(),
                    proto: "tcp".into(),
                    dst,
                    name: name.clone(),
                    reason: format!(
                        "{} at an address of a host with request rules, which the sentry would not see inside",
                        name.as_deref().unwrap_or("a connection without a name")
                    ),
                });
                Ok(())
            }
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
            policy: self.policy.clone(),
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
