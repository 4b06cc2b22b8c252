//! Which podman program to run, when the user named none: the first
//! `podman` in an absolute PATH entry that is Podman 5 or newer, else the
//! private Podman 5 that `scripts/podman5 up` provisioned on this machine,
//! else an error that says exactly what to run.
//!
//! Relative PATH entries (`.`, an empty entry, `bin`) are skipped: they name
//! folders of the current directory, which may be a repository someone
//! else made, and every candidate is run (`podman version`) to see what it is.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::Error;
use crate::podman::args;
use crate::podman::host::{major, Engine, VERSION_FORMAT};

/// The wrapper `scripts/podman5 up` leaves for its default Podman (Linux).
pub const PROVISIONED: &str = "/run/rbm-podman5/podman";

/// The podman program's file name on this platform.
pub const PODMAN_FILE: &str = if cfg!(windows) {
    "podman.exe"
} else {
    "podman"
};

/// A podman program that was looked at and passed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub path: PathBuf,
    /// What `podman version` said, or why it could not say.
    pub found: String,
}

/// The podman program to run, and what it said it is when it was asked
/// (none when the user named it: it is taken as it is). `up` needs no
/// other `podman version`: one podman process less before it acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub program: PathBuf,
    pub engine: Option<Engine>,
}

/// Finds the podman to use: `explicit` (--podman or RBM_PODMAN) as it is,
/// else a Podman 5 in an absolute entry of `path` (the PATH variable's
/// value), else
/// `provisioned` (the scripts/podman5 wrapper) if it exists. `script` is
/// scripts/podman5 of the rbm checkout or install, for the error's fix.
pub fn find(
    explicit: Option<PathBuf>,
    path: Option<&std::ffi::OsStr>,
    provisioned: &Path,
    script: Option<&Path>,
) -> Result<Found, Error> {
    if let Some(program) = explicit {
        return Ok(Found {
            program,
            engine: None,
        });
    }
    let on_path = path
        .map(std::env::split_paths)
        .into_iter()
        .flatten()
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(PODMAN_FILE));
    let mut passed_over = Vec::new();
    for candidate in on_path.chain([provisioned.to_path_buf()]) {
        if !is_executable(&candidate) {
            continue;
        }
        match engine_of(&candidate) {
            Ok(engine) if major(&engine.version).is_some_and(|m| m >= 5) => {
                return Ok(Found {
                    program: candidate,
                    engine: Some(engine),
                })
            }
            Ok(engine) => passed_over.push(Candidate {
                path: candidate,
                found: format!("Podman {}", engine.version),
            }),
            // A client whose machine or service does not answer (a podman
            // machine not started) is still the podman to use: `up` asks
            // it again and says why it cannot.
            Err(e) => match client_version(&candidate) {
                Ok(v) if major(&v).is_some_and(|m| m >= 5) => {
                    return Ok(Found {
                        program: candidate,
                        engine: None,
                    })
                }
                _ => passed_over.push(Candidate {
                    path: candidate,
                    found: e,
                }),
            },
        }
    }
    Err(Error::NoPodman5 {
        passed_over,
        script: script.map(Path::to_path_buf),
    })
}

/// What `podman version` says `program` is (the Podman it runs
/// containers with: [`VERSION_FORMAT`]).
fn engine_of(program: &Path) -> Result<Engine, String> {
    let args = args::version(VERSION_FORMAT);
    let text = answer(program, &args, "`version`")?;
    Engine::parse(&text).ok_or_else(|| format!("`version` said {:?}", text.trim()))
}

/// `podman --version`'s last word (`podman version 5.8.6` -> `5.8.6`):
/// the client's own, which needs no machine or service.
fn client_version(program: &Path) -> Result<String, String> {
    let text = answer(program, &["--version".to_string()], "`--version`")?;
    let last = text.split_whitespace().last();
    last.map(str::to_string)
        .ok_or_else(|| format!("`--version` said {:?}", text.trim()))
}

/// What `program ARGS` printed, or why it failed (`what` names the call).
fn answer(program: &Path, args: &[String], what: &str) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run: {e}"))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let why = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    Err(format!("{what} failed ({}): {}", out.status, why.trim())
        .trim_end_matches([' ', ':'])
        .to_string())
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// On Windows a program is a file named `*.exe`; there is no mode bit.
#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fake_program;

    fn podman_printing(dir: &Path, version: &str) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        fake_program(
            dir,
            "podman",
            &format!("#!/bin/sh\necho '{version}|linux/amd64'\n"),
        )
    }

    #[test]
    fn explicit_wins_without_asking() {
        let got = find(Some("/x/podman".into()), None, Path::new("/none"), None).unwrap();
        assert_eq!(got.program, PathBuf::from("/x/podman"));
        assert_eq!(got.engine, None);
    }

    #[test]
    fn the_first_podman_5_on_path_is_taken_and_older_ones_are_passed_over() {
        let t = tempfile::tempdir().unwrap();
        podman_printing(&t.path().join("old"), "4.3.1");
        let new = podman_printing(&t.path().join("new"), "5.8.6");
        let dirs = ["empty", "old", "new"].map(|d| t.path().join(d));
        let path = std::env::join_paths(dirs).unwrap();
        let found = find(None, Some(&path), Path::new("/none"), None).unwrap();
        assert_eq!(found.program, new);
        let engine = found.engine.unwrap();
        assert_eq!(
            (engine.version.as_str(), engine.arch.as_str()),
            ("5.8.6", "amd64")
        );
    }

    #[test]
    fn a_podman_in_a_relative_path_entry_is_never_run() {
        let t = tempfile::tempdir().unwrap();
        let marker = t.path().join("ran");
        // What a repository someone else made could hold: ./podman and
        // ./bin/podman that would leave a marker if they were run.
        let script = format!(
            "#!/bin/sh\ntouch {}\necho '5.8.6|linux/amd64'\n",
            marker.display()
        );
        fake_program(t.path(), "podman", &script);
        std::fs::create_dir_all(t.path().join("bin")).unwrap();
        fake_program(&t.path().join("bin"), "podman", &script);
        let real = podman_printing(&t.path().join("real"), "5.4.2");
        let cwd = std::env::current_dir().unwrap();
        // Relative to the test's cwd: point the relative entries at t.
        let rel = pathdiff(t.path(), &cwd);
        let path = std::ffi::OsString::from(format!(
            ":.:{0}:{0}/bin:{1}",
            rel.display(),
            real.parent().unwrap().display()
        ));
        let found = find(None, Some(&path), Path::new("/none"), None).unwrap();
        assert_eq!(found.program, real);
        assert!(!marker.exists(), "a relative PATH entry's podman was run");
    }

    /// `to` relative to `from` (both absolute), with `..` as needed.
    fn pathdiff(to: &Path, from: &Path) -> PathBuf {
        let common = from.ancestors().find(|a| to.starts_with(a)).unwrap();
        let ups = from.strip_prefix(common).unwrap().components().count();
        let mut rel: PathBuf = std::iter::repeat_n("..", ups).collect();
        rel.push(to.strip_prefix(common).unwrap());
        rel
    }

    #[test]
    fn the_provisioned_podman_comes_next_then_an_error_with_the_fix() {
        let t = tempfile::tempdir().unwrap();
        let old = podman_printing(&t.path().join("old"), "4.3.1");
        let path = std::env::join_paths([t.path().join("old")]).unwrap();
        let wrapper = podman_printing(&t.path().join("run"), "5.4.2");
        assert_eq!(
            find(None, Some(&path), &wrapper, None).unwrap().program,
            wrapper
        );
        // A wrapper that cannot run (scripts/podman5's needs root) is passed over.
        let broken = fake_program(
            &t.path().join("run"),
            "broken",
            "#!/bin/sh
exit 1
",
        );
        let err = find(None, Some(&path), &broken, None).unwrap_err();
        assert!(err.to_string().contains("`version` failed"), "{err}");
        // A client whose machine does not answer is taken, asked nothing more.
        let stopped = fake_program(
            &t.path().join("run"),
            "stopped",
            "#!/bin/sh
[ \"$1\" = --version ] && echo 'podman version 5.8.6' && exit 0
echo 'Error: Cannot connect to Podman' >&2; exit 125
",
        );
        let found = find(None, Some(&path), &stopped, None).unwrap();
        assert_eq!((found.program, found.engine), (stopped, None));

        let script = Path::new("/opt/rbm/scripts/podman5");
        let err = find(None, Some(&path), Path::new("/none"), Some(script)).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(&err, Error::NoPodman5 { passed_over, .. } if passed_over[0].path == old),
            "{err:?}"
        );
        assert!(
            msg.contains(&format!("{} (Podman 4.3.1)", old.display())),
            "{msg}"
        );
        assert!(msg.contains("sudo /opt/rbm/scripts/podman5 up"), "{msg}");
    }
}
