//! What the benchmarks (`tests/benches/`) share: the agent's profile, the
//! probe and iperf3 run from a namespace, the machine they ran on, and
//! statistics over rounds. Measurements, never assertions.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::Value;

use crate::cmd;
use crate::netns::{Ns, Topology, BOTTLE_V4, SENTRY_ENCLAVE_V4};

/// Timeout of one probe run (thousands of queries or connections).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(600);

/// An allowlist profile for the agent in a [`Topology`]'s sentry: DNS and
/// access limited to `domains`, asked of `upstream`. It ends inside
/// `[uplink]`, so a caller may append uplink keys, then further tables.
pub fn profile(domains: &[&str], upstream: Ipv4Addr) -> String {
    let domains: Vec<String> = domains.iter().map(|d| format!("{d:?}")).collect();
    format!(
        "moniker = \"bench\"\n[bottle]\nimage = \"unused\"\n[enclave]\nsubnet = \"10.242.0.0/24\"\n\
         sentry_ip = \"{SENTRY_ENCLAVE_V4}\"\nbottle_ip = \"{BOTTLE_V4}\"\n[uplink]\ndns = \"allowlist\"\n\
         access = \"allowlist\"\ndomains = [{}]\nupstream_dns = [\"{upstream}\"]\n",
        domains.join(", ")
    )
}

/// Runs the static rbm-probe with `args` in `ns`; its JSON report, or an
/// error unless it succeeded.
pub fn probe<S: AsRef<str>>(topo: &Topology, ns: Ns, args: &[S]) -> Result<Value> {
    let run = topo.probe(ns, args, PROBE_TIMEOUT)?;
    let shown: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    ensure!(
        run.ok(),
        "rbm-probe {shown:?} in {ns:?} failed: {}\nstderr: {}",
        run.json,
        run.output.stderr
    );
    Ok(run.json)
}

/// Received bits per second of one iperf3 run from `ns` to `server`.
pub fn iperf(topo: &Topology, ns: Ns, server: Ipv4Addr, streams: u32, seconds: u32) -> Result<f64> {
    let (server, streams, seconds) = (server.to_string(), streams.to_string(), seconds.to_string());
    let args = ["-c", &server, "-t", &seconds, "-P", &streams, "-J"];
    let out = topo.exec(ns, "iperf3", &args, Duration::from_secs(60))?;
    let json: Value = serde_json::from_str(&out.stdout)
        .with_context(|| format!("iperf3 printed no JSON: {}", out.stderr))?;
    json["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .with_context(|| format!("no throughput in {json}"))
}

/// A number field of a probe report (NaN if missing).
pub fn field(report: &Value, key: &str) -> f64 {
    report[key].as_f64().unwrap_or(f64::NAN)
}

/// The median of `values` (NaN if there are none).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Latency samples pooled over rounds (microseconds).
#[derive(Debug, Default, Clone)]
pub struct Pooled(Vec<u64>);

impl Pooled {
    /// Adds the `samples_us` of a probe report run with `--samples`.
    pub fn add(&mut self, report: &Value) -> Result<()> {
        let samples = report["samples_us"]
            .as_array()
            .with_context(|| format!("no samples_us in the probe's report: {report}"))?;
        self.0.extend(samples.iter().filter_map(Value::as_u64));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `pct`-th percentile (NaN if empty); 100 is the maximum.
    pub fn percentile(&self, pct: usize) -> f64 {
        let mut v = self.0.clone();
        v.sort_unstable();
        match v.is_empty() {
            true => f64::NAN,
            false => crate::probe::latency::percentile(&v, pct) as f64,
        }
    }
}

/// `NAME`'s value as a count, or `default` (smoke runs ask for fewer).
pub fn count_from_env(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One line naming the machine and the time of the run: CPUs, kernel, date.
pub fn machine() -> String {
    let text = |program: &str, args: &[&str]| {
        cmd::run(program, args, Duration::from_secs(10))
            .map(|out| out.stdout.trim().to_string())
            .unwrap_or_else(|e| format!("({program}: {e})"))
    };
    format!(
        "{} CPUs, kernel {}, {}",
        text("nproc", &[]),
        text("uname", &["-r"]),
        text("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_samples_give_percentiles_over_every_round() {
        let mut pooled = Pooled::default();
        pooled
            .add(&serde_json::json!({ "samples_us": [5, 1, 3] }))
            .unwrap();
        pooled
            .add(&serde_json::json!({ "samples_us": [2, 4] }))
            .unwrap();
        assert_eq!(pooled.len(), 5);
        assert_eq!(pooled.percentile(50), 3.0);
        assert_eq!(pooled.percentile(100), 5.0);
        assert!(pooled.add(&serde_json::json!({ "p50_us": 1 })).is_err());
    }

    #[test]
    fn the_profile_allows_exactly_the_given_names() {
        let text = profile(&["a.test", "*.b.test"], Ipv4Addr::new(192, 0, 2, 53));
        assert!(text.contains("domains = [\"a.test\", \"*.b.test\"]"));
        assert!(text.ends_with("upstream_dns = [\"192.0.2.53\"]\n"));
    }
}
