//! Hostile-profile cases: a recipe from someone else (`rbm-launch run
//! ./their-recipe`), from the hostile review of issue 22. Each was accepted
//! before its fix: a build that asks for the host's network or the shared
//! build cache, a key in the build's context, a recipe volume standing in
//! for the folder the user named, a workspace that is the home folder of
//! the user sudo names, a Containerfile that is a link, and a build the
//! yes did not mention. All are refused before anything is built or
//! started; nothing is sent anywhere (moniker hpr, 10.250.76.0/24).

use std::path::{Path, PathBuf};

use anyhow::Result;
use rbm_tests::podman::BOTTLE_IMAGE;
use rbm_tests::Output;

use crate::common::{first_error, Ctx, Row, REACHES_NOTHING};

const GROUP: &str = "recipes";
const MONIKER: &str = "hpr";

pub fn cases(ctx: &Ctx) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (case, tries, run) in [
        (
            "recipe-build-on-the-host-network",
            "its Containerfile has `RUN --network=host` (the host's loopback services during the build)",
            "RUN --network=host true",
        ),
        (
            "recipe-build-reads-the-shared-cache",
            "its Containerfile has `RUN --mount=type=cache` (the build cache the user's other builds share)",
            "RUN --mount=type=cache,target=/c true",
        ),
        (
            "recipe-build-mounts-another-image",
            "its Containerfile has `RUN --mount=from=IMAGE` (files of any local image)",
            "RUN --mount=from=localhost/rbm-sentry:latest,source=/,target=/s true",
        ),
    ] {
        let dir = recipe(ctx, case, &format!("FROM {BOTTLE_IMAGE}\n{run}\n"), "")?;
        let out = run_recipe(ctx, &dir, &[])?;
        rows.push(refused(case, tries, &out, "asks `RUN"));
    }
    let key = "[[credential]]\nenv = \"K\"\nfrom = \"file:key.txt\"\nhosts = [\"api.hpr.test\"]\n";
    let dir = recipe(ctx, "key", &format!("FROM {BOTTLE_IMAGE}\n"), key)?;
    // A credential needs its host allowed and names through the sentry.
    let text = std::fs::read_to_string(dir.join("profile.toml"))?.replace(
        REACHES_NOTHING,
        "dns = \"allowlist\"\naccess = \"allowlist\"\ndomains = [\"api.hpr.test\"]\nupstream_dns = [\"10.251.76.53\"]",
    );
    std::fs::write(dir.join("profile.toml"), text)?;
    std::fs::write(dir.join("key.txt"), "real-key")?;
    let out = run_recipe(ctx, &dir, &[])?;
    rows.push(refused(
        "recipe-key-in-the-build-context",
        "its credential's `file:` lies in the recipe's folder, the build's context (a COPY or RUN --mount hands the key to the build and image)",
        &out,
        "build could read",
    ));
    let volume =
        "volumes = [{ host = \"/\", bottle = \"/workspace\", read_only = true, outside = true }]\n";
    let dir = recipe(ctx, "volume", &format!("FROM {BOTTLE_IMAGE}\n"), "")?;
    let text = std::fs::read_to_string(dir.join("profile.toml"))?
        .replace("[bottle]\n", &format!("[bottle]\n{volume}"));
    std::fs::write(dir.join("profile.toml"), text)?;
    let out = run_recipe(ctx, &dir, &[])?;
    rows.push(refused(
        "recipe-volume-stands-in-for-the-workspace",
        "its own volume at /workspace (the host's /) replaces the folder the user names, which the listing and the home check look at",
        &out,
        "/workspace",
    ));
    let dir = recipe(ctx, "link", "", "")?;
    std::fs::write(dir.join("real"), format!("FROM {BOTTLE_IMAGE}\n"))?;
    std::fs::remove_file(dir.join("Containerfile"))?;
    std::os::unix::fs::symlink("real", dir.join("Containerfile"))?;
    let out = run_recipe(ctx, &dir, &[])?;
    rows.push(refused(
        "recipe-containerfile-is-a-link",
        "its Containerfile is a link (hashed as a link, read by podman as its target: a changed target would not be asked about again)",
        &out,
        "not a link",
    ));
    // Under sudo, $HOME is root's; the user's home is the one to keep out.
    // Where rbm-launch runs: a user with a home that exists there.
    let (uid, home) = if ctx.rootless {
        ("1000", "/home/rbm")
    } else {
        ("0", "/root")
    };
    let dir = recipe(ctx, "sudo", &format!("FROM {BOTTLE_IMAGE}\n"), "")?;
    let out = ctx.launcher.run_with_env(
        &[
            ("HOME", "/nonexistent"),
            ("SUDO_UID", uid),
            ("SUDO_GID", uid),
        ],
        &["run", "--yes", &dir.to_string_lossy(), home],
        crate::common::LAUNCH_TIMEOUT,
    )?;
    rows.push(refused(
        "recipe-workspace-is-the-sudo-users-home",
        "`sudo rbm-launch run` in the user's home ($HOME is root's under sudo): the agent would rewrite its shell start-up files",
        &out,
        "holds your home folder",
    ));
    let dir = recipe(ctx, "listed", &format!("FROM {BOTTLE_IMAGE}\n"), "")?;
    let ws = workspace(ctx, "listed")?;
    let out = ctx.launcher.run_with_env(
        &[("XDG_STATE_HOME", &ws.join("state").to_string_lossy())],
        &[
            "run",
            &dir.to_string_lossy(),
            &ws.join("w").to_string_lossy(),
        ],
        crate::common::LAUNCH_TIMEOUT,
    )?;
    let containerfile = dir.join("Containerfile");
    let listed = out.stdout.lines().chain(out.stderr.lines()).any(|l| {
        l.trim_start().starts_with("build") && l.contains(&*containerfile.to_string_lossy())
    });
    rows.push(Row::new(
        GROUP,
        "recipe-build-not-in-the-yes",
        "its build runs the Containerfile's RUN lines with the network before the pair starts; the list the user says yes to did not say so",
        "the build is listed with the Containerfile, and nothing runs without a yes",
        if listed && !out.success() {
            format!("listed; {}", first_error(&out))
        } else {
            format!("listed: {listed}; exit {}", out.status)
        },
        listed && !out.success(),
    ));
    Ok(rows)
}

/// A recipe folder for `case`: `containerfile`, and a profile of moniker
/// hpr whose bottle reaches nothing, with `extra` appended.
fn recipe(ctx: &Ctx, case: &str, containerfile: &str, extra: &str) -> Result<PathBuf> {
    let dir = ctx.dir(&format!("recipe-{case}"))?;
    std::fs::write(dir.join("Containerfile"), containerfile)?;
    let profile = format!(
        "moniker = \"{MONIKER}\"\ndescription = \"a hostile recipe\"\n[bottle]\ncommand = [\"/rbm-probe\", \"serve\", \"0.0.0.0:8888\"]\n[enclave]\nsubnet = \"10.250.76.0/24\"\nsentry_ip = \"10.250.76.2\"\nbottle_ip = \"10.250.76.3\"\n[uplink]\n{REACHES_NOTHING}\n{extra}"
    );
    std::fs::write(dir.join("profile.toml"), profile)?;
    Ok(dir)
}

/// A workspace folder beside the recipes, any user may use.
fn workspace(ctx: &Ctx, case: &str) -> Result<PathBuf> {
    let dir = ctx.dir(&format!("recipe-{case}-workspace"))?;
    std::fs::create_dir_all(dir.join("w"))?;
    Ok(dir)
}

/// `rbm-launch run --yes RECIPE WORKSPACE` with `env`.
fn run_recipe(ctx: &Ctx, dir: &Path, env: &[(&str, &str)]) -> Result<Output> {
    let ws = workspace(ctx, &dir.file_name().unwrap_or_default().to_string_lossy())?;
    ctx.launcher.run_with_env(
        env,
        &[
            "run",
            "--yes",
            &dir.to_string_lossy(),
            &ws.join("w").to_string_lossy(),
        ],
        crate::common::LAUNCH_TIMEOUT,
    )
}

/// A row that passes when rbm-launch refused, its message saying `why`,
/// and nothing of the moniker was built or started.
fn refused(case: &str, tries: &str, out: &Output, why: &str) -> Row {
    let pass = !out.success() && out.stderr.contains(why) && !out.stderr.contains("STEP 1/");
    let observed = if out.success() {
        "rbm-launch went ahead (exit 0)".to_string()
    } else {
        first_error(out)
    };
    Row::new(
        GROUP,
        case,
        tries,
        "refused with the file and the fix before any build or start",
        observed,
        pass,
    )
}
