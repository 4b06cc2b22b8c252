//! `rbm-probe dns-bench` and `ttfb`: `count` queries (or connections) in a
//! row, for the benchmarks (measurements, never assertions). A `{i}` in a
//! DNS name is replaced by 1..=count, so that every query asks a fresh name.
//!
//! Report: `{"count","answered","mean_us","p50_us","p90_us","p99_us","error"}`.

use std::time::Instant;

use serde::Serialize;

use super::dns::{resolve, DnsRequest};
use super::Report;

#[derive(Debug, Default, Serialize)]
pub struct LatencyReport {
    pub count: u32,
    pub answered: u32,
    pub mean_us: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    /// The first failure, if any query got no answer.
    pub error: Option<String>,
}

pub fn run(request: &DnsRequest, count: u32) -> Report {
    measure(count, |i| {
        let mut query = request.clone();
        query.name = request.name.replace("{i}", &i.to_string());
        match resolve(&query).error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })
}

/// Times `count` calls of `once(i)` (i = 1..=count) and reports the
/// percentiles of those that succeeded, and the first failure.
pub fn measure(count: u32, mut once: impl FnMut(u32) -> Result<(), String>) -> Report {
    let mut samples = Vec::with_capacity(count as usize);
    let mut report = LatencyReport {
        count,
        ..LatencyReport::default()
    };
    for i in 1..=count {
        let start = Instant::now();
        let result = once(i);
        let us = start.elapsed().as_micros() as u64;
        match result {
            Err(e) => {
                report.error.get_or_insert(e);
            }
            Ok(()) => samples.push(us),
        }
    }
    report.answered = samples.len() as u32;
    samples.sort_unstable();
    if !samples.is_empty() {
        report.mean_us = samples.iter().sum::<u64>() / samples.len() as u64;
        report.p50_us = percentile(&samples, 50);
        report.p90_us = percentile(&samples, 90);
        report.p99_us = percentile(&samples, 99);
    }
    let ok = report.error.is_none();
    Report::new(&report, ok)
}

/// The `pct`-th percentile of sorted, non-empty `samples`.
fn percentile(samples: &[u64], pct: usize) -> u64 {
    samples[((samples.len() - 1) * pct) / 100]
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_of_sorted_samples() {
        let s: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&s, 50), 50);
        assert_eq!(percentile(&s, 99), 99);
        assert_eq!(percentile(&[7], 90), 7);
    }
}
