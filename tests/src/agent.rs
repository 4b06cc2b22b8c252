//! The real static rbm-agent running in a topology's sentry namespace:
//! started with a profile file, waited for until `status` says ready.

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::Value;

use crate::bins::static_bin;
use crate::cmd::{Output, Spawned};
use crate::json::parse_json;
use crate::netns::{Ns, Topology};

/// How long the agent may take to say ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Timeout of one `rbm-agent status` call.
const STATUS_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Agent {
    pub process: Spawned,
    pub control: PathBuf,
    /// The arguments it was started with.
    args: Vec<String>,
}

fn agent_bin() -> Result<String> {
    Ok(static_bin("rbm-agent")?.to_string_lossy().into_owned())
}

/// Writes `profile` into the topology's directory; returns the arguments of
/// `rbm-agent run` for it and the control socket path.
fn run_args(topo: &Topology, profile: &str) -> Result<(Vec<String>, PathBuf)> {
    let profile = topo.write_file("profile.toml", profile)?;
    let control = topo.dir().join("agent.sock");
    let args = vec![
        "run".to_string(),
        "--profile".to_string(),
        profile.to_string_lossy().into_owned(),
        "--control".to_string(),
        control.to_string_lossy().into_owned(),
    ];
    Ok((args, control))
}

impl Agent {
    /// Writes `profile` into the topology's directory, starts
    /// `rbm-agent run` in the sentry and waits until it is ready.
    pub fn start(topo: &Topology, profile: &str) -> Result<Agent> {
        Agent::start_with(topo, profile, &[], &[])
    }

    /// `start`, with `env` (`NAME=VALUE`) in the agent's environment and
    /// `extra` arguments for `rbm-agent run`.
    pub fn start_with(
        topo: &Topology,
        profile: &str,
        env: &[String],
        extra: &[String],
    ) -> Result<Agent> {
        let (run, control) = run_args(topo, profile)?;
        let mut args: Vec<String> = env.to_vec();
        args.push(agent_bin()?);
        args.extend(run);
        args.extend(extra.iter().cloned());
        let process = topo.spawn(Ns::Sentry, "env", &args)?;
        let mut agent = Agent {
            process,
            control,
            args,
        };
        agent.wait_ready(topo)?;
        Ok(agent)
    }

    fn wait_ready(&mut self, topo: &Topology) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if !self.process.is_running() {
                thread::sleep(Duration::from_millis(100)); // let stderr drain
                bail!(
                    "`{}` exited before it was ready\nstderr: {}",
                    self.process.command(),
                    self.process.stderr()
                );
            }
            if self.status_output(topo)?.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "rbm-agent not ready after {READY_TIMEOUT:?}\nstderr: {}",
                    self.process.stderr()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `rbm-agent reload` in the sentry with `profile`, whatever its exit code.
    pub fn reload(&self, topo: &Topology, profile: &str) -> Result<Output> {
        let file = topo.write_file("reload.toml", profile)?;
        let control = self.control.to_string_lossy();
        topo.exec(
            Ns::Sentry,
            &agent_bin()?,
            &[
                "reload",
                "--profile",
                &file.to_string_lossy(),
                "--control",
                &control,
            ],
            STATUS_TIMEOUT,
        )
    }

    /// Stops the agent (SIGTERM: its filter stays) and starts it again
    /// with the profile it was first given, until it is ready.
    pub fn restart(&mut self, topo: &Topology) -> Result<()> {
        self.process.stop(Duration::from_secs(5))?;
        self.process = topo.spawn(Ns::Sentry, "env", &self.args)?;
        self.wait_ready(topo)
    }

    /// `rbm-agent status --json` in the sentry, whatever its exit code.
    pub fn status_output(&self, topo: &Topology) -> Result<Output> {
        let control = self.control.to_string_lossy();
        topo.exec(
            Ns::Sentry,
            &agent_bin()?,
            &["status", "--json", "--control", &control],
            STATUS_TIMEOUT,
        )
    }

    /// The status report; fails unless the agent is ready.
    pub fn status(&self, topo: &Topology) -> Result<Value> {
        let out = self.status_output(topo)?.check()?;
        parse_json(&out.stdout)
    }
}
