//! Benchmark (not a test): `rbm-launch up` to a running bottle, side by
//! side with the Podman under test starting the same bottle image alone
//! (`podman run -d`, the least any launcher pays), in one run, interleaved,
//! reported as times and their ratio; and `rbm-launch stop`.
//!
//! It runs where the end-to-end tests run (RBM_PODMAN, RBM_LAUNCH and
//! RBM_ENTER as README's "Tests" gives them), as root:
//!
//! ```sh
//! podman=$(scripts/podman5 up 5.8-rootless)
//! RBM_PODMAN=$podman RBM_ENTER=${podman%/podman}/enter \
//!   RBM_LAUNCH=$PWD/target/x86_64-unknown-linux-musl/release/rbm-launch \
//!   cargo bench -p rbm-tests --bench launch
//! ```
//!
//! `RBM_BENCH_LAUNCHES` sets the rounds (default 5). Nothing is sent
//! anywhere: the bottle only starts.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rbm_tests::bench::{count_from_env, machine, median};
use rbm_tests::launcher::{Launched, Launcher};
use rbm_tests::podman::{fresh_dir, require_podman, test_images, Podman, BOTTLE_IMAGE};

const MONIKER: &str = "launchbench";
const ROUNDS_ENV: &str = "RBM_BENCH_LAUNCHES";
const ROUNDS: u32 = 5;
const TIMEOUT: Duration = Duration::from_secs(120);
/// The bottle started by podman alone.
const BARE: &str = "rbm-launchbench-bare";

fn profile() -> String {
    format!(
        r#"moniker = "{MONIKER}"
description = "rbm-launch start benchmark"

[bottle]
image = "{BOTTLE_IMAGE}"
command = ["/rbm-probe", "serve", "0.0.0.0:8080"]

[enclave]
subnet = "10.247.0.0/24"
sentry_ip = "10.247.0.2"
bottle_ip = "10.247.0.3"

[uplink]
dns = "allowlist"
access = "allowlist"
domains = ["api.example.test"]
"#
    )
}

/// Seconds `f` took; it must succeed.
fn timed(f: impl FnOnce() -> Result<()>) -> Result<f64> {
    let start = Instant::now();
    f()?;
    Ok(start.elapsed().as_secs_f64())
}

fn launch(launcher: &Launcher, args: &[&str]) -> Result<()> {
    launcher.run(args, TIMEOUT)?.check().map(drop)
}

fn bare(podman: &Podman) -> Result<()> {
    let args = [
        "run",
        "-d",
        "--pull=never",
        "--name",
        BARE,
        "--network",
        "none",
    ];
    let mut all: Vec<&str> = args.to_vec();
    all.extend([BOTTLE_IMAGE, "/rbm-probe", "serve", "0.0.0.0:8080"]);
    podman.run_ok(&all).map(drop)
}

fn remove_bare(podman: &Podman) -> Result<()> {
    podman
        .run_ok(&["rm", "--force", "--ignore", "--time", "0", BARE])
        .map(drop)
}

fn main() -> Result<()> {
    let podman = match require_podman("the launch benchmark starts containers") {
        Ok(p) => p,
        Err(skipped) => {
            eprintln!("launch benchmark not run: {skipped}");
            return Ok(());
        }
    };
    test_images(&podman)?;
    let dir = fresh_dir("launch-bench")?;
    let file = dir.join(format!("{MONIKER}.toml"));
    std::fs::write(&file, profile()).with_context(|| format!("cannot write {}", file.display()))?;
    let file = file.to_string_lossy().into_owned();
    let version = podman.run_ok(&["version", "--format", "{{.Client.Version}}"])?;
    let mode = if podman.is_rootless()? {
        "rootless"
    } else {
        "rootful"
    };
    let launched = Launched {
        launcher: Launcher::find(podman.clone())?,
        profile: file.clone(),
    };
    let launcher = &launched.launcher;
    let rounds = count_from_env(ROUNDS_ENV, ROUNDS);
    // Once first: the sentry image is made, caches are warm.
    launch(launcher, &["up", &file])?;
    launch(launcher, &["stop", &file])?;
    remove_bare(&podman)?;
    let (mut up, mut stop, mut alone) = (vec![], vec![], vec![]);
    for _ in 0..rounds {
        up.push(timed(|| launch(launcher, &["up", &file]))?);
        stop.push(timed(|| launch(launcher, &["stop", &file]))?);
        alone.push(timed(|| bare(&podman))?);
        remove_bare(&podman)?;
    }
    let show = |v: &[f64]| {
        let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = v.iter().cloned().fold(0.0, f64::max);
        format!("{:.2} s (min {min:.2}, max {max:.2})", median(v))
    };
    println!("machine: {}", machine());
    println!(
        "Podman {} {mode}, {rounds} rounds, medians:",
        version.stdout.trim()
    );
    println!("  rbm-launch up, to a running bottle: {}", show(&up));
    println!("  podman run -d of the bottle alone:  {}", show(&alone));
    println!(
        "  up / the bottle alone:              {:.1}",
        median(&up) / median(&alone)
    );
    println!("  rbm-launch stop:                    {}", show(&stop));
    Ok(())
}
