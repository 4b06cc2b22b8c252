//! `rbm-launch quadlet`: the profile as Quadlet units, so that systemd runs
//! the pair at boot. Two `.network` files (the enclave and the uplink) and
//! two `.container` files; the bottle requires the sentry and starts only
//! once the sentry is ready: its health check is `rbm-agent status`, and
//! `Notify=healthy` makes the sentry's service active only when it passes.
//! The containers are the ones `rbm-launch up` starts: the same networks,
//! addresses, capabilities, user namespace, labels and command (see
//! `podman::args` and `owner`).

use std::path::Path;

use ipnet::IpNet;
use rbm_profile::Profile;

use crate::hostnets;
use crate::images::SENTRY_IMAGE;
use crate::owner::Owner;
use crate::podman::args::{BOTTLE_CAPS, ENCLAVE_ROUTE_METRIC, MONIKER_LABEL};

/// Where the sentry finds the profile (a read-only file mount).
pub const PROFILE_IN_SENTRY: &str = "/rbm/profile.toml";

/// One unit file: its name and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub file: String,
    pub text: String,
}

/// The profile's file name beside the units.
pub fn profile_file(p: &Profile) -> String {
    format!("rbm-{}-profile.toml", p.moniker)
}

/// The four units. `profile` is the absolute path of the profile copy the
/// sentry mounts; `volumes` are the bottle's volumes with host paths
/// resolved; `host_nets` the Podman host's addresses and networks
/// (`hostnets`) as they are now: the sentry withholds them from answers;
/// `owner` who the bottle's root is on the host.
pub fn units(
    p: &Profile,
    profile: &Path,
    volumes: &[String],
    host_nets: &[IpNet],
    owner: Owner,
) -> Vec<Unit> {
    let n = p.names();
    let label = format!("Label={MONIKER_LABEL}={}", p.moniker);
    let mut enclave = vec![
        "[Network]".to_string(),
        format!("NetworkName={}", n.enclave),
        "Internal=true".into(),
        "DisableDNS=true".into(),
        format!("Subnet={}", p.enclave.subnet),
        format!(
            "PodmanArgs=--route 0.0.0.0/0,{},{ENCLAVE_ROUTE_METRIC}",
            p.enclave.sentry_ip
        ),
        label.clone(),
    ];
    enclave.insert(
        0,
        unit_section(&format!("rbm enclave of {}", p.moniker), &[]),
    );
    let mut uplink = vec![
        unit_section(&format!("rbm uplink of {}", p.moniker), &[]),
        "[Network]".into(),
        format!("NetworkName={}", n.uplink),
    ];
    if let Some(subnet) = p.uplink.subnet {
        uplink.push(format!("Subnet={subnet}"));
    }
    uplink.push(label.clone());

    let mut sentry = vec![
        unit_section(
            &format!("rbm sentry of {}: filters all the bottle sends", p.moniker),
            &[],
        ),
        "[Container]".into(),
        format!("ContainerName={}", n.sentry),
        format!("Image={SENTRY_IMAGE}"),
        label.clone(),
        format!("Network={}.network", n.uplink),
        format!(
            "Network={}.network:ip={}",
            n.enclave,
            p.enclave.sentry_link_ip()
        ),
        "DropCapability=ALL".into(),
        "AddCapability=NET_ADMIN NET_BIND_SERVICE".into(),
        "Sysctl=net.ipv4.ip_forward=0".into(),
        format!("Volume={}:{PROFILE_IN_SENTRY}:ro", profile.display()),
        format!("Exec=run --profile {PROFILE_IN_SENTRY}"),
        "HealthCmd=/rbm-agent status".into(),
        "HealthInterval=2s".into(),
        "HealthRetries=1".into(),
        "Notify=healthy".into(),
    ];
    if !host_nets.is_empty() {
        sentry.push(format!(
            "Environment={}={}",
            hostnets::ENV,
            hostnets::value(host_nets)
        ));
    }
    for e in &p.entries {
        sentry.push(format!(
            "PublishPort=127.0.0.1:{0}:{0}/{1}",
            e.host_port,
            e.protocol.as_str()
        ));
    }
    sentry.push(install_section());

    let sentry_service = format!("{}.service", n.sentry);
    let b = &p.bottle;
    let mut bottle = vec![
        unit_section(
            &format!(
                "rbm bottle of {}: its only way out is the sentry",
                p.moniker
            ),
            &[
                format!("Requires={sentry_service}"),
                format!("After={sentry_service}"),
            ],
        ),
        "[Container]".into(),
        format!("ContainerName={}", n.bottle),
        format!("Image={}", b.image),
        label,
        format!("Network={}.network:ip={}", n.enclave, p.enclave.bottle_ip),
        format!("DNS={}", p.enclave.sentry_ip),
        "DropCapability=ALL".into(),
        format!("AddCapability={}", BOTTLE_CAPS.join(" ")),
    ];
    bottle.extend(owner.quadlet_lines());
    for (k, v) in &b.env {
        bottle.push(format!("Environment={}", quote(&format!("{k}={v}"))));
    }
    for vol in volumes {
        bottle.push(format!("Volume={vol}"));
    }
    if let Some(w) = &b.workdir {
        bottle.push(format!("WorkingDir={w}"));
    }
    if let Some(command) = &b.command {
        let words: Vec<String> = command.iter().map(|w| quote(w)).collect();
        bottle.push(format!("Exec={}", words.join(" ")));
    }
    bottle.push(install_section());

    [
        (format!("{}.network", n.enclave), enclave),
        (format!("{}.network", n.uplink), uplink),
        (format!("{}.container", n.sentry), sentry),
        (format!("{}.container", n.bottle), bottle),
    ]
    .into_iter()
    .map(|(file, lines)| Unit {
        file,
        text: format!(
            "# Made by `rbm-launch quadlet` for profile {}: edit the profile and run it again.\n{}\n",
            p.moniker,
            lines.join("\n")
        ),
    })
    .collect()
}

fn unit_section(description: &str, extra: &[String]) -> String {
    let mut s = format!("[Unit]\nDescription={description}\n");
    for line in extra {
        s.push_str(line);
        s.push('\n');
    }
    s
}

fn install_section() -> String {
    "\n[Install]\nWantedBy=default.target".into()
}

/// A word as systemd reads it: plain if it has nothing special, else in
/// double quotes with `\` and `"` escaped.
fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:,@+".contains(c));
    if plain {
        return word.to_string();
    }
    let escaped = word.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn profile() -> Profile {
        let text = "moniker = \"demo\"\n[bottle]\nimage = \"localhost/b:latest\"\ncommand = [\"sleep\", \"a b\"]\nenv = { K = \"v 1\" }\n[enclave]\nsubnet = \"10.242.0.0/24\"\nsentry_ip = \"10.242.0.2\"\nbottle_ip = \"10.242.0.3\"\n[uplink]\ndns = \"allowlist\"\naccess = \"allowlist\"\ndomains = [\"a.test\"]\nsubnet = \"10.243.0.0/24\"\n[[entry]]\nhost_port = 8890\nbottle_port = 8888\n";
        Profile::parse(text, Path::new("demo.toml")).unwrap()
    }

    fn unit<'a>(units: &'a [Unit], file: &str) -> &'a str {
        &units.iter().find(|u| u.file == file).unwrap().text
    }

    #[test]
    fn the_pair_and_its_networks_are_four_units() {
        let units = units(
            &profile(),
            &PathBuf::from("/etc/containers/systemd/rbm-demo-profile.toml"),
            &["/srv/work:/workspace".into()],
            &[
                "10.88.0.0/16".parse().unwrap(),
                "10.88.0.1/32".parse().unwrap(),
            ],
            Owner::User {
                uid: 1000,
                gid: 1000,
            },
        );
        let files: Vec<&str> = units.iter().map(|u| u.file.as_str()).collect();
        assert_eq!(
            files,
            [
                "rbm-demo-enclave.network",
                "rbm-demo-uplink.network",
                "rbm-demo-sentry.container",
                "rbm-demo-bottle.container"
            ]
        );
        let enclave = unit(&units, "rbm-demo-enclave.network");
        assert!(enclave.contains("Internal=true\n"));
        assert!(enclave.contains("PodmanArgs=--route 0.0.0.0/0,10.242.0.2,1000\n"));
        let sentry = unit(&units, "rbm-demo-sentry.container");
        for line in [
            "Network=rbm-demo-enclave.network:ip=10.242.0.254",
            "DropCapability=ALL",
            "Notify=healthy",
            "HealthCmd=/rbm-agent status",
            "PublishPort=127.0.0.1:8890:8890/tcp",
            "Volume=/etc/containers/systemd/rbm-demo-profile.toml:/rbm/profile.toml:ro",
            "Environment=RBM_HOST_NETS=10.88.0.0/16,10.88.0.1",
        ] {
            assert!(sentry.contains(&format!("{line}\n")), "{line} in {sentry}");
        }
        let bottle = unit(&units, "rbm-demo-bottle.container");
        for line in [
            "Requires=rbm-demo-sentry.service",
            "After=rbm-demo-sentry.service",
            "Network=rbm-demo-enclave.network:ip=10.242.0.3",
            "DNS=10.242.0.2",
            "Environment=\"K=v 1\"",
            "Volume=/srv/work:/workspace",
            "Exec=sleep \"a b\"",
            "DropCapability=ALL",
            "AddCapability=CHOWN DAC_OVERRIDE FOWNER KILL SETGID SETUID NET_BIND_SERVICE",
            "UIDMap=0:1000:1",
            "GIDMap=1:1862270977:65535",
        ] {
            assert!(bottle.contains(&format!("{line}\n")), "{line} in {bottle}");
        }
        assert!(
            !bottle.contains("uplink"),
            "the bottle is on the enclave only"
        );
    }
}
