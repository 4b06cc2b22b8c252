//! The sentry's PID 1: keeps one agent running in the sentry's own network
//! namespace. When the agent dies (a crash, a kill), the filter it left
//! stays in force (the kernel keeps the table; held packets are dropped)
//! and a new agent is started at once: it installs its lockdown before
//! anything else, then the whole filter, and serves again. The container is
//! never restarted: a new container would get a new network namespace,
//! which forwards for its first milliseconds before any agent runs.
//!
//! SIGTERM or SIGINT stop the agent and then the supervisor.

use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// Environment variable telling the agent how often it was restarted.
pub const RESTARTS_ENV: &str = "RBM_RESTARTS";
/// The hidden flag that makes `rbm-agent run` the agent itself.
pub const WORKER_FLAG: &str = "--worker";

/// The first restart is immediate; repeated crashes back off to this.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// An agent that ran this long resets the backoff.
const STABLE: Duration = Duration::from_secs(30);

static STOPPING: AtomicBool = AtomicBool::new(false);
static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop(_: libc::c_int) {
    STOPPING.store(true, Ordering::SeqCst);
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

/// Whether this process should supervise: it is the container's first
/// process and was not started as the worker.
pub fn should_supervise(args: &[String]) -> bool {
    std::process::id() == 1 && !args.iter().any(|a| a == WORKER_FLAG)
}

/// Runs `this program ARGS --worker` again and again until told to stop.
pub fn supervise(args: &[String]) -> ExitCode {
    // SAFETY: installing a plain handler that only touches atomics and kill.
    unsafe {
        libc::signal(libc::SIGTERM, on_stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_stop as *const () as libc::sighandler_t);
    }
    let mut restarts: u64 = 0;
    let mut backoff = Duration::ZERO;
    loop {
        let started = Instant::now();
        let child = Command::new("/proc/self/exe")
            .args(&args[1..])
            .arg(WORKER_FLAG)
            .env(RESTARTS_ENV, restarts.to_string())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) => {
                eprintln!("rbm-agent: supervisor: cannot start the agent: {e}");
                return ExitCode::FAILURE;
            }
        };
        let pid = child.id() as i32;
        CHILD.store(pid, Ordering::SeqCst);
        if STOPPING.load(Ordering::SeqCst) {
            on_stop(0);
        }
        let status = reap_until(pid);
        CHILD.store(0, Ordering::SeqCst);
        if STOPPING.load(Ordering::SeqCst) {
            return if status == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        restarts += 1;
        backoff = if started.elapsed() >= STABLE {
            Duration::ZERO
        } else {
            (backoff * 2).clamp(Duration::from_millis(100), MAX_BACKOFF)
        };
        eprintln!(
            "rbm-agent: supervisor: the agent ended ({}); the filter stays in force; restart {restarts} in {} ms",
            describe(status),
            backoff.as_millis()
        );
        std::thread::sleep(backoff);
    }
}

/// Reaps every child (PID 1 inherits orphans) until `pid` ends; returns
/// its wait status.
fn reap_until(pid: i32) -> i32 {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes only into `status`.
        let got = unsafe { libc::waitpid(-1, &mut status, 0) };
        if got == pid {
            return status;
        }
        if got < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return -1;
        }
    }
}

fn describe(status: i32) -> String {
    if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("exit {}", libc::WEXITSTATUS(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_first_process_that_is_not_the_worker_supervises() {
        let args = vec!["rbm-agent".to_string(), "run".to_string()];
        assert!(!should_supervise(&args), "a test is never PID 1");
        assert!(describe(9).contains("signal 9"));
        assert_eq!(describe(3 << 8), "exit 3");
    }
}
