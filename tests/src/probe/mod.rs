//! rbm-probe, what runs inside a bottle and reports what it could reach.
//! Every command yields one JSON object (printed on stdout) and success or
//! failure (exit 0 or 1). Only numeric addresses: no NSS, no getaddrinfo.

pub mod conn;
pub mod dns;
pub mod hello;
pub mod hold;
pub mod https;
pub mod latency;
pub mod net;
pub mod quic;
pub mod raw;
pub mod reach;
pub mod relay;
pub mod resolv;

use serde::Serialize;
use serde_json::Value;

/// A probe's result: its JSON report and whether it counts as success.
#[derive(Debug)]
pub struct Report {
    pub json: Value,
    pub ok: bool,
}

impl Report {
    pub fn new<T: Serialize>(report: &T, ok: bool) -> Report {
        let json = serde_json::to_value(report).unwrap_or_else(
            |e| serde_json::json!({ "error": format!("cannot serialize report: {e}") }),
        );
        Report { json, ok }
    }

    /// A report for a command that could not even start (bad arguments).
    pub fn usage_error(message: &str) -> Report {
        Report {
            json: serde_json::json!({ "error": message }),
            ok: false,
        }
    }
}
