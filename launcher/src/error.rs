//! The launcher's one error type. Every variant reads as one line that says
//! what went wrong and ends with `fix: ...`, except where it wraps a profile
//! error (which already names file, field and fix) or lists cleanup failures.

use std::path::PathBuf;

use rbm_profile::ProfileError;

use crate::podman::find::Candidate;
use crate::podman::host::Mode;

/// How to get a Podman 5 on a machine that has an older one.
pub const PODMAN5_FIX: &str =
    "install Podman 5 or newer and put it on PATH, or run `scripts/podman5 up` of the rbm \
     checkout as root (it provisions a private Podman 5, which rbm-launch then finds by itself)";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Profile(#[from] ProfileError),

    #[error(
        "no profile named {name:?}: looked for {}; available: {}; fix: pass one of those names, or a path to a .toml file",
        paths(.looked), names(.available)
    )]
    UnknownProfile {
        name: String,
        looked: Vec<PathBuf>,
        available: Vec<String>,
    },

    #[error("recipe {arg}: {what}; fix: {fix}")]
    Recipe {
        arg: String,
        what: String,
        fix: String,
    },

    #[error("no recipe named {name:?}; built in: {}; fix: pass one of those names, or the path of a folder holding a Containerfile and a profile.toml (`./my-recipe`)", names(.available))]
    UnknownRecipe {
        name: String,
        available: Vec<String>,
    },

    #[error("building recipe {} failed ({status}; podman's output is above); nothing started; fix: {fix}", .dir.display())]
    RecipeBuild {
        dir: PathBuf,
        status: String,
        fix: String,
    },

    #[error("cannot run podman program {program:?}: {source}; fix: correct --podman (or RBM_PODMAN), or leave both unset and rbm-launch finds a Podman 5 by itself; Podman 5 is needed (older podman lacks `network create --route`): {PODMAN5_FIX}")]
    PodmanMissing {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{program:?} is Podman {found}, but rbm needs Podman 5 or newer (older podman lacks `network create --route`); fix: {PODMAN5_FIX}")]
    PodmanTooOld { program: PathBuf, found: String },

    #[error("`{command}` failed ({status}): {stderr}; fix: {fix}")]
    Podman {
        command: String,
        status: String,
        stderr: String,
        fix: String,
    },

    /// A moniker's pair (or a secret named like rbm's) that this profile
    /// file did not make: `up` and `stop` leave it alone.
    #[error("{what}; fix: {fix}")]
    NotOurs { what: String, fix: String },

    /// A profile argument rbm will not take as it is (exit 2).
    #[error("profile {arg}: {what}; fix: {fix}")]
    ProfileArg {
        arg: String,
        what: String,
        fix: String,
    },

    #[error("no Podman 5 found{}; fix: {}", passed_over_list(.passed_over), podman5_fix(.script.as_deref()))]
    NoPodman5 {
        passed_over: Vec<Candidate>,
        script: Option<PathBuf>,
    },

    #[error("the rbm-agent binary for the sentry image ({arch}) was not found{}; fix: in a checkout, build it with `scripts/build-static` (and install rbm with `scripts/install`), or pass --agent PATH (or RBM_AGENT_BIN), or name rbm's files with --rbm-files DIR (or RBM_FILES)", looked_list(.looked))]
    AgentMissing { arch: String, looked: Vec<PathBuf> },

    #[error("Podman runs containers for architecture {arch}, and rbm builds its sentry agent for {} only; fix: run rbm on one of those, or build rbm-agent statically for {arch} and pass it with --agent PATH", crate::lookup::AGENT_ARCHES.map(|(a, _)| a).join(", "))]
    NoAgentForArch { arch: String },

    #[error("bottle image {image} is not in podman's local store (no registry is reachable); fix: build it first (for the demo: scripts/demo)")]
    BottleImageMissing { image: String },

    #[error("volume host path {} does not exist; fix: create it, or change bottle.volumes in {}", .path.display(), .profile.display())]
    VolumeMissing { path: PathBuf, profile: PathBuf },

    #[error("{what} {}: {source}; fix: {fix}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        fix: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("sentry {name} did not become ready within {secs}s (last `rbm-agent status`: {last}); fix: read the sentry's log above; check the agent with `rbm-launch status {profile}` after fixing, or raise --ready-timeout")]
    SentryNotReady {
        name: String,
        secs: u64,
        last: String,
        profile: String,
    },

    #[error("sentry {name} exited before it was ready; fix: read the sentry's log above (the agent needs NET_ADMIN and a valid RBM_PROFILE)")]
    SentryExited { name: String },

    #[error("{what} {name} is not running; fix: start the profile with `rbm-launch up {profile}`")]
    NotRunning {
        what: &'static str,
        name: String,
        profile: String,
    },

    #[error("{} changed in {profile}, and a reload applies only {}; nothing changed; fix: run `rbm-launch up {profile}` to apply it (the bottle restarts), or undo the change", .fields.join(", "), rbm_profile::Profile::RELOADABLE)]
    ReloadNeedsRestart {
        fields: Vec<String>,
        profile: String,
    },

    #[error("sentry {sentry}: {message}; fix: {fix}")]
    ReloadFailed {
        sentry: String,
        message: String,
        fix: &'static str,
    },

    #[error("credential {env}: {message}; fix: {fix}")]
    Credential {
        env: String,
        message: String,
        fix: String,
    },

    #[error("profile {} takes what no one said yes to:\n{}\nnothing started; fix: read the list; if you agree, run `{command}` (rbm-launch then remembers the yes for this profile as it is, in {store}; a changed profile is asked about again), or run rbm-launch on a terminal to be asked", .profile.display(), taken_list(.takes))]
    NeedsYes {
        profile: PathBuf,
        takes: Vec<String>,
        command: String,
        store: String,
    },

    #[error("you did not say yes to profile {}; nothing started; fix: read what it takes (above) and the profile itself, and answer yes only if you trust them", .profile.display())]
    Declined { profile: PathBuf },

    #[error("{cause}\n{}fix: after fixing the cause, run `rbm-launch stop {profile}` to remove the leftovers", cleanup_list(.failures))]
    CleanupFailed {
        cause: Box<Error>,
        failures: Vec<Error>,
        profile: String,
    },

    #[error("could not remove everything of profile {profile}:\n{}fix: read the messages above, then run `rbm-launch stop {profile}` again", cleanup_list(.failures))]
    StopFailed {
        profile: String,
        failures: Vec<Error>,
    },
}

impl Error {
    /// Process exit code: 2 for a bad profile or profile name (nothing was
    /// touched), 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Profile(_)
            | Error::UnknownProfile { .. }
            | Error::ProfileArg { .. }
            | Error::Recipe { .. }
            | Error::UnknownRecipe { .. }
            | Error::VolumeMissing { .. }
            | Error::ReloadNeedsRestart { .. }
            | Error::Credential { .. }
            | Error::NeedsYes { .. }
            | Error::Declined { .. } => 2,
            _ => 1,
        }
    }

    /// The error with the fix only `mode` needs wherever podman's message
    /// calls for one, in place of the general fix: for errors made before
    /// the mode was known (`up` learns it alongside).
    pub fn for_mode(self, mode: Mode) -> Error {
        let all = |failures: Vec<Error>| failures.into_iter().map(|e| e.for_mode(mode)).collect();
        match self {
            Error::Podman {
                command,
                status,
                stderr,
                fix,
            } => Error::Podman {
                fix: mode.fix_for(&stderr).map_or(fix, str::to_string),
                command,
                status,
                stderr,
            },
            Error::CleanupFailed {
                cause,
                failures,
                profile,
            } => Error::CleanupFailed {
                cause: Box::new(cause.for_mode(mode)),
                failures: all(failures),
                profile,
            },
            Error::StopFailed { profile, failures } => Error::StopFailed {
                profile,
                failures: all(failures),
            },
            other => other,
        }
    }
}

fn paths(list: &[PathBuf]) -> String {
    list.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn passed_over_list(list: &[Candidate]) -> String {
    if list.is_empty() {
        return " (no podman on PATH)".into();
    }
    let each: Vec<String> = list
        .iter()
        .map(|c| format!("{} ({})", c.path.display(), c.found))
        .collect();
    format!(" (passed over: {})", each.join(", "))
}

fn podman5_fix(script: Option<&std::path::Path>) -> String {
    match script {
        Some(s) => format!(
            "install Podman 5 or newer and put it on PATH, or run `sudo {} up` once (it provisions \
             a private Podman 5, which rbm-launch then finds by itself), or pass --podman PATH",
            s.display()
        ),
        None => format!("{PODMAN5_FIX}, or pass --podman PATH"),
    }
}

fn looked_list(list: &[PathBuf]) -> String {
    if list.is_empty() {
        " (rbm-launch is neither installed with rbm's files nor in a checkout)".into()
    } else {
        format!(" at {}", paths(list))
    }
}

fn names(list: &[String]) -> String {
    if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    }
}

fn taken_list(list: &[String]) -> String {
    list.iter()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn cleanup_list(failures: &[Error]) -> String {
    failures
        .iter()
        .map(|e| format!("  cleanup also failed: {e}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_profile_says_where_and_what_exists() {
        let e = Error::UnknownProfile {
            name: "dmo".into(),
            looked: vec![
                "./profiles/dmo.toml".into(),
                "/repo/profiles/dmo.toml".into(),
            ],
            available: vec!["demo".into(), "work".into()],
        };
        assert_eq!(
            e.to_string(),
            "no profile named \"dmo\": looked for ./profiles/dmo.toml, /repo/profiles/dmo.toml; \
             available: demo, work; fix: pass one of those names, or a path to a .toml file"
        );
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn too_old_names_the_fix() {
        let e = Error::PodmanTooOld {
            program: "podman".into(),
            found: "4.3.1".into(),
        };
        let s = e.to_string();
        assert!(
            s.contains("Podman 4.3.1") && s.contains("network create --route"),
            "{s}"
        );
        assert!(s.contains("scripts/podman5 up"), "{s}");
        assert_eq!(e.exit_code(), 1);
    }

    /// `podman NAME` failed with `stderr`; the general fix is `fix`.
    fn failed(name: &str, stderr: &str, fix: &str) -> Error {
        Error::Podman {
            command: format!("podman {name}"),
            status: "exit status 125".into(),
            stderr: stderr.into(),
            fix: fix.into(),
        }
    }

    #[test]
    fn a_mode_learned_later_fixes_every_podman_failure() {
        let refused = |n: &str| {
            let port = "Error: rootlessport cannot expose privileged port 80";
            failed(&format!("run {n}"), port, "general")
        };
        let e = || Error::CleanupFailed {
            cause: Box::new(refused("a")),
            failures: vec![Error::StopFailed {
                profile: "demo".into(),
                failures: vec![refused("b")],
            }],
            profile: "demo".into(),
        };
        let general = e().to_string();
        assert_eq!(general.matches("fix: general").count(), 2, "{general}");
        assert_eq!(e().for_mode(Mode::Rootful).to_string(), general);
        let rootless = e().for_mode(Mode::Rootless).to_string();
        assert_eq!(
            rootless
                .matches("fix: rootless Podman cannot publish")
                .count(),
            2,
            "{rootless}"
        );
        assert!(!rootless.contains("general"), "{rootless}");
    }

    #[test]
    fn cleanup_failures_are_all_listed() {
        let one = |n: &str| failed(&format!("rm {n}"), "boom", "f");
        let e = Error::CleanupFailed {
            cause: Box::new(Error::SentryExited {
                name: "rbm-demo-sentry".into(),
            }),
            failures: vec![one("a"), one("b")],
            profile: "demo".into(),
        };
        let s = e.to_string();
        assert!(
            s.starts_with("sentry rbm-demo-sentry exited before it was ready"),
            "{s}"
        );
        assert!(
            s.contains("cleanup also failed: `podman rm a`") && s.contains("`podman rm b`"),
            "{s}"
        );
        assert!(
            s.ends_with("run `rbm-launch stop demo` to remove the leftovers"),
            "{s}"
        );
    }
}
