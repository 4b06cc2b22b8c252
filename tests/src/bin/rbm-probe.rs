//! rbm-probe: runs inside a bottle and reports, as one JSON object on
//! stdout, what it could reach. Exit 0 on success, 1 on failure, 2 on a
//! usage error. Numeric addresses only (static binary, no NSS).

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};
use hickory_proto::rr::RecordType;
use rbm_tests::probe::{
    conn, dns, hello, hold, https, latency, net, quic, raw, reach, relay, resolv, Report,
};

#[derive(Parser)]
#[command(name = "rbm-probe", about = "Reports what a bottle can reach, as JSON")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One DNS query; exit 0 if any response arrived (whatever the rcode).
    Dns {
        name: String,
        /// A, AAAA, CNAME, TXT, ANY, AXFR, MX, ...
        #[arg(long = "type", default_value = "A")]
        qtype: String,
        /// IP or IP:PORT; default: first nameserver of /etc/resolv.conf.
        #[arg(long)]
        server: Option<String>,
        /// Query over TCP instead of UDP.
        #[arg(long)]
        tcp: bool,
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    /// The same query `count` times in a row; report latency percentiles.
    /// A `{i}` in the name is 1..=count (a fresh name each time).
    DnsBench {
        name: String,
        #[arg(long)]
        server: Option<String>,
        #[arg(long, default_value_t = 1000)]
        count: u32,
        /// Over TCP, a new connection for every query.
        #[arg(long)]
        tcp: bool,
        /// `{i}` runs through 1..=N over and over instead.
        #[arg(long)]
        rotate: Option<u32>,
        /// Report every query's time too (`samples_us`).
        #[arg(long)]
        samples: bool,
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    /// New TCP connections in a row, each closed once connected; report
    /// the connect time's percentiles.
    ConnectBench {
        addr: SocketAddr,
        #[arg(long, default_value_t = 1000)]
        count: u32,
        /// Report every connection's time too (`samples_us`).
        #[arg(long)]
        samples: bool,
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    /// Connect over TCP and read the server's line.
    Tcp {
        addr: SocketAddr,
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    /// Send one datagram (no retry) and wait for one reply.
    Udp {
        addr: SocketAddr,
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    /// Resolve each name and reach it at once over UDP, then TCP.
    Reach {
        /// Name with `{i}` replaced by 1..=count.
        #[arg(long)]
        name_template: String,
        #[arg(long)]
        count: u32,
        #[arg(long)]
        port: u16,
        #[arg(long)]
        server: Option<String>,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Listen forever on TCP and UDP; tell each client `bottle LOCAL sees PEER`.
    Serve { addr: SocketAddr },
    /// (Benchmarks) Relay DNS over UDP from `listen` to `upstream`, one
    /// query at a time, forever: the least a sentry that answers DNS adds.
    DnsRelay {
        listen: SocketAddr,
        upstream: SocketAddr,
    },
    /// Send a ClientHello, an HTTP request or text; read the answer.
    Send {
        addr: SocketAddr,
        /// A TLS ClientHello with this server name ("" for none).
        #[arg(long, group = "what")]
        tls: Option<String>,
        /// An HTTP/1.1 request with this Host.
        #[arg(long, group = "what")]
        http: Option<String>,
        /// These bytes as text.
        #[arg(long, group = "what")]
        text: Option<String>,
        /// QUIC version 1 Initial packets (UDP) carrying a ClientHello with
        /// this server name.
        #[arg(long, group = "what")]
        quic: Option<String>,
        /// Write the first N bytes, wait, then the rest (two segments); with
        /// --quic, cut the ClientHello there into two Initials.
        #[arg(long)]
        split: Option<usize>,
        /// One datagram instead of a TCP connection.
        #[arg(long)]
        udp: bool,
        /// With --quic: first, from the same socket, QUIC Initials for this
        /// name (another connection on the same UDP flow), and their reply.
        #[arg(long, requires = "quic")]
        after_quic: Option<String>,
        /// Over TCP: connect from this local port (one a connection just
        /// used), and end with a reset.
        #[arg(long)]
        from_port: Option<u16>,
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    /// New TCP connections in a row, each sending a ClientHello for `tls`
    /// and waiting for the first byte of the answer; report latency
    /// percentiles (time to first byte, connect included).
    Ttfb {
        addr: SocketAddr,
        #[arg(long)]
        tls: String,
        #[arg(long, default_value_t = 1000)]
        count: u32,
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    /// One TCP connection to an echo server, kept busy (a round trip every
    /// `every_ms`) for `ms`: prints `connected`, then the report when it
    /// broke or the time was up (success: it lasted).
    Hold {
        addr: SocketAddr,
        /// Open with a TLS ClientHello for this name (the name check).
        #[arg(long)]
        tls: Option<String>,
        #[arg(long, default_value_t = 100)]
        every_ms: u64,
        #[arg(long, default_value_t = 60_000)]
        ms: u64,
    },
    /// HTTPS requests in a row, each timed until its whole answer came
    /// (benchmarks): on one connection, or a new one each (`--new`).
    HttpsBench {
        /// Where to connect, e.g. 198.51.100.80:443.
        #[arg(long)]
        connect: SocketAddr,
        /// The server name (SNI and Host).
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "/")]
        path: String,
        /// `NAME: VALUE` (repeatable).
        #[arg(long)]
        header: Vec<String>,
        /// The CA file to trust (PEM).
        #[arg(long)]
        ca: String,
        #[arg(long, default_value_t = 1000)]
        count: u32,
        /// A new TCP and TLS connection for every request.
        #[arg(long)]
        new: bool,
        /// HTTP/1.1 only (default: HTTP/2 if the server takes it).
        #[arg(long)]
        http1: bool,
    },
    /// A datagram every `every_ms` for `ms` from one socket; count replies.
    Flood {
        addr: SocketAddr,
        #[arg(long)]
        ms: u64,
        #[arg(long, default_value_t = 5)]
        every_ms: u64,
    },
    /// Send arbitrary bytes as a DNS query and print the reply as hex.
    RawDns {
        addr: SocketAddr,
        #[arg(long)]
        hex: String,
        /// Over TCP (a 2-byte length prefix is added).
        #[arg(long)]
        tcp: bool,
        /// With --tcp: send the bytes exactly as given, no length prefix.
        #[arg(long, requires = "tcp")]
        no_prefix: bool,
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => {
            return emit(
                Report::usage_error(&format!(
                    "usage: {}",
                    e.to_string().trim().trim_start_matches("error: ")
                )),
                2,
            )
        }
    };
    match dispatch(cli.command) {
        Ok(report) => {
            let status = if report.ok { 0 } else { 1 };
            emit(report, status)
        }
        Err(message) => emit(Report::usage_error(&message), 2),
    }
}

fn emit(report: Report, status: u8) -> ExitCode {
    println!("{}", report.json);
    ExitCode::from(status)
}

/// Runs a command; `Err` is a usage error (bad type, bad server, bad hex).
fn dispatch(command: Command) -> Result<Report, String> {
    let ms = Duration::from_millis;
    Ok(match command {
        Command::Dns {
            name,
            qtype,
            server,
            tcp,
            timeout_ms,
        } => {
            let qtype = RecordType::from_str(&qtype.to_ascii_uppercase())
                .map_err(|_| format!("usage: unknown record type {qtype:?}"))?;
            let server = server_or_default(server.as_deref())?;
            dns::run(&dns::DnsRequest {
                name,
                qtype,
                server,
                tcp,
                timeout: ms(timeout_ms),
            })
        }
        Command::DnsBench {
            name,
            server,
            count,
            tcp,
            rotate,
            samples,
            timeout_ms,
        } => {
            let server = server_or_default(server.as_deref())?;
            let request = dns::DnsRequest {
                name,
                qtype: RecordType::A,
                server,
                tcp,
                timeout: ms(timeout_ms),
            };
            latency::run(&request, latency::Runs { count, samples }, rotate)
        }
        Command::ConnectBench {
            addr,
            count,
            samples,
            timeout_ms,
        } => latency::measure(latency::Runs { count, samples }, |_| {
            net::connect(addr, ms(timeout_ms))
                .map(drop)
                .map_err(|e| net::describe(&format!("connect {addr}"), &e))
        }),
        Command::Tcp { addr, timeout_ms } => conn::run_tcp(addr, ms(timeout_ms)),
        Command::Udp { addr, timeout_ms } => conn::run_udp(addr, ms(timeout_ms)),
        Command::Reach {
            name_template,
            count,
            port,
            server,
            timeout_ms,
        } => {
            let server = server_or_default(server.as_deref())?;
            let template = name_template;
            reach::run(&reach::ReachRequest {
                template,
                count,
                port,
                server,
                timeout: ms(timeout_ms),
            })
        }
        Command::Serve { addr } => conn::serve(addr),
        Command::DnsRelay { listen, upstream } => relay::run(listen, upstream),
        Command::Send {
            addr,
            tls,
            http,
            text,
            quic,
            split,
            udp,
            after_quic,
            from_port,
            timeout_ms,
        } => {
            let named = |name: &str| hello::client_hello(Some(name).filter(|n| !n.is_empty()));
            let data = match (tls, http, text, &quic) {
                (Some(name), ..) => named(&name),
                (_, Some(host), ..) => hello::http_request(&host),
                (_, _, Some(text), _) => text.into_bytes(),
                (.., Some(name)) => named(name),
                _ => return Err("usage: send needs --tls, --http, --text or --quic".into()),
            };
            let before = match &after_quic {
                Some(name) => quic::initials_of(&quic::FIRST_DCID, &named(name), split),
                None => vec![],
            };
            let carrier = match (quic.is_some(), udp) {
                (true, _) => conn::Carrier::Udp {
                    before,
                    datagrams: quic::initials(&data, split),
                },
                (false, true) => conn::Carrier::Udp {
                    before,
                    datagrams: vec![data.clone()],
                },
                (false, false) => conn::Carrier::Tcp { split, from_port },
            };
            conn::run_send(addr, &data, carrier, ms(timeout_ms))
        }
        Command::HttpsBench {
            connect,
            name,
            path,
            header,
            ca,
            count,
            new,
            http1,
        } => https::run(&https::Bench {
            connect,
            name,
            path,
            headers: header,
            ca,
            count,
            new_connections: new,
            http1,
        }),
        Command::Hold {
            addr,
            tls,
            every_ms,
            ms: hold_ms,
        } => {
            let first = match tls {
                Some(name) => hello::client_hello(Some(&name)),
                None => b"hello\n".to_vec(),
            };
            hold::run(addr, &first, ms(every_ms), ms(hold_ms))
        }
        Command::Ttfb {
            addr,
            tls,
            count,
            timeout_ms,
        } => {
            let hello = hello::client_hello(Some(&tls));
            let runs = latency::Runs {
                count,
                samples: false,
            };
            latency::measure(runs, |_| conn::first_byte(addr, &hello, ms(timeout_ms)))
        }
        Command::Flood {
            addr,
            ms: lasting,
            every_ms,
        } => conn::run_flood(addr, ms(lasting), ms(every_ms)),
        Command::RawDns {
            addr,
            hex,
            tcp,
            no_prefix,
            timeout_ms,
        } => {
            let bytes = raw::from_hex(&hex)?;
            let transport = match (tcp, no_prefix) {
                (false, _) => raw::Transport::Udp,
                (true, false) => raw::Transport::Tcp,
                (true, true) => raw::Transport::TcpUnframed,
            };
            raw::run(addr, &bytes, transport, ms(timeout_ms))
        }
    })
}

/// `--server IP[:PORT]`, or the first nameserver of /etc/resolv.conf.
fn server_or_default(server: Option<&str>) -> Result<SocketAddr, String> {
    match server {
        Some(text) => net::parse_addr(text, 53).map_err(|e| format!("usage: --server: {e}")),
        None => resolv::default_server(Path::new(resolv::RESOLV_CONF)),
    }
}
