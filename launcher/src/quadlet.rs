//! `rbm-launch quadlet`: the profile as Quadlet units, so that systemd runs
//! the pair at boot. Two `.network` files (the enclave and the uplink) and
//! two `.container` files; the bottle requires the sentry and starts only
//! once the sentry is ready: its health check is `rbm-agent status`, and
//! `Notify=healthy` makes the sentry's service active only when it passes.
//! The containers are the ones `rbm-launch up` starts: the same networks,
//! addresses, capabilities, user namespace, labels and command (see
//! `podman::args` and `owner`).
//!
//! Every value from the profile is data, never unit syntax: a shared
//! profile must not add a key (an `ExecStartPre=` that runs as root at
//! boot) nor have systemd expand `%h` or `$HOME` in what it wrote. The
//! profile crate refuses control characters; here each value is written
//! the way Podman's Quadlet reads that key (`pkg/systemd/parser`):
//! `Exec=` and `Environment=` are split into words (quotes and C escapes),
//! `Image=`, `WorkingDir=` and `Volume=` are taken raw, and all of them
//! are copied into the service's `ExecStart=`, where systemd expands `%`
//! specifiers and `$` variables. So `%` is written `%%` and `$` `$$`
//! everywhere, words are quoted, and what Quadlet would still misread (a
//! raw value with a trailing `\`, which continues the line, or edge
//! spaces or quotes, which it trims) is refused instead of written.

use std::path::Path;

use ipnet::IpNet;
use rbm_profile::{Problem, Profile};

use crate::hostnets;
use crate::images::SENTRY_IMAGE;
use crate::owner::BottleRoot;
use crate::podman::args::{BOTTLE_CAPS, ENCLAVE_ROUTE_METRIC, MONIKER_LABEL, PROFILE_LABEL};

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
/// resolved (podman's `-v` form); `host_nets` the Podman host's addresses
/// and networks (`hostnets`) as they are now: the sentry withholds them
/// from answers. A value Quadlet would misread is a problem naming its
/// field, and nothing is written. `root` is who the bottle's root is on
/// the host.
pub fn units(
    p: &Profile,
    profile: &Path,
    volumes: &[String],
    host_nets: &[IpNet],
    root: BottleRoot,
) -> Result<Vec<Unit>, Problem> {
    let n = p.names();
    // Owned as `up` owns its pairs: by the profile file, here the copy
    // beside the units (`rbm-launch stop` takes that file).
    let label = format!(
        "Label={MONIKER_LABEL}={}\nLabel={}",
        p.moniker,
        word(
            "profile",
            &format!("{PROFILE_LABEL}={}", crate::lookup::owner_of(profile))
        )?
    );
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
        format!(
            "Volume={}",
            raw(
                "quadlet --dir",
                &format!("{}:{PROFILE_IN_SENTRY}:ro", profile.display())
            )?
        ),
        format!("Exec=run --profile {PROFILE_IN_SENTRY}"),
        "HealthCmd=/rbm-agent status".into(),
        "HealthInterval=2s".into(),
        "HealthRetries=1".into(),
        "Notify=healthy".into(),
    ];
    if !host_nets.is_empty() {
        sentry.push(format!(
            "Environment={}",
            word(
                "host networks",
                &format!("{}={}", hostnets::ENV, hostnets::value(host_nets))
            )?
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
        format!("Image={}", image(&b.image)?),
        label,
        format!("Network={}.network:ip={}", n.enclave, p.enclave.bottle_ip),
        format!("DNS={}", p.enclave.sentry_ip),
        "DropCapability=ALL".into(),
        format!("AddCapability={}", BOTTLE_CAPS.join(" ")),
    ];
    bottle.extend(root.quadlet_lines(b.user));
    for (k, v) in &b.env {
        let field = format!("bottle.env.{k}");
        bottle.push(format!(
            "Environment={}",
            word(&field, &format!("{k}={v}"))?
        ));
    }
    for (i, vol) in volumes.iter().enumerate() {
        let field = format!("bottle.volumes[{i}]");
        bottle.push(format!("Volume={}", raw(&field, vol)?));
    }
    if let Some(w) = &b.workdir {
        bottle.push(format!("WorkingDir={}", trimmed("bottle.workdir", w)?));
    }
    if let Some(command) = &b.command {
        let words = command
            .iter()
            .enumerate()
            .map(|(i, w)| exec_word(&format!("bottle.command[{i}]"), w))
            .collect::<Result<Vec<_>, _>>()?;
        bottle.push(format!("Exec={}", words.join(" ")));
    }
    bottle.push(install_section());

    Ok([
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
    .collect())
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

/// A problem with a value that cannot go into a unit as it is.
fn refuse(field: &str, value: &str, why: &str, fix: &str) -> Problem {
    Problem {
        field: field.to_string(),
        message: format!("{value:?} cannot be written into a Quadlet unit: {why}"),
        fix: fix.to_string(),
    }
}

/// What systemd would expand in a service's `ExecStart=`, where Quadlet
/// copies every value of a container unit: `%` specifiers (`%h`, the
/// home folder) and `$` variables (`$HOME`, `${HOME}`). Doubled, each is
/// itself again; Quadlet passes both through as they are.
fn literal(value: &str) -> String {
    value.replace('%', "%%").replace('$', "$$")
}

/// A value Quadlet takes raw (`Volume=`, and through `trimmed` `Image=`
/// and `WorkingDir=`): the unit parser strips edge white space, and a
/// trailing `\` joins the next line to this one.
fn raw(field: &str, value: &str) -> Result<String, Problem> {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        let why = format!("it holds the control character U+{:04X}", c as u32);
        return Err(refuse(field, value, &why, "remove it"));
    }
    if value.starts_with(char::is_whitespace) || value.ends_with(char::is_whitespace) {
        let why = "Quadlet drops white space at either end";
        return Err(refuse(field, value, why, "remove the spaces at its ends"));
    }
    if value.ends_with('\\') {
        let why = "a trailing \\ continues the line in a unit file";
        return Err(refuse(field, value, why, "remove the trailing \\"));
    }
    Ok(literal(value))
}

/// A raw value that Quadlet also trims of `"` at either end (it reads
/// `Image=` and `WorkingDir=` with `Lookup`).
fn trimmed(field: &str, value: &str) -> Result<String, Problem> {
    if value.starts_with('"') || value.ends_with('"') {
        let why = "Quadlet drops quotes at either end of this key";
        return Err(refuse(field, value, why, "remove the quotes at its ends"));
    }
    raw(field, value)
}

/// `Image=`: raw, and not a name Quadlet reads as another unit.
fn image(value: &str) -> Result<String, Problem> {
    if value.ends_with(".image") || value.ends_with(".build") {
        let why = "Quadlet reads an image ending in .image or .build as another unit of its folder";
        let fix = "name the image with a tag, e.g. \"localhost/NAME:latest\"";
        return Err(refuse("bottle.image", value, why, fix));
    }
    trimmed("bottle.image", value)
}

/// A word of `Exec=` or `Environment=`, which Quadlet splits with quotes
/// and C escapes: plain if it has nothing special, else in double quotes
/// with `\` and `"` escaped; `%` and `$` doubled either way.
fn word(field: &str, word: &str) -> Result<String, Problem> {
    if let Some(c) = word.chars().find(|c| c.is_control()) {
        let why = format!("it holds the control character U+{:04X}", c as u32);
        return Err(refuse(field, word, &why, "remove it"));
    }
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:,@+".contains(c));
    if plain {
        return Ok(word.to_string());
    }
    let escaped = word.replace('\\', "\\\\").replace('"', "\\\"");
    Ok(format!("\"{}\"", literal(&escaped)))
}

/// A word of the bottle's command. Two words Quadlet cannot carry into
/// `ExecStart=` as they are: an empty one (its splitter stops there and
/// drops the rest of the command) and a lone `;` (written bare, systemd
/// reads it as the start of a second command).
fn exec_word(field: &str, w: &str) -> Result<String, Problem> {
    if w.is_empty() {
        let why = "Quadlet drops an empty word and every word after it";
        return Err(refuse(field, w, why, "remove the empty argument"));
    }
    if w == ";" {
        let why = "systemd reads a lone ; in ExecStart= as the start of another command";
        let fix = "pass it inside a shell command instead, e.g. [\"sh\", \"-c\", \"a ; b\"]";
        return Err(refuse(field, w, why, fix));
    }
    word(field, w)
}

/// Refuses a profile with `[[requests]]`: the bottle must trust the
/// sentry's CA for their hosts, which `up` makes and hands it.
pub fn carries(loaded: &crate::lookup::Loaded, arg: &str) -> Result<(), crate::Error> {
    match loaded.profile.requests.first() {
        None => Ok(()),
        Some(r) => Err(crate::takes::problem(
            &loaded.path,
            "requests[0]".into(),
            format!("Quadlet units do not carry [[requests]] yet: the sentry's CA, which the bottle must trust for {}, is made at `up`", r.hosts.join(", ")),
            format!("start this profile with `rbm-launch up {arg}`"),
        )),
    }
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
            BottleRoot::User {
                uid: 1000,
                gid: 1000,
            },
        )
        .unwrap();
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

    /// A profile whose every string the bottle's unit carries is hostile
    /// but free of control characters (the profile crate refuses those).
    fn hostile() -> Profile {
        let text = r#"moniker = "demo"
[bottle]
image = "localhost/b%h$HOME:latest"
command = ["sh", "-c", "echo %h ${HOME} $HOME \"q\" 'q' \\ ; done", "a b", "%%", "$$", "\\"]
env = { K = "%h ${HOME} $HOME \"q\" 'q' \\ ;", E = "x\\" }
workdir = "/w/%h/${HOME}/$HOME/a\"b/c\\d;e"
[enclave]
subnet = "10.242.0.0/24"
sentry_ip = "10.242.0.2"
bottle_ip = "10.242.0.3"
[uplink]
dns = "allowlist"
access = "allowlist"
domains = ["a.test"]
"#;
        Profile::parse(text, Path::new("demo.toml")).unwrap()
    }

    fn hostile_units(p: &Profile, volumes: &[String]) -> Result<Vec<Unit>, Problem> {
        units(
            p,
            Path::new("/etc/units/rbm-demo-profile.toml"),
            volumes,
            &[],
            BottleRoot::Range,
        )
    }

    /// The keys of a unit's lines, in order.
    fn keys(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with('[') && !l.is_empty())
            .map(|l| l.split_once('=').map_or(l, |(k, _)| k))
            .collect()
    }

    #[test]
    fn hostile_values_are_data_in_the_bottles_unit() {
        let p = hostile();
        let volumes = ["/p/%h/$HOME/a b/\"q\":/w/%u".to_string()];
        let units = hostile_units(&p, &volumes).unwrap();
        let bottle = unit(&units, "rbm-demo-bottle.container");
        // No key but the ones rbm writes, each once where it writes one.
        assert_eq!(
            keys(bottle),
            [
                "Description",
                "Requires",
                "After",
                "ContainerName",
                "Image",
                "Label",
                "Label",
                "Network",
                "DNS",
                "DropCapability",
                "AddCapability",
                "UIDMap",
                "GIDMap",
                "Environment",
                "Environment",
                "Volume",
                "WorkingDir",
                "Exec",
                "WantedBy"
            ]
        );
        for line in [
            "Image=localhost/b%%h$$HOME:latest",
            r#"Environment="E=x\\""#,
            r#"Environment="K=%%h $${HOME} $$HOME \"q\" 'q' \\ ;""#,
            r#"Volume=/p/%%h/$$HOME/a b/"q":/w/%%u"#,
            r#"WorkingDir=/w/%%h/$${HOME}/$$HOME/a"b/c\d;e"#,
            r#"Exec=sh -c "echo %%h $${HOME} $$HOME \"q\" 'q' \\ ; done" "a b" "%%%%" "$$$$" "\\""#,
        ] {
            assert!(
                bottle.contains(&format!("\n{line}\n")),
                "{line} in {bottle}"
            );
        }
        // Nothing of the profile's reaches a line unescaped.
        for text in units.iter().map(|u| &u.text) {
            for (i, c) in text.char_indices() {
                if c == '%' || c == '$' {
                    let run = text[i..].chars().take_while(|x| *x == c).count();
                    let before = text[..i].chars().rev().take_while(|x| *x == c).count();
                    assert!((run + before) % 2 == 0, "lone {c} at {i} in {text}");
                }
            }
        }
    }

    #[test]
    fn what_quadlet_would_misread_is_refused_with_the_field() {
        let refused = |p: &Profile, volumes: &[String], field: &str, needle: &str| {
            let problem = hostile_units(p, volumes).unwrap_err();
            assert_eq!(problem.field, field, "{problem}");
            assert!(problem.to_string().contains(needle), "{problem}");
        };
        let mut p = hostile();
        p.bottle.workdir = Some("/w\\".into());
        refused(&p, &[], "bottle.workdir", "continues the line");
        p.bottle.workdir = Some("/w ".into());
        refused(&p, &[], "bottle.workdir", "white space");
        p.bottle.workdir = Some("/w\"".into());
        refused(&p, &[], "bottle.workdir", "quotes");
        p.bottle.workdir = Some("/w\n[Service]".into());
        refused(&p, &[], "bottle.workdir", "U+000A");
        let mut p = hostile();
        p.bottle.image = "\"img\"".into();
        refused(&p, &[], "bottle.image", "quotes");
        p.bottle.image = "x.image".into();
        refused(&p, &[], "bottle.image", "another unit");
        let p = hostile();
        refused(
            &p,
            &["/a:/b\\".into()],
            "bottle.volumes[0]",
            "continues the line",
        );
        refused(
            &p,
            &["/a:/b\nExecStartPre=/x".into()],
            "bottle.volumes[0]",
            "U+000A",
        );
        let mut p = hostile();
        p.bottle.command = Some(vec!["sh".into(), ";".into(), "id".into()]);
        refused(&p, &[], "bottle.command[1]", "another command");
        p.bottle.command = Some(vec!["sh".into(), "".into(), "id".into()]);
        refused(&p, &[], "bottle.command[1]", "empty word");
        let mut p = hostile();
        p.bottle.env.insert("K".into(), "v\r\nX=1".into());
        refused(&p, &[], "bottle.env.K", "U+000D");
    }
}
