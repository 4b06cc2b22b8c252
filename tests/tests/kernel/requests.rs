//! Request rules in the kernel: read-only GitHub. The world serves git's
//! smart HTTP (`git http-backend` behind its TLS) for two organisations;
//! the profile lets the bottle read and clone anything and push only to
//! `my-org`. Real git and curl in the bottle, through the sentry's proxy
//! and its CA. Each test is named after what a hijacked agent would try.

use std::path::Path;

use super::*;
use rbm_tests::certs::TestCa;
use rbm_tests::world::git;
use rbm_tests::world::https::HttpsServer;

/// Where the world serves `github.test` (git) and `alt.test` (allowed,
/// no rules: the same front end under another name).
const GH_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 90);
const ALT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 91);
const GH: &str = "github.test";
const ALT: &str = "alt.test";
/// Allowed, no rules, a CNAME of github.test: an alias that would open
/// github's address on every port.
const ALIAS: &str = "www.github.test";
/// Allowed, no rules, its own A record to github.test's address (a
/// shared front end's address under another name).
const SHARED: &str = "shared.test";

struct GitLab {
    lab: Lab,
    rbm_ca: String,
    world_ca: String,
    repos: std::path::PathBuf,
}

fn rules_profile() -> String {
    let head = profile_head("rules");
    format!(
        r#"{head}
[uplink]
dns = "allowlist"
access = "allowlist"
domains = ["{GH}", "{ALT}", "{ALIAS}", "{SHARED}"]
upstream_dns = ["{DNS}"]

[[requests]]
hosts = ["{GH}"]
allow = ["GET *", "HEAD *", "POST /*/*/git-upload-pack", "POST /my-org/*/git-receive-pack"]
"#
    )
}

fn git_lab() -> Result<Option<GitLab>> {
    if require_netns("creates network namespaces and nftables tables").is_err() {
        return Ok(None);
    }
    let topo = Topology::builder()
        .world_addrs([IpAddr::V4(DNS), IpAddr::V4(GH_ADDR), IpAddr::V4(ALT_ADDR)])
        .build()?;
    let world_ca = TestCa::new("rbm test world CA")?;
    let leaf = world_ca.leaf(&[GH, ALT])?;
    let cert = topo.write_file("world.pem", &leaf.chain_pem)?;
    let world_ca_file = topo.write_file("world-ca.pem", &world_ca.cert_pem)?;
    let key = topo.write_file("world.key", &leaf.key_pem)?;
    let repos = topo.dir().join("repos");
    git::make_repos(&repos, &[("my-org", "tool"), ("other-org", "tool")])?;
    let zone = format!("{GH}. A 60 {GH_ADDR}\n{ALT}. A 60 {ALT_ADDR}\n{ALIAS}. CNAME 60 {GH}.\n{SHARED}. A 60 {GH_ADDR}\n");
    let server = |addr| HttpsServer {
        addr: sock(addr, 443),
        cert: cert.to_string_lossy().into(),
        key: key.to_string_lossy().into(),
    };
    let world = WorldSetup::new(&zone)
        .dns(sock(DNS, 53))
        .https([server(GH_ADDR), server(ALT_ADDR)])
        .recv([sock(GH_ADDR, 80), sock(GH_ADDR, 22)])
        .git(GH, &repos)
        .start(&topo)?;
    topo.set_resolv_conf(Ns::Bottle, &format!("nameserver {SENTRY_ENCLAVE_V4}\n"))?;
    let cas = serde_json::json!({ GH: world_ca.cert_pem });
    let agent = Agent::start_with(
        &topo,
        &rules_profile(),
        &[format!("RBM_UPSTREAM_CAS={cas}")],
        &[],
    )?;
    let rbm_ca = agent.control.with_extension("ca.pem");
    ensure!(
        rbm_ca.is_file(),
        "the agent wrote no CA at {}",
        rbm_ca.display()
    );
    Ok(Some(GitLab {
        rbm_ca: rbm_ca.to_string_lossy().into(),
        world_ca: world_ca_file.to_string_lossy().into(),
        repos,
        lab: Lab { agent, world, topo },
    }))
}

impl GitLab {
    /// A command in the bottle trusting the rbm CA (as the bottle's
    /// environment does), git with no user configuration.
    fn run(&self, args: &[&str]) -> Result<rbm_tests::cmd::Output> {
        let ca_env = format!("GIT_SSL_CAINFO={}", self.rbm_ca);
        let mut all = vec![
            "-i",
            "PATH=/usr/local/bin:/usr/bin:/bin",
            "HOME=/nonexistent",
            "GIT_CONFIG_NOSYSTEM=1",
            "GIT_TERMINAL_PROMPT=0",
            ca_env.as_str(),
        ];
        all.extend_from_slice(args);
        let out = self.lab.topo.exec(Ns::Bottle, "env", &all, CMD_TIMEOUT)?;
        eprintln!(
            "{}: {:?}\n{}{}",
            args.join(" "),
            out.status.code(),
            out.stdout,
            out.stderr
        );
        Ok(out)
    }

    fn git(&self, dir: &Path, args: &[&str]) -> Result<rbm_tests::cmd::Output> {
        let dir = dir.to_string_lossy();
        let mut all = vec![
            "git",
            "-C",
            &dir,
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
        ];
        all.extend_from_slice(args);
        self.run(&all)
    }

    fn curl(&self, args: &[&str]) -> Result<rbm_tests::cmd::Output> {
        let mut all = vec!["curl", "-sS", "--max-time", "10", "--cacert", &self.rbm_ca];
        all.extend_from_slice(args);
        self.run(&all)
    }

    /// How many requests of a push (its discovery or its POST) to a path
    /// holding `org` reached the world.
    fn pushes_seen(&self, org: &str) -> Result<usize> {
        Ok(self
            .lab
            .world
            .https_requests()?
            .into_iter()
            .filter(|r| {
                r.path.contains(org)
                    && (r.path.contains("receive-pack") || r.query.contains("receive-pack"))
            })
            .count())
    }

    fn refs(&self, org: &str) -> Result<std::collections::BTreeMap<String, String>> {
        git::refs(&git::repo_dir(&self.repos, org, "tool"))
    }
}

#[test]
fn a_push_outside_my_org_is_refused_with_the_reason_and_changes_nothing() -> Result<()> {
    let Some(g) = git_lab()? else {
        return Ok(());
    };
    let work = g.lab.topo.dir().join("work");
    std::fs::create_dir_all(&work)?;
    for (org, version) in [("other-org", "HTTP/2"), ("my-org", "HTTP/1.1")] {
        let url = format!("https://{GH}/{org}/tool.git");
        let dir = work.join(org);
        let dir_s = dir.to_string_lossy().to_string();
        let out = g.run(&[
            "git",
            "-c",
            &format!("http.version={version}"),
            "clone",
            &url,
            &dir_s,
        ])?;
        ensure!(out.status.success(), "clone of {org} over {version} failed");
        std::fs::write(dir.join("change.txt"), "from the bottle\n")?;
        g.git(&dir, &["add", "change.txt"])?.check()?;
        g.git(&dir, &["commit", "-q", "-m", "bottle"])?.check()?;
    }
    // Fetch works too.
    g.git(&work.join("other-org"), &["fetch", "origin"])?
        .check()?;

    let before = g.refs("other-org")?;
    let out = g.git(&work.join("other-org"), &["push", "origin", "HEAD:main"])?;
    ensure!(!out.status.success(), "the push to other-org succeeded");
    ensure!(
        out.stderr.contains("remote: rbm: ") && out.stderr.contains("git-receive-pack"),
        "git did not show the sentry's reason: {}",
        out.stderr
    );
    ensure!(out.stderr.contains("403"), "{}", out.stderr);
    assert_eq!(g.refs("other-org")?, before, "other-org's refs changed");
    assert_eq!(
        g.pushes_seen("other-org")?,
        0,
        "a request of the push reached the world"
    );

    let before = g.refs("my-org")?;
    g.git(&work.join("my-org"), &["push", "origin", "HEAD:main"])?
        .check()?;
    let after = g.refs("my-org")?;
    assert_ne!(after, before, "the push to my-org did not land");
    let head = g
        .git(&work.join("my-org"), &["rev-parse", "HEAD"])?
        .check()?;
    assert_eq!(after["refs/heads/main"], head.stdout.trim());

    // The deny log has the refused request, by kind, host and path.
    let status = g.lab.agent.status(&g.lab.topo)?;
    let denied = status["denied"].as_array().cloned().unwrap_or_default();
    let request = denied.iter().find(|d| d["kind"] == "request");
    let request = request.with_context(|| format!("no request denial in {denied:?}"))?;
    assert_eq!(request["name"], GH);
    assert!(
        str_field(request, "reason")?.contains("/other-org/tool.git/"),
        "{request}"
    );
    Ok(())
}

#[test]
fn a_forbidden_request_on_a_kept_alive_connection_or_http2_stream_is_refused_alone() -> Result<()> {
    let Some(g) = git_lab()? else {
        return Ok(());
    };
    let ok = format!("https://{GH}/my-org/tool.git/HEAD");
    let push = format!("https://{GH}/other-org/tool.git/git-receive-pack");
    for version in ["--http1.1", "--http2"] {
        let shown = "%{http_code} %{num_connects}\\n";
        let out = g
            .curl(&[
                version,
                "-o",
                "/dev/null",
                "-w",
                shown,
                &ok,
                "--next",
                "-sS",
                "--cacert",
                &g.rbm_ca,
                version,
                "-o",
                "/dev/null",
                "-w",
                shown,
                "-X",
                "POST",
                "--data",
                "0000",
                &push,
                "--next",
                "-sS",
                "--cacert",
                &g.rbm_ca,
                version,
                "-o",
                "/dev/null",
                "-w",
                shown,
                &ok,
            ])?
            .check()?;
        // One connection, three requests: the second alone refused.
        assert_eq!(out.stdout, "200 1\n403 0\n200 0\n", "{version}");
    }
    Ok(())
}

#[test]
fn a_host_other_than_the_connections_name_or_an_escaping_path_is_refused() -> Result<()> {
    let Some(g) = git_lab()? else {
        return Ok(());
    };
    let code = |args: &[&str]| -> Result<String> {
        let mut all = vec!["-o", "/dev/null", "-w", "%{http_code}"];
        all.extend_from_slice(args);
        Ok(g.curl(&all)?.stdout)
    };
    // Host names the other (allowed, unruled) name inside github.test's TLS.
    assert_eq!(
        code(&[
            "-H",
            &format!("Host: {ALT}"),
            &format!("https://{GH}/my-org/tool.git/HEAD")
        ])?,
        "403"
    );
    for path in [
        "/my-org/../other-org/tool.git/git-receive-pack",
        "/my-org/%2e%2e/other-org/tool.git/git-receive-pack",
        "/my-org%2F..%2Fother-org/tool.git/git-receive-pack",
        "//other-org//tool.git/git-receive-pack",
    ] {
        let url = format!("https://{GH}{path}");
        assert_eq!(
            code(&["--path-as-is", "-X", "POST", "--data", "0000", &url])?,
            "403",
            "{path}"
        );
    }
    assert_eq!(g.pushes_seen("")?, 0, "a push request reached the world");
    Ok(())
}

#[test]
fn github_fronted_through_another_allowed_names_address_is_refused() -> Result<()> {
    let Some(g) = git_lab()? else {
        return Ok(());
    };
    // alt.test's address serves github.test too (one front end): the
    // connection goes there, to an address the rules' proxy never sees.
    let fronted = format!("{GH}:443:{ALT}:443");
    let url = format!("https://{GH}/other-org/tool.git/info/refs?service=git-receive-pack");
    let out = g.curl(&[
        "--connect-to",
        &fronted,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &url,
    ])?;
    ensure!(
        !out.status.success() && out.stdout != "200",
        "the fronted request got through: {} {}",
        out.stdout,
        out.stderr
    );
    assert_eq!(
        g.pushes_seen("")?,
        0,
        "the fronted request reached the world"
    );
    // The other name itself still works, end to end (the world's own
    // certificate, not the sentry's).
    let out = g.curl(&[
        "--cacert",
        &g.world_ca,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("https://{ALT}/"),
    ])?;
    assert_eq!(out.check()?.stdout, "200");
    Ok(())
}

#[test]
fn another_name_at_githubs_address_is_not_passed_on_untouched() -> Result<()> {
    let Some(g) = git_lab()? else {
        return Ok(());
    };
    // github.test's address is the proxy's; a connection there that
    // names alt.test (allowed, no rules) and asks for github.test inside
    // would be passed on untouched, and the world's front end routes by
    // Host: a push past the rules.
    g.curl(&[
        "-o",
        "/dev/null",
        &format!("https://{GH}/my-org/tool.git/HEAD"),
    ])?
    .check()?;
    let to_github = format!("{ALT}:443:{GH_ADDR}:443");
    let url = format!("https://{ALT}/other-org/tool.git/info/refs?service=git-receive-pack");
    let host = format!("Host: {GH}");
    let out = g.curl(&[
        "-k",
        "--connect-to",
        &to_github,
        "-H",
        &host,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &url,
    ])?;
    ensure!(
        !out.status.success(),
        "the request got an answer: {}",
        out.stdout
    );
    assert_eq!(
        g.pushes_seen("other-org")?,
        0,
        "the request reached the world"
    );
    Ok(())
}

#[test]
fn an_alias_of_github_does_not_open_its_address_on_other_ports() -> Result<()> {
    let Some(g) = git_lab()? else {
        return Ok(());
    };
    // www.github.test is a CNAME of github.test: its answer is github's
    // address, which must not open for plain HTTP or SSH (a git push over
    // SSH would pass no rule).
    for url in [format!("http://{ALIAS}/"), format!("telnet://{ALIAS}:22")] {
        let out = g.curl(&["--connect-timeout", "2", "-o", "/dev/null", &url])?;
        ensure!(!out.status.success(), "{url} connected");
    }
    let reached: Vec<_> = g
        .lab
        .world
        .receipts()?
        .into_iter()
        .filter(|r| r.local.ip() == IpAddr::V4(GH_ADDR))
        .collect();
    assert!(reached.is_empty(), "{reached:?}");
    // Its TLS goes to the proxy, whose rules hold for github.test's name.
    let out = g.curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("https://{GH}/my-org/tool.git/HEAD"),
    ])?;
    assert_eq!(out.check()?.stdout, "200");
    Ok(())
}

#[test]
fn a_shared_address_stays_with_the_proxy_across_a_reload() -> Result<()> {
    let Some(g) = git_lab()? else {
        return Ok(());
    };
    // github.test's address, then the same address answered for
    // shared.test (no rules) last; a reload rebuilds the proxy's set.
    g.curl(&[
        "-o",
        "/dev/null",
        &format!("https://{GH}/my-org/tool.git/HEAD"),
    ])?
    .check()?;
    let probe = static_bin("rbm-probe")?.to_string_lossy().into_owned();
    let server = SENTRY_ENCLAVE_V4.to_string();
    g.lab
        .topo
        .exec(
            Ns::Bottle,
            &probe,
            &["dns", SHARED, "--server", &server],
            CMD_TIMEOUT,
        )?
        .check()?;
    let more = rules_profile().replace("\"HEAD *\",", "\"HEAD *\", \"OPTIONS *\",");
    let out = g.lab.agent.reload(&g.lab.topo, &more)?;
    ensure!(out.status.success(), "reload: {}{}", out.stdout, out.stderr);
    // shared.test's TLS with github.test inside: never past the rules.
    let url = format!("https://{SHARED}/other-org/tool.git/info/refs?service=git-receive-pack");
    let host = format!("Host: {GH}");
    let out = g.curl(&[
        "-k",
        "-H",
        &host,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &url,
    ])?;
    ensure!(
        !out.status.success(),
        "the request got an answer: {}",
        out.stdout
    );
    assert_eq!(
        g.pushes_seen("other-org")?,
        0,
        "the request reached the world"
    );
    Ok(())
}
