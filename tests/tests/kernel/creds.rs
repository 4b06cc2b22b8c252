//! Credentials the bottle never holds, in the kernel: the sentry's proxy
//! terminates TLS for the credential hosts only, with the profile CA's
//! certificate, puts the real value into the request the world's HTTPS
//! server gets, and redacts it from what comes back; other names on the
//! same address stay end to end. Real curl and Python in the bottle.

use super::*;
use rbm_tests::certs::TestCa;
use rbm_tests::world::https::{HttpsRequest, HttpsServer};

/// Where the world's HTTPS server answers `api.cred.test`, `b.cred.test`
/// and `plain.cred.test`.
const CRED: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 80);
const API: &str = "api.cred.test";
const B: &str = "b.cred.test";
/// Allowed, no credential: stays end to end.
const PLAIN: &str = "plain.cred.test";
const REAL_A: &str = "sk-real-value-of-key-a-0123456789";
const REAL_B: &str = "sk-real-value-of-key-b-9876543210";
const PH_A: &str = "rbm-placeholder-aaaaaaaaaaaaaaaa";
const PH_B: &str = "rbm-placeholder-bbbbbbbbbbbbbbbb";

/// Makes every TLS context of a Python script (urllib's too) verify as
/// Python 3.13's default context does: with OpenSSL's strict X.509 checks,
/// which refuse, e.g., a leaf without an authorityKeyIdentifier.
const STRICT_AS_PYTHON_3_13: &str = "import ssl\n\
_made = ssl.create_default_context\n\
def _strict(*a, **k):\n    ctx = _made(*a, **k)\n    ctx.verify_flags |= ssl.VERIFY_X509_STRICT\n    return ctx\n\
ssl.create_default_context = _strict\n\
ssl._create_default_https_context = _strict\n";

/// The bottle's view: the rbm CA file, and the world CA file (for what
/// must stay end to end).
struct CredLab {
    lab: Lab,
    rbm_ca: String,
    world_ca: String,
}

fn cred_profile() -> String {
    let head = profile_head("creds");
    format!(
        r#"{head}
[uplink]
dns = "allowlist"
access = "allowlist"
domains = ["{API}", "{B}", "{PLAIN}"]
upstream_dns = ["{DNS}"]

[[credential]]
env = "KEY_A"
from = "env:HOST_KEY_A"
hosts = ["{API}"]

[[credential]]
env = "KEY_B"
from = "env:HOST_KEY_B"
hosts = ["{B}"]
"#
    )
}

fn cred_lab() -> Result<Option<CredLab>> {
    if require_netns("creates network namespaces and nftables tables").is_err() {
        return Ok(None);
    }
    let topo = Topology::builder()
        .world_addrs([IpAddr::V4(DNS), IpAddr::V4(CRED)])
        .build()?;
    let world_ca = TestCa::new("rbm test world CA")?;
    let leaf = world_ca.leaf(&[API, B, PLAIN])?;
    let cert = topo.write_file("world.pem", &leaf.chain_pem)?;
    let key = topo.write_file("world.key", &leaf.key_pem)?;
    let world_ca_file = topo.write_file("world-ca.pem", &world_ca.cert_pem)?;
    let zone = format!("{API}. A 60 {CRED}\n{B}. A 60 {CRED}\n{PLAIN}. A 60 {CRED}\n");
    let world = WorldSetup::new(&zone)
        .dns(sock(DNS, 53))
        .recv([sock(CRED, 80)])
        .https([HttpsServer {
            addr: sock(CRED, 443),
            cert: cert.to_string_lossy().into(),
            key: key.to_string_lossy().into(),
        }])
        .start(&topo)?;
    topo.set_resolv_conf(Ns::Bottle, &format!("nameserver {SENTRY_ENCLAVE_V4}\n"))?;
    let secrets = topo.dir().join("secrets");
    std::fs::create_dir_all(&secrets)?;
    std::fs::write(secrets.join("rbm-cred-KEY_A"), format!("{REAL_A}\n"))?;
    std::fs::write(secrets.join("rbm-cred-KEY_B"), REAL_B)?;
    let passed = serde_json::json!([
        {"env": "KEY_A", "placeholder": PH_A, "upstream_ca": world_ca.cert_pem},
        {"env": "KEY_B", "placeholder": PH_B, "upstream_ca": world_ca.cert_pem},
    ]);
    let agent = Agent::start_with(
        &topo,
        &cred_profile(),
        &[format!("RBM_CREDENTIALS={passed}")],
        &["--secrets".into(), secrets.to_string_lossy().into()],
    )?;
    let rbm_ca = agent.control.with_extension("ca.pem");
    ensure!(
        rbm_ca.is_file(),
        "the agent wrote no CA at {}",
        rbm_ca.display()
    );
    Ok(Some(CredLab {
        rbm_ca: rbm_ca.to_string_lossy().into(),
        world_ca: world_ca_file.to_string_lossy().into(),
        lab: Lab { agent, world, topo },
    }))
}

impl CredLab {
    /// curl in the bottle, trusting `ca`; its output whatever its exit.
    fn curl(&self, ca: &str, args: &[&str]) -> Result<rbm_tests::cmd::Output> {
        let mut all = vec!["-sS", "--max-time", "10", "--cacert", ca];
        all.extend_from_slice(args);
        let out = self.lab.topo.exec(Ns::Bottle, "curl", &all, CMD_TIMEOUT)?;
        eprintln!(
            "curl {}: {:?} {}{}",
            args.join(" "),
            out.status.code(),
            out.stdout,
            out.stderr
        );
        Ok(out)
    }

    /// A Python script in the bottle, trusting the rbm CA through
    /// SSL_CERT_FILE as the bottle's environment would, and verifying
    /// certificates as strictly as Python 3.13 does by default
    /// (`VERIFY_X509_STRICT`, whatever this Python's version); fails
    /// unless it exits 0.
    fn python(&self, script: &str) -> Result<rbm_tests::cmd::Output> {
        let script = format!("{STRICT_AS_PYTHON_3_13}{script}");
        let script = script.as_str();
        let env = format!("SSL_CERT_FILE={}", self.rbm_ca);
        self.lab
            .topo
            .exec(
                Ns::Bottle,
                "env",
                &[env.as_str(), "python3", "-c", script],
                CMD_TIMEOUT,
            )?
            .check()
    }

    /// The requests the world's HTTPS server got for `path`.
    fn got(&self, path: &str) -> Result<Vec<HttpsRequest>> {
        Ok(self
            .lab
            .world
            .https_requests()?
            .into_iter()
            .filter(|r| r.path == path)
            .collect())
    }
}

#[test]
fn the_world_gets_the_real_value_and_the_bottle_only_ever_its_placeholder() -> Result<()> {
    let Some(c) = cred_lab()? else {
        return Ok(());
    };
    let bearer = format!("Authorization: Bearer {PH_A}");
    for (path, version) in [("/h2", "--http2"), ("/h1", "--http1.1")] {
        let url = format!("https://{API}{path}");
        let out = c
            .curl(&c.rbm_ca, &[version, "-H", &bearer, &url])?
            .check()?;
        // The world echoed the real value; the bottle got it redacted.
        assert_eq!(out.stdout, format!("auth: Bearer {PH_A}\n"));
        let got = c.got(path)?;
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].authorization, format!("Bearer {REAL_A}"));
        let want = if version == "--http2" {
            "HTTP/2.0"
        } else {
            "HTTP/1.1"
        };
        assert_eq!(got[0].version, want);
    }
    // Basic credentials carry it encoded.
    let out = c
        .curl(
            &c.rbm_ca,
            &[
                "-u",
                &format!("user:{PH_A}"),
                &format!("https://{API}/basic"),
            ],
        )?
        .check()?;
    let got = c.got("/basic")?;
    assert!(got[0].authorization.starts_with("Basic "), "{got:?}");
    // The echo of the encoding the sentry made comes back as the bottle's
    // own: base64 of user:PH_A.
    assert_eq!(
        out.stdout,
        "auth: Basic dXNlcjpyYm0tcGxhY2Vob2xkZXItYWFhYWFhYWFhYWFhYWFhYQ==\n"
    );

    // Python's own TLS stack and HTTP client, trusting the bundle through
    // SSL_CERT_FILE as the bottle's environment would.
    let script = format!(
        "import urllib.request\nr = urllib.request.Request('https://{API}/python', headers={{'x-api-key': '{PH_A}', 'authorization': 'Bearer {PH_A}'}})\nprint(urllib.request.urlopen(r, timeout=10).read().decode(), end='')\n"
    );
    let out = c.python(&script)?;
    assert_eq!(out.stdout, format!("auth: Bearer {PH_A}\n"));
    assert_eq!(
        c.got("/python")?[0].authorization,
        format!("Bearer {REAL_A}")
    );

    // Node's TLS and HTTP client, trusting the rbm CA through
    // NODE_EXTRA_CA_CERTS as the bottle's environment would.
    let script = format!(
        "require('https').get('https://{API}/node', {{headers: {{authorization: 'Bearer {PH_A}'}}}}, r => {{ let b = ''; r.on('data', d => b += d); r.on('end', () => process.stdout.write(b)); }}).on('error', e => {{ console.error(e); process.exit(1); }});"
    );
    let env = format!("NODE_EXTRA_CA_CERTS={}", c.rbm_ca);
    let out = c
        .lab
        .topo
        .exec(
            Ns::Bottle,
            "env",
            &[env.as_str(), "node", "-e", &script],
            CMD_TIMEOUT,
        )?
        .check()?;
    assert_eq!(out.stdout, format!("auth: Bearer {PH_A}\n"));
    assert_eq!(c.got("/node")?[0].authorization, format!("Bearer {REAL_A}"));
    Ok(())
}

#[test]
fn a_placeholder_in_the_path_or_a_header_the_host_stores_reaches_the_world_as_the_placeholder(
) -> Result<()> {
    let Some(c) = cred_lab()? else {
        return Ok(());
    };
    // A host that publishes what it gets (a path in its logs, an issue's
    // title) must never get the real value there: only Authorization does.
    let path = format!("/issues/{PH_A}");
    for version in ["--http2", "--http1.1"] {
        c.curl(
            &c.rbm_ca,
            &[
                version,
                "-H",
                &format!("Authorization: Bearer {PH_A}"),
                "-H",
                &format!("x-title: {PH_A}"),
                &format!("https://{API}{path}?title={PH_A}"),
            ],
        )?
        .check()?;
    }
    let got = c.got(&path)?;
    assert_eq!(got.len(), 2, "{got:?}");
    for r in &got {
        assert_eq!(r.authorization, format!("Bearer {REAL_A}"), "{r:?}");
        assert_eq!(r.query, format!("title={PH_A}"), "{r:?}");
        assert_eq!(r.headers.get("x-title"), Some(&PH_A.to_string()), "{r:?}");
    }
    Ok(())
}

#[test]
fn an_echo_asked_compressed_comes_back_plain_and_redacted() -> Result<()> {
    let Some(c) = cred_lab()? else {
        return Ok(());
    };
    // The world gzips /gzip for a client that accepts it; the real value
    // in a compressed echo would pass the redactor. curl --compressed asks
    // for gzip (and would decode it): the sentry asks the world for
    // identity instead, and the bottle gets its placeholder back.
    let bearer = format!("Authorization: Bearer {PH_A}");
    for version in ["--http2", "--http1.1"] {
        let url = format!("https://{API}/gzip");
        let out = c
            .curl(&c.rbm_ca, &[version, "--compressed", "-H", &bearer, &url])?
            .check()?;
        assert_eq!(out.stdout, format!("auth: Bearer {PH_A}\n"));
    }
    let got = c.got("/gzip")?;
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got
        .iter()
        .all(|r| r.authorization == format!("Bearer {REAL_A}")));
    Ok(())
}

#[test]
fn a_streamed_answer_arrives_as_it_comes() -> Result<()> {
    let Some(c) = cred_lab()? else {
        return Ok(());
    };
    // Each chunk's arrival time, from Python reading the body as it comes.
    let script = format!(
        "import time, urllib.request\nr = urllib.request.Request('https://{API}/stream', headers={{'authorization': 'Bearer {PH_A}'}})\nresp = urllib.request.urlopen(r, timeout=10)\nt0 = time.monotonic()\nwhile True:\n    line = resp.readline()\n    if not line: break\n    print(round((time.monotonic() - t0) * 1000), line.decode(), end='')\n"
    );
    let out = c.python(&script)?;
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    let at = |i: usize| -> u64 { lines[i].split(' ').next().unwrap().parse().unwrap() };
    assert!(
        at(2) >= at(0) + 400,
        "the chunks came together, not as sent: {}",
        out.stdout
    );
    for line in &lines {
        assert!(line.ends_with(&format!("auth: Bearer {PH_A}")), "{line}");
    }
    Ok(())
}

#[test]
fn a_websocket_upgrade_passes_both_ways() -> Result<()> {
    let Some(c) = cred_lab()? else {
        return Ok(());
    };
    // Python's ssl over a plain socket: an HTTP/1.1 upgrade, then bytes
    // both ways on the upgraded connection.
    let script = format!(
        "import socket, ssl\nctx = ssl.create_default_context(cafile='{ca}')\ns = ctx.wrap_socket(socket.create_connection(('{API}', 443), timeout=10), server_hostname='{API}')\ns.sendall(b'GET /ws HTTP/1.1\\r\\nHost: {API}\\r\\nConnection: Upgrade\\r\\nUpgrade: websocket\\r\\nAuthorization: Bearer {PH_A}\\r\\n\\r\\n')\nhead = b''\nwhile b'\\r\\n\\r\\n' not in head:\n    head += s.recv(1)\nprint(head.split(b'\\r\\n')[0].decode())\ns.sendall(b'ping over the upgrade')\nback = b''\nwhile len(back) < 21:\n    back += s.recv(64)\nprint(back.decode())\n",
        ca = c.rbm_ca
    );
    let out = c.python(&script)?;
    assert_eq!(
        out.stdout,
        "HTTP/1.1 101 Switching Protocols\nping over the upgrade\n"
    );
    assert_eq!(c.got("/ws")?[0].authorization, format!("Bearer {REAL_A}"));
    Ok(())
}

#[test]
fn a_placeholder_for_another_host_is_refused_and_other_names_stay_end_to_end() -> Result<()> {
    let Some(c) = cred_lab()? else {
        return Ok(());
    };
    // KEY_A's placeholder to KEY_B's host: refused, never sent on.
    let out = c.curl(
        &c.rbm_ca,
        &[
            "-H",
            &format!("Authorization: Bearer {PH_A}"),
            &format!("https://{B}/foreign"),
        ],
    )?;
    assert!(
        out.stdout.contains("the placeholder of KEY_A"),
        "{}",
        out.stdout
    );
    assert!(c.got("/foreign")?.is_empty());
    let status = c.lab.status()?;
    let denied = status["denied"].as_array().cloned().unwrap_or_default();
    assert!(
        denied
            .iter()
            .any(|d| d["kind"] == "credential" && d["name"] == B),
        "{denied:?}"
    );
    // Its own placeholder there is swapped for its own value.
    c.curl(
        &c.rbm_ca,
        &[
            "-H",
            &format!("Authorization: Bearer {PH_B}"),
            &format!("https://{B}/own"),
        ],
    )?
    .check()?;
    assert_eq!(c.got("/own")?[0].authorization, format!("Bearer {REAL_B}"));

    // A placeholder in the clear, to an allowed name: the name check
    // refuses it, naming the credential.
    c.curl(
        &c.rbm_ca,
        &[
            "-H",
            &format!("Authorization: Bearer {PH_A}"),
            &format!("http://{PLAIN}/clear"),
        ],
    )?;
    c.lab
        .denial(sock(CRED, 80), "the placeholder of KEY_A, in the clear")?;
    let receipts = c.lab.world.receipts()?;
    assert!(
        receipts
            .iter()
            .all(|r| r.local != sock(CRED, 80) || r.bytes == 0),
        "the world got the placeholder: {receipts:?}"
    );

    // A name without a credential on the same address: the bottle talks
    // to the world's own certificate (the rbm CA does not sign it) and the
    // placeholder goes as it is.
    let url = format!("https://{PLAIN}/plain");
    let refused = c.curl(&c.rbm_ca, &[&url])?;
    assert!(!refused.success(), "the rbm CA must not sign {PLAIN}");
    c.curl(
        &c.world_ca,
        &["-H", &format!("Authorization: Bearer {PH_A}"), &url],
    )?
    .check()?;
    let plain: Vec<HttpsRequest> = c.got("/plain")?;
    assert_eq!(
        plain.last().unwrap().authorization,
        format!("Bearer {PH_A}")
    );
    Ok(())
}

#[test]
fn a_request_for_another_host_or_protocol_inside_a_credential_hosts_tls_gets_no_real_value(
) -> Result<()> {
    let Some(c) = cred_lab()? else {
        return Ok(());
    };
    let bearer = format!("Authorization: Bearer {PH_A}");
    let url = format!("https://{API}/elsewhere");
    for (what, args) in [
        (
            "another Host",
            vec!["--http1.1", "-H", "Host: plain.cred.test"],
        ),
        (
            "another :authority",
            vec!["--http2", "-H", "Host: plain.cred.test"],
        ),
        (
            "an upgrade to h2c",
            vec![
                "--http1.1",
                "-H",
                "Connection: Upgrade",
                "-H",
                "Upgrade: h2c",
            ],
        ),
    ] {
        let mut all = vec!["-w", "%{http_code}", "-H", bearer.as_str()];
        all.extend(args);
        all.push(&url);
        let out = c.curl(&c.rbm_ca, &all)?;
        assert!(out.stdout.ends_with("403"), "{what}: {}", out.stdout);
    }
    assert!(c.got("/elsewhere")?.is_empty(), "the world got a request");
    Ok(())
}

#[test]
fn the_profile_ca_cannot_vouch_for_any_other_name() -> Result<()> {
    let Some(c) = cred_lab()? else {
        return Ok(());
    };
    // Sign with the sentry's own CA key, as if it leaked: a certificate for
    // another name is still refused by the bottle's TLS (name constraints),
    // while one for a credential host is taken.
    let key = std::fs::read_to_string(c.lab.agent.control.with_extension("ca.key"))?;
    let cert = std::fs::read_to_string(&c.rbm_ca)?;
    let ca = TestCa::from_pem(&cert, &key)?;
    let mut servers = Vec::new();
    for (i, host) in ["evil.example.test", API].iter().enumerate() {
        let leaf = ca.leaf(&[host])?;
        servers.push(HttpsServer {
            addr: sock(Ipv4Addr::LOCALHOST, 8443 + i as u16),
            cert: c
                .lab
                .topo
                .write_file(&format!("nc{i}.pem"), &leaf.chain_pem)?
                .to_string_lossy()
                .into(),
            key: c
                .lab
                .topo
                .write_file(&format!("nc{i}.key"), &leaf.key_pem)?
                .to_string_lossy()
                .into(),
        });
    }
    let _local = WorldSetup::new("")
        .https(servers)
        .start_in(&c.lab.topo, Ns::Bottle)?;
    let evil = c.curl(
        &c.rbm_ca,
        &[
            "--resolve",
            "evil.example.test:8443:127.0.0.1",
            "https://evil.example.test:8443/",
        ],
    )?;
    assert!(
        !evil.success(),
        "a certificate outside the name constraints was taken"
    );
    c.curl(
        &c.rbm_ca,
        &[
            "--resolve",
            &format!("{API}:8444:127.0.0.1"),
            &format!("https://{API}:8444/"),
        ],
    )?
    .check()?;
    Ok(())
}
