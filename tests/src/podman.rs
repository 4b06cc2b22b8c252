//! Podman for the end-to-end tests: the Podman 5 that rbm-launch drives
//! (`RBM_PODMAN`, e.g. the wrapper `scripts/podman5 up` prints), a timeout
//! on every call, the test images built once per process, and world
//! containers (rbm-world at a fixed address on a Podman network).
//!
//! Podman may be remote and see none of the test's files: build contexts go
//! over its API, and the world containers take their zone on the command
//! line and log their queries to stdout (`podman logs`). Files the podman
//! client writes (exports) go under `<workspace>/target/e2e/`, in
//! directories any user may write to (the client may run unprivileged).

use std::env;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::bins::{static_bin, workspace_root};
use crate::cmd::{self, Output};
use crate::skip::{require_root, skip, Skipped};
use crate::world::log::{queries_in_output, receipts_in_output, was_asked, LoggedQuery, Receipt};
use crate::world::setup::WorldSetup;

/// The environment variable naming the podman program (as for rbm-launch).
pub const PODMAN_ENV: &str = "RBM_PODMAN";

/// `FROM scratch` + static rbm-world (images/test-world).
pub const WORLD_IMAGE: &str = "localhost/rbm-test-world:latest";

/// `FROM scratch` + static rbm-probe, serving TCP on 8888 by default, and
/// this machine's curl with its libraries (images/test-bottle).
pub const BOTTLE_IMAGE: &str = "localhost/rbm-test-bottle:latest";

/// Timeout of every podman call.
pub const PODMAN_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a world container may take to print `ready`.
const WORLD_READY: Duration = Duration::from_secs(30);

/// Label on every world container (value: the container's name).
const WORLD_LABEL: &str = "rbm.e2e.world";

/// `<workspace>/target/e2e`: build contexts and volume directories.
pub fn e2e_dir() -> PathBuf {
    workspace_root().join("target").join("e2e")
}

/// An empty directory `<workspace>/target/e2e/<name>` (emptied if it
/// existed) that any user may write to: the podman client of a rootless
/// or remote flavour runs unprivileged.
pub fn fresh_dir(name: &str) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = e2e_dir().join(name);
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("cannot empty {}", dir.display()))?;
    }
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777))
        .with_context(|| format!("cannot open {} to every user", dir.display()))?;
    Ok(dir)
}

/// The podman program; every call has a timeout.
#[derive(Debug, Clone)]
pub struct Podman {
    program: String,
}

/// Requires root and `RBM_PODMAN`; `reason` says what the test needs them for.
pub fn require_podman(reason: &str) -> Result<Podman, Skipped> {
    require_root(reason)?;
    match env::var(PODMAN_ENV) {
        Ok(program) if !program.is_empty() => Ok(Podman { program }),
        _ => Err(skip(format!(
            "{PODMAN_ENV} is not set ({reason}); run scripts/test, or set \
             {PODMAN_ENV}=$(scripts/podman5 up)"
        ))),
    }
}

impl Podman {
    pub fn program(&self) -> &str {
        &self.program
    }

    /// Runs podman; the output whatever the exit status.
    pub fn run<S: AsRef<str>>(&self, args: &[S]) -> Result<Output> {
        cmd::run(&self.program, args, PODMAN_TIMEOUT)
    }

    /// Runs podman; fails unless it exits 0.
    pub fn run_ok<S: AsRef<str>>(&self, args: &[S]) -> Result<Output> {
        self.run(args)?.check()
    }

    /// Runs podman (which must exit 0) and parses its stdout as JSON.
    pub fn json<S: AsRef<str>>(&self, args: &[S]) -> Result<Value> {
        let out = self.run_ok(args)?;
        serde_json::from_str(&out.stdout)
            .with_context(|| format!("`{}` printed no JSON: {:?}", out.command, out.stdout))
    }

    /// Every container (running or not) with label `key=value`, as `ps --format json`.
    pub fn containers_labelled(&self, key: &str, value: &str) -> Result<Vec<Value>> {
        let filter = format!("label={key}={value}");
        as_list(self.json(&["ps", "--all", "--filter", &filter, "--format", "json"])?)
    }

    /// The names of all networks.
    pub fn network_names(&self) -> Result<Vec<String>> {
        let networks = as_list(self.json(&["network", "ls", "--format", "json"])?)?;
        networks
            .iter()
            .map(|n| n["name"].as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| anyhow!("a network without a name in {networks:?}"))
    }

    /// Whether container `name` exists and runs.
    pub fn is_running(&self, name: &str) -> Result<bool> {
        let out = self.run(&[
            "container",
            "inspect",
            "--format",
            "{{.State.Running}}",
            name,
        ])?;
        Ok(out.success() && out.stdout.trim() == "true")
    }

    /// Whether this Podman runs rootless (as `podman info` says).
    pub fn is_rootless(&self) -> Result<bool> {
        let out = self.run_ok(&["info", "--format", "{{.Host.Security.Rootless}}"])?;
        Ok(out.stdout.trim() == "true")
    }

    /// Kills the sentry's agent the hard way (SIGKILL from the host), not
    /// its supervisor: the container's first process stays, its child goes.
    /// The agent's PID.
    pub fn kill_agent(&self, sentry: &str) -> Result<u32> {
        let agent = self.agent_pid(sentry)?;
        cmd::run_ok("kill", &["-KILL", &agent.to_string()], PODMAN_TIMEOUT)?;
        Ok(agent)
    }

    /// The PID of the sentry's agent (the child of its supervisor, the
    /// container's first process), as the host sees it: a local Podman only.
    pub fn agent_pid(&self, sentry: &str) -> Result<u32> {
        let out = self.run_ok(&["container", "inspect", "--format", "{{.State.Pid}}", sentry])?;
        let first: u32 = out.stdout.trim().parse().context("no PID for the sentry")?;
        let children = fs::read_to_string(format!("/proc/{first}/task/{first}/children"))
            .context("reading the supervisor's children")?;
        Ok(children
            .split_whitespace()
            .next()
            .context("the supervisor has no agent")?
            .parse()?)
    }

    /// The agent's resident memory in KiB (`VmRSS`).
    pub fn agent_rss_kib(&self, sentry: &str) -> Result<u64> {
        let pid = self.agent_pid(sentry)?;
        let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("no VmRSS for the agent")
    }

    /// Runs podman with its own timeout (e.g. a long `exec`).
    pub fn run_for<S: AsRef<str>>(&self, args: &[S], timeout: Duration) -> Result<Output> {
        cmd::run(&self.program, args, timeout)
    }

    /// `podman ARGS` in the background, stopped on drop.
    pub fn spawn<S: AsRef<str>>(&self, args: &[S]) -> Result<cmd::Spawned> {
        cmd::spawn(&self.program, args)
    }

    /// Removes container `name` at once; a missing one is fine.
    pub fn remove_container(&self, name: &str) -> Result<()> {
        self.run_ok(&["rm", "--force", "--ignore", "--time", "0", name])
            .map(drop)
    }

    /// Removes the pair of `moniker` (bottle, sentry, both networks) that
    /// an aborted run may have left: one started from another checkout's
    /// profile file is not this run's, and `rbm-launch up` would refuse
    /// to replace it (a moniker belongs to the file that started it).
    pub fn remove_pair(&self, moniker: &str) -> Result<()> {
        for what in ["bottle", "sentry"] {
            self.remove_container(&format!("rbm-{moniker}-{what}"))?;
        }
        for what in ["enclave", "uplink"] {
            let name = format!("rbm-{moniker}-{what}");
            if self.run(&["network", "exists", &name])?.success() {
                self.run_ok(&["network", "rm", "--force", &name])?;
            }
        }
        Ok(())
    }
}

fn as_list(value: Value) -> Result<Vec<Value>> {
    match value {
        Value::Array(list) => Ok(list),
        Value::Null => Ok(Vec::new()),
        other => bail!("expected a JSON list, got {other}"),
    }
}

/// Builds the test images from the static binaries, once per process (the
/// first caller builds, parallel callers wait for it). Always rebuilt then:
/// a `FROM scratch` build takes a fraction of a second, and an unchanged
/// binary gives the same image.
pub fn test_images(podman: &Podman) -> Result<()> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_test_images(podman).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!("building the test images failed: {e}"))
}

/// The escape battery's hostile bottle (images/attacker): Debian with real
/// network tools, rbm-probe and tests/battery/attacks.py.
pub const ATTACKER_IMAGE: &str = "localhost/rbm-attacker:latest";

/// Builds `ATTACKER_IMAGE` from the Debian root `scripts/attacker-rootfs`
/// makes once (and caches), rbm-probe and the attacks. Podman's layer
/// cache keeps the root's layer between runs.
pub fn attacker_image(podman: &Podman) -> Result<()> {
    // Once per test process: tests that run at once must not build over
    // the image another one is building FROM.
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_attacker_image(podman).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!("building the attacker image failed: {e}"))
}

fn build_attacker_image(podman: &Podman) -> Result<()> {
    let root = workspace_root();
    let tar = cmd::run_ok(
        &root.join("scripts/attacker-rootfs").to_string_lossy(),
        &[] as &[&str],
        Duration::from_secs(900),
    )
    .context("scripts/attacker-rootfs")?;
    let context = e2e_dir().join(format!("context-{}-attacker", std::process::id()));
    fs::create_dir_all(&context)?;
    let built = (|| -> Result<()> {
        let into = context.join("rootfs.tar");
        let from = tar.stdout.trim();
        if fs::hard_link(from, &into).is_err() {
            fs::copy(from, &into).with_context(|| format!("cannot copy {from}"))?;
        }
        fs::copy(static_bin("rbm-probe")?, context.join("rbm-probe"))?;
        let battery = context.join("battery");
        fs::create_dir_all(&battery)?;
        for entry in fs::read_dir(root.join("tests/battery"))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "py") {
                fs::copy(&path, battery.join(path.file_name().unwrap_or_default()))?;
            }
        }
        let containerfile = root.join("images/attacker/Containerfile");
        podman
            .run_for(
                &[
                    "build",
                    "--pull=never",
                    "--quiet",
                    "--tag",
                    ATTACKER_IMAGE,
                    "--file",
                    &containerfile.to_string_lossy(),
                    &context.to_string_lossy(),
                ],
                Duration::from_secs(600),
            )?
            .check()
            .map(drop)
    })();
    let _ = fs::remove_dir_all(&context);
    built
}

/// An official image a recipe starts FROM, which this machine cannot pull
/// (no image registry is reachable): the tests import a stand-in that
/// `scripts/recipe-bases` makes from Debian packages, under the official
/// name, so the recipe stays the Containerfile a user builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipeBase {
    /// Node.js 24 (a current LTS) with npm 11 and user `node` (1000:1000).
    Node,
    /// Python 3.13 with pip and venv; `pip install` as root works.
    Python,
}

impl RecipeBase {
    /// The official image's name, as a recipe's `FROM` says it.
    pub fn image(self) -> &'static str {
        match self {
            RecipeBase::Node => "docker.io/library/node:24-trixie-slim",
            RecipeBase::Python => "docker.io/library/python:3.13-slim-trixie",
        }
    }

    /// Its name for `scripts/recipe-bases`.
    fn script_name(self) -> &'static str {
        match self {
            RecipeBase::Node => "node",
            RecipeBase::Python => "python",
        }
    }

    /// The official image's configuration, as `podman import --change`s.
    /// Neither sets USER: both build and run as root unless a recipe says
    /// otherwise.
    fn config(self) -> &'static [&'static str] {
        match self {
            RecipeBase::Node => &[
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                r#"ENTRYPOINT ["docker-entrypoint.sh"]"#,
                r#"CMD ["node"]"#,
            ],
            RecipeBase::Python => &[
                "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "ENV LANG=C.UTF-8",
                r#"CMD ["python3"]"#,
            ],
        }
    }
}

/// Label on an imported stand-in: the tar it came from (name and time), so
/// a new recipe of `scripts/recipe-bases` is imported again.
const RECIPE_BASE_LABEL: &str = "rbm.recipe-base";

/// Makes `base.image()` present in `podman`: imports the stand-in's tar
/// (made once by `scripts/recipe-bases`) unless an image of that name is
/// there already, imported from the same tar or without the label (the
/// official image itself, where it can be pulled). The tar goes over
/// stdin: a rootless or remote Podman need not see the cache.
pub fn recipe_base_image(podman: &Podman, base: RecipeBase) -> Result<()> {
    // Parallel tests would import the same tar twice.
    static IMPORTING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = IMPORTING.lock().unwrap_or_else(|e| e.into_inner());
    let script = workspace_root().join("scripts/recipe-bases");
    let out = cmd::run_ok(
        &script.to_string_lossy(),
        &[base.script_name()],
        Duration::from_secs(900),
    )
    .context("scripts/recipe-bases")?;
    let tar = PathBuf::from(out.stdout.trim());
    // The tar's name and time: a tar made again (its cache was emptied) is
    // imported again too.
    let name = tar
        .file_name()
        .with_context(|| format!("scripts/recipe-bases printed no tar: {:?}", out.stdout))?
        .to_string_lossy();
    let made = fs::metadata(&tar)
        .and_then(|m| m.modified())
        .with_context(|| format!("cannot stat {}", tar.display()))?
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let made_from = format!("{name}@{made}");
    let format = format!("{{{{.Id}}}} {{{{index .Labels \"{RECIPE_BASE_LABEL}\"}}}}");
    let found = podman.run(&["image", "inspect", "--format", &format, base.image()])?;
    let mut outdated = None;
    if found.success() {
        let (id, label) = found
            .stdout
            .trim()
            .split_once(' ')
            .unwrap_or((found.stdout.trim(), ""));
        if label.is_empty() || label == "<no value>" || label == made_from {
            return Ok(());
        }
        outdated = Some(id.to_string());
    }
    let mut args = vec!["import".to_string(), "--quiet".to_string()];
    let label = format!("LABEL {RECIPE_BASE_LABEL}={made_from}");
    for change in base.config().iter().copied().chain([label.as_str()]) {
        args.extend(["--change".to_string(), change.to_string()]);
    }
    args.extend(["-".to_string(), base.image().to_string()]);
    let input = fs::File::open(&tar).with_context(|| format!("cannot open {}", tar.display()))?;
    cmd::run_with_input(podman.program(), &args, input, Duration::from_secs(600))?.check()?;
    if let Some(id) = outdated {
        // Only a disk-space matter: an image built on the old one keeps it.
        let _ = podman.run(&["image", "rm", &id]);
    }
    Ok(())
}

/// The real client the bottle image carries besides rbm-probe.
const CURL: &str = "/usr/bin/curl";

fn build_test_images(podman: &Podman) -> Result<()> {
    for (image, dir, binary, extra) in [
        (WORLD_IMAGE, "test-world", "rbm-world", None),
        (BOTTLE_IMAGE, "test-bottle", "rbm-probe", Some(CURL)),
    ] {
        let containerfile = workspace_root()
            .join("images")
            .join(dir)
            .join("Containerfile");
        build_image(podman, image, &containerfile, &static_bin(binary)?, extra)?;
    }
    Ok(())
}

/// Copies `program` and the shared libraries `ldd` names for it into
/// `root`, at their own paths (a dynamically linked program in a `FROM
/// scratch` image).
fn copy_with_libraries(program: &str, root: &Path) -> Result<()> {
    let ldd = cmd::run_ok("ldd", &[program], PODMAN_TIMEOUT).with_context(|| {
        format!("{program} is needed in the bottle image: install it (scripts/deps)")
    })?;
    let mut files = vec![PathBuf::from(program)];
    files.extend(
        ldd.stdout
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
            .map(PathBuf::from),
    );
    for file in files {
        let to = root.join(file.strip_prefix("/").unwrap_or(&file));
        if let Some(dir) = to.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::copy(&file, &to)
            .with_context(|| format!("cannot copy {} into the build context", file.display()))?;
    }
    Ok(())
}

/// `podman build` of `containerfile` with a context holding only `binary`
/// (and, under `root/`, `extra` with its libraries).
fn build_image(
    podman: &Podman,
    image: &str,
    containerfile: &Path,
    binary: &Path,
    extra: Option<&str>,
) -> Result<()> {
    let name = binary.file_name().context("binary path has no file name")?;
    let context = e2e_dir().join(format!(
        "context-{}-{}",
        std::process::id(),
        name.to_string_lossy()
    ));
    fs::create_dir_all(&context)
        .with_context(|| format!("cannot create build context {}", context.display()))?;
    let built = fs::copy(binary, context.join(name))
        .with_context(|| format!("cannot copy {} into the build context", binary.display()))
        .and_then(|_| {
            fs::create_dir_all(context.join("root"))?;
            match extra {
                Some(program) => copy_with_libraries(program, &context.join("root")),
                None => Ok(()),
            }
        })
        .and_then(|_| {
            podman.run_ok(&[
                "build",
                "--pull=never",
                "--quiet",
                "--tag",
                image,
                "--file",
                &containerfile.to_string_lossy(),
                &context.to_string_lossy(),
            ])
        });
    let _ = fs::remove_dir_all(&context);
    built.map(drop)
}

/// rbm-world in a container at a fixed address on a Podman network; its
/// zone comes on the command line, its query log goes to its stdout, so
/// the container needs no file of the test's. Removed on drop.
pub struct WorldContainer {
    podman: Podman,
    pub name: String,
    pub ip: Ipv4Addr,
}

impl WorldContainer {
    /// Starts `setup` (whose server addresses must be `ip`'s) as container
    /// `name` on `network` at `ip`. Waits for `ready`.
    pub fn start(
        podman: &Podman,
        name: &str,
        network: &str,
        ip: Ipv4Addr,
        setup: &WorldSetup,
    ) -> Result<WorldContainer> {
        podman.remove_container(name)?; // a leftover of an aborted run
        let label = format!("{WORLD_LABEL}={name}");
        let attach = format!("{network}:ip={ip}");
        let mut args: Vec<String> = [
            "run",
            "-d",
            "--pull=never",
            "--name",
            name,
            "--label",
            &label,
            "--network",
            &attach,
            WORLD_IMAGE,
        ]
        .map(String::from)
        .into();
        args.extend(setup.args_without_files());
        let world = WorldContainer {
            podman: podman.clone(),
            name: name.to_string(),
            ip,
        };
        podman.run_ok(&args)?;
        world.wait_ready()?;
        Ok(world)
    }

    fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + WORLD_READY;
        loop {
            let logs = self.podman.run(&["logs", &self.name])?;
            if logs.stdout.lines().any(|l| l.trim() == "ready") {
                return Ok(());
            }
            let running = self.podman.is_running(&self.name)?;
            if !running || Instant::now() >= deadline {
                bail!(
                    "world container {} did not print ready (running: {running})\nstdout: {}\nstderr: {}",
                    self.name,
                    logs.stdout.trim(),
                    logs.stderr.trim()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every DNS query this world received so far.
    pub fn queries(&self) -> Result<Vec<LoggedQuery>> {
        let logs = self.podman.run_ok(&["logs", &self.name])?;
        queries_in_output(&logs.stdout)
    }

    /// Whether `name` was ever asked here (case-insensitive).
    pub fn was_asked(&self, name: &str) -> Result<bool> {
        Ok(was_asked(&self.queries()?, name))
    }

    /// What this world's "what did you get" servers received so far.
    pub fn receipts(&self) -> Result<Vec<Receipt>> {
        let logs = self.podman.run_ok(&["logs", &self.name])?;
        receipts_in_output(&logs.stdout)
    }

    /// What its HTTPS servers were asked so far.
    pub fn https_requests(&self) -> Result<Vec<crate::world::https::HttpsRequest>> {
        let logs = self.podman.run_ok(&["logs", &self.name])?;
        Ok(crate::world::log::https_in_output(&logs.stdout))
    }
}

impl Drop for WorldContainer {
    fn drop(&mut self) {
        if let Err(e) = self.podman.remove_container(&self.name) {
            eprintln!("cleanup: world container {}: {e:#}", self.name);
        }
    }
}
