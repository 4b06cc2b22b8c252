//! The Podman CLI driver. `args` builds argument vectors (pure, unit-tested);
//! `Podman` runs them and turns failures into errors that show the full
//! command and podman's stderr. `find` chooses the program, `host` asks it
//! what it is (version, rootful or rootless).

pub mod args;
pub mod find;
pub mod host;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::error::Error;
use host::Mode;

/// The podman program to run (`podman`, or the wrapper `scripts/podman5 up`
/// prints), the remote connection it should use if any, and its mode once
/// known (for the fixes errors suggest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Podman {
    program: PathBuf,
    remote: Remote,
    mode: Option<Mode>,
}

/// How podman is told to talk to a remote service (besides what its own
/// environment, CONTAINER_HOST or CONTAINER_CONNECTION, says).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remote {
    /// `--remote`: the default `podman system connection`.
    pub default: bool,
    /// A named `podman system connection` (a podman machine, a service).
    pub connection: Option<String>,
}

/// Podman's variable for `--connection`: it also makes podman remote.
pub const CONNECTION_ENV: &str = "CONTAINER_CONNECTION";

impl Podman {
    pub fn new(program: impl Into<PathBuf>) -> Podman {
        Podman {
            program: program.into(),
            remote: Remote::default(),
            mode: None,
        }
    }

    /// The same program, talking to a remote service as `remote` says.
    pub fn with_remote(self, remote: Remote) -> Podman {
        Podman { remote, ..self }
    }

    /// `podman ARGS`, remote if so told.
    fn command(&self, args: &[String]) -> Command {
        let mut command = Command::new(&self.program);
        if self.remote.default {
            command.arg("--remote");
        }
        command.args(args);
        if let Some(name) = &self.remote.connection {
            command.env(CONNECTION_ENV, name);
        }
        command
    }

    /// Runs podman with `env` added to its environment (the values of the
    /// `-e NAME` in `args`); a non-zero exit is an error. A value in the
    /// environment, unlike one in the argument vector, is not readable by
    /// other local users (/proc/PID/environ is private to the owner, and
    /// /proc/PID/cmdline is not). Podman resolves `-e NAME` on the client
    /// side, from its own environment, local or remote alike.
    pub fn run_env(&self, args: &[String], env: &[(String, String)]) -> Result<String, Error> {
        let out = self
            .command(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .map_err(|source| Error::PodmanMissing {
                program: self.program.clone(),
                source,
            })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(self.failure(args, &out))
        }
    }

    /// The same program, known to run in `mode`.
    pub fn with_mode(self, mode: Mode) -> Podman {
        Podman {
            mode: Some(mode),
            ..self
        }
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Runs podman with `input` on its stdin; a non-zero exit is an error.
    pub fn run_with_input(&self, args: &[String], input: &[u8]) -> Result<String, Error> {
        let out = self.output_with_input(args, input)?;
        if !out.status.success() {
            return Err(self.failure(args, &out));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs podman with `input` on its stdin and captured output; fails
    /// only if it cannot be started or stops reading its input early.
    pub fn output_with_input(&self, args: &[String], input: &[u8]) -> Result<Output, Error> {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| Error::PodmanMissing {
                program: self.program.clone(),
                source,
            })?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        let out = std::thread::scope(|s| {
            // Written from a second thread so that a podman that writes much
            // before it reads cannot deadlock with us.
            let writer = s.spawn(move || stdin.write_all(input));
            let out = child.wait_with_output();
            (writer.join().expect("stdin writer panicked"), out)
        });
        let (written, out) = out;
        let out = out.map_err(|source| Error::PodmanMissing {
            program: self.program.clone(),
            source,
        })?;
        if out.status.success() {
            written.map_err(|e| Error::Podman {
                command: display_command(&self.program, args),
                status: out.status.to_string(),
                stderr: format!("podman stopped reading its input: {e}"),
                fix: "run the command again; if it keeps failing, report it".into(),
            })?;
        }
        Ok(out)
    }

    /// Runs podman with captured output; fails only if it cannot be started.
    pub fn output(&self, args: &[String]) -> Result<Output, Error> {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| Error::PodmanMissing {
                program: self.program.clone(),
                source,
            })
    }

    /// Runs podman and returns its stdout; a non-zero exit is an error.
    pub fn run(&self, args: &[String]) -> Result<String, Error> {
        let out = self.output(args)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(self.failure(args, &out))
        }
    }

    /// Removes a container or network. Success means the object is gone:
    /// "no such ..." counts, and so does an error after which the object no
    /// longer exists (then a one-line note names podman's complaint). Such
    /// a complaint was netavark's "No such process" when an agent deleted a
    /// route netavark had put there (a sentry of a network created without
    /// rbm-launch's route metric); the container was removed all the same.
    pub fn remove(&self, removal: &args::Removal) -> Result<(), Error> {
        let out = self.output(&removal.rm)?;
        if out.status.success() || is_missing(&String::from_utf8_lossy(&out.stderr)) {
            return Ok(());
        }
        let exists = self.output(&removal.exists)?;
        if exists.status.code() == Some(1) {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let first = stderr.lines().next().unwrap_or("").trim();
            eprintln!(
                "rbm-launch: note: {} is removed; podman's teardown complained: {first}",
                removal.what
            );
            Ok(())
        } else {
            Err(self.failure(&removal.rm, &out))
        }
    }

    /// Runs podman attached to our terminal; returns its exit code
    /// (128 + signal number if it was killed).
    pub fn passthrough(&self, args: &[String]) -> Result<u8, Error> {
        let status = self
            .command(args)
            .status()
            .map_err(|source| Error::PodmanMissing {
                program: self.program.clone(),
                source,
            })?;
        Ok(exit_code(status))
    }

    /// The error for a command that exited non-zero.
    pub fn failure(&self, args: &[String], out: &Output) -> Error {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let error = Error::Podman {
            command: display_command(&self.program, args),
            status: out.status.to_string(),
            fix: fix_for(&stderr).to_string(),
            stderr: if stderr.is_empty() {
                "(no message)".to_string()
            } else {
                stderr
            },
        };
        match self.mode {
            Some(mode) => error.for_mode(mode),
            None => error,
        }
    }
}

/// Podman's wording for an object that does not exist (4.x and 5.x).
pub fn is_missing(stderr: &str) -> bool {
    [
        "no such container",
        "no such network",
        "network not found",
        "no such object",
    ]
    .iter()
    .any(|m| stderr.contains(m))
}

/// A best guess at what to do, from podman's message.
pub fn fix_for(stderr: &str) -> &'static str {
    if stderr.contains("already used") || stderr.contains("already in use") {
        "something else holds that subnet, port or name: pick another in the profile, or find it with `podman network ls` / `podman ps -a`"
    } else if stderr.contains("statfs") || stderr.contains("no such file or directory") {
        "a host path does not exist for podman; with the scripts/podman5 wrapper, host paths (volumes, build contexts) must lie under the repository"
    } else if stderr.contains("image not known") || stderr.contains("pull") {
        "build the image locally first; no registry is reachable"
    } else {
        "read podman's message; `rbm-launch stop <profile>` removes leftovers of a failed start"
    }
}

/// The command as a shell-like line. Long or multi-line arguments (the
/// profile text in RBM_PROFILE) are elided so the line stays readable.
pub fn display_command(program: &Path, args: &[String]) -> String {
    let mut words = vec![program.display().to_string()];
    words.extend(args.iter().map(|a| display_arg(a)));
    words.join(" ")
}

fn display_arg(arg: &str) -> String {
    if arg.contains('\n') || arg.len() > 120 {
        let head = arg
            .split('=')
            .next()
            .filter(|h| h.len() < arg.len() && h.len() < 40);
        return match head {
            Some(h) => format!("{h}=<{} bytes>", arg.len() - h.len() - 1),
            None => format!("<{} bytes>", arg.len()),
        };
    }
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

fn exit_code(status: std::process::ExitStatus) -> u8 {
    #[cfg(unix)]
    let signal = {
        use std::os::unix::process::ExitStatusExt;
        status.signal()
    };
    #[cfg(not(unix))]
    let signal: Option<i32> = None;
    match (status.code(), signal) {
        (Some(c), _) => u8::try_from(c).unwrap_or(1),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(1),
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fake_program;

    #[test]
    fn missing_program_says_podman5_is_needed() {
        let p = Podman::new("/nonexistent/podman");
        let err = p.run(&args::info("x")).unwrap_err().to_string();
        assert!(
            err.starts_with("cannot run podman program \"/nonexistent/podman\""),
            "{err}"
        );
        assert!(
            err.contains("Podman 5 is needed") && err.contains("RBM_PODMAN"),
            "{err}"
        );
    }

    /// A fake podman: a shell script printing `out` to stdout and `err` to stderr.
    fn fake(dir: &Path, out: &str, err: &str, code: i32) -> Podman {
        let script =
            format!("#!/bin/sh\nprintf '%s' '{out}'\nprintf '%s' '{err}' >&2\nexit {code}\n");
        Podman::new(fake_program(dir, "podman", &script))
    }

    #[test]
    fn a_known_mode_adds_its_own_fix() {
        let dir = tempfile::tempdir().unwrap();
        let refused = "Error: rootlessport cannot expose privileged port 80";
        let p = fake(dir.path(), "", refused, 125);
        let args = args::info("x");
        let plain = p.run(&args).unwrap_err().to_string();
        assert!(plain.contains("fix: read podman's message"), "{plain}");
        let rootless = p
            .with_mode(Mode::Rootless)
            .run(&args)
            .unwrap_err()
            .to_string();
        assert!(
            rootless.contains("fix: rootless Podman cannot publish"),
            "{rootless}"
        );
    }

    #[test]
    fn remote_reaches_podman_as_flag_or_container_connection() {
        let dir = tempfile::tempdir().unwrap();
        let script = "#!/bin/sh\nprintf '%s %s' \"${CONTAINER_CONNECTION-unset}\" \"$*\"\n";
        let p = Podman::new(fake_program(dir.path(), "podman", script));
        let args = args::info("x");
        assert_eq!(p.run(&args).unwrap(), "unset info --format x");
        let named = p.clone().with_remote(Remote {
            default: false,
            connection: Some("mymachine".into()),
        });
        assert_eq!(named.run(&args).unwrap(), "mymachine info --format x");
        let default = p.with_remote(Remote {
            default: true,
            connection: None,
        });
        assert_eq!(
            default.run(&args).unwrap(),
            "unset --remote info --format x"
        );
    }

    #[test]
    fn input_reaches_podman_and_a_failure_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let got = dir.path().join("got");
        let script = format!("#!/bin/sh\ncat > {}\necho done\n", got.display());
        let p = Podman::new(fake_program(dir.path(), "podman", &script));
        let big = vec![7u8; 1 << 20];
        assert_eq!(p.run_with_input(&[], &big).unwrap(), "done\n");
        assert_eq!(std::fs::read(&got).unwrap(), big);
        let failing = fake(dir.path(), "", "Error: no", 3);
        let err = failing.run_with_input(&[], &big).unwrap_err().to_string();
        assert!(err.contains("Error: no"), "{err}");
    }

    #[test]
    fn failure_shows_full_command_and_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let p = fake(
            dir.path(),
            "",
            "Error: subnet 10.242.0.0/24 is already used",
            125,
        );
        let args = args::network_rm("rbm-demo-enclave");
        let err = p.run(&args).unwrap_err().to_string();
        let prog = dir.path().join("podman");
        assert!(
            err.starts_with(&format!(
                "`{} network rm rbm-demo-enclave` failed (exit status: 125)",
                prog.display()
            )),
            "{err}"
        );
        assert!(
            err.contains("Error: subnet 10.242.0.0/24 is already used; fix: something else holds"),
            "{err}"
        );
    }

    #[test]
    fn remove_ignores_missing_objects_only() {
        let dir = tempfile::tempdir().unwrap();
        let missing = fake(
            dir.path(),
            "",
            "Error: unable to find network with name or ID x: network not found",
            1,
        );
        assert!(missing.remove(&args::remove_network("x")).is_ok());
        let busy = fake(dir.path(), "", "Error: network is being used", 2);
        assert!(busy.remove(&args::remove_network("x")).is_err());
    }

    #[test]
    fn remove_counts_an_error_as_success_when_the_object_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let script = "#!/bin/sh\ncase \"$1 $2\" in\n  'container exists') exit 1;;\nesac\necho 'Error: netavark: Netlink error: No such process (os error 3)' >&2\nexit 125\n";
        let path = fake_program(dir.path(), "podman", script);
        assert!(Podman::new(path)
            .remove(&args::remove_container("c"))
            .is_ok());
        let still_there = fake(dir.path(), "", "Error: netavark: No such process", 125);
        assert!(still_there.remove(&args::remove_container("c")).is_err());
    }

    #[test]
    fn values_handed_in_the_environment_reach_podman_and_not_its_argv() {
        let dir = tempfile::tempdir().unwrap();
        let script = "#!/bin/sh\nprintf '%s|%s' \"$*\" \"$RBM_PROFILE\"\n";
        let p = Podman::new(fake_program(dir.path(), "podman", script));
        let args: Vec<String> = ["run", "-e", "RBM_PROFILE"].map(String::from).to_vec();
        let env = [("RBM_PROFILE".to_string(), "moniker = \"x\"\n".to_string())];
        assert_eq!(
            p.run_env(&args, &env).unwrap(),
            "run -e RBM_PROFILE|moniker = \"x\"\n"
        );
    }

    #[test]
    fn passthrough_returns_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(fake(dir.path(), "", "", 3).passthrough(&[]).unwrap(), 3);
    }

    #[test]
    fn long_arguments_are_elided_and_odd_ones_quoted() {
        let text = format!("RBM_PROFILE=moniker = \"demo\"\n{}", "x".repeat(200));
        let line = display_command(
            Path::new("podman"),
            &["-e".into(), text.clone(), "a b".into()],
        );
        assert_eq!(
            line,
            format!("podman -e RBM_PROFILE=<{} bytes> 'a b'", text.len() - 12)
        );
        assert_eq!(display_arg("{{.Client.Version}}"), "'{{.Client.Version}}'");
    }
}
