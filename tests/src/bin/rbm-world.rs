//! rbm-world: the tests' "internet" in one process. Authoritative DNS for a
//! zone file (UDP and TCP on each --dns address, every query logged), and
//! TCP/UDP servers that answer `world LOCAL sees PEER`, and HTTPS servers
//! (with stand-ins for the model APIs and for PyPI, and git sites). Prints `ready` once
//! every socket is bound; exits on SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use rbm_tests::world::log::QueryLogWriter;
use rbm_tests::world::server::{raise_nofile_limit, serve, WorldConfig};
use rbm_tests::world::zone::Zone;

#[derive(Parser)]
#[command(name = "rbm-world", about = "A small internet for rbm's tests")]
struct Cli {
    /// Zone file: one `NAME TYPE TTL VALUE` record per line (A, AAAA, CNAME, TXT).
    #[arg(
        long,
        required_unless_present = "zone_text",
        conflicts_with = "zone_text"
    )]
    zone: Option<PathBuf>,
    /// The zone itself, as the file would hold it (for a world in a container
    /// on a Podman that cannot see the test's files).
    #[arg(long)]
    zone_text: Option<String>,
    /// Serve DNS on this address, UDP and TCP (repeatable).
    #[arg(long)]
    dns: Vec<SocketAddr>,
    /// Serve `world LOCAL sees PEER` over TCP on this address (repeatable).
    #[arg(long)]
    tcp: Vec<SocketAddr>,
    /// Serve `world LOCAL sees PEER` over UDP on this address (repeatable).
    #[arg(long)]
    udp: Vec<SocketAddr>,
    /// Serve "what did you get" over TCP and UDP on this address: read
    /// what a client sends, log `recv PROTO LOCAL PEER BYTES`, answer
    /// `world LOCAL got N bytes` (repeatable).
    #[arg(long)]
    recv: Vec<SocketAddr>,
    /// Serve "ok" over TCP on this address as soon as a client's first
    /// bytes arrive (the time-to-first-byte benchmark; repeatable).
    #[arg(long)]
    answer: Vec<SocketAddr>,
    /// Echo over TCP on this address: every byte back, for as long as the
    /// client stays (long-lived connections; repeatable).
    #[arg(long)]
    echo: Vec<SocketAddr>,
    /// HTTPS on ADDR with the certificate chain and key in these PEM files
    /// (`ADDR,CERT_FILE,KEY_FILE`): logs `https` and the request as JSON
    /// (version, host, path, query, headers) per request and echoes the
    /// Authorization header (repeatable).
    #[arg(long)]
    https: Vec<rbm_tests::world::https::HttpsServer>,
    /// The real API key: the HTTPS servers' stand-ins for the model APIs
    /// (Anthropic, OpenAI, Gemini) answer only requests that carry it, and
    /// refuse every key without it.
    #[arg(long, value_name = "KEY")]
    api_key: Option<String>,
    /// Serve the bare repositories under DIR (`DIR/ORG/REPO.git`) as git
    /// smart HTTP (`git http-backend`, pushes allowed) to every HTTPS
    /// request whose host is HOST, on any of the --https servers
    /// (repeatable). Needs `git` on PATH.
    #[arg(long, value_name = "HOST=DIR")]
    git: Vec<rbm_tests::world::git_http::GitSite>,
    /// Append one line `PROTO QNAME QTYPE` per DNS query received; `-`:
    /// print `query PROTO QNAME QTYPE` on stdout instead.
    #[arg(long)]
    query_log: PathBuf,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let config = WorldConfig {
        zone: match (&cli.zone, &cli.zone_text) {
            (Some(file), _) => Zone::load(file)?,
            (None, Some(text)) => Zone::parse(text).context("in --zone-text")?,
            (None, None) => unreachable!("clap requires --zone or --zone-text"),
        },
        log: QueryLogWriter::create(&cli.query_log)?,
        dns: cli.dns,
        tcp: cli.tcp,
        udp: cli.udp,
        recv: cli.recv,
        answer: cli.answer,
        echo: cli.echo,
        https: cli.https,
        api_key: cli.api_key,
        git: cli.git,
    };
    raise_nofile_limit();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(config))
}
