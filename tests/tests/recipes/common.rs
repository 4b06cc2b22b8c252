//! What the recipe tests share: the Podman and rbm-launch under test, a
//! recipe folder and a workspace of their own, and who should own what the
//! agent writes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use rbm_tests::launcher::Launcher;
use rbm_tests::podman::{fresh_dir, require_podman, test_images, Podman};

/// This machine's CA bundle (see `Ctx::build_args`).
const HOST_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How long `rbm-launch run` may take, a first build included.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(900);

/// The Podman and rbm-launch under test.
pub struct Ctx {
    pub podman: Podman,
    pub launcher: Launcher,
    pub rootless: bool,
}

impl Ctx {
    /// None if the test must be skipped (a failure in CI).
    pub fn new(what: &str) -> Result<Option<Ctx>> {
        let Ok(podman) = require_podman(what) else {
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

    /// The host user and group the agent's files must belong to, and that
    /// owns the workspace: rootful, a user of the test's choosing (the
    /// workspace's owner is who the agent is on the host); rootless, the
    /// user who runs Podman (uid 1000 of scripts/podman5's holder).
    pub fn owner(&self) -> (u32, u32) {
        if self.rootless {
            (1000, 1000)
        } else {
            (4242, 4343)
        }
    }

    /// RBM_BUILD_ARGS for a recipe build on this machine, whose package
    /// registries' TLS only the host's CA bundle trusts (PODMAN5.md): the
    /// bundle over the build's system bundle (Node's npm and Debian's pip
    /// read it) and an npm cache of its own per mode (a rootless build
    /// cannot use a cache a rootful one wrote), in RBM_BUILD_CACHE (CI:
    /// under /var/cache/rbm, kept between runs, visible to the Podman
    /// holders through RBM_PODMAN5_BINDS) or under target/. A user's own
    /// machine needs none of it: the recipes stay plain Containerfiles.
    pub fn build_args(&self) -> Result<String> {
        use std::os::unix::fs::PermissionsExt;
        let cache = match std::env::var_os("RBM_BUILD_CACHE") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => rbm_tests::bins::workspace_root().join("target/recipe-build"),
        };
        let mode = if self.rootless { "rootless" } else { "rootful" };
        let npm = cache.join(format!("npm-{mode}"));
        std::fs::create_dir_all(&npm)?;
        let (uid, gid) = self.owner();
        if self.rootless {
            std::os::unix::fs::chown(&npm, Some(uid), Some(gid))?;
        }
        let ca = cache.join("ca.crt");
        std::fs::copy(HOST_BUNDLE, &ca).with_context(|| format!("copying {HOST_BUNDLE}"))?;
        std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o644))?;
        for dir in cache
            .ancestors()
            .take_while(|d| d.starts_with("/var/cache/rbm"))
        {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        }
        Ok(format!(
            "--volume={}:/etc/ssl/certs/ca-certificates.crt:ro --volume={}:/root/.npm",
            ca.display(),
            npm.display()
        ))
    }

    /// A fresh workspace for `name`, owned by [`Ctx::owner`], private.
    pub fn workspace(&self, name: &str) -> Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let dir = fresh_dir(&format!("recipe-{name}-workspace"))?;
        let (uid, gid) = self.owner();
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(dir)
    }
}

/// A recipe folder for `name`: `files` (name, contents) written into a
/// fresh folder that the rootless client may read.
pub fn recipe(name: &str, files: &[(&str, &str)]) -> Result<PathBuf> {
    let dir = fresh_dir(&format!("recipe-{name}"))?;
    for (file, text) in files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(dir)
}

/// The owner and group of `path` on the host.
pub fn owner_of(path: &Path) -> Result<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    Ok((m.uid(), m.gid()))
}

/// Whether anything of `moniker` (containers, networks) is left.
pub fn leftovers(podman: &Podman, moniker: &str) -> Result<Vec<String>> {
    let mut left = Vec::new();
    for what in ["bottle", "sentry"] {
        let name = format!("rbm-{moniker}-{what}");
        if podman.run(&["container", "exists", &name])?.success() {
            left.push(name);
        }
    }
    for what in ["enclave", "uplink"] {
        let name = format!("rbm-{moniker}-{what}");
        if podman.run(&["network", "exists", &name])?.success() {
            left.push(name);
        }
    }
    Ok(left)
}

/// A recipe profile for moniker `moniker` on the test's networks `n`
/// (enclave 10.250.N.0/24, uplink 10.251.N.0/24), its bottle running as
/// 1000:1000 and attaching `attach`; `rest` is appended (uplink fields,
/// credentials).
pub fn profile(moniker: &str, n: u8, attach: &str, domains: &str, rest: &str) -> String {
    format!(
        r#"moniker = "{moniker}"
description = "rbm recipe test"

[bottle]
command = ["sleep", "infinity"]
user = "1000:1000"
attach = {attach}

[enclave]
subnet = "10.250.{n}.0/24"
sentry_ip = "10.250.{n}.2"
bottle_ip = "10.250.{n}.3"

[uplink]
dns = "allowlist"
access = "allowlist"
domains = {domains}
subnet = "10.251.{n}.0/24"
{rest}"#
    )
}

/// Polls `done` every 100 ms until it says yes, or fails after `timeout`.
pub fn poll(timeout: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    while !done()? {
        if std::time::Instant::now() >= deadline {
            anyhow::bail!("not within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// On drop, even after a panic: the world container `rbm-MONIKER-world`
/// removed, `rbm-launch stop` of the recipe, and whatever of the moniker
/// is left reported.
pub struct Stop<'a> {
    pub ctx: &'a Ctx,
    pub recipe: String,
    pub moniker: &'static str,
}

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        let _ = self
            .ctx
            .podman
            .remove_container(&format!("rbm-{}-world", self.moniker));
        match self.ctx.launcher.run(&["stop", &self.recipe], RUN_TIMEOUT) {
            Ok(out) if !out.success() => eprintln!("cleanup: {}", out.stderr.trim()),
            Err(e) => eprintln!("cleanup: {e:#}"),
            Ok(_) => {}
        }
        match leftovers(&self.ctx.podman, self.moniker) {
            Ok(left) if left.is_empty() => {}
            Ok(left) => eprintln!("cleanup: left behind: {left:?}"),
            Err(e) => eprintln!("cleanup: {e:#}"),
        }
    }
}

/// Waits until the `run` in the background has made the uplink network of
/// `moniker` (where the test's world then joins), failing at once, with
/// what it said, if `run` ends first.
pub fn wait_for_uplink(ctx: &Ctx, run: &mut rbm_tests::Spawned, moniker: &str) -> Result<String> {
    let uplink = format!("rbm-{moniker}-uplink");
    poll(RUN_TIMEOUT, || {
        Ok(!run.is_running() || ctx.podman.run(&["network", "exists", &uplink])?.success())
    })?;
    if !ctx.podman.run(&["network", "exists", &uplink])?.success() {
        anyhow::bail!(
            "`{}` ended before it made {uplink}\nstderr: {}",
            run.command(),
            run.stderr()
        );
    }
    Ok(uplink)
}

/// A copy of built-in recipe `name` in a fresh folder, and its profile
/// retargeted at the test's own moniker and networks `n` (enclave
/// 10.250.N.0/24, uplink 10.251.N.0/24) with the world at `world_ip` as
/// its DNS upstream: the folder, and the profile's `[bottle]` (taken out,
/// for the caller's changes) and the rest. `write_profile` puts them back.
pub fn built_in_copy(
    name: &str,
    moniker: &str,
    n: u8,
    world_ip: std::net::Ipv4Addr,
) -> Result<(PathBuf, toml::Table, toml::Table)> {
    let from = rbm_tests::bins::workspace_root().join("recipes").join(name);
    let dir = fresh_dir(&format!("recipe-{moniker}"))?;
    for entry in std::fs::read_dir(&from)? {
        let path = entry?.path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap_or_default()))?;
    }
    let mut p: toml::Table = std::fs::read_to_string(from.join("profile.toml"))?.parse()?;
    p.insert("moniker".into(), moniker.into());
    let mut enclave = take_table(&mut p, "enclave")?;
    enclave.insert("subnet".into(), format!("10.250.{n}.0/24").into());
    enclave.insert("sentry_ip".into(), format!("10.250.{n}.2").into());
    enclave.insert("bottle_ip".into(), format!("10.250.{n}.3").into());
    p.insert("enclave".into(), enclave.into());
    let mut uplink = take_table(&mut p, "uplink")?;
    uplink.insert("subnet".into(), format!("10.251.{n}.0/24").into());
    uplink.insert(
        "upstream_dns".into(),
        toml::Value::Array(vec![world_ip.to_string().into()]),
    );
    p.insert("uplink".into(), uplink.into());
    let bottle = take_table(&mut p, "bottle")?;
    Ok((dir, bottle, p))
}

/// The profile `rest` with `bottle` as its `[bottle]`, written to `dir`.
pub fn write_profile(dir: &Path, bottle: toml::Table, mut rest: toml::Table) -> Result<()> {
    rest.insert("bottle".into(), bottle.into());
    std::fs::write(dir.join("profile.toml"), toml::to_string(&rest)?)?;
    Ok(())
}

/// Table `key` of `p`, taken out of it.
fn take_table(p: &mut toml::Table, key: &str) -> Result<toml::Table> {
    match p.remove(key) {
        Some(toml::Value::Table(t)) => Ok(t),
        _ => anyhow::bail!("the recipe's profile has no [{key}]"),
    }
}
