//! Who the bottle is on the host: the user namespace a rootful bottle runs
//! in, so that uid 0 in the bottle is never uid 0 on the host's files (a
//! hostile bottle could otherwise leave a setuid-root program in its
//! workspace for any local user to run), and the owner of the volume
//! directories rbm creates for it (`give`).
//!
//! - Rootless Podman: bottle root is already the user who runs Podman
//!   (Podman's own mapping); nothing to add.
//! - Rootful, with a user to tell (rbm-launch run through sudo: SUDO_UID
//!   and SUDO_GID; else the owner of the profile's folder, or of the
//!   workspace `rbm-launch run` gives a recipe, if not root):
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

use rbm_profile::BottleUser;

use crate::podman::host::{Host, Mode};

/// The primary group and home folder of host user `uid`, from the user
/// database (getpwuid_r).
#[cfg(unix)]
fn user_entry(uid: u32) -> Option<(u32, std::path::PathBuf)> {
    use std::ffi::CStr;
    use std::os::unix::ffi::OsStrExt;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: zeroed passwd is a valid out-parameter; getpwuid_r writes
    // into it and `buf`, both alive for the call and the reads below.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut found);
        if rc != 0 || found.is_null() || pw.pw_dir.is_null() {
            return None;
        }
        let dir = std::ffi::OsStr::from_bytes(CStr::from_ptr(pw.pw_dir).to_bytes());
        Some((pw.pw_gid, std::path::PathBuf::from(dir)))
    }
}

/// Host user `uid`'s home folder, if the user database knows it.
#[cfg(unix)]
pub fn home_of(uid: u32) -> Option<std::path::PathBuf> {
    user_entry(uid).map(|(_, home)| home)
}

/// The bottle ids of `user` (root if none).
fn ids(user: Option<BottleUser>) -> (u32, u32) {
    user.map_or((0, 0), |u| (u.uid, u.gid))
}

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
        // The folder owner's own group, not the folder's: a folder of
        // group `docker` must not make the bottle's files that group's.
        #[cfg(unix)]
        let folder = std::fs::metadata(dir)
            .ok()
            .map(|m| (m.uid(), user_entry(m.uid()).map_or(m.gid(), |(gid, _)| gid)));
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

    /// The host uid and gid of the bottle's `user` (None: bottle root);
    /// None for rootless Podman (the user who runs it, who also creates
    /// the directories).
    pub fn host_ids(self, user: Option<BottleUser>) -> Option<(u32, u32)> {
        let (uid, gid) = ids(user);
        match self {
            BottleRoot::Podman => None,
            BottleRoot::User { uid, gid } => Some((uid, gid)),
            BottleRoot::Range => Some((RANGE_START + uid, RANGE_START + gid)),
        }
    }

    /// The mapping as `(flag, value)` pairs: `("uidmap", "0:1000:1")`, ...
    /// With a `user` (the profile's `bottle.user`), that id, not root, is
    /// the host user: rootful, root and the other ids fall into the
    /// range; rootless, `keep-id` puts the user who runs Podman there.
    fn maps(self, user: Option<BottleUser>) -> Vec<(&'static str, String)> {
        let (inner_uid, inner_gid) = ids(user);
        // The bottle's ids `from..to` at the same place in the range.
        let range = |from: u32, to: u32| format!("{from}:{}:{}", RANGE_START + from, to - from);
        let around = |flag: &'static str, inner: u32, host: u32| {
            let mut m = Vec::new();
            if inner > 0 {
                m.push((flag, range(0, inner)));
            }
            m.push((flag, format!("{inner}:{host}:1")));
            if inner + 1 < RANGE_SIZE {
                m.push((flag, range(inner + 1, RANGE_SIZE)));
            }
            m
        };
        match self {
            BottleRoot::Podman => match user {
                Some(u) if u.uid != 0 || u.gid != 0 => {
                    vec![("userns", format!("keep-id:uid={},gid={}", u.uid, u.gid))]
                }
                _ => vec![],
            },
            BottleRoot::User { uid, gid } => {
                let mut m = around("uidmap", inner_uid, uid);
                m.extend(around("gidmap", inner_gid, gid));
                m
            }
            BottleRoot::Range => vec![
                ("uidmap", range(0, RANGE_SIZE)),
                ("gidmap", range(0, RANGE_SIZE)),
            ],
        }
    }

    /// `podman run` arguments for the bottle: `--uidmap`/`--gidmap` (or
    /// `--userns`) and `--user`, for the profile's `user`.
    pub fn podman_args(self, user: Option<BottleUser>) -> Vec<String> {
        let mut a: Vec<String> = self
            .maps(user)
            .into_iter()
            .flat_map(|(flag, value)| [format!("--{flag}"), value])
            .collect();
        if let Some(u) = user {
            a.extend(["--user".into(), u.to_string()]);
        }
        a
    }

    /// The same as Quadlet lines: `UIDMap=`/`GIDMap=`/`UserNS=`, `User=`/`Group=`.
    pub fn quadlet_lines(self, user: Option<BottleUser>) -> Vec<String> {
        let mut lines: Vec<String> = self
            .maps(user)
            .into_iter()
            .map(|(flag, value)| match flag {
                "uidmap" => format!("UIDMap={value}"),
                "gidmap" => format!("GIDMap={value}"),
                _ => format!("UserNS={value}"),
            })
            .collect();
        if let Some(u) = user {
            lines.push(format!("User={}", u.uid));
            lines.push(format!("Group={}", u.gid));
        }
        lines
    }

    /// Makes a directory rbm just created for the bottle private (0700:
    /// other local users do not reach what the bottle leaves there) and
    /// bottle root's, so the bottle can write it. Through the open `dir`
    /// (fchmod, fchown), never a path: a path could meanwhile lead through
    /// a symbolic link to a folder of the host's (`launch::volumes::make_dirs`
    /// opens it without following one).
    #[cfg(unix)]
    pub fn give(self, dir: &std::fs::File, user: Option<BottleUser>) -> std::io::Result<()> {
        dir.set_permissions(std::fs::Permissions::from_mode(0o700))?;
        match self.host_ids(user) {
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
        assert!(o.podman_args(None).is_empty() && o.quadlet_lines(None).is_empty());
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
            o.podman_args(None),
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
            o.quadlet_lines(None),
            [
                "UIDMap=0:1000:1",
                "UIDMap=1:1862270977:65535",
                "GIDMap=0:1001:1",
                "GIDMap=1:1862270977:65535"
            ]
        );
        assert_eq!(o.host_ids(None), Some((1000, 1001)));
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
            root.podman_args(None),
            [
                "--uidmap",
                "0:1862270976:65536",
                "--gidmap",
                "0:1862270976:65536"
            ]
        );
        assert_eq!(root.host_ids(None), Some((RANGE_START, RANGE_START)));
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
            let (u, g) = o.host_ids(None).unwrap();
            assert!(u != 0 && g != 0, "{uid:?} {gid:?} {folder:?}: {o:?}");
            assert!(!o.podman_args(None).is_empty());
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
            .give(&std::fs::File::open(&path).unwrap(), None)
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn the_bottles_user_not_its_root_is_the_host_user() {
        let node = Some(BottleUser {
            uid: 1000,
            gid: 1000,
        });
        let o = BottleRoot::User { uid: 501, gid: 20 };
        let r = RANGE_START;
        assert_eq!(
            o.podman_args(node).join(" "),
            format!(
                "--uidmap 0:{r}:1000 --uidmap 1000:501:1 --uidmap 1001:{}:64535 \
                 --gidmap 0:{r}:1000 --gidmap 1000:20:1 --gidmap 1001:{}:64535 --user 1000:1000",
                r + 1001,
                r + 1001
            )
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
        );
        assert_eq!(o.host_ids(node), Some((501, 20)));
        // Rootless: Podman's keep-id puts the user who runs it there.
        assert_eq!(
            BottleRoot::Podman.podman_args(node),
            [
                "--userns",
                "keep-id:uid=1000,gid=1000",
                "--user",
                "1000:1000"
            ]
        );
        assert_eq!(
            BottleRoot::Podman.quadlet_lines(node),
            [
                "UserNS=keep-id:uid=1000,gid=1000",
                "User=1000",
                "Group=1000"
            ]
        );
        // No user to tell: the range, where the user's files are at its place.
        assert_eq!(BottleRoot::Range.host_ids(node), Some((r + 1000, r + 1000)));
        // Every bottle id is mapped once.
        let total: u32 = o
            .podman_args(node)
            .iter()
            .filter_map(|a| a.rsplit(':').next()?.parse::<u32>().ok())
            .take(3)
            .sum();
        assert_eq!(total, RANGE_SIZE);
        // The last id: nothing after it.
        let last = Some(BottleUser { uid: 65535, gid: 0 });
        assert_eq!(
            o.podman_args(last)[..4],
            [
                "--uidmap",
                &format!("0:{r}:65535"),
                "--uidmap",
                "65535:501:1"
            ]
        );
        assert_eq!(o.podman_args(last)[4..6], ["--gidmap", "0:20:1"]);
    }
}
