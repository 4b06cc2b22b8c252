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
