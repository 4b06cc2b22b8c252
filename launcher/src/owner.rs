//! Who the bottle is on the host: the user namespace a rootful bottle runs
//! in, so that uid 0 in the bottle is never uid 0 on the host's files (a
//! hostile bottle could otherwise leave a setuid-root program in its
//! workspace for any local user to run), and the owner of the volume
//! directories rbm creates for it (`give`).
//!
//! - Rootless Podman: bottle root is already the user who runs Podman
//!   (Podman's own mapping); nothing to add.
//! - Rootful, with a user to tell (rbm-launch run through sudo: SUDO_UID
//!   and SUDO_GID; else the owner of the profile's folder, if not root):
//!   bottle root is that user, so files the bottle makes in its workspace
//!   are the user's; the bottle's other ids fall into [`RANGE_START`]'s
//!   range, which no user owns.
//! - Rootful, no user to tell (root's own profile, or a remote Podman such
//!   as podman machine, where a local uid means nothing): every bottle id
//!   falls into that range.
//!
//! Cost (Podman 5.4, overlay, kernel 6.18): a single range is an idmapped
//! mount, free; a mapping of two ranges (the user, then the range) makes
//! containers/storage copy the image's layers once per image and mapping
//! (about 2 s and the image's size on disk for a 195 MB image), after
//! which a start costs what it did.

#[cfg(unix)]
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::podman::host::{Host, Mode};

/// The first host id of the range the bottle's ids fall into: inside the
/// span systemd sets aside for container ranges (524288 to 1879048191), far
/// above any user's id, and owned by no one.
pub const RANGE_START: u32 = 0x6F00_0000;

/// How many ids the bottle has: 0 to 65535, as images expect (65534 is
/// `nobody`).
pub const RANGE_SIZE: u32 = 65536;

/// Who bottle root is on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BottleRoot {
    /// Rootless Podman: the user who runs Podman (its default mapping).
    Podman,
    /// Rootful: this host user and group; the bottle's other ids are in the range.
    User { uid: u32, gid: u32 },
    /// Rootful, no user to tell: every bottle id is in the range.
    Range,
}

impl BottleRoot {
    /// The owner for the Podman `host` describes and a profile in `dir`,
    /// from rbm-launch's own environment (never from the profile).
    pub fn of(host: &Host, dir: &Path) -> BottleRoot {
        // Elsewhere (macOS, Windows) Podman runs in a machine: no local user.
        #[cfg(unix)]
        let folder = std::fs::metadata(dir).ok().map(|m| (m.uid(), m.gid()));
        #[cfg(not(unix))]
        let folder = {
            let _ = dir;
            None
        };
        BottleRoot::decide(
            host.mode,
            host.remote,
            std::env::var("SUDO_UID").ok().as_deref(),
            std::env::var("SUDO_GID").ok().as_deref(),
            folder,
        )
    }

    /// [`BottleRoot::of`] from its inputs: `sudo_uid`/`sudo_gid` as sudo set
    /// them, `folder` the profile folder's owner and group.
    pub fn decide(
        mode: Mode,
        remote: bool,
        sudo_uid: Option<&str>,
        sudo_gid: Option<&str>,
        folder: Option<(u32, u32)>,
    ) -> BottleRoot {
        if mode == Mode::Rootless {
            return BottleRoot::Podman;
        }
        if remote {
            // The uids of this machine mean nothing where the bottle runs.
            return BottleRoot::Range;
        }
        let id = |s: Option<&str>| s.and_then(|s| s.trim().parse::<u32>().ok());
        let user = match (id(sudo_uid), id(sudo_gid)) {
            (Some(uid), Some(gid)) => Some((uid, gid)),
            _ => folder,
        };
        match user {
            // Root (or an id in the range itself) is no user to map to.
            Some((uid, gid)) if uid != 0 && gid != 0 && uid < RANGE_START && gid < RANGE_START => {
                BottleRoot::User { uid, gid }
            }
            _ => BottleRoot::Range,
        }
    }

    /// Bottle root's uid and gid on the host; None for rootless Podman
    /// (the user who runs it, who also creates the directories).
    pub fn host_ids(self) -> Option<(u32, u32)> {
        match self {
            BottleRoot::Podman => None,
            BottleRoot::User { uid, gid } => Some((uid, gid)),
            BottleRoot::Range => Some((RANGE_START, RANGE_START)),
        }
    }

    /// The mapping as `(flag, value)` pairs: `("uidmap", "0:1000:1")`, ...
    fn maps(self) -> Vec<(&'static str, String)> {
        let range = |first: u32| format!("{first}:{}:{}", RANGE_START + first, RANGE_SIZE - first);
        match self {
            BottleRoot::Podman => vec![],
            BottleRoot::User { uid, gid } => vec![
                ("uidmap", format!("0:{uid}:1")),
                ("uidmap", range(1)),
                ("gidmap", format!("0:{gid}:1")),
                ("gidmap", range(1)),
            ],
            BottleRoot::Range => vec![("uidmap", range(0)), ("gidmap", range(0))],
        }
    }

    /// `podman run` arguments for the bottle: `--uidmap`/`--gidmap`.
    pub fn podman_args(self) -> Vec<String> {
        self.maps()
            .into_iter()
            .flat_map(|(flag, value)| [format!("--{flag}"), value])
            .collect()
    }

    /// The same as Quadlet lines: `UIDMap=`/`GIDMap=`.
    pub fn quadlet_lines(self) -> Vec<String> {
        self.maps()
            .into_iter()
            .map(|(flag, value)| match flag {
                "uidmap" => format!("UIDMap={value}"),
                _ => format!("GIDMap={value}"),
            })
            .collect()
    }

    /// Makes a directory rbm just created for the bottle private (0700:
    /// other local users do not reach what the bottle leaves there) and
    /// bottle root's, so the bottle can write it. Through the open `dir`
    /// (fchmod, fchown), never a path: a path could meanwhile lead through
    /// a symbolic link to a folder of the host's (`launch::volumes::make_dirs`
    /// opens it without following one).
    #[cfg(unix)]
    pub fn give(self, dir: &std::fs::File) -> std::io::Result<()> {
        dir.set_permissions(std::fs::Permissions::from_mode(0o700))?;
        match self.host_ids() {
            Some((uid, gid)) => std::os::unix::fs::fchown(dir, Some(uid), Some(gid)),
            None => Ok(()),
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn rootless_bottle_root_is_the_user_already() {
        let o = BottleRoot::decide(Mode::Rootless, false, Some("1000"), Some("1000"), None);
        assert_eq!(o, BottleRoot::Podman);
        assert!(o.podman_args().is_empty() && o.quadlet_lines().is_empty());
        assert_eq!(
            BottleRoot::decide(Mode::Rootless, true, None, None, None),
            BottleRoot::Podman
        );
    }

    #[test]
    fn rootful_through_sudo_maps_bottle_root_to_the_invoking_user() {
        let o = BottleRoot::decide(
            Mode::Rootful,
            false,
            Some("1000"),
            Some("1001"),
            Some((0, 0)),
        );
        assert_eq!(
            o,
            BottleRoot::User {
                uid: 1000,
                gid: 1001
            }
        );
        assert_eq!(
            o.podman_args(),
            [
                "--uidmap",
                "0:1000:1",
                "--uidmap",
                "1:1862270977:65535",
                "--gidmap",
                "0:1001:1",
                "--gidmap",
                "1:1862270977:65535"
            ]
        );
        assert_eq!(
            o.quadlet_lines(),
            [
                "UIDMap=0:1000:1",
                "UIDMap=1:1862270977:65535",
                "GIDMap=0:1001:1",
                "GIDMap=1:1862270977:65535"
            ]
        );
        assert_eq!(o.host_ids(), Some((1000, 1001)));
    }

    #[test]
    fn rootful_without_sudo_takes_the_profile_folders_owner_unless_root() {
        assert_eq!(
            BottleRoot::decide(Mode::Rootful, false, None, None, Some((1000, 100))),
            BottleRoot::User {
                uid: 1000,
                gid: 100
            }
        );
        let root = BottleRoot::decide(Mode::Rootful, false, None, None, Some((0, 0)));
        assert_eq!(root, BottleRoot::Range);
        assert_eq!(
            root.podman_args(),
            [
                "--uidmap",
                "0:1862270976:65536",
                "--gidmap",
                "0:1862270976:65536"
            ]
        );
        assert_eq!(root.host_ids(), Some((RANGE_START, RANGE_START)));
    }

    #[test]
    fn bottle_root_is_never_host_root_whatever_the_environment_says() {
        for (uid, gid, folder) in [
            (Some("0"), Some("0"), None),
            (Some("junk"), Some("1000"), Some((0, 0))),
            (Some("1000"), None, None),
            (None, None, Some((1000, 0))),
            (Some("1862270976"), Some("1000"), None),
        ] {
            let o = BottleRoot::decide(Mode::Rootful, false, uid, gid, folder);
            let (u, g) = o.host_ids().unwrap();
            assert!(u != 0 && g != 0, "{uid:?} {gid:?} {folder:?}: {o:?}");
            assert!(!o.podman_args().is_empty());
        }
    }

    #[test]
    fn remote_rootful_takes_the_range_a_local_uid_means_nothing_there() {
        let o = BottleRoot::decide(
            Mode::Rootful,
            true,
            Some("1000"),
            Some("1000"),
            Some((1000, 1000)),
        );
        assert_eq!(o, BottleRoot::Range);
    }

    #[test]
    fn give_makes_the_directory_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("work");
        std::fs::create_dir(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        BottleRoot::Podman
            .give(&std::fs::File::open(&path).unwrap())
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
