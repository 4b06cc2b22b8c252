//! rbm-launch for the end-to-end tests: the binary under test
//! (`RBM_LAUNCH`), run from `/`, where the Podman under test runs
//! (`RBM_ENTER`, scripts/podman5's `enter` wrapper) or with `--podman`.

use std::env;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Result};

use crate::bins::workspace_root;
use crate::cmd::{self, Output, Spawned};
use crate::podman::{Podman, PODMAN_ENV};

/// Environment variable naming the rbm-launch binary under test.
pub const LAUNCH_ENV: &str = "RBM_LAUNCH";
/// Environment variable naming a program that runs a command where the
/// Podman under test runs (scripts/podman5's `enter` wrapper).
pub const ENTER_ENV: &str = "RBM_ENTER";
/// Timeout of `rbm-launch stop` on drop.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The rbm-launch binary, run from `/`: through RBM_ENTER if set (it then
/// finds Podman by itself), else with `--podman`.
pub struct Launcher {
    program: String,
    podman: Podman,
    enter: Option<String>,
}

impl Launcher {
    pub fn find(podman: Podman) -> Result<Launcher> {
        let path = match env::var_os(LAUNCH_ENV) {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => workspace_root().join("target/debug/rbm-launch"),
        };
        ensure!(
            path.is_file(),
            "rbm-launch not found at {}: run `cargo build -p rbm-launch`, or set {LAUNCH_ENV}",
            path.display()
        );
        Ok(Launcher {
            program: path.to_string_lossy().into_owned(),
            podman,
            enter: env::var(ENTER_ENV).ok().filter(|e| !e.is_empty()),
        })
    }

    pub fn run(&self, args: &[&str], timeout: Duration) -> Result<Output> {
        self.run_with_env(&[], args, timeout)
    }

    /// `rbm-launch ARGS` with `env` (name, value) added to its environment
    /// (e.g. a credential's variable, or `XDG_STATE_HOME`: where rbm-launch
    /// remembers the yeses).
    pub fn run_with_env(
        &self,
        env: &[(&str, &str)],
        args: &[&str],
        timeout: Duration,
    ) -> Result<Output> {
        let (program, all) = self.command_line_with_env(env, args);
        cmd::run(&program, &all, timeout)
    }

    /// `rbm-launch ARGS` in the background (e.g. `watch`), stopped on drop.
    pub fn spawn(&self, args: &[&str]) -> Result<Spawned> {
        self.spawn_with_env(&[], args)
    }

    /// `spawn` with `env` (name, value) added to rbm-launch's environment.
    pub fn spawn_with_env(&self, env: &[(&str, &str)], args: &[&str]) -> Result<Spawned> {
        let (program, all) = self.command_line_with_env(env, args);
        cmd::spawn(&program, &all)
    }

    /// `command_line` with `env` (name, value) added to rbm-launch's
    /// environment: after `env`'s own options (`-u NAME`, `-C /`), before
    /// the program.
    pub fn command_line_with_env(
        &self,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> (String, Vec<String>) {
        let (program, mut all) = self.command_line(args);
        let at = all
            .iter()
            .position(|a| *a == self.program)
            .expect("the command line runs rbm-launch");
        for (i, (name, value)) in env.iter().enumerate() {
            all.insert(at + i, format!("{name}={value}"));
        }
        (program, all)
    }

    /// `ARGS` where Podman runs (through RBM_ENTER, else here).
    pub fn enter_run(&self, args: &[&str], timeout: Duration) -> Result<Output> {
        match &self.enter {
            Some(enter) => cmd::run(enter, args, timeout),
            None => cmd::run(args[0], &args[1..], timeout),
        }
    }

    /// The program and arguments that run `rbm-launch ARGS` from `/`
    /// (e.g. on a terminal: `pty::Terminal`).
    pub fn command_line(&self, args: &[&str]) -> (String, Vec<String>) {
        let mut all = vec!["-C", "/", self.program.as_str()];
        let program = match &self.enter {
            Some(enter) => {
                all.extend_from_slice(args);
                let mut entered = vec!["env", "-u", PODMAN_ENV];
                entered.extend_from_slice(&all);
                all = entered;
                enter.as_str()
            }
            None => {
                all.extend_from_slice(&["--podman", self.podman.program()]);
                all.extend_from_slice(args);
                "env"
            }
        };
        (
            program.to_string(),
            all.into_iter().map(String::from).collect(),
        )
    }
}

/// Runs `rbm-launch stop` on drop, even after a panic.
pub struct Launched {
    pub launcher: Launcher,
    pub profile: String,
}

impl Drop for Launched {
    fn drop(&mut self) {
        match self.launcher.run(&["stop", &self.profile], STOP_TIMEOUT) {
            Ok(out) if out.success() => {}
            Ok(out) => eprintln!("cleanup: {}", out.stderr.trim()),
            Err(e) => eprintln!("cleanup: {e:#}"),
        }
    }
}
