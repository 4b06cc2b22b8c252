//! A command on a pseudo-terminal, as a person at a terminal runs it: its
//! stdin, stdout and stderr are the terminal, it leads its own session, and
//! the test types into it and reads what it shows.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A process on a terminal of its own.
pub struct Terminal {
    child: Child,
    input: File,
    seen: Arc<Mutex<Vec<u8>>>,
    command: String,
}

impl Terminal {
    /// Starts `program ARGS` on a new pseudo-terminal (80x24).
    pub fn spawn(program: &str, args: &[String]) -> Result<Terminal> {
        let (mut master, mut slave) = (-1, -1);
        let size = libc::winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty writes two descriptors it opened into the ints.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("openpty");
        }
        // SAFETY: both are open descriptors that nothing else owns.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let command = crate::cmd::command_line(program, args);
        let child = cmd.spawn().with_context(|| format!("spawning {command}"))?;
        drop(cmd); // the parent's copies of the terminal's side
        let input = File::from(master.try_clone()?);
        let mut output = File::from(master);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once the last process on the terminal has gone.
            while let Ok(n) = output.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .expect("not poisoned")
                    .extend_from_slice(&buf[..n]);
            }
        });
        Ok(Terminal {
            child,
            input,
            seen,
            command,
        })
    }

    /// Everything the terminal showed so far.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().expect("not poisoned")).into_owned()
    }

    /// Types `text` (a newline is the Enter key: write "\r").
    pub fn type_text(&mut self, text: &str) -> Result<()> {
        self.input.write_all(text.as_bytes())?;
        self.input.flush()?;
        Ok(())
    }

    /// Waits until the screen shows `text` after byte `from`; returns
    /// where it ends.
    pub fn wait_for(&mut self, text: &str, from: usize, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if let Some(at) = screen.get(from..).and_then(|s| s.find(text)) {
                return Ok(from + at + text.len());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "`{}` exited ({status}) before showing {text:?}; the screen:\n{screen}",
                    self.command
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "`{}` did not show {text:?} within {timeout:?}; the screen:\n{screen}",
                    self.command
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "`{}` did not exit within {timeout:?}; the screen:\n{}",
                    self.command,
                    self.screen()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: a signal to the child's own session (it leads it).
            unsafe {
                libc::kill(-(self.child.id() as i32), libc::SIGKILL);
            }
            let _ = self.child.wait();
        }
    }
}
