//! `rbm-probe dns-bench`, `ttfb` and `connect-bench`: `count` queries (or
//! connections) in a row, for the benchmarks (measurements, never
//! assertions). A `{i}` in a DNS name is replaced by 1..=count, so that
//! every query asks a fresh name, or with `rotate` N by 1..=N over and over.
//!
//! Report: `{"count","answered","mean_us","p50_us","p90_us","p99_us","max_us",
//! "error"}`, and with `samples` every answered query's time in order
//! (`samples_us`), so that a benchmark can pool runs.

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
    pub max_us: u64,
    /// Every successful call's time, in order, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples_us: Option<Vec<u64>>,
    /// The first failure, if any query got no answer.
    pub error: Option<String>,
}

/// How a benchmark runs: how many calls, and what to report.
#[derive(Debug, Clone, Copy)]
pub struct Runs {
    pub count: u32,
    /// Report every call's time too.
    pub samples: bool,
}

/// `request` `runs.count` times; `{i}` in its name is 1..=count, or
/// 1..=rotate over and over.
pub fn run(request: &DnsRequest, runs: Runs, rotate: Option<u32>) -> Report {
    measure(runs, |i| {
        let mut query = request.clone();
        query.name = request.name.replace("{i}", &rotated(i, rotate).to_string());
        match resolve(&query).error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })
}

/// The `i`-th (1-based) name's number: `i`, or 1..=`rotate` over and over.
fn rotated(i: u32, rotate: Option<u32>) -> u32 {
    match rotate {
        Some(n) if n > 0 => (i - 1) % n + 1,
        _ => i,
    }
}

/// Times `runs.count` calls of `once(i)` (i = 1..=count) and reports the
/// percentiles of those that succeeded, and the first failure.
pub fn measure(runs: Runs, mut once: impl FnMut(u32) -> Result<(), String>) -> Report {
    let count = runs.count;
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
    if runs.samples {
        report.samples_us = Some(samples.clone());
    }
    samples.sort_unstable();
    if !samples.is_empty() {
        report.mean_us = samples.iter().sum::<u64>() / samples.len() as u64;
        report.p50_us = percentile(&samples, 50);
        report.p90_us = percentile(&samples, 90);
        report.p99_us = percentile(&samples, 99);
        report.max_us = samples[samples.len() - 1];
    }
    let ok = report.error.is_none();
    Report::new(&report, ok)
}

/// The `pct`-th percentile of sorted, non-empty `samples`.
pub fn percentile(samples: &[u64], pct: usize) -> u64 {
    samples[((samples.len() - 1) * pct) / 100]
}

#[cfg(test)]
mod tests {
    use super::{percentile, rotated};

    #[test]
    fn rotation_cycles_through_the_first_names() {
        let got: Vec<u32> = (1..=5).map(|i| rotated(i, Some(2))).collect();
        assert_eq!(got, vec![1, 2, 1, 2, 1]);
        assert_eq!(rotated(7, None), 7);
    }

    #[test]
    fn percentiles_of_sorted_samples() {
        let s: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&s, 50), 50);
        assert_eq!(percentile(&s, 99), 99);
        assert_eq!(percentile(&[7], 90), 7);
    }
}
