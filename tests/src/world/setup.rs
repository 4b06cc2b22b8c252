//! Starting rbm-world from a test: what it serves, and its query log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};

use super::log::{read_query_log, read_receipts, was_asked, LoggedQuery, Receipt};
use crate::bins::static_bin;
use crate::cmd::Spawned;
use crate::netns::{Ns, Topology};

/// How long rbm-world may take to bind everything and print `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

static WORLDS: AtomicUsize = AtomicUsize::new(0);

/// What a world serves: the zone text and the addresses of each server.
#[derive(Debug, Clone, Default)]
pub struct WorldSetup {
    pub zone: String,
    pub dns: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    pub udp: Vec<SocketAddr>,
    pub recv: Vec<SocketAddr>,
    pub answer: Vec<SocketAddr>,
    pub echo: Vec<SocketAddr>,
    pub https: Vec<super::https::HttpsServer>,
    /// The key the model API stand-ins take.
    pub api_key: Option<String>,
    /// The git sites the HTTPS servers serve.
    pub git: Vec<super::git_http::GitSite>,
}

impl WorldSetup {
    pub fn new(zone: &str) -> WorldSetup {
        WorldSetup {
            zone: zone.to_string(),
            ..WorldSetup::default()
        }
    }

    pub fn dns(mut self, addr: SocketAddr) -> Self {
        self.dns.push(addr);
        self
    }

    pub fn tcp(mut self, addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.tcp.extend(addrs);
        self
    }

    pub fn udp(mut self, addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.udp.extend(addrs);
        self
    }

    pub fn recv(mut self, addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.recv.extend(addrs);
        self
    }

    pub fn echo(mut self, addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.echo.extend(addrs);
        self
    }

    pub fn https(mut self, servers: impl IntoIterator<Item = super::https::HttpsServer>) -> Self {
        self.https.extend(servers);
        self
    }

    /// The real key of the model API stand-ins.
    pub fn api_key(mut self, key: &str) -> Self {
        self.api_key = Some(key.to_string());
        self
    }

    /// Serves the bare repositories under `root` (`root/ORG/REPO.git`,
    /// see `world::git`) as git smart HTTP to every HTTPS request for
    /// `host`; `root` must be a path the world sees.
    pub fn git(mut self, host: &str, root: &Path) -> Self {
        self.git.push(super::git_http::GitSite {
            host: host.to_string(),
            root: root.to_path_buf(),
        });
        self
    }

    pub fn answer(mut self, addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.answer.extend(addrs);
        self
    }

    /// The rbm-world command line arguments (zone and log paths given).
    pub fn args(&self, zone_file: &Path, query_log: &Path) -> Vec<String> {
        let zone = ["--zone".into(), zone_file.display().to_string()];
        self.args_with(zone, &query_log.display().to_string())
    }

    /// The arguments for a world that needs no file: the zone on the
    /// command line, the query log on stdout (see `world::log`).
    pub fn args_without_files(&self) -> Vec<String> {
        self.args_with(["--zone-text".into(), self.zone.clone()], "-")
    }

    fn args_with(&self, zone: [String; 2], query_log: &str) -> Vec<String> {
        let mut args = zone.to_vec();
        args.extend(["--query-log".into(), query_log.to_string()]);
        for (flag, addrs) in [
            ("--dns", &self.dns),
            ("--tcp", &self.tcp),
            ("--udp", &self.udp),
            ("--recv", &self.recv),
            ("--answer", &self.answer),
            ("--echo", &self.echo),
        ] {
            for addr in addrs {
                args.push(flag.into());
                args.push(addr.to_string());
            }
        }
        for server in &self.https {
            args.push("--https".into());
            args.push(server.to_string());
        }
        if let Some(key) = &self.api_key {
            args.extend(["--api-key".into(), key.clone()]);
        }
        for site in &self.git {
            args.extend(["--git".into(), site.to_string()]);
        }
        args
    }

    /// Writes the zone file and starts the static rbm-world in the world
    /// namespace of `topo`, waiting until it is ready.
    pub fn start(&self, topo: &Topology) -> Result<RunningWorld> {
        self.start_in(topo, Ns::World)
    }

    /// Like [`WorldSetup::start`], in namespace `ns` of `topo` (e.g. servers
    /// inside the sentry, to show a filter, not a closed port, stops a client).
    pub fn start_in(&self, topo: &Topology, ns: Ns) -> Result<RunningWorld> {
        let n = WORLDS.fetch_add(1, Ordering::Relaxed);
        let zone = topo.write_file(&format!("world-{n}.zone"), &self.zone)?;
        let log = topo.dir().join(format!("world-{n}.queries"));
        let bin = static_bin("rbm-world")?;
        let mut process = topo.spawn(ns, &bin.to_string_lossy(), &self.args(&zone, &log))?;
        process
            .wait_for_line("ready", READY_TIMEOUT)
            .context("starting rbm-world")?;
        Ok(RunningWorld { process, log })
    }
}

/// A running rbm-world (stopped on drop) and its query log.
pub struct RunningWorld {
    pub process: Spawned,
    pub log: PathBuf,
}

impl RunningWorld {
    /// Every query received so far.
    pub fn queries(&self) -> Result<Vec<LoggedQuery>> {
        read_query_log(&self.log)
    }

    /// What the "what did you get" servers received so far.
    pub fn receipts(&self) -> Result<Vec<Receipt>> {
        read_receipts(&self.log)
    }

    /// The HTTPS requests the world's servers got so far.
    pub fn https_requests(&self) -> Result<Vec<super::https::HttpsRequest>> {
        let text = match std::fs::read_to_string(&self.log) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(super::https::parse_https(&text))
    }

    /// Whether `name` was ever asked (case-insensitive).
    pub fn was_asked(&self, name: &str) -> Result<bool> {
        Ok(was_asked(&self.queries()?, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_key_reaches_the_world_with_or_without_files() {
        let setup = WorldSetup::new("a.test A 60 192.0.2.1").api_key("sk-real");
        for args in [
            setup.args(Path::new("z"), Path::new("q")),
            setup.args_without_files(),
        ] {
            let at = args.iter().position(|a| a == "--api-key").unwrap();
            assert_eq!(args[at + 1], "sk-real");
        }
        let none = WorldSetup::new("").args_without_files();
        assert!(!none.iter().any(|a| a == "--api-key"));
    }

    #[test]
    fn each_git_site_reaches_the_world_as_host_and_root() {
        let args = WorldSetup::new("")
            .git("github.test", Path::new("/srv/git"))
            .git("gitlab.test", Path::new("/srv/lab"))
            .args_without_files();
        let sites: Vec<&str> = args
            .windows(2)
            .filter(|w| w[0] == "--git")
            .map(|w| w[1].as_str())
            .collect();
        assert_eq!(sites, ["github.test=/srv/git", "gitlab.test=/srv/lab"]);
    }
}
