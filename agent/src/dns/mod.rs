//! The DNS proxy the bottle talks to: it answers only names the policy
//! allows, asks the upstream resolvers for them, keeps only the records that
//! answer the question and opens the answered addresses in the firewall
//! BEFORE the answer reaches the bottle.
//!
//! `decide` checks a request and maps the policy's verdict to an action,
//! `upstream` asks the upstream resolvers (UDP, TCP on truncation),
//! `answer` filters an upstream answer and lists what to learn, `cache`
//! keeps answers for their TTL, `handler`
//! ties them together behind hickory-server's `RequestHandler`. `fuzz`
//! runs that handler on bytes in memory, for the fuzz targets.

mod answer;
mod cache;
mod decide;
pub mod fuzz;
mod handler;
mod upstream;

#[cfg(test)]
pub(crate) mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};

use crate::firewall::{FirewallError, Learn};
use crate::learning::Then;
use crate::policy::PolicyCell;
use crate::state::Shared;
use handler::Proxy;
use upstream::Upstream;

/// How long a TCP client may stay idle before its connection is closed.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;

/// Puts addresses into the firewall; called BEFORE the answer is sent.
#[async_trait::async_trait]
pub trait Learner: Send + Sync + 'static {
    /// Opens `items`, which `qname` was granted, and returns once the
    /// kernel took them. `then` runs once the kernel took them and before
    /// anything else may change the firewall (a reload must see every
    /// address that is open).
    async fn learn(&self, qname: &str, items: Vec<Learn>, then: Then) -> Result<(), FirewallError>;
}

#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Where the bottle sends its queries; UDP and TCP. With port 0 the
    /// kernel picks one port and both protocols use it.
    pub listen: SocketAddr,
    /// Tried in order; the next one only when the previous one failed.
    pub upstreams: Vec<SocketAddr>,
    /// Per try (UDP, or TCP after a truncated UDP answer); 2 s is a good
    /// value. All tries of one query together never take more than 5 s.
    pub upstream_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot bind the DNS proxy's {proto} socket on {addr}: {source}; is another DNS server listening there, or does the agent lack CAP_NET_BIND_SERVICE?")]
    Bind {
        proto: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("no upstream DNS server is configured; set uplink.upstream_dns in the profile")]
    NoUpstreams,
    #[error("upstream DNS server {server} did not answer within {after:?}")]
    UpstreamTimeout { server: SocketAddr, after: Duration },
    #[error("talking to upstream DNS server {server} failed: {source}")]
    UpstreamIo {
        server: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("upstream DNS server {server} sent a reply that does not belong to the query (wrong ID or question)")]
    UpstreamMismatch { server: SocketAddr },
    #[error("{0} upstream queries are already in flight; try again later")]
    Busy(usize),
    #[error("cannot encode or decode a DNS message: {0}")]
    Message(String),
    #[error("the DNS server stopped: {0}")]
    Stopped(String),
}

/// The running proxy. Dropping it stops the server at once; `shutdown`
/// stops it gracefully.
pub struct DnsServerHandle {
    server: Server<Proxy>,
    local_addr: SocketAddr,
}

impl std::fmt::Debug for DnsServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServerHandle")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl DnsServerHandle {
    /// The address both the UDP socket and the TCP listener are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Resolves only when the server stopped by itself, i.e. its sockets
    /// failed. Cancel-safe: usable in `tokio::select!` next to a signal.
    pub async fn wait(&mut self) -> Result<(), DnsError> {
        self.server
            .block_until_done()
            .await
            .map_err(|e| DnsError::Stopped(e.to_string()))
    }

    /// Stops accepting queries and waits until the listeners have ended.
    pub async fn shutdown(mut self) -> Result<(), DnsError> {
        self.server
            .shutdown_gracefully()
            .await
            .map_err(|e| DnsError::Stopped(e.to_string()))
    }
}

/// Binds UDP and TCP on `config.listen` and serves in background tasks until
/// the returned handle is shut down or dropped. Binding errors are returned
/// here, before anything is served, so the caller can fail closed.
pub async fn serve(
    config: DnsConfig,
    policy: Arc<PolicyCell>,
    learner: Arc<dyn Learner>,
    shared: Arc<Shared>,
) -> Result<DnsServerHandle, DnsError> {
    let (udp, tcp, local_addr) = bind(config.listen).await?;
    let upstream = Upstream::new(config.upstreams, config.upstream_timeout);
    let mut server = Server::new(Proxy::new(policy, learner, shared, upstream));
    server.register_socket(udp);
    server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
    tracing::info!(%local_addr, "DNS proxy listening on UDP and TCP");
    Ok(DnsServerHandle { server, local_addr })
}

/// Binds UDP first, then TCP on the very address UDP got (same port when
/// `listen` asked for port 0).
async fn bind(listen: SocketAddr) -> Result<(UdpSocket, TcpListener, SocketAddr), DnsError> {
    let bind_err = |proto, addr| {
        move |source| DnsError::Bind {
            proto,
            addr,
            source,
        }
    };
    let udp = UdpSocket::bind(listen)
        .await
        .map_err(bind_err("UDP", listen))?;
    let addr = udp.local_addr().map_err(bind_err("UDP", listen))?;
    let tcp = TcpListener::bind(addr)
        .await
        .map_err(bind_err("TCP", addr))?;
    Ok((udp, tcp, addr))
}
