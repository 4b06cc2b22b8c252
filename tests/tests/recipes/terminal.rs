//! The interactive attach: `rbm-launch run` on a real pseudo-terminal, a
//! recipe whose agent is a shell; what is typed reaches it and its answer
//! comes back, the files it writes in the workspace are the host user's,
//! and leaving it stops the pair.

use std::time::Duration;

use anyhow::{ensure, Result};
use rbm_tests::podman::{attacker_image, ATTACKER_IMAGE};
use rbm_tests::pty::Terminal;

use crate::common::{leftovers, owner_of, profile, recipe, Ctx, RUN_TIMEOUT};

const MONIKER: &str = "rcpty";

#[test]
fn run_attaches_a_terminal_and_leaving_stops_the_pair() -> Result<()> {
    let Some(ctx) = Ctx::new("drives rbm-launch run on a terminal")? else {
        return Ok(());
    };
    // A Debian bottle with a shell (the escape battery's image).
    attacker_image(&ctx.podman)?;
    let dir = recipe(
        "terminal",
        &[
            ("Containerfile", &format!("FROM {ATTACKER_IMAGE}\n")),
            (
                "profile.toml",
                &profile(MONIKER, 80, r#"["/bin/sh"]"#, r#"["none.e2e.test"]"#, ""),
            ),
        ],
    )?;
    let ws = ctx.workspace("terminal")?;
    let (program, args) = ctx.launcher.command_line(&[
        "run",
        "--yes",
        &dir.to_string_lossy(),
        &ws.to_string_lossy(),
    ]);
    let mut term = Terminal::spawn(&program, &args)?;
    let up = term.wait_for("filter ready", 0, RUN_TIMEOUT)?;
    // The shell's prompt, then a line typed as a person types it.
    let at = term.wait_for("$ ", up, Duration::from_secs(60))?;
    term.type_text("echo typed-$((6*7)) > /workspace/typed; echo answer-$((6*7)); id -u\r")?;
    // The terminal echoes what was typed, the shell answers.
    let at = term.wait_for("echo typed-$((6*7))", at, Duration::from_secs(30))?;
    let at = term.wait_for("answer-42", at, Duration::from_secs(30))?;
    term.wait_for("1000", at, Duration::from_secs(30))?;
    term.type_text("exit\r")?;
    let status = term.wait_exit(Duration::from_secs(120))?;
    let screen = term.screen();
    ensure!(status.success(), "run ended with {status}:\n{screen}");
    ensure!(
        screen.contains(&format!("nothing of moniker {MONIKER} remains")),
        "run did not say the pair stopped:\n{screen}"
    );
    let left = leftovers(&ctx.podman, MONIKER)?;
    ensure!(left.is_empty(), "left after the agent exited: {left:?}");
    let typed = ws.join("typed");
    ensure!(
        std::fs::read_to_string(&typed)?.trim() == "typed-42",
        "the workspace file holds something else"
    );
    let owner = owner_of(&typed)?;
    ensure!(
        owner == ctx.owner(),
        "the agent's file belongs to {owner:?} on the host, not to the user {:?}",
        ctx.owner()
    );
    Ok(())
}

#[test]
fn a_recipe_that_does_not_build_starts_nothing() -> Result<()> {
    let Some(ctx) = Ctx::new("runs a broken recipe through rbm-launch run")? else {
        return Ok(());
    };
    let moniker = "rcbroken";
    let dir = recipe(
        "broken",
        &[
            (
                "Containerfile",
                &format!("FROM {ATTACKER_IMAGE}\nRUN exit 3\n"),
            ),
            (
                "profile.toml",
                &profile(moniker, 85, r#"["/bin/sh"]"#, r#"["none.e2e.test"]"#, ""),
            ),
        ],
    )?;
    attacker_image(&ctx.podman)?;
    let ws = ctx.workspace("broken")?;
    let out = ctx.launcher.run(
        &[
            "run",
            "--yes",
            &dir.to_string_lossy(),
            &ws.to_string_lossy(),
        ],
        RUN_TIMEOUT,
    )?;
    let containerfile = dir.join("Containerfile");
    ensure!(
        !out.success()
            && out.stderr.contains("building recipe")
            && out.stderr.contains(&*containerfile.to_string_lossy()),
        "a failed build was not reported with its Containerfile ({}):\n{}",
        out.status,
        out.stderr
    );
    let left = leftovers(&ctx.podman, moniker)?;
    ensure!(left.is_empty(), "a failed build left {left:?}");
    Ok(())
}

/// What `rbm-launch run --workspace-volume` names: the Podman volume is
/// the workspace, for a remote Podman that shares no folder of this
/// machine (scripts/test runs this one on the remote flavours too).
#[test]
fn named_volume_is_the_workspace_where_no_folder_is_shared() -> Result<()> {
    let Some(ctx) = Ctx::new("runs a recipe on a Podman volume")? else {
        return Ok(());
    };
    attacker_image(&ctx.podman)?;
    let moniker = "rcvolume";
    let volume = "rbm-test-recipe-workspace";
    let _ = ctx.podman.run(&["volume", "rm", "--force", volume]);
    let dir = recipe(
        "volume",
        &[
            ("Containerfile", &format!("FROM {ATTACKER_IMAGE}\n")),
            (
                "profile.toml",
                &profile(moniker, 86, r#"["/bin/sh"]"#, r#"["none.e2e.test"]"#, ""),
            ),
        ],
    )?;
    let out = ctx.launcher.run(
        &[
            "run",
            "--yes",
            "--workspace-volume",
            volume,
            &dir.to_string_lossy(),
            "--",
            "-c",
            "echo written-$((6*7)) > f; pwd; id -u",
        ],
        RUN_TIMEOUT,
    )?;
    let read = ctx.podman.run(&[
        "run",
        "--rm",
        "--pull=never",
        "-v",
        &format!("{volume}:/w"),
        ATTACKER_IMAGE,
        "cat",
        "/w/f",
    ]);
    let _ = ctx.podman.run(&["volume", "rm", "--force", volume]);
    let out = out.check()?;
    ensure!(
        out.stdout.contains("/workspace\n1000\n"),
        "the agent did not run as 1000 in /workspace:\n{}",
        out.stdout
    );
    let read = read?.check()?;
    ensure!(
        read.stdout.trim() == "written-42",
        "the volume holds {:?}",
        read.stdout
    );
    let left = leftovers(&ctx.podman, moniker)?;
    ensure!(left.is_empty(), "left after the agent exited: {left:?}");
    Ok(())
}
