//! `up` and `stop`: the order that keeps rbm fail-closed. The bottle starts
//! only after its sentry's agent reports ready; removal goes bottle first,
//! and a bottle that cannot be removed keeps its sentry.

use std::path::PathBuf;
use std::thread::sleep;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use rbm_profile::{Names, Profile, ResolvedVolume};

use crate::creds;
use crate::error::Error;
use crate::hostnets;
use crate::images::{self, SENTRY_IMAGE};
use crate::lookup::Loaded;
use crate::owner::BottleRoot;
use crate::podman::host::Engine;
use crate::podman::{args, Podman};

const POLL: Duration = Duration::from_millis(200);

/// What `up` needs besides the profile.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The static rbm-agent binary put into the sentry image.
    pub agent: PathBuf,
    pub ready_timeout: Duration,
    /// The profile as the user named it, for the hints we print.
    pub profile_arg: String,
}

mod survey;
mod volumes;
pub use survey::{host_and_present, Images, Listed, Owner, Present, Survey};
pub use volumes::prepare_volumes;

/// `up` from the start: asks what podman runs (`podman info`: Podman 5
/// or newer, the architecture the agent is chosen for, and whether it is
/// rootful, rootless or remote, which decides who the bottle is on the
/// host: [`BottleRoot`]) and what exists at once, starts the pair, and says so.
/// `podman info` starts helper programs, the slowest question on rootless
/// Podman; it is asked beside the survey, not before it. `options` are
/// `up`'s options for the Podman found.
pub fn up(
    podman: &Podman,
    loaded: &Loaded,
    options: impl FnOnce(&Engine) -> Result<UpOptions, Error>,
) -> Result<(), Error> {
    let (host, survey) = Survey::ask_with_host(podman, &loaded.profile);
    let host = host?;
    let engine = Engine {
        version: host.version.clone(),
        arch: host.arch.clone(),
    };
    let root = BottleRoot::of(&host, loaded.owners_folder());
    let (profile_arg, volumes) = options(&engine)
        .and_then(|opts| {
            let volumes = up_surveyed(podman, &engine.arch, root, loaded, &opts, survey)?;
            Ok((opts.profile_arg, volumes))
        })
        .map_err(|e| e.for_mode(host.mode))?;
    let on = format!("Podman {} ({})", engine.version, engine.arch);
    println!("{}", summary(&loaded.profile, &volumes, &on, &profile_arg));
    Ok(())
}

/// Starts the sentry, waits for its filter, then starts the bottle, for a
/// Podman that runs containers on `arch`, the bottle's root being `root`
/// on the host. `survey` is what podman said before
/// (`Survey::ask_with_host`). On failure everything of the profile is
/// removed again. Returns the bottle's volumes as mounted.
pub fn up_surveyed(
    podman: &Podman,
    arch: &str,
    root: BottleRoot,
    loaded: &Loaded,
    opts: &UpOptions,
    survey: Survey,
) -> Result<Vec<ResolvedVolume>, Error> {
    let names = loaded.profile.names();
    let arg = &opts.profile_arg;
    may_take(&survey.present, loaded, arg, Action::Up)?;
    secrets_free(&survey.present, &loaded.profile, arg)?;
    let volumes = prepare(podman, arch, root, loaded, opts, survey.images)?;
    stop_present(podman, &names, &opts.profile_arg, &survey.present)?;
    if !survey.present.networks_known() {
        // Fail closed: without the list, a DNS answer could open a bridge
        // of the Podman host (its gateway) to the bottle.
        return Err(Error::Podman {
            command: "podman network ls".into(),
            status: "failed".into(),
            stderr: "Podman's networks could not be listed, so their gateways cannot be withheld from DNS answers".into(),
            fix: "check that `podman network ls` works for this user, then run `rbm-launch up` again".into(),
        });
    }
    let host_nets = hostnets::with_local(survey.present.host_nets.clone(), &loaded.profile);
    if let Err(cause) = start(podman, loaded, &volumes, root, opts, &host_nets) {
        progress("start failed; removing what was created");
        return Err(cleanup_after(
            cause,
            podman,
            &loaded.profile.names(),
            &opts.profile_arg,
        ));
    }
    Ok(volumes)
}

/// What `up` (and `quadlet`) need before any container: the checks that
/// touch nothing, the bottle's volume directories, and a sentry image made
/// from the agent for `arch`. `images` is what podman said of them; the
/// directories are given to `owner`. Returns the volumes with resolved
/// host paths.
pub fn prepare(
    podman: &Podman,
    arch: &str,
    root: BottleRoot,
    loaded: &Loaded,
    opts: &UpOptions,
    images: Images,
) -> Result<Vec<ResolvedVolume>, Error> {
    let stamp = images::agent_stamp(&opts.agent)?;
    if images.bottle?.status.code() != Some(0) {
        return Err(Error::BottleImageMissing {
            image: loaded.profile.bottle.image.clone(),
        });
    }
    let volumes = prepare_volumes(&loaded.profile, &loaded.dir, &loaded.path, root)?;
    if images::needs_build(images.sentry_label.as_deref(), &stamp) {
        progress(&format!(
            "making {SENTRY_IMAGE} from {}",
            opts.agent.display()
        ));
        images::build_sentry_image(podman, &opts.agent, &stamp, arch)?;
    }
    Ok(volumes)
}

/// Removes everything of the profile after `cause`; the error to report.
fn cleanup_after(cause: Error, podman: &Podman, names: &Names, profile_arg: &str) -> Error {
    let failures = match stop(podman, names, profile_arg) {
        Ok(()) => return cause,
        Err(Error::StopFailed { failures, .. }) => failures,
        Err(other) => vec![other],
    };
    Error::CleanupFailed {
        cause: Box::new(cause),
        failures,
        profile: profile_arg.to_string(),
    }
}

fn start(
    podman: &Podman,
    loaded: &Loaded,
    volumes: &[ResolvedVolume],
    root: BottleRoot,
    opts: &UpOptions,
    host_nets: &[IpNet],
) -> Result<(), Error> {
    let p = &loaded.profile;
    let n = p.names();
    let owner = loaded.owner();
    let planned = creds::prepare(podman, p, &loaded.dir, &owner)?;
    let request_cas = creds::request_cas(p, &loaded.path, &loaded.dir)?;
    // The sentry terminates TLS for credential hosts and hosts with
    // request rules: the bottle gets its CA for either.
    let inspects = !planned.is_empty() || !p.requests.is_empty();
    progress(&format!("creating networks {} and {}", n.enclave, n.uplink));
    // Two independent calls: at once.
    let (uplink, enclave) = survey::at_once(
        || podman.run(&args::network_create_uplink(p, &owner)),
        || podman.run(&args::network_create_enclave(p, &owner)),
    );
    enclave.and(uplink)?;
    progress(&format!("starting sentry {}", n.sentry));
    let mut sentry_extra = creds::sentry_args(&planned);
    sentry_extra.extend(hostnets::sentry_args(host_nets));
    // The profile's text and the placeholders go in podman's environment,
    // not its argument vector, which any local user can read in /proc.
    let mut sentry_env = args::sentry_env(&loaded.text);
    sentry_env.extend(creds::sentry_env(&planned));
    for (name, _) in &request_cas {
        sentry_extra.extend(["-e".to_string(), name.clone()]);
    }
    sentry_env.extend(request_cas);
    podman.run_env(
        &args::sentry_run(p, &owner, SENTRY_IMAGE, &sentry_extra),
        &sentry_env,
    )?;
    wait_ready(podman, &n.sentry, opts)?;
    if inspects {
        // The CA was made in the sentry; the bottle gets its certificate.
        let ca = podman.run(&args::agent_ca(&n.sentry))?;
        podman.run_with_input(
            &creds::create_secret(&creds::ca_secret(&n), p, &owner),
            ca.as_bytes(),
        )?;
        podman.run_with_input(
            &creds::create_secret(&creds::bundle_secret(&n), p, &owner),
            creds::bundle(&ca).as_bytes(),
        )?;
        if !planned.is_empty() {
            progress(&format!(
                "credentials {} held by the sentry; the bottle gets placeholders",
                planned
                    .iter()
                    .map(|c| c.env.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    // The old pair is gone and the sentry is ready: what the bottle mounts
    // (by path) must be what was listed and checked.
    volumes::unchanged(p, &loaded.dir, &loaded.path, volumes)?;
    progress(&format!("sentry ready; starting bottle {}", n.bottle));
    let mut bottle_extra = creds::bottle_args(&planned, inspects, &n);
    bottle_extra.extend(root.podman_args(p.bottle.user));
    let mut volumes: Vec<String> = volumes.iter().map(ResolvedVolume::podman_arg).collect();
    if let Some(name) = &loaded.workspace_volume {
        // `U`: the volume is the bottle user's, as a folder of the
        // user's would be.
        volumes.push(format!("{name}:{}:U", crate::recipe::WORKSPACE));
    }
    podman.run_env(
        &args::bottle_run(p, &owner, &volumes, &bottle_extra),
        &creds::bottle_env(&planned),
    )?;
    Ok(())
}

/// What is done to a moniker's pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `up`: replaces the pair if this file made it.
    Up,
    /// `stop`: removes it.
    Stop,
}

/// Whether the profile file `loaded` may replace (`up`) or remove (`stop`)
/// what exists of its moniker: only its own pair. A profile from someone
/// else that reuses the moniker of a running pair would otherwise replace
/// or remove that pair (its sentry, its secrets). A pair without the
/// label (an rbm-launch before labels, or made by hand) may be stopped by
/// any file of its moniker, which is how it is cleaned up, but `up` does
/// not replace it. `stop --force` skips this check.
pub fn may_take(
    present: &Present,
    loaded: &Loaded,
    arg: &str,
    action: Action,
) -> Result<(), Error> {
    let moniker = &loaded.profile.moniker;
    let file = loaded.path.display();
    let what = |whose: String| format!("moniker {moniker} is in use by {whose}, not by {file}");
    let err = match (present.owner(&loaded.profile.names(), &loaded.owner()), action) {
        (Owner::Nobody | Owner::This, _) | (Owner::Unlabelled, Action::Stop) => return Ok(()),
        (Owner::Other(other), Action::Up) => Error::NotOurs {
            what: what(format!("a pair that the profile file {other} started")),
            fix: format!("stop that pair with its own file (`rbm-launch stop {other}`), or give {file} another moniker"),
        },
        (Owner::Other(other), Action::Stop) => Error::NotOurs {
            what: what(format!("a pair that the profile file {other} started")),
            fix: format!("stop it with its own file (`rbm-launch stop {other}`); if that file moved or is gone, `rbm-launch stop --force {arg}`"),
        },
        (Owner::Unlabelled, Action::Up) => Error::NotOurs {
            what: what("a pair without rbm's profile label (started by an older rbm-launch, or by hand)".into()),
            fix: format!("if it is yours, remove it with `rbm-launch stop {arg}` and run `up` again; or give {file} another moniker"),
        },
        (Owner::Unknown, _) => Error::NotOurs {
            what: format!("podman could not list its containers or networks, so whether moniker {moniker} belongs to {file} is unknown"),
            fix: format!("check that `podman ps -a` and `podman network ls` work, then run it again (`rbm-launch stop --force {arg}` stops whatever has the moniker)"),
        },
    };
    Err(err)
}

/// `up` refuses to overwrite a Podman secret named like one it makes for
/// the profile that rbm did not make (`podman secret create --replace`
/// would replace a user's own secret).
fn secrets_free(present: &Present, p: &Profile, arg: &str) -> Result<(), Error> {
    let n = p.names();
    let mut wanted: Vec<String> = p
        .credentials
        .iter()
        .filter(|c| !matches!(c.from, rbm_profile::Source::PodmanSecret(_)))
        .map(|c| creds::cred_secret(&n, &c.env))
        .collect();
    if !p.credentials.is_empty() || !p.requests.is_empty() {
        wanted.extend([creds::ca_secret(&n), creds::bundle_secret(&n)]);
    }
    let foreign = present.foreign_secrets(&n);
    match wanted.iter().find(|w| foreign.contains(w)) {
        None => Ok(()),
        Some(name) => Err(Error::NotOurs {
            what: format!("the Podman secret {name} exists and rbm did not make it (it has no rbm label: a secret of yours, or one an rbm-launch from before labels made); `up` of {arg} would replace it"),
            fix: format!("rename or remove that secret (`podman secret rm {name}` if it is not yours or no longer needed), or give the profile another moniker"),
        }),
    }
}

/// Polls `rbm-agent status --json` until it says ready, the sentry dies, or
/// the timeout passes. On failure the sentry's log is printed first.
fn wait_ready(podman: &Podman, sentry: &str, opts: &UpOptions) -> Result<(), Error> {
    let deadline = Instant::now() + opts.ready_timeout;
    loop {
        let out = podman.output(&args::agent_status(sentry, true))?;
        if out.status.success() && is_ready(&String::from_utf8_lossy(&out.stdout)) {
            return Ok(());
        }
        if !is_running(podman, sentry) {
            print_logs(podman, sentry);
            return Err(Error::SentryExited {
                name: sentry.to_string(),
            });
        }
        if Instant::now() >= deadline {
            print_logs(podman, sentry);
            return Err(Error::SentryNotReady {
                name: sentry.to_string(),
                secs: opts.ready_timeout.as_secs(),
                last: last_status(&out),
                profile: opts.profile_arg.clone(),
            });
        }
        sleep(POLL);
    }
}

/// The agent's JSON must say `"ready": true`; its exit code alone is not enough.
pub fn is_ready(json: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(json)
        .map(|v| v.get("ready") == Some(&serde_json::Value::Bool(true)))
        .unwrap_or(false)
}

fn last_status(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    match (out.status.code(), line) {
        (Some(c), "") => format!("exit code {c}"),
        (Some(c), l) => format!("exit code {c}: {l}"),
        (None, l) => format!("killed: {l}"),
    }
}

pub fn is_running(podman: &Podman, container: &str) -> bool {
    matches!(podman.run(&args::is_running(container)), Ok(s) if s.trim() == "true")
}

fn print_logs(podman: &Podman, container: &str) {
    eprintln!("----- podman logs {container} -----");
    match podman.output(&args::logs(container)) {
        Ok(out) => {
            eprint!("{}", String::from_utf8_lossy(&out.stdout));
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
        }
        Err(e) => eprintln!("(cannot read logs: {e})"),
    }
    eprintln!("----- end of log -----");
}

/// Removes bottle, sentry and networks; missing ones are fine. Keeps going
/// after a failure and reports all, except that a bottle that could not be
/// removed stops everything: its sentry must keep filtering.
pub fn stop(podman: &Podman, names: &Names, profile_arg: &str) -> Result<(), Error> {
    stop_present(podman, names, profile_arg, &Present::ask(podman, names))
}

/// `stop`, given what exists: what `present` shows absent is not asked
/// to go (on a clean start that is every call saved).
pub fn stop_present(
    podman: &Podman,
    names: &Names,
    profile_arg: &str,
    present: &Present,
) -> Result<(), Error> {
    let failed = |failures| {
        Err(Error::StopFailed {
            profile: profile_arg.to_string(),
            failures,
        })
    };
    let [bottle, sentry] = args::containers(names);
    if present.may_hold(&bottle) {
        if let Err(e) = podman.remove(&bottle) {
            return failed(vec![e]); // the bottle is still there: leave its sentry in force
        }
    }
    let mut failures = Vec::new();
    if present.may_hold(&sentry) {
        if let Err(e) = podman.remove(&sentry) {
            failures.push(e);
        }
    }
    // The rest at once: the networks, and rbm's secrets if no container
    // of the profile remains to use them.
    let mut rest: Vec<args::Removal> = args::networks(names)
        .into_iter()
        .filter(|r| present.may_hold(r))
        .collect();
    if failures.is_empty() {
        rest.extend(
            present
                .our_secrets(names)
                .iter()
                .map(|s| args::remove_secret(s)),
        );
    }
    failures.extend(remove_at_once(podman, &rest));
    if failures.is_empty() {
        Ok(())
    } else {
        failed(failures)
    }
}

/// Removes each of `removals` at the same time; the errors, in order.
fn remove_at_once(podman: &Podman, removals: &[args::Removal]) -> Vec<Error> {
    std::thread::scope(|s| {
        let running: Vec<_> = removals
            .iter()
            .map(|r| s.spawn(|| podman.remove(r)))
            .collect();
        running
            .into_iter()
            .filter_map(|h| survey::join(h).err())
            .collect()
    })
}

/// What `up` prints once both containers run on the Podman described as
/// `on`: among it each host folder the bottle got, those outside the
/// profile's folder marked so.
pub fn summary(p: &Profile, volumes: &[ResolvedVolume], on: &str, profile_arg: &str) -> String {
    let n = p.names();
    let e = &p.enclave;
    let mut s = format!("rbm: {profile_arg} is up (moniker {}) on {on}\n", p.moniker);
    s += &format!(
        "  sentry  {}  {} on {}, uplink {}; filter ready\n",
        n.sentry, e.sentry_ip, n.enclave, n.uplink
    );
    s += &format!(
        "  bottle  {}  {} ({}), DNS and route via the sentry\n",
        n.bottle, e.bottle_ip, p.bottle.image
    );
    for vol in volumes {
        s += &format!("  volume  {vol}\n");
    }
    for en in &p.entries {
        let proto = en.protocol.as_str();
        let url = match proto {
            "tcp" => format!("http://127.0.0.1:{}", en.host_port),
            _ => format!("udp 127.0.0.1:{}", en.host_port),
        };
        s += &format!(
            "  entry   {url} -> bottle port {}/{proto}\n",
            en.bottle_port
        );
    }
    s += &format!("  status: rbm-launch status {profile_arg}\n");
    s += &format!("  shell:  rbm-launch shell {profile_arg}\n");
    s += &format!("  stop:   rbm-launch stop {profile_arg}");
    s
}

pub fn progress(msg: &str) {
    eprintln!("rbm-launch: {msg}");
}

#[cfg(test)]
mod tests;
