//! Benchmark (not a test): `rbm-launch run claude-code` with its image
//! built, to the agent's first output (`claude --version`: no network),
//! side by side with `podman run --rm` of the same image and command with no
//! sentry, in one run, interleaved, as times and their ratio; then the whole
//! `run` (the pair removed when the agent exits); and the recipe's first
//! build (`podman build --no-cache`, the npm cache warm as CI keeps it).
//!
//! It runs where the end-to-end tests run (RBM_PODMAN, RBM_LAUNCH and
//! RBM_ENTER as for `launch`), as root, with RBM_BUILD_ARGS as this machine
//! needs for npm (see tests/recipes/common.rs; scripts/test's cache):
//!
//! ```sh
//! podman=$(scripts/podman5 up 5.8-rootless)
//! RBM_PODMAN=$podman RBM_ENTER=${podman%/podman}/enter \
//!   RBM_LAUNCH=$PWD/target/x86_64-unknown-linux-musl/release/rbm-launch \
//!   RBM_BUILD_ARGS="--volume=$PWD/target/recipe-build/ca.crt:/etc/ssl/certs/ca-certificates.crt:ro" \
//!   cargo bench -p rbm-tests --bench recipe
//! ```
//!
//! `RBM_BENCH_RUNS` sets the rounds (default 5). Nothing is sent anywhere
//! but the first build's npm download.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rbm_tests::bench::{count_from_env, machine, median};
use rbm_tests::bins::workspace_root;
use rbm_tests::launcher::Launcher;
use rbm_tests::podman::{fresh_dir, recipe_base_image, require_podman, Podman, RecipeBase};

const ROUNDS_ENV: &str = "RBM_BENCH_RUNS";
const ROUNDS: u32 = 5;
const TIMEOUT: Duration = Duration::from_secs(900);
const MONIKER: &str = "rcbench";

/// The built-in claude-code recipe on the benchmark's own networks, its
/// key a stand-in (nothing is asked of the API).
fn recipe() -> Result<String> {
    let from = workspace_root().join("recipes/claude-code");
    let dir = fresh_dir("recipe-bench")?;
    for entry in std::fs::read_dir(&from)? {
        let path = entry?.path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap_or_default()))?;
    }
    let text = std::fs::read_to_string(from.join("profile.toml"))?
        .replace("moniker = \"claude\"", &format!("moniker = \"{MONIKER}\""))
        .replace("10.242.10.", "10.247.10.");
    std::fs::write(dir.join("profile.toml"), text)?;
    Ok(dir.to_string_lossy().into_owned())
}

/// Seconds until `program ARGS` prints a line containing `want`, and
/// seconds until it exits.
fn to_output(program: &str, args: &[String], want: &str) -> Result<(f64, f64)> {
    let start = Instant::now();
    let mut p = rbm_tests::cmd::spawn(program, args)?;
    p.wait_for(|l| l.contains(want), want, TIMEOUT)?;
    let first = start.elapsed().as_secs_f64();
    p.finish(TIMEOUT)?.check()?;
    Ok((first, start.elapsed().as_secs_f64()))
}

fn image_of(launcher: &Launcher, recipe: &str) -> Result<String> {
    let out = launcher.run(&["check", recipe], TIMEOUT)?.check()?;
    out.stdout
        .split(", bottle ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .map(str::to_string)
        .context("check names no image")
}

fn main() -> Result<()> {
    let podman = match require_podman("the recipe benchmark runs containers") {
        Ok(p) => p,
        Err(skipped) => {
            eprintln!("recipe benchmark not run: {skipped}");
            return Ok(());
        }
    };
    recipe_base_image(&podman, RecipeBase::Node)?;
    let launcher = Launcher::find(podman.clone())?;
    let recipe = recipe()?;
    let ws = fresh_dir("recipe-bench-workspace")?;
    let ws_arg = ws.to_string_lossy().into_owned();
    let key = [("ANTHROPIC_API_KEY", "sk-bench-not-a-key")];
    let build = std::env::var("RBM_BUILD_ARGS").unwrap_or_default();
    let env = [key[0], ("RBM_BUILD_ARGS", build.as_str())];
    let (run_program, run_args) = launcher
        .command_line_with_env(&env, &["run", "--yes", &recipe, &ws_arg, "--", "--version"]);
    // Once first: the image, the sentry image, caches.
    to_output(&run_program, &run_args, "Claude Code")?;
    let image = image_of(&launcher, &recipe)?;
    let bare: Vec<String> = ["run", "--rm", "--pull=never", "--user", "1000:1000"]
        .iter()
        .map(|s| s.to_string())
        .chain([image.clone(), "claude".into(), "--version".into()])
        .collect();
    let rounds = count_from_env(ROUNDS_ENV, ROUNDS);
    let (mut first, mut whole, mut alone) = (vec![], vec![], vec![]);
    for _ in 0..rounds {
        let (f, w) = to_output(&run_program, &run_args, "Claude Code")?;
        first.push(f);
        whole.push(w);
        alone.push(to_output(podman.program(), &bare, "Claude Code")?.0);
    }
    let build_secs = first_build(&podman, &recipe, &build)?;
    let show = |v: &[f64]| {
        let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = v.iter().cloned().fold(0.0, f64::max);
        format!("{:.2} s (min {min:.2}, max {max:.2})", median(v))
    };
    let version = podman.run_ok(&["version", "--format", "{{.Client.Version}}"])?;
    let mode = if podman.is_rootless()? {
        "rootless"
    } else {
        "rootful"
    };
    println!("machine: {}", machine());
    println!(
        "Podman {} {mode}, {image}, {rounds} rounds, medians:",
        version.stdout.trim()
    );
    println!(
        "  rbm-launch run claude-code, to the agent's first output: {}",
        show(&first)
    );
    println!(
        "  podman run --rm of the image alone, the same:           {}",
        show(&alone)
    );
    println!(
        "  run / the image alone:                                  {:.1}",
        median(&first) / median(&alone)
    );
    println!(
        "  rbm-launch run to its end (pair removed):               {}",
        show(&whole)
    );
    println!("  first build (podman build --no-cache, npm cache warm):  {build_secs:.1} s");
    Ok(())
}

/// Seconds a build of the recipe without Podman's layer cache takes.
fn first_build(podman: &Podman, recipe: &str, build: &str) -> Result<f64> {
    let tag = format!("localhost/rbm-recipe-{MONIKER}:firstbuild");
    let mut args: Vec<String> = ["build", "--no-cache", "--tag", &tag]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(build.split_whitespace().map(str::to_string));
    args.push(recipe.to_string());
    let start = Instant::now();
    podman.run_for(&args, TIMEOUT)?.check()?;
    let secs = start.elapsed().as_secs_f64();
    podman.run(&["rmi", &tag])?;
    Ok(secs)
}
