//! The world's query log: one line `PROTO QNAME QTYPE` per DNS query
//! received (e.g. `udp api.example.test. A`), written before the answer is
//! sent, so a test can prove a name was asked upstream, or never was.
//!
//! The log is a file, or stdout (`-`) with each line prefixed by
//! [`STDOUT_PREFIX`]: a world in a container on a remote Podman has no
//! file the test can read, but `podman logs` brings its stdout anywhere.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use std::net::SocketAddr;

use anyhow::{anyhow, Context, Result};

/// What starts a query line on stdout.
pub const STDOUT_PREFIX: &str = "query ";

/// Appends lines to the log, each with a single unbuffered write.
pub struct QueryLogWriter {
    out: Mutex<Box<dyn Write + Send>>,
    prefix: &'static str,
}

impl QueryLogWriter {
    /// A log in the file `path`, or on stdout if `path` is `-`.
    pub fn create(path: &Path) -> Result<QueryLogWriter> {
        if path == Path::new("-") {
            return Ok(QueryLogWriter {
                out: Mutex::new(Box::new(std::io::stdout())),
                prefix: STDOUT_PREFIX,
            });
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open query log {}", path.display()))?;
        Ok(QueryLogWriter {
            out: Mutex::new(Box::new(file)),
            prefix: "",
        })
    }

    pub fn record(&self, line: &str) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let line = format!("{}{line}\n", self.prefix);
        if let Err(e) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
            eprintln!("rbm-world: cannot write the query log: {e}");
        }
    }
}

/// One logged query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedQuery {
    pub proto: String,
    /// As received (case preserved), with its trailing dot.
    pub name: String,
    pub qtype: String,
}

impl LoggedQuery {
    /// Whether this query asked for `name` (case-insensitive, trailing dot optional).
    pub fn is_for(&self, name: &str) -> bool {
        self.name
            .trim_end_matches('.')
            .eq_ignore_ascii_case(name.trim_end_matches('.'))
    }
}

/// Reads a query log (a missing file is an empty log: nothing asked yet).
pub fn read_query_log(path: &Path) -> Result<Vec<LoggedQuery>> {
    parse_query_log(&read_log(path)?)
}

/// The receipts in a log file (a missing file: none yet).
pub fn read_receipts(path: &Path) -> Result<Vec<Receipt>> {
    parse_receipts(&read_log(path)?)
}

/// A log file's text; a missing file is an empty log.
fn read_log(path: &Path) -> Result<String> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// What a "what did you get" server logged for one connection or datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub proto: String,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub bytes: usize,
}

const RECEIPT: &str = "recv ";

/// The queries in a log file's text (receipts are not queries).
pub fn parse_query_log(text: &str) -> Result<Vec<LoggedQuery>> {
    text.lines()
        .filter(|l| {
            !l.trim().is_empty()
                && !l.starts_with(RECEIPT)
                && !l.starts_with(super::https::HTTPS_LINE)
        })
        .map(parse_line)
        .collect()
}

/// The receipts in a log file's text.
pub fn parse_receipts(text: &str) -> Result<Vec<Receipt>> {
    text.lines()
        .filter_map(|l| l.strip_prefix(RECEIPT))
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let [proto, local, peer, bytes] = fields[..] else {
                return Err(anyhow!(
                    "receipt is not `recv PROTO LOCAL PEER BYTES`: {l:?}"
                ));
            };
            Ok(Receipt {
                proto: proto.into(),
                local: local.parse().context("receipt's local address")?,
                peer: peer.parse().context("receipt's peer address")?,
                bytes: bytes.parse().context("receipt's byte count")?,
            })
        })
        .collect()
}

/// The queries a world logged on stdout (other lines, e.g. `ready`, are not queries).
pub fn queries_in_output(stdout: &str) -> Result<Vec<LoggedQuery>> {
    parse_query_log(&world_lines(stdout))
}

/// The HTTPS requests a world logged on stdout.
pub fn https_in_output(stdout: &str) -> Vec<super::https::HttpsRequest> {
    super::https::parse_https(&world_lines(stdout))
}

/// The receipts a world logged on stdout.
pub fn receipts_in_output(stdout: &str) -> Result<Vec<Receipt>> {
    parse_receipts(&world_lines(stdout))
}

fn world_lines(stdout: &str) -> String {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(STDOUT_PREFIX))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn parse_line(line: &str) -> Result<LoggedQuery> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [proto, name, qtype] = fields[..] else {
        return Err(anyhow!(
            "query log line is not `PROTO QNAME QTYPE`: {line:?}"
        ));
    };
    Ok(LoggedQuery {
        proto: proto.into(),
        name: name.into(),
        qtype: qtype.into(),
    })
}

/// Whether any logged query asked for `name`.
pub fn was_asked(log: &[LoggedQuery], name: &str) -> bool {
    log.iter().any(|q| q.is_for(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back() {
        let dir = crate::files::temp_dir().unwrap();
        let path = dir.path().join("queries.log");
        assert!(read_query_log(&path).unwrap().is_empty());
        let log = QueryLogWriter::create(&path).unwrap();
        log.record("udp Api.Example.test. A");
        log.record("tcp big.example.test. AAAA");
        let read = read_query_log(&path).unwrap();
        assert_eq!(read.len(), 2);
        assert!(was_asked(&read, "api.example.test"));
        assert!(!was_asked(&read, "example.test"));
        assert_eq!(read[1].proto, "tcp");
        assert_eq!(read[1].qtype, "AAAA");
    }

    #[test]
    fn queries_on_stdout_are_told_from_other_lines() {
        let out = "ready\nquery udp Api.Example.test. A\nsomething else\nquery tcp b.test. TXT\nquery recv tcp 198.51.100.70:443 10.243.0.2:4000 1800\n";
        let read = queries_in_output(out).unwrap();
        assert_eq!(read.len(), 2);
        let receipts = receipts_in_output(out).unwrap();
        assert_eq!(receipts.len(), 1);
        assert_eq!(receipts[0].bytes, 1800);
        assert_eq!(receipts[0].local, "198.51.100.70:443".parse().unwrap());
        assert!(was_asked(&read, "api.example.test"));
        assert_eq!(read[1].qtype, "TXT");
    }
}
