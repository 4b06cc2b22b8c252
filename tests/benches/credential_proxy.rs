//! Benchmark (not a test): rbm's credential proxy against mitmproxy doing
//! the same swap (the placeholder in a header becomes the real value, the
//! real value is redacted from answers, streamed), in the same namespaces,
//! in one run, rounds interleaved. From the bottle to the world's HTTPS
//! server for `api.cred.test`:
//! - small requests on one reused connection (HTTP/2): rate and latency;
//! - a new TCP and TLS connection for every request: rate;
//! - one 64 MiB answer: throughput.
//!
//! "direct" is the same client in the sentry's namespace straight to the
//! world (no proxy): the added latency is proxy minus direct. mitmproxy
//! runs as a reverse proxy on the sentry's enclave address (its best case:
//! no redirect, no name check); rbm as it runs for a bottle.
//! Run as root after scripts/build-static, with mitmproxy installed
//! (`scripts/deps mitmproxy`):
//! `cargo bench -p rbm-tests --bench credential_proxy`.

use anyhow::{bail, Result};
use rbm_tests::agent::Agent;
use rbm_tests::bench;
use rbm_tests::require_netns;

#[path = "proxy/mod.rs"]
mod proxy;
use proxy::{Side, DNS, NAME, ROUNDS};

/// Of equal length: mitmproxy's streamed replacement keeps the answer's
/// Content-Length, which a shorter value would then break.
const REAL: &str = "sk-bench-real-value-0123456789abcdef";
const PLACEHOLDER: &str = "rbm-bench-placeholder-0123456789abcd";

const SWAP_ADDON: &str = r#"
import os
PH, REAL = os.environ["RBM_PH"], os.environ["RBM_REAL"]
PHB, REALB = PH.encode(), REAL.encode()

def request(flow):
    for k, v in list(flow.request.headers.items()):
        if PH in v:
            flow.request.headers[k] = v.replace(PH, REAL)

def responseheaders(flow):
    flow.response.stream = lambda chunk: chunk.replace(REALB, PHB)
"#;

fn profile() -> String {
    bench::profile(&[NAME], DNS)
        + &format!("[[credential]]\nenv = \"KEY\"\nfrom = \"env:KEY\"\nhosts = [\"{NAME}\"]\n")
}

fn main() -> Result<()> {
    if require_netns("the benchmark makes network namespaces").is_err() {
        return Ok(());
    }
    if std::process::Command::new("mitmdump")
        .arg("--version")
        .output()
        .is_err()
    {
        bail!("mitmproxy is not installed: run `scripts/deps mitmproxy`");
    }
    let b = proxy::setup()?;
    let secrets = b.topo.dir().join("secrets");
    std::fs::create_dir_all(&secrets)?;
    std::fs::write(secrets.join("rbm-cred-KEY"), REAL)?;
    let passed = serde_json::json!([{
        "env": "KEY", "placeholder": PLACEHOLDER, "upstream_ca": b.world_ca.cert_pem,
    }]);
    let header = format!("authorization: Bearer {PLACEHOLDER}");
    let (mut direct, mut mitm, mut rbm) = (Side::default(), Side::default(), Side::default());
    for round in 1..=ROUNDS {
        eprintln!("round {round}/{ROUNDS}: direct");
        direct.add(&proxy::direct(&b, &header)?);
        eprintln!("round {round}/{ROUNDS}: mitmproxy");
        let env = [format!("RBM_PH={PLACEHOLDER}"), format!("RBM_REAL={REAL}")];
        mitm.add(&proxy::mitmproxy(&b, SWAP_ADDON, &env, &header)?);
        eprintln!("round {round}/{ROUNDS}: rbm");
        let agent = Agent::start_with(
            &b.topo,
            &profile(),
            &[format!("RBM_CREDENTIALS={passed}")],
            &["--secrets".into(), secrets.to_string_lossy().into()],
        )?;
        rbm.add(&proxy::rbm(
            &b,
            &agent.control.with_extension("ca.pem"),
            &header,
        )?);
        drop(agent);
    }
    proxy::report("credential proxy", &direct, &mitm, &rbm);
    Ok(())
}
