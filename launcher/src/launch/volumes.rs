//! The bottle's volume folders on the host: resolved and checked before
//! anything starts, the missing ones created without following a symbolic
//! link a bottle may have put on the way, and resolved once more right
//! before the bottle's `podman run`, which mounts them by path: what is
//! mounted is what was checked.

#[cfg(unix)]
use std::ffi::{CString, OsStr};
#[cfg(unix)]
use std::fs::File;
use std::io;
#[cfg(unix)]
use std::os::fd::{AsRawFd, FromRawFd};
#[cfg(unix)]
use std::os::unix::ffi::OsStrExt;
#[cfg(unix)]
use std::path::Component;
use std::path::Path;

use rbm_profile::{profile_outside, BottleUser, Problem, Profile, ProfileError, ResolvedVolume};

use crate::error::Error;
use crate::owner::BottleRoot;

/// The bottle's volumes, resolved against the profile's folder `dir`
/// (symbolic links followed): one that leaves the folder without saying
/// `outside = true`, one inside another the bottle may write, or one the
/// bottle may write that holds the profile `file` is refused, naming the
/// file and the field. A missing host folder inside the profile's folder
/// (e.g. "./work", the bottle's workspace) is created, 0700 (the bottle's
/// files are nobody else's business), and what rbm created is given to
/// the bottle's user (`root` and the profile's `bottle.user`); rbm never creates one outside it: a missing
/// `outside` path is an error.
pub fn prepare_volumes(
    profile: &Profile,
    dir: &Path,
    file: &Path,
    root: BottleRoot,
) -> Result<Vec<ResolvedVolume>, Error> {
    let invalid = |problem| invalid(file, problem);
    let mut volumes = profile.resolve_volumes(dir).map_err(invalid)?;
    // The profile as found (a link, maybe) and in its folder.
    for place in [
        file.to_path_buf(),
        dir.join(file.file_name().unwrap_or_default()),
    ] {
        profile_outside(&volumes, &place).map_err(invalid)?;
    }
    for (i, vol) in volumes.iter_mut().enumerate() {
        if !vol.missing {
            continue;
        }
        if vol.outside {
            return Err(Error::VolumeMissing {
                path: vol.host.clone(),
                profile: file.to_path_buf(),
            });
        }
        let io = |source| Error::Io {
            what: "cannot create the volume directory for the bottle",
            path: vol.host.clone(),
            fix: "create it yourself, or change bottle.volumes",
            source,
        };
        make_dirs(&vol.host, root, profile.bottle.user).map_err(io)?;
        super::progress(&format!("created volume directory {}", vol.host.display()));
        // Resolved again: what was made must still be inside the folder.
        let field = format!("bottle.volumes[{i}]");
        *vol = profile.bottle.volumes[i]
            .resolve(dir, &field)
            .map_err(invalid)?;
    }
    Ok(volumes)
}

/// Right before the bottle's `podman run` (the old pair gone, the sentry
/// ready): the volumes resolved once more must be what was listed and
/// checked (`volumes`). A bottle of before, or anyone else, may have put
/// a symbolic link in a folder's place since; podman mounts by path.
pub fn unchanged(
    profile: &Profile,
    dir: &Path,
    file: &Path,
    volumes: &[ResolvedVolume],
) -> Result<(), Error> {
    let now = profile
        .resolve_volumes(dir)
        .map_err(|problem| invalid(file, problem))?;
    for (i, (then, now)) in volumes.iter().zip(&now).enumerate() {
        if now.host != then.host || now.missing {
            return Err(invalid(
                file,
                Problem {
                    field: format!("bottle.volumes[{i}]"),
                    message: format!(
                        "its host path resolved to {} when it was checked and resolves to {} now{}: something changed it while rbm-launch started the sentry (a symbolic link in its place?)",
                        then.host.display(),
                        now.host.display(),
                        if now.missing { " (missing)" } else { "" },
                    ),
                    fix: "nothing was started; see what replaced the folder (`ls -la` of its parent), put the folder back, and run `up` again".into(),
                },
            ));
        }
    }
    Ok(())
}

fn invalid(file: &Path, problem: Problem) -> Error {
    Error::Profile(ProfileError::Invalid {
        file: file.to_path_buf(),
        problems: vec![problem],
    })
}

/// Creates the missing folders of `path` (absolute, resolved), 0700, and
/// gives each to the bottle's `user` as `root` maps it. It walks from `/` one name at a
/// time and opens each with O_NOFOLLOW: a symbolic link anywhere on the
/// way (put there since `path` was resolved) is an error, so nothing is
/// made, chmodded or chowned anywhere else. Only folders this call
/// created are given; one that appears meanwhile is an error too.
#[cfg(unix)]
pub fn make_dirs(path: &Path, root: BottleRoot, user: Option<BottleUser>) -> io::Result<()> {
    let mut at = open_dir(None, OsStr::new("/"), false)?;
    let mut created = false;
    for c in path.components() {
        let name = match c {
            Component::RootDir => continue,
            Component::Normal(name) => name,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the path is not absolute and resolved",
                ))
            }
        };
        let next = match open_dir(Some(&at), name, false) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                mkdir_at(&at, name)?;
                created = true;
                let dir = open_dir(Some(&at), name, true)?;
                root.give(&dir, user)?;
                dir
            }
            Ok(_) if created => {
                // Inside a folder made just now: someone else is at work.
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} appeared while rbm-launch created it", name.display()),
                ));
            }
            other => other?,
        };
        at = next;
    }
    Ok(())
}

/// Elsewhere (macOS, Windows: a launcher for a Podman machine), the
/// folders are made as they are; no bottle runs as a local user there.
#[cfg(not(unix))]
pub fn make_dirs(path: &Path, _root: BottleRoot, _user: Option<BottleUser>) -> io::Result<()> {
    std::fs::create_dir_all(path)
}

#[cfg(unix)]
fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// Opens the folder `name` in `at` (or the absolute `name`) without
/// following a symbolic link: one there fails (ELOOP, or ENOTDIR). To
/// `change` it (fchmod, fchown) it is opened for reading; else, on Linux,
/// only as a place (O_PATH), which needs no read permission.
#[cfg(unix)]
fn open_dir(at: Option<&File>, name: &OsStr, change: bool) -> io::Result<File> {
    let name = c_name(name)?;
    let dirfd = at.map_or(libc::AT_FDCWD, AsRawFd::as_raw_fd);
    #[cfg(target_os = "linux")]
    let place = if change { libc::O_RDONLY } else { libc::O_PATH };
    #[cfg(not(target_os = "linux"))]
    let place = {
        let _ = change;
        libc::O_RDONLY
    };
    let flags = place | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: a valid NUL-terminated name and a directory fd we hold.
    let fd = unsafe { libc::openat(dirfd, name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// `mkdir NAME` in `at`, 0700; an existing entry is an error.
#[cfg(unix)]
fn mkdir_at(at: &File, name: &OsStr) -> io::Result<()> {
    let name = c_name(name)?;
    // SAFETY: a valid NUL-terminated name and a directory fd we hold.
    if unsafe { libc::mkdirat(at.as_raw_fd(), name.as_ptr(), 0o700) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn missing_folders_are_made_private_and_given() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().canonicalize().unwrap();
        make_dirs(&dir.join("a/b"), BottleRoot::Podman, None).unwrap();
        assert_eq!(mode(&dir.join("a")), 0o700);
        assert_eq!(mode(&dir.join("a/b")), 0o700);
        // What exists is left as it is.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        make_dirs(&dir.join("a/c"), BottleRoot::Podman, None).unwrap();
        assert_eq!(mode(&dir), 0o755);
    }

    #[test]
    fn a_symbolic_link_where_a_folder_was_expected_is_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().canonicalize().unwrap();
        let away = dir.join("away");
        std::fs::create_dir(&away).unwrap();
        std::fs::create_dir(away.join("work")).unwrap();
        std::fs::set_permissions(&away, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(away.join("work"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let owner = |p: &Path| std::fs::metadata(p).map(|m| (m.uid(), m.gid())).unwrap();
        let before = (owner(&away), owner(&away.join("work")));
        symlink(&away, dir.join("link")).unwrap();
        let root = BottleRoot::User {
            uid: 4242,
            gid: 4243,
        };
        // The link as the last name, and on the way to a missing one.
        for path in ["link", "link/work", "link/work/new", "link/new"] {
            let err = make_dirs(&dir.join(path), root, None).unwrap_err();
            assert!(
                matches!(err.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)),
                "{path}: {err}"
            );
        }
        assert_eq!(mode(&away), 0o755);
        assert_eq!(mode(&away.join("work")), 0o755);
        assert_eq!((owner(&away), owner(&away.join("work"))), before);
        assert!(!away.join("new").exists() && !away.join("work/new").exists());
    }

    #[test]
    fn a_folder_replaced_by_a_link_after_the_check_is_refused_before_the_run() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().canonicalize().unwrap();
        let text = "moniker = \"demo\"\n[bottle]\nimage = \"i\"\nvolumes = [\"./work:/w\", \"./cache:/c\"]\n[enclave]\nsubnet = \"10.242.0.0/24\"\nsentry_ip = \"10.242.0.2\"\nbottle_ip = \"10.242.0.3\"\n[uplink]\ndns = \"disabled\"\naccess = \"disabled\"\n";
        let file = dir.join("rbm.toml");
        std::fs::write(&file, text).unwrap();
        let p = Profile::parse(text, &file).unwrap();
        let vols = prepare_volumes(&p, &dir, &file, BottleRoot::Podman).unwrap();
        unchanged(&p, &dir, &file, &vols).unwrap();
        // The bottle of before turns `cache` into a link to /.
        std::fs::remove_dir(dir.join("cache")).unwrap();
        symlink("/", dir.join("cache")).unwrap();
        let err = unchanged(&p, &dir, &file, &vols).unwrap_err().to_string();
        assert!(
            err.contains("bottle.volumes[1]") && err.contains("fix:"),
            "{err}"
        );
    }

    #[test]
    fn up_refuses_a_writable_volume_that_holds_the_profile_through_a_link() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().canonicalize().unwrap();
        symlink(&dir, dir.join("all")).unwrap();
        let text = "moniker = \"demo\"\n[bottle]\nimage = \"i\"\nvolumes = [\"./all:/src\"]\n[enclave]\nsubnet = \"10.242.0.0/24\"\nsentry_ip = \"10.242.0.2\"\nbottle_ip = \"10.242.0.3\"\n[uplink]\ndns = \"disabled\"\naccess = \"disabled\"\n";
        let file = dir.join("rbm.toml");
        std::fs::write(&file, text).unwrap();
        let p = Profile::parse(text, &file).unwrap();
        let err = prepare_volumes(&p, &dir, &file, BottleRoot::Podman)
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds the profile file"), "{err}");
        let ro = Profile::parse(&text.replace("/src\"", "/src:ro\""), &file).unwrap();
        prepare_volumes(&ro, &dir, &file, BottleRoot::Podman).unwrap();
    }
}
