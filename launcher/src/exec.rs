//! `status`, `watch` and `shell`: `podman exec` into a running sentry or
//! bottle, with the terminal attached and the exit code passed through.

use std::io::IsTerminal;

use rbm_profile::Names;

use crate::error::Error;
use crate::launch::is_running;
use crate::podman::{args, Podman};

/// Runs `rbm-agent status [--json]` in the sentry; returns its exit code.
pub fn status(podman: &Podman, names: &Names, json: bool, profile_arg: &str) -> Result<u8, Error> {
    require_running(podman, "sentry", &names.sentry, profile_arg)?;
    podman.passthrough(&args::agent_status(&names.sentry, json))
}

/// Runs `rbm-agent watch [--json]` in the sentry: what it refuses, as it
/// happens, until interrupted or the sentry stops.
pub fn watch(podman: &Podman, names: &Names, json: bool, profile_arg: &str) -> Result<u8, Error> {
    require_running(podman, "sentry", &names.sentry, profile_arg)?;
    podman.passthrough(&args::agent_watch(&names.sentry, json))
}

/// Sends the profile `text` to the running sentry's agent, which applies
/// its `[uplink]` policy at once; prints what changed.
pub fn reload(podman: &Podman, names: &Names, text: &str, profile_arg: &str) -> Result<(), Error> {
    require_running(podman, "sentry", &names.sentry, profile_arg)?;
    let args = args::agent_reload(&names.sentry);
    let out = podman.output_with_input(&args, text.as_bytes())?;
    // The agent's answer: {"outcome", "message", "fields", "summary"}.
    let reply: serde_json::Value =
        match serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()) {
            Ok(reply @ serde_json::Value::Object(_)) => reply,
            _ => return Err(podman.failure(&args, &out)),
        };
    let message = reply["message"].as_str().unwrap_or_default().to_string();
    let failed = |fix| Error::ReloadFailed {
        sentry: names.sentry.clone(),
        message: message.clone(),
        fix,
    };
    match reply["outcome"].as_str().unwrap_or_default() {
        "reloaded" => {
            println!("rbm: {}: {message}", names.sentry);
            Ok(())
        }
        "needs_restart" => Err(Error::ReloadNeedsRestart {
            fields: reply["fields"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect(),
            profile: profile_arg.to_string(),
        }),
        "refused" => Err(failed("correct the profile and reload again")),
        _ => Err(failed(
            "read the sentry's log (`podman logs`); the policy in force is unchanged",
        )),
    }
}

/// Runs `command` (default /bin/sh) in the bottle; returns its exit code.
pub fn shell(
    podman: &Podman,
    names: &Names,
    command: &[String],
    profile_arg: &str,
) -> Result<u8, Error> {
    require_running(podman, "bottle", &names.bottle, profile_arg)?;
    let terminal = std::io::stdin().is_terminal();
    podman.passthrough(&args::shell(&names.bottle, terminal, command))
}

/// Runs a recipe's agent (`command`) in the bottle in `workdir`, the
/// terminal attached if there is one; returns its exit code. rbm-launch
/// itself outlives an interrupt meanwhile (Ctrl-C, a closed terminal:
/// they reach the agent), so the caller can still stop the pair.
pub fn attach(
    podman: &Podman,
    names: &Names,
    workdir: &str,
    command: &[String],
    profile_arg: &str,
) -> Result<u8, Error> {
    require_running(podman, "bottle", &names.bottle, profile_arg)?;
    let terminal = std::io::stdin().is_terminal();
    outlive_interrupts();
    podman.passthrough(&args::attach(&names.bottle, terminal, workdir, command))
}

/// SIGINT, SIGTERM and SIGHUP no longer end this process; a child it
/// starts still gets them as usual (a handler, unlike an ignored signal,
/// is not inherited across exec).
#[cfg(unix)]
fn outlive_interrupts() {
    extern "C" fn noted(_: libc::c_int) {}
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installs a handler that does nothing, which is async-signal-safe.
        unsafe {
            libc::signal(sig, noted as *const () as libc::sighandler_t);
        }
    }
}

#[cfg(not(unix))]
fn outlive_interrupts() {}

fn require_running(
    podman: &Podman,
    what: &'static str,
    name: &str,
    profile_arg: &str,
) -> Result<(), Error> {
    if is_running(podman, name) {
        Ok(())
    } else {
        Err(Error::NotRunning {
            what,
            name: name.to_string(),
            profile: profile_arg.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fake_program;

    /// A podman whose containers all run and whose `exec` prints `reply`
    /// (after reading the profile from stdin, as the agent does).
    fn podman_answering(dir: &std::path::Path, reply: &str) -> Podman {
        let script = format!(
            "#!/bin/sh\nif [ \"$1\" = exec ]; then cat >/dev/null; echo '{reply}'; exit 2; fi\necho true\n"
        );
        Podman::new(fake_program(dir, "podman", &script))
    }

    #[test]
    fn a_reload_that_needs_a_restart_names_the_fields_and_up() {
        let dir = tempfile::tempdir().unwrap();
        let podman = podman_answering(
            dir.path(),
            r#"{"outcome":"needs_restart","message":"m","fields":["bottle.image","entry"],"summary":null}"#,
        );
        let err = reload(&podman, &Names::new("demo"), "text", "demo").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(
            text.starts_with("bottle.image, entry changed in demo")
                && text.contains("fix: run `rbm-launch up demo`"),
            "{text}"
        );
        let podman = podman_answering(
            dir.path(),
            r#"{"outcome":"failed","message":"reload failed, nothing changed: x","fields":[],"summary":null}"#,
        );
        let err = reload(&podman, &Names::new("demo"), "text", "demo").unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert!(
            err.to_string()
                .starts_with("sentry rbm-demo-sentry: reload failed, nothing changed: x; fix: "),
            "{err}"
        );
    }

    #[test]
    fn not_running_says_how_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = fake_program(dir.path(), "podman", "#!/bin/sh\necho false\n");
        let err = status(&Podman::new(path), &Names::new("demo"), true, "demo").unwrap_err();
        assert_eq!(
            err.to_string(),
            "sentry rbm-demo-sentry is not running; fix: start the profile with `rbm-launch up demo`"
        );
    }
}
