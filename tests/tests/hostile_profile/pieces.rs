//! Hostile-profile cases: rbm runs only its own pieces (issue 27, items 5
//! and 6). A profile file that reuses a running pair's moniker neither
//! replaces nor stops it; `stop` leaves a user's secret named like rbm's;
//! no placeholder or profile text is in podman's argument vectors (which
//! any local user reads in /proc); a `podman` in a relative PATH entry is
//! never run; a folder that looks like an rbm checkout does not lend
//! rbm-launch its agent just because rbm-launch runs in it.
//!
//! Monikers hpc1 (10.250.74.0/24, uplink 10.251.74.0/24) and hpc2
//! (10.250.75.0/24, uplink 10.251.75.0/24); nothing is sent anywhere: the
//! bottle only listens, and no DNS query is made.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use rbm_tests::bins::workspace_root;
use rbm_tests::cmd;
use rbm_tests::launcher::{ENTER_ENV, LAUNCH_ENV};
use rbm_tests::podman::{Podman, PODMAN_ENV};
use rbm_tests::Output;

use crate::common::{self, clean, first_error, Ctx, Row, LAUNCH_TIMEOUT};

const GROUP: &str = "pieces";

pub fn cases(ctx: &Ctx) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    rows.extend(moniker_cases(ctx).context("moniker cases")?);
    rows.push(argv_case(ctx).context("argv case")?);
    rows.push(user_secret_case(ctx).context("user secret case")?);
    rows.push(relative_path_podman(ctx).context("relative PATH case")?);
    rows.push(checkout_in_cwd(ctx).context("checkout in the cwd case")?);
    rows.push(shadowed_demo(ctx).context("shadowed demo case")?);
    rows.push(profile_from_a_pipe(ctx).context("pipe case")?);
    Ok(rows)
}

/// A profile of moniker `moniker` on 10.250.N.0/24 (uplink 10.251.N.0/24),
/// with `extra` appended (a credential).
fn profile(moniker: &str, n: u8, description: &str, extra: &str) -> String {
    let uplink = format!(
        "dns = \"allowlist\"\naccess = \"allowlist\"\ndomains = [\"api.hpc.test\"]\nupstream_dns = [\"10.251.{n}.53\"]"
    );
    let bottle = r#"command = ["/rbm-probe", "serve", "0.0.0.0:8888"]"#;
    common::profile(moniker, n, description, bottle, &uplink) + extra
}

/// The ID of container `name`, if it exists.
fn container_id(podman: &Podman, name: &str) -> Result<Option<String>> {
    let out = podman.run(&["container", "inspect", "--format", "{{.Id}}", name])?;
    Ok(out.success().then(|| out.stdout.trim().to_string()))
}

/// `first_error` of a command that should have failed, or that it did not.
fn refusal(out: &Output) -> String {
    if out.success() {
        "rbm-launch went ahead (exit 0)".to_string()
    } else {
        first_error(out)
    }
}

/// Two profile files with the same moniker: `up` and `stop` of the second
/// must leave the first one's running pair alone.
fn moniker_cases(ctx: &Ctx) -> Result<Vec<Row>> {
    let podman = &ctx.podman;
    clean(podman, "hpc1")?;
    let dir = ctx.dir("pieces-moniker")?;
    for who in ["mine", "theirs"] {
        std::fs::create_dir_all(dir.join(who))?;
        std::fs::write(
            dir.join(who).join("rbm.toml"),
            profile("hpc1", 74, &format!("{who}: the same moniker"), ""),
        )?;
    }
    let mine = dir.join("mine/rbm.toml").display().to_string();
    let theirs = dir.join("theirs/rbm.toml").display().to_string();
    let rows = (|| {
        ctx.launch(&["up", &mine])?
            .check()
            .context("up of the first file")?;
        let before = container_id(podman, "rbm-hpc1-sentry")?;
        let still = |out: &Output| -> Result<(bool, String)> {
            let after = container_id(podman, "rbm-hpc1-sentry")?;
            let kept =
                after.is_some() && after == before && podman.is_running("rbm-hpc1-bottle")?;
            let state = if kept {
                "the first pair still runs (same sentry)"
            } else if after.is_some() {
                "the first pair was replaced by the second file's"
            } else {
                "the first pair is gone"
            };
            Ok((kept && !out.success(), format!("{}; {state}", refusal(out))))
        };
        let up = ctx.launch(&["up", &theirs])?;
        let (up_pass, up_seen) = still(&up)?;
        let stop = ctx.launch(&["stop", &theirs])?;
        let (stop_pass, stop_seen) = still(&stop)?;
        Ok::<_, anyhow::Error>(vec![
            Row::new(
                GROUP,
                "moniker-reused-by-another-file-up",
                "a second profile file takes the moniker of a running pair and is started with `up`",
                "refused with the owner's file and the fix; the running pair stays",
                up_seen,
                up_pass,
            ),
            Row::new(
                GROUP,
                "moniker-reused-by-another-file-stop",
                "`stop` of a second profile file with the moniker of a running pair",
                "refused with the owner's file and the fix; the running pair stays",
                stop_seen,
                stop_pass,
            ),
        ])
    })();
    let _ = ctx.launch(&["stop", &mine]);
    clean(podman, "hpc1")?;
    rows
}

/// A credential from the user's own Podman secret `secret` (value in a
/// file of `dir`), as a profile's `[[credential]]`.
fn user_secret(podman: &Podman, dir: &Path, secret: &str) -> Result<String> {
    let value = dir.join(format!("{secret}.value"));
    std::fs::write(&value, "the user's own value")?;
    podman.run_ok(&["secret", "create", secret, &value.display().to_string()])?;
    Ok(format!(
        "\n[[credential]]\nenv = \"MINE\"\nfrom = \"podman-secret:{secret}\"\nhosts = [\"api.hpc.test\"]\n"
    ))
}

/// A credential pair started through a podman that logs its argument
/// vectors: the placeholder and the profile's text must be in none.
fn argv_case(ctx: &Ctx) -> Result<Row> {
    let podman = &ctx.podman;
    clean(podman, "hpc2")?;
    podman.run(&["secret", "rm", "hpc2-user-key"])?;
    let dir = ctx.dir("pieces-argv")?;
    let credential = user_secret(podman, &dir, "hpc2-user-key")?;
    let marker = "profile text marker 5d1f0c";
    let file = dir.join("rbm.toml");
    std::fs::write(&file, profile("hpc2", 75, marker, &credential))?;
    let file = file.display().to_string();
    let log = dir.join("argv.log");
    let logger = logging_podman(ctx, &dir, &log)?;
    let row = (|| {
        launch_with(&logger, &["up", "--yes", &file])?
            .check()
            .context("up of the credential pair")?;
        let env = podman.run_ok(&[
            "container",
            "inspect",
            "--format",
            "{{range .Config.Env}}{{println .}}{{end}}",
            "rbm-hpc2-bottle",
        ])?;
        let placeholder = env
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("MINE="))
            .context("the bottle has no MINE placeholder")?
            .to_string();
        let argv = std::fs::read_to_string(&log).context("the logging podman wrote no log")?;
        let leaks: Vec<&str> = [
            (argv.contains(&placeholder), "the placeholder"),
            (argv.contains(marker), "the profile's text"),
        ]
        .iter()
        .filter(|(leaked, _)| *leaked)
        .map(|(_, what)| *what)
        .collect();
        Ok::<_, anyhow::Error>(Row::new(
            GROUP,
            "placeholder-and-profile-in-argv",
            "a credential pair is started; another local user reads podman's argument vectors in /proc",
            "neither the bottle's placeholder nor the profile's text is in any podman argv (they go in podman's environment)",
            if leaks.is_empty() {
                format!("{} podman argvs logged: neither is in any", argv.lines().count())
            } else {
                format!("{} in podman's argv", leaks.join(" and "))
            },
            leaks.is_empty(),
        ))
    })();
    let _ = ctx.launch(&["stop", &file]);
    clean(podman, "hpc2")?;
    podman.run(&["secret", "rm", "hpc2-user-key"])?;
    row
}

/// The profile's credential comes from the user's own Podman secret named
/// like rbm's (`rbm-hpc2-cred-MINE`): `up` and `stop` must leave it, and
/// `stop` must still remove the CA secrets rbm made.
fn user_secret_case(ctx: &Ctx) -> Result<Row> {
    let podman = &ctx.podman;
    clean(podman, "hpc2")?;
    let dir = ctx.dir("pieces-secret")?;
    let secret = "rbm-hpc2-cred-MINE";
    let credential = user_secret(podman, &dir, secret)?;
    let file = dir.join("rbm.toml");
    std::fs::write(&file, profile("hpc2", 75, "a user's secret", &credential))?;
    let file = file.display().to_string();
    let row = (|| {
        let up = ctx.launch(&["up", "--yes", &file])?;
        let stop = ctx.launch(&["stop", &file])?;
        let kept = podman.run(&["secret", "exists", secret])?.success();
        let mut ours_gone = true;
        for s in ["rbm-hpc2-ca", "rbm-hpc2-ca-bundle"] {
            ours_gone &= !podman.run(&["secret", "exists", s])?.success();
        }
        let steps = match (up.success(), stop.success()) {
            (true, true) => "up and stop ok".to_string(),
            (false, _) => format!("up failed: {}", first_error(&up)),
            (true, false) => format!("stop failed: {}", first_error(&stop)),
        };
        Ok::<_, anyhow::Error>(Row::new(
            GROUP,
            "stop-removes-a-user-secret",
            "the profile's credential is the user's own Podman secret rbm-hpc2-cred-MINE (named like rbm's); `up`, then `stop`",
            "the user's secret stays; the CA secrets rbm made are removed",
            format!(
                "{steps}; user's secret {}; rbm's CA secrets {}",
                if kept { "kept" } else { "deleted" },
                if ours_gone { "removed" } else { "left" }
            ),
            up.success() && stop.success() && kept && ours_gone,
        ))
    })();
    clean(podman, "hpc2")?;
    row
}

/// A podman that appends its argument vector to `log` (one line a call,
/// as /proc/PID/cmdline shows it), then runs the Podman under test.
fn logging_podman(ctx: &Ctx, dir: &Path, log: &Path) -> Result<PathBuf> {
    // Through RBM_ENTER, rbm-launch runs where Podman runs: podman is on PATH there.
    let real = match std::env::var(ENTER_ENV) {
        Ok(e) if !e.is_empty() => "podman".to_string(),
        _ => ctx.podman.program().to_string(),
    };
    let path = dir.join("podman");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec {real} \"$@\"\n",
            log.display()
        ),
    )?;
    set_mode(&path, 0o755)?;
    Ok(path)
}

/// `rbm-launch --podman PODMAN ARGS` from `/`, where the Podman under
/// test runs (through RBM_ENTER, as `Launcher` does).
fn launch_with(podman: &Path, args: &[&str]) -> Result<Output> {
    let launcher = launcher()?;
    let podman = podman.display().to_string();
    let mut all = vec![
        "-u",
        PODMAN_ENV,
        "-C",
        "/",
        launcher.as_str(),
        "--podman",
        &podman,
    ];
    all.extend_from_slice(args);
    match std::env::var(ENTER_ENV) {
        Ok(enter) if !enter.is_empty() => {
            let mut entered = vec!["env"];
            entered.extend(all);
            cmd::run(&enter, &entered, LAUNCH_TIMEOUT)
        }
        _ => cmd::run("env", &all, LAUNCH_TIMEOUT),
    }
}

/// The rbm-launch under test (RBM_LAUNCH, as `Launcher` finds it).
fn launcher() -> Result<String> {
    Ok(match std::env::var(LAUNCH_ENV) {
        Ok(p) if !p.is_empty() => p,
        _ => workspace_root()
            .join("target/debug/rbm-launch")
            .display()
            .to_string(),
    })
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// A program that leaves `marker` when it runs (a shell builtin only: the
/// PATH it runs with may hold nothing else).
fn marking_program(path: &Path, marker: &Path) -> Result<()> {
    std::fs::write(
        path,
        format!(
            "#!/bin/sh\n: > '{}'\necho '5.8.6|linux/amd64'\n",
            marker.display()
        ),
    )?;
    set_mode(path, 0o755)
}

/// rbm-launch run in a folder whose `./podman` and `./bin/podman` leave a
/// marker, with PATH holding only relative entries (`bin`, `.`, empty).
/// Run here, not where Podman runs: nothing of Podman is needed.
fn relative_path_podman(ctx: &Ctx) -> Result<Row> {
    let dir = ctx.dir("pieces-path")?;
    let marker = dir.join("ran");
    std::fs::create_dir_all(dir.join("bin"))?;
    marking_program(&dir.join("podman"), &marker)?;
    marking_program(&dir.join("bin/podman"), &marker)?;
    let launcher = launcher()?;
    let cwd = dir.display().to_string();
    let out = cmd::run(
        "env",
        &[
            "-u",
            PODMAN_ENV,
            "-C",
            &cwd,
            "PATH=bin:.:",
            &launcher,
            "info",
        ],
        Duration::from_secs(30),
    )?;
    let ran = marker.exists();
    Ok(Row::new(
        GROUP,
        "podman-in-a-relative-path-entry",
        "the current folder holds podman and bin/podman; PATH has `bin`, `.` and an empty entry",
        "neither is run: only absolute PATH entries are searched",
        if ran {
            "a podman of the current folder was run".to_string()
        } else {
            format!("neither was run (`info` exited {})", out.status)
        },
        !ran,
    ))
}

/// rbm-launch (outside any checkout, RBM_AGENT_BIN unset) run in a folder
/// that looks like an rbm checkout: Cargo.toml, profiles/, scripts/podman5
/// and a built agent. Its agent must not become the sentry's.
fn checkout_in_cwd(ctx: &Ctx) -> Result<Row> {
    let dir = ctx.dir("pieces-checkout")?;
    let marker = dir.join("ran");
    std::fs::create_dir_all(dir.join("profiles"))?;
    std::fs::create_dir_all(dir.join("scripts"))?;
    std::fs::create_dir_all(dir.join("target/x86_64-unknown-linux-musl/release"))?;
    std::fs::write(dir.join("Cargo.toml"), "[workspace]\n")?;
    std::fs::write(
        dir.join("profiles/demo.toml"),
        profile("hpc3", 74, "fake", ""),
    )?;
    marking_program(&dir.join("scripts/podman5"), &marker)?;
    marking_program(
        &dir.join("target/x86_64-unknown-linux-musl/release/rbm-agent"),
        &marker,
    )?;
    let launcher = launcher()?;
    let cwd = dir.display().to_string();
    let out = cmd::run(
        "env",
        &[
            "-u",
            PODMAN_ENV,
            "-u",
            "RBM_AGENT_BIN",
            "-u",
            "RBM_FILES",
            "-C",
            &cwd,
            &launcher,
            "--podman",
            "/bin/false",
            "info",
        ],
        Duration::from_secs(30),
    )?;
    let files = out
        .stdout
        .lines()
        .find(|l| l.starts_with("rbm files:"))
        .unwrap_or("(no `rbm files:` line)")
        .to_string();
    let taken = files.contains(&cwd);
    Ok(Row::new(
        GROUP,
        "rbm-files-from-the-current-folder",
        "rbm-launch (not installed, outside its checkout) runs in a folder laid out like an rbm checkout with its own agent",
        "the folder is not taken as rbm's files (its agent would become the sentry); only --rbm-files names them",
        files,
        !taken && !marker.exists(),
    ))
}

/// A cloned repository with its own `profiles/demo.toml`: `rbm-launch
/// check demo` typed there must not take it for rbm's demo.
fn shadowed_demo(ctx: &Ctx) -> Result<Row> {
    let dir = ctx.dir("pieces-shadow")?;
    std::fs::create_dir_all(dir.join("profiles"))?;
    std::fs::write(
        dir.join("profiles/demo.toml"),
        profile("hpc4", 74, "a repository's own demo", ""),
    )?;
    let cwd = dir.display().to_string();
    let out = cmd::run(
        "env",
        &["-C", &cwd, &launcher()?, "check", "demo"],
        Duration::from_secs(30),
    )?;
    let refused = out.status.code() == Some(2)
        && out.stderr.contains("has the name of a profile rbm ships")
        && out.stderr.contains("fix:");
    Ok(Row::new(
        GROUP,
        "repository-profile-shadows-the-demo",
        "`rbm-launch check demo` typed in a cloned repository that holds its own profiles/demo.toml",
        "refused (exit 2): the name is rbm's demo's too; the fix names both paths",
        format!("exit {:?}: {}", out.status.code(), first_error(&out)),
        refused,
    ))
}

/// `cat rbm.toml | rbm-launch check /dev/stdin`: read from a pipe, the
/// profile's folder would be /dev, and `./shm` a volume "in its folder".
fn profile_from_a_pipe(ctx: &Ctx) -> Result<Row> {
    let dir = ctx.dir("pieces-pipe")?;
    let text = profile("hpc5", 74, "from a pipe", "")
        .replace("[enclave]", "volumes = [\"./shm:/shm\"]\n\n[enclave]");
    let file = dir.join("rbm.toml");
    std::fs::write(&file, text)?;
    let script = format!("cat {} | {} check /dev/stdin", file.display(), launcher()?);
    let out = cmd::run("sh", &["-c", &script], Duration::from_secs(30))?;
    let took_dev = out.stdout.contains("/dev/shm");
    let refused = out.status.code() == Some(2) && out.stderr.contains("is not a regular file");
    Ok(Row::new(
        GROUP,
        "profile-from-a-pipe",
        "`cat rbm.toml | rbm-launch check /dev/stdin` with a volume ./shm (its folder would be /dev)",
        "refused (exit 2): a profile is a regular file, its folder its own",
        format!(
            "exit {:?}: {}{}",
            out.status.code(),
            first_error(&out),
            if took_dev { "; listed /dev/shm" } else { "" }
        ),
        refused && !took_dev,
    ))
}
