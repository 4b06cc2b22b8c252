//! `rbm-probe hold`: one long-lived TCP connection to an echo server. It
//! prints `connected` once the first round trip came back, then sends a
//! few bytes every tick and waits for them to come back, until the
//! connection breaks (the report says how) or the time is up.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Report;

#[derive(Serialize)]
struct HoldReport {
    addr: String,
    /// Round trips that came back.
    rounds: u64,
    /// How long the connection carried traffic.
    held_ms: u128,
    /// Why it ended early, if it did.
    error: Option<String>,
}

/// One round trip of `data`: written, then read back whole.
fn round_trip(stream: &mut TcpStream, data: &[u8]) -> std::io::Result<()> {
    stream.write_all(data)?;
    let mut back = vec![0u8; data.len()];
    stream.read_exact(&mut back)?;
    if back != data {
        return Err(std::io::Error::other("the echo differs from what was sent"));
    }
    Ok(())
}

/// `first` opens the connection (e.g. a ClientHello for the name check);
/// success means the connection lasted `hold` without a break.
pub fn run(addr: SocketAddr, first: &[u8], every: Duration, hold: Duration) -> Report {
    let started = Instant::now();
    let mut rounds = 0;
    let result = (|| -> std::io::Result<()> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.set_nodelay(true)?;
        round_trip(&mut stream, first)?;
        println!("connected");
        std::io::stdout().flush()?;
        while started.elapsed() < hold {
            std::thread::sleep(every);
            round_trip(&mut stream, format!("tick {rounds}\n").as_bytes())?;
            rounds += 1;
        }
        Ok(())
    })();
    let report = HoldReport {
        addr: addr.to_string(),
        rounds,
        held_ms: started.elapsed().as_millis(),
        error: result.as_ref().err().map(|e| e.to_string()),
    };
    Report::new(&report, result.is_ok())
}
