//! Self-test of the world's git sites: real `git clone`, `fetch` and `push`
//! over the world's TLS, HTTP/2 and HTTP/1.1, to an rbm-world on loopback
//! (no namespaces, no sentry). The site's host is `localhost` here, with a
//! leaf for it from the test's CA; the sentry's tests give it names such
//! as `github.test` through the sentry's DNS.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Result};
use rbm_tests::certs::TestCa;
use rbm_tests::cmd::{run, spawn, Output, Spawned};
use rbm_tests::files::{temp_dir, write_file};
use rbm_tests::require_tools;
use rbm_tests::world::git::{make_repos, refs, repo_dir, BRANCH, README};
use rbm_tests::world::https::{parse_https, HttpsRequest, HttpsServer};
use rbm_tests::world::setup::WorldSetup;
use tempfile::TempDir;

const HOST: &str = "localhost";
const GIT_TIMEOUT: Duration = Duration::from_secs(60);
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// An rbm-world serving `my-org/tool` and `other-org/tool` as git over
/// HTTPS on a free loopback port; stopped on drop.
struct GitWorld {
    _world: Spawned,
    dir: TempDir,
    port: u16,
    log: PathBuf,
    ca: PathBuf,
}

impl GitWorld {
    fn start() -> Result<Option<GitWorld>> {
        if require_tools(&["git"]).is_err() {
            return Ok(None);
        }
        let dir = temp_dir()?;
        let root = dir.path().join("repos");
        make_repos(&root, &[("my-org", "tool"), ("other-org", "tool")])?;
        let ca = TestCa::new("world git test CA")?;
        let leaf = ca.leaf(&[HOST])?;
        let ca_file = write_file(dir.path(), "ca.pem", &ca.cert_pem)?;
        let port = free_port()?;
        let server = HttpsServer {
            addr: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port),
            cert: write_file(dir.path(), "leaf.pem", &leaf.chain_pem)?
                .display()
                .to_string(),
            key: write_file(dir.path(), "leaf.key", &leaf.key_pem)?
                .display()
                .to_string(),
        };
        let zone = write_file(dir.path(), "world.zone", "")?;
        let log = dir.path().join("world.log");
        let args = WorldSetup::new("")
            .https([server])
            .git(HOST, &root)
            .args(&zone, &log);
        let mut world = spawn(env!("CARGO_BIN_EXE_rbm-world"), &args)?;
        world.wait_for_line("ready", READY_TIMEOUT)?;
        Ok(Some(GitWorld {
            _world: world,
            dir,
            port,
            log,
            ca: ca_file,
        }))
    }

    fn url(&self, repo: &str) -> String {
        format!("https://{HOST}:{}/{repo}.git", self.port)
    }

    fn repo(&self, org: &str, repo: &str) -> PathBuf {
        repo_dir(&self.dir.path().join("repos"), org, repo)
    }

    fn work(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs git as a client that trusts only the test's CA, with no
    /// configuration of this machine's user and no proxy.
    fn git(&self, args: &[&str]) -> Result<Output> {
        let ca = format!("GIT_SSL_CAINFO={}", self.ca.display());
        let home = format!("HOME={}", self.dir.path().display());
        let mut line = vec![
            "-u",
            "https_proxy",
            "-u",
            "HTTPS_PROXY",
            "-u",
            "all_proxy",
            "-u",
            "ALL_PROXY",
            &ca,
            &home,
            "GIT_CONFIG_NOSYSTEM=1",
            "GIT_TERMINAL_PROMPT=0",
            "git",
            "-c",
            "user.name=test",
            "-c",
            "user.email=test@rbm.test",
        ];
        line.extend(args);
        let out = run("env", &line, GIT_TIMEOUT)?;
        ensure!(
            out.success(),
            "`git {}` failed ({}):\n{}",
            args.join(" "),
            out.status,
            out.stderr.trim()
        );
        Ok(out)
    }

    /// The id `rev` names in the clone at `dir`.
    fn rev(&self, dir: &Path, rev: &str) -> Result<String> {
        let dir = dir.display().to_string();
        Ok(self
            .git(&["-C", &dir, "rev-parse", rev])?
            .stdout
            .trim()
            .to_string())
    }

    /// Every HTTPS request the world logged so far.
    fn requests(&self) -> Result<Vec<HttpsRequest>> {
        Ok(parse_https(&std::fs::read_to_string(&self.log)?))
    }
}

/// A port no one listens on now (the world binds it a moment later).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

#[test]
fn a_clone_over_http2_and_over_http1_gets_the_worlds_main() -> Result<()> {
    let Some(world) = GitWorld::start()? else {
        return Ok(());
    };
    let main = refs(&world.repo("my-org", "tool"))?[&format!("refs/heads/{BRANCH}")].clone();
    for (version, logged) in [("HTTP/2", "HTTP/2.0"), ("HTTP/1.1", "HTTP/1.1")] {
        let dir = world.work(&format!("clone-{}", logged.replace('/', "")));
        let dir_s = dir.display().to_string();
        let http_version = format!("http.version={version}");
        world.git(&[
            "-c",
            &http_version,
            "clone",
            "-q",
            &world.url("my-org/tool"),
            &dir_s,
        ])?;
        assert_eq!(world.rev(&dir, "HEAD")?, main, "{version}");
        let readme = std::fs::read_to_string(dir.join(README))?;
        assert_eq!(readme, "# my-org/tool\n");
        let requests = world.requests()?;
        let mine: Vec<_> = requests.iter().filter(|r| r.version == logged).collect();
        assert!(
            mine.iter()
                .any(|r| r.path == "/my-org/tool.git/info/refs" && r.query.contains("upload-pack")),
            "{version}: {requests:#?}"
        );
        assert!(
            mine.iter()
                .any(|r| r.path == "/my-org/tool.git/git-upload-pack"),
            "{version}: {requests:#?}"
        );
        // Protocol v2 reaches the backend: what today's git speaks.
        let host = format!("{HOST}:{}", world.port);
        assert!(
            mine.iter().all(|r| r.host == host
                && r.headers.get("git-protocol").map(String::as_str) == Some("version=2")),
            "{version}: {requests:#?}"
        );
    }
    Ok(())
}

#[test]
fn a_push_moves_the_worlds_main_and_no_other_repository() -> Result<()> {
    let Some(world) = GitWorld::start()? else {
        return Ok(());
    };
    let (mine, other) = (
        world.repo("my-org", "tool"),
        world.repo("other-org", "tool"),
    );
    let (mine_before, other_before) = (refs(&mine)?, refs(&other)?);
    let dir = world.work("clone");
    let dir_s = dir.display().to_string();
    world.git(&["clone", "-q", &world.url("my-org/tool"), &dir_s])?;
    std::fs::write(dir.join("change.txt"), "pushed through the world\n")?;
    world.git(&["-C", &dir_s, "add", "change.txt"])?;
    world.git(&["-C", &dir_s, "commit", "-q", "-m", "a change"])?;
    world.git(&["-C", &dir_s, "push", "-q", "origin", BRANCH])?;

    let mine_after = refs(&mine)?;
    assert_ne!(mine_after, mine_before);
    assert_eq!(
        mine_after[&format!("refs/heads/{BRANCH}")],
        world.rev(&dir, "HEAD")?
    );
    assert_eq!(refs(&other)?, other_before);
    let requests = world.requests()?;
    assert!(
        requests
            .iter()
            .any(|r| r.path == "/my-org/tool.git/git-receive-pack"),
        "{requests:#?}"
    );
    Ok(())
}

#[test]
fn a_gzipped_fetch_request_is_understood() -> Result<()> {
    let Some(world) = GitWorld::start()? else {
        return Ok(());
    };
    // Forty branches on forty commits: the clone's wants pass 1 KiB, which
    // git sends gzip-compressed.
    let seed = world.work("seed");
    let seed_s = seed.display().to_string();
    world.git(&["clone", "-q", &world.url("my-org/tool"), &seed_s])?;
    for i in 0..40 {
        let branch = format!("b{i}");
        world.git(&["-C", &seed_s, "checkout", "-q", "-b", &branch, BRANCH])?;
        world.git(&[
            "-C",
            &seed_s,
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            &branch,
        ])?;
    }
    world.git(&["-C", &seed_s, "push", "-q", "origin", "--all"])?;
    let pushed = refs(&world.repo("my-org", "tool"))?;
    assert_eq!(pushed.len(), 41, "{pushed:#?}");

    let dir = world.work("mirror");
    let dir_s = dir.display().to_string();
    world.git(&["clone", "-q", "--mirror", &world.url("my-org/tool"), &dir_s])?;
    assert_eq!(refs(&dir)?, pushed);
    let requests = world.requests()?;
    assert!(
        requests.iter().any(|r| r.path.ends_with("/git-upload-pack")
            && r.headers.get("content-encoding").map(String::as_str) == Some("gzip")),
        "no gzip request: {requests:#?}"
    );
    Ok(())
}

#[test]
fn a_repository_the_site_lacks_is_not_found() -> Result<()> {
    let Some(world) = GitWorld::start()? else {
        return Ok(());
    };
    let err = world
        .git(&["ls-remote", &world.url("my-org/missing")])
        .unwrap_err();
    assert!(format!("{err:#}").contains("not found"), "{err:#}");
    Ok(())
}
