//! Benchmark (not a test): rbm's request rules against mitmproxy with an
//! addon that checks the same method and path rules, in the same
//! namespaces, in one run, rounds interleaved. The host has the rules of
//! read-only GitHub plus the two paths the client asks for; every request
//! is checked (and allowed). Modes as `credential_proxy`: small requests
//! on one reused HTTP/2 connection (rate, p50/p99), a new TCP and TLS
//! connection for every request (rate), one 64 MiB answer (throughput).
//! "direct" is the client in the sentry's namespace straight to the world:
//! the added latency is proxy minus direct.
//! Run as root after scripts/build-static, with mitmproxy installed
//! (`scripts/deps mitmproxy`):
//! `cargo bench -p rbm-tests --bench request_rules`.

use anyhow::{bail, Result};
use rbm_tests::agent::Agent;
use rbm_tests::bench;
use rbm_tests::require_netns;

#[path = "proxy/mod.rs"]
mod proxy;
use proxy::{Side, DNS, NAME, ROUNDS};

const RULES: &[&str] = &[
    "GET /small",
    "GET /big",
    "HEAD *",
    "POST /*/*/git-upload-pack",
    "POST /my-org/*/git-receive-pack",
];

/// The same rules in mitmproxy: the path normalised (unreserved escapes
/// decoded, dot segments and double slashes resolved), `*` within a
/// segment, 403 for the rest; bodies streamed, as rbm streams them.
const RULES_ADDON: &str = r#"
import fnmatch, os, posixpath, re
from mitmproxy import http

RULES = [r.split(" ", 1) for r in os.environ["RBM_RULES"].split("|")]
UNRESERVED = re.compile(r"%(2[dDeE]|5[fF]|7[eE]|[3][0-9]|[46][1-9a-fA-F]|[57][0-9aA])")

def normalise(path):
    path = UNRESERVED.sub(lambda m: chr(int(m.group(1), 16)), path.split("?", 1)[0])
    out = posixpath.normpath(path)
    return out if out != "//" else "/"

def allowed(method, path):
    segs = path.strip("/").split("/")
    for m, p in RULES:
        if m != "*" and m != method:
            continue
        if p == "*":
            return True
        want = p.strip("/").split("/")
        if len(want) == len(segs) and all(fnmatch.fnmatchcase(s, w) for s, w in zip(segs, want)):
            return True
    return False

def requestheaders(flow):
    flow.request.stream = True

def request(flow):
    if not allowed(flow.request.method, normalise(flow.request.path)):
        flow.response = http.Response.make(403, b"refused\n", {"content-type": "text/plain"})

def responseheaders(flow):
    flow.response.stream = True
"#;

fn profile() -> String {
    let allow: Vec<String> = RULES.iter().map(|r| format!("{r:?}")).collect();
    bench::profile(&[NAME], DNS)
        + &format!(
            "[[requests]]\nhosts = [\"{NAME}\"]\nallow = [{}]\n",
            allow.join(", ")
        )
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
    let cas = serde_json::json!({ NAME: b.world_ca.cert_pem });
    let header = "x-bench: 1";
    let (mut direct, mut mitm, mut rbm) = (Side::default(), Side::default(), Side::default());
    for round in 1..=ROUNDS {
        eprintln!("round {round}/{ROUNDS}: direct");
        direct.add(&proxy::direct(&b, header)?);
        eprintln!("round {round}/{ROUNDS}: mitmproxy");
        let env = [format!("RBM_RULES={}", RULES.join("|"))];
        mitm.add(&proxy::mitmproxy(&b, RULES_ADDON, &env, header)?);
        eprintln!("round {round}/{ROUNDS}: rbm");
        let agent = Agent::start_with(
            &b.topo,
            &profile(),
            &[format!("RBM_UPSTREAM_CAS={cas}")],
            &[],
        )?;
        rbm.add(&proxy::rbm(
            &b,
            &agent.control.with_extension("ca.pem"),
            header,
        )?);
        drop(agent);
    }
    proxy::report("request rules", &direct, &mitm, &rbm);
    Ok(())
}
