//! External commands with a timeout on every call, output captured, and
//! errors that name the full command line and its stderr.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// How long a reader thread may keep going after its process exited
/// (a descendant that inherited the pipe can hold it open).
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// What a finished command printed and how it ended.
#[derive(Debug)]
pub struct Output {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Fails, naming the command, its status and stderr, unless it exited 0.
    pub fn check(self) -> Result<Output> {
        if self.success() {
            return Ok(self);
        }
        bail!(
            "`{}` failed ({}):\nstderr: {}\nstdout: {}",
            self.command,
            self.status,
            self.stderr.trim(),
            self.stdout.trim()
        )
    }
}

/// The command line as one string, for messages (arguments with spaces quoted).
pub fn command_line<S: AsRef<str>>(program: &str, args: &[S]) -> String {
    let mut line = program.to_string();
    for arg in args {
        let arg = arg.as_ref();
        line.push(' ');
        if arg.is_empty() || arg.contains(char::is_whitespace) {
            line.push_str(&format!("'{arg}'"));
        } else {
            line.push_str(arg);
        }
    }
    line
}

/// Starts `program args` in its own process group with stdout and stderr
/// piped and `stdin` as its input; returns the command line (for
/// messages) and the child.
fn start<S: AsRef<str>>(program: &str, args: &[S], stdin: Stdio) -> Result<(String, Child)> {
    let command = command_line(program, args);
    let child = Command::new(program)
        .args(args.iter().map(AsRef::as_ref))
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start `{command}`"))?;
    Ok((command, child))
}

/// Runs `program args`, waits at most `timeout`, and returns its output
/// whatever the exit status. Fails if it cannot start or runs too long
/// (then its whole process group is killed).
pub fn run<S: AsRef<str>>(program: &str, args: &[S], timeout: Duration) -> Result<Output> {
    run_with_input(program, args, Stdio::null(), timeout)
}

/// Like [`run`], with `input` as the command's stdin (e.g. an open file:
/// `podman import -` reads a tar the podman itself may not see).
pub fn run_with_input<S: AsRef<str>>(
    program: &str,
    args: &[S],
    input: impl Into<Stdio>,
    timeout: Duration,
) -> Result<Output> {
    let (command, mut child) = start(program, args, input.into())?;
    let stdout = read_all(child.stdout.take());
    let stderr = read_all(child.stderr.take());
    let status = wait_until(&mut child, Instant::now() + timeout);
    let stdout = collect(stdout);
    let stderr = collect(stderr);
    match status? {
        Some(status) => Ok(Output {
            command,
            status,
            stdout,
            stderr,
        }),
        None => Err(anyhow!(
            "`{command}` timed out after {timeout:?} and was killed\nstderr: {}\nstdout: {}",
            stderr.trim(),
            stdout.trim()
        )),
    }
}

/// Like [`run`], and also fails unless the command exited 0.
pub fn run_ok<S: AsRef<str>>(program: &str, args: &[S], timeout: Duration) -> Result<Output> {
    run(program, args, timeout)?.check()
}

fn read_all<R: Read + Send + 'static>(pipe: Option<R>) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
        });
    }
    rx
}

fn collect(rx: Receiver<String>) -> String {
    rx.recv_timeout(PIPE_GRACE)
        .unwrap_or_else(|_| "(output unavailable: pipe held open by a descendant)".into())
}

/// Waits for the child until `deadline`; on timeout kills its process group
/// and returns `None`.
fn wait_until(child: &mut Child, deadline: Instant) -> Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait().context("waiting for a child process")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            kill_group(child.id(), libc::SIGKILL);
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Sends `signal` to the process group led by `pid` (a child we started
/// with `process_group(0)`), falling back to the process alone.
fn kill_group(pid: u32, signal: libc::c_int) {
    let pid = pid as libc::pid_t;
    // SAFETY: kill(2) takes plain integers; the ids are those of our own child.
    unsafe {
        if libc::kill(-pid, signal) != 0 {
            libc::kill(pid, signal);
        }
    }
}

/// A background process, killed (TERM, then KILL) and reaped on drop.
/// Its stdout is available line by line, its stderr accumulated for messages.
pub struct Spawned {
    command: String,
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

/// Starts `program args` in the background with stdout and stderr captured.
pub fn spawn<S: AsRef<str>>(program: &str, args: &[S]) -> Result<Spawned> {
    let (command, mut child) = start(program, args, Stdio::null())?;
    let (tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout is piped");
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(|line| line.ok()) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&stderr);
    let pipe = child.stderr.take().expect("stderr is piped");
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(|line| line.ok()) {
            let mut text = sink.lock().unwrap_or_else(|e| e.into_inner());
            text.push_str(&line);
            text.push('\n');
        }
    });
    Ok(Spawned {
        command,
        child,
        lines,
        stderr,
    })
}

impl Spawned {
    pub fn command(&self) -> &str {
        &self.command
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until the process prints a line equal to `want` (trimmed),
    /// failing with its stderr if it exits or `timeout` passes first.
    pub fn wait_for_line(&mut self, want: &str, timeout: Duration) -> Result<()> {
        self.wait_for(|line| line.trim() == want, want, timeout)
            .map(drop)
    }

    /// Waits until the process prints a line that `fits` (described as
    /// `want` in errors) and returns it.
    pub fn wait_for(
        &mut self,
        fits: impl Fn(&str) -> bool,
        want: &str,
        timeout: Duration,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if fits(&line) => return Ok(line),
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => {
                    bail!(
                        "`{}` did not print {want:?} within {timeout:?}\nstderr: {}",
                        self.command,
                        self.stderr().trim()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    thread::sleep(Duration::from_millis(50)); // let stderr drain
                    bail!(
                        "`{}` exited ({status:?}) before printing {want:?}\nstderr: {}",
                        self.command,
                        self.stderr().trim()
                    )
                }
            }
        }
    }

    /// Waits until the process exits (killing it after `timeout`) and
    /// returns what it printed to stdout meanwhile (the lines not taken by
    /// `wait_for` yet) and how it ended.
    pub fn finish(&mut self, timeout: Duration) -> Result<Output> {
        let deadline = Instant::now() + timeout;
        let mut stdout = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    stdout.push_str(&line);
                    stdout.push('\n');
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.stop(Duration::from_secs(3));
                    bail!(
                        "`{}` did not end within {timeout:?}\nstdout: {}\nstderr: {}",
                        self.command,
                        stdout.trim(),
                        self.stderr().trim()
                    )
                }
            }
        }
        let status = self.child.wait()?;
        thread::sleep(Duration::from_millis(50)); // let stderr drain
        Ok(Output {
            command: self.command.clone(),
            status,
            stdout,
            stderr: self.stderr(),
        })
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the process: SIGTERM, then SIGKILL after `grace`; returns its status.
    pub fn stop(&mut self, grace: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        kill_group(self.child.id(), libc::SIGTERM);
        if let Some(status) = wait_until(&mut self.child, Instant::now() + grace)? {
            return Ok(status);
        }
        bail!(
            "`{}` ignored SIGTERM for {grace:?} and was killed",
            self.command
        )
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Err(e) = self.stop(Duration::from_secs(3)) {
            eprintln!("cleanup: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let out = run(
            "sh",
            &["-c", "echo out; echo err >&2; exit 3"],
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.status.code(), Some(3));
        let err = out.check().unwrap_err().to_string();
        assert!(
            err.contains("sh -c 'echo out; echo err >&2; exit 3'"),
            "{err}"
        );
        assert!(err.contains("stderr: err"), "{err}");
    }

    #[test]
    fn kills_on_timeout() {
        let start = Instant::now();
        let err = run("sleep", &["30"], Duration::from_millis(200)).unwrap_err();
        assert!(err.to_string().contains("`sleep 30` timed out"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn spawned_waits_for_ready_and_stops() {
        let mut p = spawn("sh", &["-c", "echo starting; echo ready; exec sleep 30"]).unwrap();
        p.wait_for_line("ready", Duration::from_secs(5)).unwrap();
        assert!(p.is_running());
        let status = p.stop(Duration::from_secs(5)).unwrap();
        assert!(!status.success());
    }

    #[test]
    fn spawned_reports_early_exit() {
        let mut p = spawn("sh", &["-c", "echo boom >&2; exit 1"]).unwrap();
        let err = p
            .wait_for_line("ready", Duration::from_secs(5))
            .unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
    }
}
