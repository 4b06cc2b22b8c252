//! `dns-relay`: a bare DNS relay over UDP, for the peer benchmark. It
//! answers the bottle from the sentry's place with what upstream answered,
//! and does nothing else: no policy, no cache, no learning. What it adds
//! to direct (two more socket hops and a process woken twice) is the least
//! any sentry that answers the bottle's DNS pays.

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use serde::Serialize;

use super::Report;

/// How long the relay waits for upstream before it drops a query.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Serialize)]
struct RelayReport {
    ok: bool,
    error: String,
}

/// Relays one query at a time until an error; prints `ready` once bound.
pub fn run(listen: SocketAddr, upstream: SocketAddr) -> Report {
    let error = match relay(listen, upstream) {
        Ok(never) => match never {},
        Err(e) => format!("relay {listen} -> {upstream}: {e}"),
    };
    Report::new(&RelayReport { ok: false, error }, false)
}

fn relay(listen: SocketAddr, upstream: SocketAddr) -> io::Result<std::convert::Infallible> {
    let socket = UdpSocket::bind(listen)?;
    let up = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    up.connect(upstream)?;
    up.set_read_timeout(Some(UPSTREAM_TIMEOUT))?;
    println!("ready");
    io::stdout().flush()?;
    let (mut query, mut answer) = ([0u8; 4096], [0u8; 4096]);
    loop {
        let (n, from) = socket.recv_from(&mut query)?;
        if n < 2 {
            continue;
        }
        up.send(&query[..n])?;
        // An answer that came too late for an earlier query is not this one's.
        loop {
            match up.recv(&mut answer) {
                Ok(m) if m >= 2 && answer[..2] == query[..2] => {
                    socket.send_to(&answer[..m], from)?;
                    break;
                }
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => return Err(e),
            }
        }
    }
}
