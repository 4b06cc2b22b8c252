//! Argument vectors for every podman command rbm runs. Pure functions, so the
//! exact commands are unit-tested. The network design is the one in
//! PODMAN5.md: an internal enclave whose default route is the sentry, and an
//! uplink network for the sentry alone.

use rbm_profile::{Names, Profile};

/// Label put on every container, network and secret rbm creates for a profile.
pub const MONIKER_LABEL: &str = "rbm.moniker";

/// Label put on every container, network and secret rbm creates: which
/// profile file made them (its canonical path on the machine rbm-launch
/// runs on, [`crate::lookup::Loaded::owner`]). A moniker is owned by that
/// file: `up` and `stop` of another file with the same moniker refuse,
/// so a profile from someone else cannot replace or remove a running pair.
pub const PROFILE_LABEL: &str = "rbm.profile";

fn v(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// `--label rbm.moniker=M --label rbm.profile=OWNER`.
pub fn labels(p: &Profile, owner: &str) -> Vec<String> {
    vec![
        "--label".into(),
        format!("{MONIKER_LABEL}={}", p.moniker),
        "--label".into(),
        format!("{PROFILE_LABEL}={owner}"),
    ]
}

/// The metric of the enclave's default route. The bottle has no other
/// default route; the sentry has the uplink's too, which netavark gives
/// metric 100, so the sentry's own traffic keeps leaving through the
/// uplink and the agent has no route to delete (netavark's teardown fails
/// on a route that vanished).
pub const ENCLAVE_ROUTE_METRIC: u32 = 1000;

/// `podman info` printing `format` (a Go template).
pub fn info(format: &str) -> Vec<String> {
    v(&["info", "--format", format])
}

/// `podman version` printing `format` (a Go template).
pub fn version(format: &str) -> Vec<String> {
    v(&["version", "--format", format])
}

/// The bottle's network: no gateway, no podman DNS, default route via the sentry.
pub fn network_create_enclave(p: &Profile, owner: &str) -> Vec<String> {
    let e = &p.enclave;
    let mut a = v(&["network", "create", "--internal", "--disable-dns"]);
    a.extend([
        "--subnet".into(),
        e.subnet.to_string(),
        "--route".into(),
        format!("0.0.0.0/0,{},{ENCLAVE_ROUTE_METRIC}", e.sentry_ip),
    ]);
    a.extend(labels(p, owner));
    a.push(p.names().enclave);
    a
}

/// The sentry's way out: an ordinary podman network.
pub fn network_create_uplink(p: &Profile, owner: &str) -> Vec<String> {
    let mut a = v(&["network", "create"]);
    if let Some(subnet) = p.uplink.subnet {
        a.extend(["--subnet".into(), subnet.to_string()]);
    }
    a.extend(labels(p, owner));
    a.push(p.names().uplink);
    a
}

/// The variable that carries the profile's text to the agent.
pub const PROFILE_ENV: &str = "RBM_PROFILE";

/// The sentry: on both networks, only the capabilities the agent needs,
/// forwarding off (a new network namespace inherits the host's, which
/// Podman turns on; the agent turns it on for its two interfaces once its
/// filter is in force), the profile text in RBM_PROFILE, entry ports on
/// loopback. RBM_PROFILE is named without its value: the text goes in
/// podman's environment ([`sentry_env`]), never in an argument vector,
/// which any local user can read in /proc while podman runs.
pub fn sentry_run(p: &Profile, owner: &str, image: &str, extra: &[String]) -> Vec<String> {
    let n = p.names();
    let mut a = v(&["run", "-d", "--pull=never"]);
    a.extend(["--name".into(), n.sentry.clone()]);
    a.extend(labels(p, owner));
    a.extend(["--network".into(), n.uplink.clone()]);
    a.extend([
        "--network".into(),
        format!("{}:ip={}", n.enclave, p.enclave.sentry_link_ip()),
    ]);
    a.extend(v(&[
        "--cap-drop",
        "ALL",
        "--cap-add",
        "NET_ADMIN",
        "--cap-add",
        "NET_BIND_SERVICE",
    ]));
    a.extend(v(&["--sysctl", "net.ipv4.ip_forward=0"]));
    a.extend(["-e".into(), PROFILE_ENV.into()]);
    for e in &p.entries {
        let proto = e.protocol.as_str();
        a.extend([
            "-p".into(),
            format!("127.0.0.1:{0}:{0}/{proto}", e.host_port),
        ]);
    }
    a.extend(extra.iter().cloned());
    a.extend([image.to_string(), "run".to_string()]);
    a
}

/// The environment `podman run` of the sentry needs: the profile's text
/// for `-e RBM_PROFILE`.
pub fn sentry_env(profile_text: &str) -> Vec<(String, String)> {
    vec![(PROFILE_ENV.to_string(), profile_text.to_string())]
}

/// The only capabilities the bottle keeps (`--cap-drop ALL` first), each
/// for what a coding agent, a build or a server in it needs. Left out of
/// Podman's default set: FSETID and SETFCAP (they keep setuid bits and set
/// file capabilities: a program left in the workspace for the host),
/// SETPCAP, SYS_CHROOT, MKNOD (device nodes) and AUDIT_WRITE; never
/// NET_ADMIN or NET_RAW (routes, filters and raw packets past the sentry).
pub const BOTTLE_CAPS: [&str; 7] = [
    // Package managers (apt, npm, pip as root) set the owners of what they unpack.
    "CHOWN",
    // Root in the bottle reads and writes files of its other users (caches, builds).
    "DAC_OVERRIDE",
    // chmod and utimes on files root does not own (tar, cp -p, git checkouts).
    "FOWNER",
    // Servers and shells stop their own children of other users (su, sudo'd jobs).
    "KILL",
    // Dropping to another group: apt's _apt sandbox, su, sudo, setpriv.
    "SETGID",
    // Dropping to another user: the same.
    "SETUID",
    // A server in the bottle on a port below 1024 (e.g. 80) for an [[entry]].
    "NET_BIND_SERVICE",
];

/// The bottle: only on the enclave, resolver = sentry, only
/// [`BOTTLE_CAPS`]. `volumes` are the profile's volumes with host paths
/// already resolved; `extra` holds, among others, its user namespace
/// (`owner::BottleRoot`).
pub fn bottle_run(p: &Profile, owner: &str, volumes: &[String], extra: &[String]) -> Vec<String> {
    let n = p.names();
    let b = &p.bottle;
    let mut a = v(&["run", "-d", "--pull=never"]);
    a.extend(["--name".into(), n.bottle.clone()]);
    a.extend(labels(p, owner));
    a.extend([
        "--network".into(),
        format!("{}:ip={}", n.enclave, p.enclave.bottle_ip),
    ]);
    a.extend(["--dns".into(), p.enclave.sentry_ip.to_string()]);
    a.extend(v(&["--cap-drop", "ALL"]));
    for cap in BOTTLE_CAPS {
        a.extend(["--cap-add".into(), cap.to_string()]);
    }
    for (k, val) in &b.env {
        a.extend(["-e".into(), format!("{k}={val}")]);
    }
    for vol in volumes {
        a.extend(["-v".into(), vol.clone()]);
    }
    if let Some(w) = &b.workdir {
        a.extend(["-w".into(), w.clone()]);
    }
    a.extend(extra.iter().cloned());
    a.push(b.image.clone());
    a.extend(b.command.iter().flatten().cloned());
    a
}

/// Force-removes a container at once; a missing one is not an error.
pub fn rm_container(name: &str) -> Vec<String> {
    v(&["rm", "--force", "--ignore", "--time", "0", name])
}

pub fn network_rm(name: &str) -> Vec<String> {
    v(&["network", "rm", name])
}

/// The kinds of object rbm makes and removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Container,
    Network,
    Secret,
}

impl Kind {
    /// Podman's word for it, as in `podman network exists`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Container => "container",
            Kind::Network => "network",
            Kind::Secret => "secret",
        }
    }

    /// `podman KIND ls` (`ps -a` for containers) printing one name a line;
    /// for containers and networks, a tab and their `rbm.profile` label.
    pub fn list(self) -> Vec<String> {
        match self {
            Kind::Container => v(&[
                "ps",
                "--all",
                "--format",
                &format!("{{{{.Names}}}}\t{{{{index .Labels \"{PROFILE_LABEL}\"}}}}"),
            ]),
            // With the subnets and gateways: the sentry withholds them.
            // (`.Labels` of a network listing is a string; its map is
            // `.Network.Labels`, on Podman 5.4 and 5.8 alike.)
            Kind::Network => v(&[
                "network",
                "ls",
                "--format",
                &format!(
                    "{}\t{{{{index .Network.Labels \"{PROFILE_LABEL}\"}}}}",
                    crate::hostnets::NETWORK_FORMAT
                ),
            ]),
            Kind::Secret => v(&["secret", "ls", "--format", "{{.Name}}"]),
        }
    }
}

/// A removal, and the command that tells whether the object is still there
/// (exit 0: it exists, 1: it does not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub kind: Kind,
    pub name: String,
    /// What is removed, for messages.
    pub what: String,
    pub rm: Vec<String>,
    pub exists: Vec<String>,
}

impl Removal {
    fn of(kind: Kind, name: &str, rm: Vec<String>) -> Removal {
        Removal {
            kind,
            name: name.to_string(),
            what: format!("{} {name}", kind.as_str()),
            rm,
            exists: v(&[kind.as_str(), "exists", name]),
        }
    }
}

pub fn remove_container(name: &str) -> Removal {
    Removal::of(Kind::Container, name, rm_container(name))
}

pub fn remove_network(name: &str) -> Removal {
    Removal::of(Kind::Network, name, network_rm(name))
}

/// `podman secret inspect` printing each secret's name, a tab and its
/// `rbm.moniker` label (`secret ls` shows no labels).
pub fn secret_labels(secrets: &[String]) -> Vec<String> {
    let mut a = v(&[
        "secret",
        "inspect",
        "--format",
        &format!("{{{{.Spec.Name}}}}\t{{{{index .Spec.Labels \"{MONIKER_LABEL}\"}}}}"),
    ]);
    a.extend(secrets.iter().cloned());
    a
}

pub fn remove_secret(name: &str) -> Removal {
    Removal::of(Kind::Secret, name, v(&["secret", "rm", name]))
}

/// `podman exec SENTRY /rbm-agent ca`: the credential CA's certificate.
pub fn agent_ca(sentry: &str) -> Vec<String> {
    v(&["exec", sentry, "/rbm-agent", "ca"])
}

/// The containers `stop` removes, in order: the bottle, then its sentry.
pub fn containers(names: &Names) -> [Removal; 2] {
    [
        remove_container(&names.bottle),
        remove_container(&names.sentry),
    ]
}

/// The networks `stop` removes once the containers are gone.
pub fn networks(names: &Names) -> [Removal; 2] {
    [
        remove_network(&names.enclave),
        remove_network(&names.uplink),
    ]
}

pub fn agent_status(sentry: &str, json: bool) -> Vec<String> {
    agent_command(sentry, "status", json)
}

/// `podman exec SENTRY /rbm-agent watch [--json]`: follows denials.
pub fn agent_watch(sentry: &str, json: bool) -> Vec<String> {
    agent_command(sentry, "watch", json)
}

/// `podman exec -i SENTRY /rbm-agent reload --json`: the profile on stdin.
pub fn agent_reload(sentry: &str) -> Vec<String> {
    v(&["exec", "-i", sentry, "/rbm-agent", "reload", "--json"])
}

fn agent_command(sentry: &str, command: &str, json: bool) -> Vec<String> {
    let mut a = v(&["exec", sentry, "/rbm-agent", command]);
    if json {
        a.push("--json".into());
    }
    a
}

/// `podman exec` into the bottle; `-i -t` only for a terminal.
pub fn shell(bottle: &str, terminal: bool, command: &[String]) -> Vec<String> {
    let mut a = v(&["exec"]);
    if terminal {
        a.extend(v(&["-i", "-t"]));
    }
    a.push(bottle.to_string());
    if command.is_empty() {
        a.push("/bin/sh".into());
    } else {
        a.extend(command.iter().cloned());
    }
    a
}

/// `podman exec` of a recipe's agent in the bottle: stdin always (a
/// prompt may come through a pipe), a terminal when there is one, in
/// `workdir`.
pub fn attach(bottle: &str, terminal: bool, workdir: &str, command: &[String]) -> Vec<String> {
    let mut a = v(&["exec", "-i"]);
    if terminal {
        a.push("-t".into());
    }
    a.extend(["-w".into(), workdir.into(), bottle.into()]);
    a.extend(command.iter().cloned());
    a
}

/// `podman build` of a recipe folder `dir` as `image`, labelled with its
/// contents' `hash`; `extra` are the user's own build options
/// (RBM_BUILD_ARGS), before the context.
pub fn build(
    image: &str,
    hash_label: &str,
    hash: &str,
    dir: &str,
    containerfile: &str,
    extra: &[String],
) -> Vec<String> {
    let mut a = v(&["build", "--tag", image, "--label"]);
    a.push(format!("{hash_label}={hash}"));
    // The build's RUN lines get the bottle's capabilities, no more.
    a.push("--cap-drop=ALL".into());
    a.extend(BOTTLE_CAPS.iter().map(|c| format!("--cap-add={c}")));
    a.extend(["--file".into(), containerfile.into()]);
    a.extend(extra.iter().cloned());
    a.push(dir.into());
    a
}

pub fn logs(container: &str) -> Vec<String> {
    v(&["logs", container])
}

pub fn is_running(container: &str) -> Vec<String> {
    v(&[
        "container",
        "inspect",
        "--format",
        "{{.State.Running}}",
        container,
    ])
}

pub fn image_exists(image: &str) -> Vec<String> {
    v(&["image", "exists", image])
}

pub fn image_label(image: &str, key: &str) -> Vec<String> {
    v(&[
        "image",
        "inspect",
        "--format",
        &format!("{{{{index .Labels \"{key}\"}}}}"),
        image,
    ])
}

/// `podman import` of a root file system archive read from stdin, for
/// architecture `arch`, with `config` (Containerfile instructions:
/// ENTRYPOINT, CMD, LABEL, ...).
pub fn import(image: &str, arch: &str, config: &[String]) -> Vec<String> {
    let mut a = v(&["import", "--quiet", "--arch", arch]);
    for c in config {
        a.extend(["--change".into(), c.clone()]);
    }
    a.extend(["-".into(), image.to_string()]);
    a
}

#[cfg(test)]
pub(crate) mod tests;
