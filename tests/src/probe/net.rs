//! Socket helpers shared by the probe commands: numeric address parsing,
//! reads against a deadline, and error descriptions that start with a kind
//! (`timeout`, `refused`, `unreachable`, `denied`, `reset`, `closed`, `io`).

use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// `IP:PORT`, `[IPv6]:PORT`, or a bare IP (then `default_port`).
pub fn parse_addr(text: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = text.trim_start_matches('[').trim_end_matches(']');
    let ip = bare.split('%').next().unwrap_or(bare);
    ip.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, default_port))
        .map_err(|_| format!("not a numeric address: {text:?} (want IP, IP:PORT or [IPv6]:PORT)"))
}

/// The wildcard address of the same family as `addr`, port 0.
pub fn unspecified_for(addr: &SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
        SocketAddr::V6(_) => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
    }
}

/// The kind of an I/O error, the first word of every error we report.
pub fn error_kind(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::ETIMEDOUT) | Some(libc::EAGAIN) => "timeout",
        Some(libc::ECONNREFUSED) => "refused",
        Some(libc::EHOSTUNREACH) | Some(libc::ENETUNREACH) => "unreachable",
        Some(libc::EPERM) | Some(libc::EACCES) => "denied",
        Some(libc::ECONNRESET) | Some(libc::EPIPE) => "reset",
        _ => match err.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timeout",
            io::ErrorKind::UnexpectedEof => "closed",
            _ => "io",
        },
    }
}

/// `KIND: WHAT: ERROR`, e.g. `refused: connect 198.51.100.10:80: Connection refused (os error 111)`.
pub fn describe(what: &str, err: &io::Error) -> String {
    format!("{}: {what}: {err}", error_kind(err))
}

/// A timeout error for `what` after `timeout`.
pub fn timed_out(what: &str, timeout: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{what}: no answer within {} ms", timeout.as_millis()),
    )
}

/// Time left until `deadline`, or a timeout error if none is left.
pub fn remaining(deadline: Instant, what: &str, timeout: Duration) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(timed_out(what, timeout));
    }
    Ok(left)
}

/// Reads exactly `buf.len()` bytes before `deadline`.
pub fn read_exact_by(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
    timeout: Duration,
) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        stream.set_read_timeout(Some(remaining(deadline, "read", timeout)?))?;
        match stream.read(&mut buf[filled..]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed by peer",
                ))
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if error_kind(&e) == "timeout" => return Err(timed_out("read", timeout)),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads until EOF or `deadline`; a timeout is an error.
pub fn read_to_eof_by(
    stream: &mut TcpStream,
    deadline: Instant,
    timeout: Duration,
) -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        stream.set_read_timeout(Some(remaining(deadline, "read", timeout)?))?;
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(data),
            Ok(n) => data.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if error_kind(&e) == "timeout" => return Err(timed_out("read", timeout)),
            Err(e) => return Err(e),
        }
    }
}

/// Connects with a timeout, mapping a timeout to our message.
pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    TcpStream::connect_timeout(&addr, timeout).map_err(|e| match error_kind(&e) {
        "timeout" => timed_out("connect", timeout),
        _ => e,
    })
}

/// Connects from local port `port` (SO_REUSEADDR: the port of a connection
/// that just ended), with a timeout.
pub fn connect_from(addr: SocketAddr, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stream = runtime.block_on(async {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        let mut local = unspecified_for(&addr);
        local.set_port(port);
        socket.bind(local)?;
        tokio::time::timeout(timeout, socket.connect(addr))
            .await
            .map_err(|_| timed_out("connect", timeout))?
    })?;
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// Ends `stream` with a reset rather than a FIN (SO_LINGER 0), so that
/// its port can be used again at once.
pub fn reset_on_close(stream: &TcpStream) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a linger struct of the size given.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numeric_addresses_only() {
        assert_eq!(
            parse_addr("192.0.2.53", 53).unwrap().to_string(),
            "192.0.2.53:53"
        );
        assert_eq!(parse_addr("192.0.2.53:5353", 53).unwrap().port(), 5353);
        assert_eq!(
            parse_addr("[fd00::1]:54", 53).unwrap().to_string(),
            "[fd00::1]:54"
        );
        assert_eq!(
            parse_addr("fd00::1", 53).unwrap().to_string(),
            "[fd00::1]:53"
        );
        assert_eq!(
            parse_addr("fe80::1%eth0", 53).unwrap().to_string(),
            "[fe80::1]:53"
        );
        assert!(parse_addr("example.com", 53).is_err());
        assert!(parse_addr("example.com:53", 53).is_err());
    }

    #[test]
    fn kinds() {
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert!(describe("connect x", &refused).starts_with("refused: connect x: "));
        assert_eq!(
            error_kind(&timed_out("read", Duration::from_millis(5))),
            "timeout"
        );
        assert_eq!(
            error_kind(&io::Error::from_raw_os_error(libc::EAGAIN)),
            "timeout"
        );
    }
}
