//! What every hostile-profile case shares: the Podman and rbm-launch under
//! test, a fresh folder per case, and the table.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use rbm_tests::launcher::Launcher;
use rbm_tests::podman::{fresh_dir, require_podman, test_images, Podman, BOTTLE_IMAGE};
use rbm_tests::Output;

/// How long one rbm-launch command may take.
pub const LAUNCH_TIMEOUT: Duration = Duration::from_secs(120);

/// The Podman and rbm-launch under test.
pub struct Ctx {
    pub podman: Podman,
    pub launcher: Launcher,
    pub rootless: bool,
}

impl Ctx {
    /// None if the test must be skipped (a failure in CI).
    pub fn new() -> Result<Option<Ctx>> {
        let Ok(podman) = require_podman("runs hostile profiles through rbm-launch") else {
            return Ok(None);
        };
        test_images(&podman)?;
        let launcher = Launcher::find(podman.clone())?;
        let rootless = podman.is_rootless()?;
        Ok(Some(Ctx {
            podman,
            launcher,
            rootless,
        }))
    }

    /// `podman-VERSION-MODE`, as the battery's tables are named.
    pub fn label(&self) -> Result<String> {
        let version = self
            .podman
            .run_ok(&["version", "--format", "{{.Server.Version}}"])?
            .stdout
            .trim()
            .to_string();
        let mode = if self.rootless { "rootless" } else { "rootful" };
        Ok(format!("podman-{version}-{mode}"))
    }

    /// An empty folder of its own for case `name` (any user may write it).
    pub fn dir(&self, name: &str) -> Result<PathBuf> {
        fresh_dir(&format!("hostile-{name}"))
    }

    /// `rbm-launch ARGS` from `/`, whatever its exit status.
    pub fn launch(&self, args: &[&str]) -> Result<Output> {
        self.launcher.run(args, LAUNCH_TIMEOUT)
    }
}

/// One case: what the profile tries, what must happen, what happened.
#[derive(Debug, Clone)]
pub struct Row {
    /// Deliver item of the issue: syntax, root, volumes, credentials, pieces.
    pub group: &'static str,
    pub case: String,
    pub tries: String,
    pub expected: String,
    pub observed: String,
    pub pass: bool,
}

impl Row {
    pub fn new(
        group: &'static str,
        case: &str,
        tries: &str,
        expected: &str,
        observed: impl Into<String>,
        pass: bool,
    ) -> Row {
        Row {
            group,
            case: case.to_string(),
            tries: tries.to_string(),
            expected: expected.to_string(),
            observed: observed.into(),
            pass,
        }
    }
}

/// The first line of an rbm-launch error (`error: ...`), for the table.
pub fn first_error(out: &Output) -> String {
    out.stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| out.stderr.lines().last().unwrap_or(""))
        .trim()
        .to_string()
}

/// The table, in the battery's form.
pub fn table(label: &str, rows: &[Row]) -> String {
    let passed = rows.iter().filter(|r| r.pass).count();
    let mut s = format!("# rbm hostile profile: {label}\n\n");
    s +=
        "Written by `tests/tests/hostile_profile.rs` (the last run on this Podman); do not edit.\n";
    let _ = writeln!(s, "{passed} of {} cases passed.", rows.len());
    s += "A case passes when rbm-launch refused the profile with the file, the field and the fix, \
          or what it let through stayed harmless on the host (checked there).\n\n";
    s += "| # | group | case | what the profile tries | expected | observed | result |\n";
    s += "|---|---|---|---|---|---|---|\n";
    for (i, r) in rows.iter().enumerate() {
        let cell = |t: &str| t.replace('|', "\\|").replace('\n', " ");
        let _ = writeln!(
            s,
            "| {} | {} | `{}` | {} | {} | {} | {} |",
            i + 1,
            r.group,
            r.case,
            cell(&r.tries),
            cell(&r.expected),
            cell(&r.observed),
            if r.pass { "pass" } else { "FAIL" }
        );
    }
    s
}

/// The `[uplink]` of a profile that reaches nothing.
pub const REACHES_NOTHING: &str = "dns = \"disabled\"\naccess = \"disabled\"";

/// A profile of moniker `moniker` on 10.250.`net`.0/24 (enclave) and
/// 10.251.`net`.0/24 (uplink, the profile's own) whose bottle runs the
/// test image with `bottle`'s lines besides, and `uplink`'s policy.
pub fn profile(moniker: &str, net: u8, description: &str, bottle: &str, uplink: &str) -> String {
    format!(
        r#"moniker = "{moniker}"
description = "{description}"

[bottle]
image = "{BOTTLE_IMAGE}"
{bottle}

[enclave]
subnet = "10.250.{net}.0/24"
sentry_ip = "10.250.{net}.2"
bottle_ip = "10.250.{net}.3"

[uplink]
{uplink}
subnet = "10.251.{net}.0/24"
"#
    )
}

/// Removes everything of `moniker` with podman itself, whatever rbm-launch
/// (old, new, or one that refused the profile) left: containers, networks,
/// and secrets named like rbm's.
pub fn clean(podman: &Podman, moniker: &str) -> Result<()> {
    podman.remove_pair(moniker)?;
    let secrets = podman.run_ok(&["secret", "ls", "--format", "{{.Name}}"])?;
    let prefix = format!("rbm-{moniker}-");
    for s in secrets.stdout.lines().filter(|s| s.starts_with(&prefix)) {
        podman.run(&["secret", "rm", s])?;
    }
    Ok(())
}
