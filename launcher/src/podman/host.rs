//! What Podman says about itself: its version and architecture (`podman
//! version`), and whether it runs rootful or rootless (`podman info`).
//! Everything rbm does differently in the two modes lives here, in
//! [`Mode`]; the rest of the launcher is the same for both.
//!
//! How the modes differ for rbm:
//! - Networks: rootful, netavark's bridges live in the host's network
//!   namespace; rootless, in a namespace of the user's (behind pasta). The
//!   enclave and uplink are created and used the same way in both.
//! - Entry ports: rootful, netavark DNATs `127.0.0.1:HOST` on the host to
//!   the sentry's uplink address, so the connection arrives on the uplink;
//!   rootless, `rootlessport` listens on the host and connects from inside
//!   the sentry's own network namespace. The agent forwards both ways in
//!   to the bottle (its `prerouting` and `entry-local` chains), so the
//!   launcher publishes ports the same way in both modes.
//! - The host: rootless containers reach it at 169.254.1.2 (pasta's
//!   `host.containers.internal`). It is link-local, which no DNS answer can
//!   ever open; only a profile CIDR that covers it could.
//! - Limits the user meets: rootless Podman cannot publish ports below
//!   `net.ipv4.ip_unprivileged_port_start` (1024 by default), and it runs
//!   as the user, who must be able to read the profile's volumes.

use std::fmt;
use std::path::Path;

use crate::error::Error;
use crate::podman::{args, Podman};

/// Rootful (Podman runs as root) or rootless (as the user, in a user namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Rootful,
    Rootless,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Rootful => "rootful",
            Mode::Rootless => "rootless",
        }
    }

    /// A fix for a failed podman command that only this mode needs, if
    /// podman's message calls for one.
    pub fn fix_for(self, stderr: &str) -> Option<&'static str> {
        let lower = stderr.to_ascii_lowercase();
        match self {
            Mode::Rootless if lower.contains("privileged port") => Some(
                "rootless Podman cannot publish ports below net.ipv4.ip_unprivileged_port_start \
                 (1024 by default): pick an entry host_port of 1024 or more in the profile",
            ),
            Mode::Rootless if lower.contains("permission denied") => Some(
                "rootless Podman runs as you: every host path in the profile (volumes) must be \
                 readable by your user",
            ),
            _ => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Podman rbm talks to, as it describes itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Podman's version, e.g. `5.8.6`.
    pub version: String,
    pub mode: Mode,
    /// The architecture of the machine that runs the containers (`amd64`, `arm64`).
    pub arch: String,
    /// The network backend's version, e.g. `netavark 1.17.2`.
    pub network: String,
    /// Whether podman is a client of a remote service (podman machine,
    /// CONTAINER_HOST): this machine's users mean nothing there.
    pub remote: bool,
}

/// One line: `podman info` with exactly the fields rbm reads, `|`-separated.
pub const INFO_FORMAT: &str = "{{.Version.Version}}|{{.Host.Security.Rootless}}|{{.Host.Arch}}|{{.Host.NetworkBackendInfo.Version}}|{{.Host.ServiceIsRemote}}";

impl Host {
    /// Asks `podman info`; fails unless it is Podman 5 or newer.
    pub fn detect(podman: &Podman) -> Result<Host, Error> {
        ask(podman, &args::info(INFO_FORMAT), Host::parse, |h| {
            &h.version
        })
    }

    /// Parses [`INFO_FORMAT`]'s line.
    pub fn parse(line: &str) -> Option<Host> {
        let mut fields = line.trim().split('|');
        let version = fields.next()?.trim().to_string();
        let mode = match fields.next()?.trim() {
            "true" => Mode::Rootless,
            "false" => Mode::Rootful,
            _ => return None,
        };
        let arch = fields.next()?.trim().to_string();
        let network = fields.next().unwrap_or("").trim().to_string();
        let remote = fields.next().is_some_and(|f| f.trim() == "true");
        (!version.is_empty()).then_some(Host {
            version,
            mode,
            arch,
            network,
            remote,
        })
    }

    /// `Podman 5.8.6 rootless (netavark 1.17.2, amd64)`.
    pub fn describe(&self) -> String {
        let mut extra: Vec<&str> = Vec::new();
        if !self.network.is_empty() {
            extra.push(&self.network);
        }
        if !self.arch.is_empty() {
            extra.push(&self.arch);
        }
        format!(
            "Podman {} {} ({})",
            self.version,
            self.mode,
            extra.join(", ")
        )
    }
}

/// What `up` must know of podman before it acts, from `podman version`:
/// `podman info` says more, but it starts helper programs, and on
/// rootless Podman 5.8 it takes twice as long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    /// The version of the Podman that runs the containers, e.g. `5.8.6`.
    pub version: String,
    /// The architecture of the machine that runs them (`amd64`, `arm64`).
    pub arch: String,
}

/// One line, `VERSION|OS/ARCH`, of the Podman that runs the containers:
/// the server's if podman is a remote client (a podman machine's client
/// is macOS or Windows, maybe on another architecture), else the local
/// podman's, which has no server.
pub const VERSION_FORMAT: &str =
    "{{with .Server}}{{.Version}}|{{.OsArch}}{{else}}{{.Client.Version}}|{{.Client.OsArch}}{{end}}";

impl Engine {
    /// Asks `podman version`; fails unless it is Podman 5 or newer.
    pub fn detect(podman: &Podman) -> Result<Engine, Error> {
        let args = args::version(VERSION_FORMAT);
        ask(podman, &args, Engine::parse, |e| &e.version)
    }

    /// Parses [`VERSION_FORMAT`]'s line (`5.8.6|linux/amd64`).
    pub fn parse(line: &str) -> Option<Engine> {
        let (version, os_arch) = line.trim().split_once('|')?;
        let (_os, arch) = os_arch.trim().split_once('/')?;
        (!version.trim().is_empty() && !arch.is_empty()).then(|| Engine {
            version: version.trim().to_string(),
            arch: arch.to_string(),
        })
    }
}

/// Runs `args` and parses podman's answer, whose `version` must be 5 or
/// newer; an answer `parse` rejects is an error that shows it.
fn ask<T>(
    podman: &Podman,
    args: &[String],
    parse: fn(&str) -> Option<T>,
    version: fn(&T) -> &str,
) -> Result<T, Error> {
    let out = podman.run(args)?;
    let answer = parse(&out).ok_or_else(|| Error::Podman {
        command: crate::podman::display_command(podman.program(), args),
        status: "exit status: 0".into(),
        stderr: format!("unexpected output {:?}", out.trim()),
        fix: "make sure the program is Podman 5 or newer".into(),
    })?;
    check_version(podman.program(), version(&answer))?;
    Ok(answer)
}

/// The host setting that decides what a new network namespace starts from:
/// the host's own values (0, the kernel's default: forwarding on wherever
/// Podman turned it on) or the kernel's defaults (2: forwarding off).
pub const DEVCONF_INHERIT: &str = "/proc/sys/net/core/devconf_inherit_init_net";

/// What `rbm-launch info` says about the host's hardening, given the value
/// of [`DEVCONF_INHERIT`] on this machine (`None`: not readable here, e.g.
/// a Mac whose containers run in a podman machine).
pub fn hardening(devconf_inherit: Option<&str>) -> String {
    let why = "a sentry started again by hand (podman start) can forward for a few \
               milliseconds before its filter holds";
    match devconf_inherit.map(str::trim) {
        Some("2") => "new network namespaces start with forwarding off \
                      (net.core.devconf_inherit_init_net = 2)"
            .to_string(),
        Some(v) => format!(
            "net.core.devconf_inherit_init_net = {v}: {why}; set it to 2 \
             (README: Hardening the host)"
        ),
        None => format!(
            "set net.core.devconf_inherit_init_net = 2 on the machine that runs the \
             containers, or {why} (README: Hardening the host)"
        ),
    }
}

/// The major version of a version string (`5.8.6` -> 5).
pub fn major(version: &str) -> Option<u32> {
    version.split('.').next()?.trim().parse().ok()
}

/// Podman >= 5 is required: 4.x has no `network create --route`.
pub fn check_version(program: &Path, version: &str) -> Result<(), Error> {
    match major(version) {
        Some(m) if m >= 5 => Ok(()),
        _ => Err(Error::PodmanTooOld {
            program: program.to_path_buf(),
            found: version.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fake_program;

    #[test]
    fn info_line_is_parsed() {
        assert_eq!(
            Host::parse("5.8.6|true|amd64|netavark 1.17.2|false\n"),
            Some(Host {
                version: "5.8.6".into(),
                mode: Mode::Rootless,
                arch: "amd64".into(),
                network: "netavark 1.17.2".into(),
                remote: false,
            })
        );
        assert!(
            Host::parse("5.4.2|false|amd64|netavark 1.14.0|true")
                .unwrap()
                .remote
        );
        let rootful = Host::parse("5.4.2|false|arm64|").unwrap();
        assert_eq!(
            (rootful.mode, rootful.arch.as_str()),
            (Mode::Rootful, "arm64")
        );
        assert_eq!(rootful.describe(), "Podman 5.4.2 rootful (arm64)");
        assert_eq!(Host::parse("5.4.2|maybe|amd64|x"), None);
        assert_eq!(Host::parse(""), None);
    }

    #[test]
    fn version_5_is_accepted_4_is_rejected_with_the_fix() {
        assert!(check_version(Path::new("podman"), "5.4.2").is_ok());
        assert!(check_version(Path::new("podman"), "6.0.0-dev").is_ok());
        let err = check_version(Path::new("podman"), "4.3.1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("Podman 4.3.1"), "{err}");
        assert!(err.contains("lacks `network create --route`"), "{err}");
        assert!(err.contains("scripts/podman5 up"), "{err}");
        assert!(check_version(Path::new("podman"), "garbage").is_err());
        assert!(check_version(Path::new("podman"), "").is_err());
    }

    #[test]
    fn detect_asks_podman_and_checks_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let fake = |out: &str| {
            let script = format!("#!/bin/sh\necho '{out}'\n");
            Podman::new(fake_program(dir.path(), "podman", &script))
        };
        let host = Host::detect(&fake("5.8.6|true|amd64|netavark 1.17.2")).unwrap();
        assert_eq!(
            host.describe(),
            "Podman 5.8.6 rootless (netavark 1.17.2, amd64)"
        );
        let old = Host::detect(&fake("4.3.1|false|amd64|")).unwrap_err();
        assert!(matches!(old, Error::PodmanTooOld { .. }), "{old}");
        let odd = Host::detect(&fake("hello")).unwrap_err().to_string();
        assert!(odd.contains("unexpected output \"hello\""), "{odd}");
    }

    #[test]
    fn version_line_is_parsed() {
        assert_eq!(
            Engine::parse("5.8.6|linux/arm64\n"),
            Some(Engine {
                version: "5.8.6".into(),
                arch: "arm64".into(),
            })
        );
        assert_eq!(Engine::parse("5.8.6|amd64"), None);
        assert_eq!(Engine::parse("|linux/amd64"), None);
        assert_eq!(Engine::parse("5.8.6|linux/"), None);
        assert_eq!(Engine::parse("hello"), None);
    }

    #[test]
    fn engine_asks_podman_version_and_checks_it() {
        let dir = tempfile::tempdir().unwrap();
        let fake = |out: &str| {
            let script = format!(
                "#!/bin/sh\n[ \"$1 $2 $3\" = 'version --format {VERSION_FORMAT}' ] || exit 3\necho '{out}'\n"
            );
            Podman::new(fake_program(dir.path(), "podman", &script))
        };
        let engine = Engine::detect(&fake("5.8.6|linux/amd64")).unwrap();
        assert_eq!(
            (engine.version.as_str(), engine.arch.as_str()),
            ("5.8.6", "amd64")
        );
        let old = Engine::detect(&fake("4.9.4|linux/arm64")).unwrap_err();
        assert!(
            matches!(old, Error::PodmanTooOld { ref found, .. } if found == "4.9.4"),
            "{old}"
        );
        let odd = Engine::detect(&fake("hello")).unwrap_err().to_string();
        assert!(odd.contains("unexpected output \"hello\""), "{odd}");
    }

    #[test]
    fn hardening_names_the_setting_and_the_fix() {
        assert!(hardening(Some("2\n")).contains("forwarding off"));
        let open = hardening(Some("0\n"));
        assert!(open.contains("= 0: a sentry started again"), "{open}");
        assert!(open.contains("set it to 2"), "{open}");
        let unknown = hardening(None);
        assert!(unknown.contains("on the machine that runs"), "{unknown}");
    }

    #[test]
    fn rootless_failures_get_their_own_fix() {
        let port = "Error: rootlessport cannot expose privileged port 80, you can add 'net.ipv4.ip_unprivileged_port_start=80' to /etc/sysctl.conf";
        assert!(Mode::Rootless
            .fix_for(port)
            .unwrap()
            .contains("1024 or more"));
        assert_eq!(Mode::Rootful.fix_for(port), None);
        assert!(Mode::Rootless
            .fix_for("statfs /x: permission denied")
            .unwrap()
            .contains("readable by your user"));
        assert_eq!(Mode::Rootless.fix_for("Error: boom"), None);
    }
}
