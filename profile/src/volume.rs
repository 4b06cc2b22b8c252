//! `bottle.volumes`: host folders the bottle gets, and where they may be.
//! A shared profile must not mount what its reader did not mean to give:
//! a host path stays inside the profile's own folder (symbolic links
//! followed) unless the volume says `outside = true`, and the mount takes
//! no option that changes the host's files (`:U` chowns the host tree,
//! `:z`/`:Z` relabel it).

use std::ffi::OsStr;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use crate::validate::Validator;
use crate::Problem;

/// One volume, as the profile asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// The host path as written: relative to the profile's folder, or
    /// absolute (then `outside` is true).
    pub host: String,
    /// The absolute path inside the bottle.
    pub bottle: String,
    pub read_only: bool,
    /// The profile says the host path may lie outside its folder.
    pub outside: bool,
}

/// A volume whose host path was resolved on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedVolume {
    /// Absolute, symbolic links resolved; for a missing path, the resolved
    /// part that exists and the rest as written.
    pub host: PathBuf,
    pub bottle: String,
    pub read_only: bool,
    /// The resolved host path lies outside the profile's folder (only a
    /// volume that says `outside = true` may).
    pub outside: bool,
    /// The host path does not exist yet.
    pub missing: bool,
}

impl ResolvedVolume {
    /// The volume in podman's `-v` form (and Quadlet's `Volume=`).
    pub fn podman_arg(&self) -> String {
        let ro = if self.read_only { ":ro" } else { "" };
        format!("{}:{}{ro}", self.host.display(), self.bottle)
    }
}

impl fmt::Display for ResolvedVolume {
    /// `HOST -> BOTTLE`, as `up` lists it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.host.display(), self.bottle)?;
        if self.read_only {
            write!(f, " (read-only)")?;
        }
        if self.outside {
            write!(f, " [outside the profile's folder]")?;
        }
        Ok(())
    }
}

/// The options a volume's string form may carry: they only say whether
/// the bottle may write. Every other podman option is refused: `U` chowns
/// the host folder, `z`/`Z` relabel it, `O` and `idmap` change what the
/// mount is, `suid`/`dev`/`exec` give the bottle more than a folder of
/// files, `shared`/`rshared` let mounts flow back to the host.
const OPTIONS: &[&str] = &["ro", "rw"];

const STRING_FORM: &str = "\"./HOST_PATH:/BOTTLE_PATH\" or \"./HOST_PATH:/BOTTLE_PATH:ro\"";

/// The table form of a volume, as a fix shows it.
fn table_form(host: &str, bottle: &str, read_only: bool) -> String {
    let ro = if read_only { ", read_only = true" } else { "" };
    format!("{{ host = {host:?}, bottle = {bottle:?}{ro}, outside = true }}")
}

/// Does the host path leave the folder by its words alone (absolute, or
/// a `..`)?
fn leaves_by_its_words(host: &str) -> bool {
    Path::new(host)
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
}

impl Validator {
    /// A volume in either form: `"HOST:BOTTLE[:ro|rw]"` or a table
    /// `{ host, bottle, read_only, outside }`.
    pub(crate) fn volume(&mut self, i: usize, raw: &toml::Value) -> Option<Volume> {
        let field = format!("bottle.volumes[{i}]");
        let vol = match raw {
            toml::Value::String(s) => self.volume_string(&field, s)?,
            toml::Value::Table(t) => self.volume_table(&field, t)?,
            other => {
                self.fail(
                    &field,
                    format!("is not a volume (a TOML {})", other.type_str()),
                    format!(
                        "write {STRING_FORM}, or a table {}",
                        table_form("/HOST_PATH", "/BOTTLE_PATH", false)
                    ),
                );
                return None;
            }
        };
        self.volume_paths(&field, &vol).then_some(vol)
    }

    fn volume_string(&mut self, field: &str, s: &str) -> Option<Volume> {
        let parts: Vec<&str> = s.split(':').collect();
        if !(2..=3).contains(&parts.len()) || parts[0].is_empty() {
            self.fail(
                field,
                format!("{s:?} is not HOST_PATH:BOTTLE_PATH[:OPTIONS]"),
                format!("write {STRING_FORM}"),
            );
            return None;
        }
        let (host, bottle) = (parts[0], parts[1]);
        let read_only = match parts.get(2).copied() {
            None | Some("rw") => false,
            Some("ro") => true,
            Some(options) => {
                self.fail(
                    field,
                    format!(
                        "option {options:?} is not allowed: a volume takes {} only (U would chown the host's folder, z/Z relabel it, others give the bottle more than files)",
                        OPTIONS.join(" or ")
                    ),
                    format!("write \"{host}:{bottle}:ro\" or \"{host}:{bottle}\""),
                );
                return None;
            }
        };
        if leaves_by_its_words(host) {
            self.fail(
                field,
                format!("host path {host:?} lies outside the profile's folder"),
                format!(
                    "if the bottle is meant to get it, say so with the table form {}; else use a path inside the profile's folder, e.g. \"./work\"",
                    table_form(host, bottle, read_only)
                ),
            );
            return None;
        }
        Some(Volume {
            host: host.to_string(),
            bottle: bottle.to_string(),
            read_only,
            outside: false,
        })
    }

    fn volume_table(&mut self, field: &str, t: &toml::Table) -> Option<Volume> {
        let mut ok = true;
        for key in t.keys() {
            if !["host", "bottle", "read_only", "outside"].contains(&key.as_str()) {
                self.fail(
                    &format!("{field}.{key}"),
                    "is not a volume key",
                    "use host, bottle, read_only and outside only",
                );
                ok = false;
            }
        }
        let mut text = |key: &str| match t.get(key) {
            Some(toml::Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.fail(
                    &format!("{field}.{key}"),
                    format!("is not a path (a TOML {})", other.type_str()),
                    "write the path as a string",
                );
                None
            }
            None => {
                self.fail(
                    &format!("{field}.{key}"),
                    "is missing",
                    format!("add it, e.g. {}", table_form("/data", "/data", true)),
                );
                None
            }
        };
        let (host, bottle) = (text("host"), text("bottle"));
        let mut flag = |key: &str| match t.get(key) {
            None => Some(false),
            Some(toml::Value::Boolean(b)) => Some(*b),
            Some(other) => {
                self.fail(
                    &format!("{field}.{key}"),
                    format!("is not true or false (a TOML {})", other.type_str()),
                    format!("write {key} = true or leave it out"),
                );
                None
            }
        };
        let (read_only, outside) = (flag("read_only"), flag("outside"));
        let (host, bottle, read_only, outside) = (host?, bottle?, read_only?, outside?);
        if !ok {
            return None;
        }
        if host.is_empty() {
            self.fail(
                &format!("{field}.host"),
                "is empty",
                "name a host folder, e.g. \"./work\"",
            );
            return None;
        }
        if !outside && leaves_by_its_words(&host) {
            self.fail(
                &format!("{field}.host"),
                format!("{host:?} lies outside the profile's folder"),
                format!(
                    "if the bottle is meant to get it, add outside = true: {}",
                    table_form(&host, &bottle, read_only)
                ),
            );
            return None;
        }
        Some(Volume {
            host,
            bottle,
            read_only,
            outside,
        })
    }

    /// Every volume of `raw` (`bottle.volumes`), then the rules between
    /// them: none lies inside another that the bottle may write, and none
    /// the bottle may write holds the profile file (named `profile_file`,
    /// in the profile's folder). By their words; `Profile::resolve_volumes`
    /// and [`profile_outside`] apply the same rules to resolved paths.
    pub(crate) fn volumes(
        &mut self,
        raw: &[toml::Value],
        profile_file: Option<&OsStr>,
    ) -> Vec<Volume> {
        let vols: Vec<(usize, Volume)> = raw
            .iter()
            .enumerate()
            .filter_map(|(i, vol)| self.volume(i, vol).map(|v| (i, v)))
            .collect();
        let lexical: Vec<PathBuf> = vols.iter().map(|(_, v)| lexical(&v.host)).collect();
        for (a, (j, inner)) in vols.iter().enumerate() {
            let outer = vols
                .iter()
                .zip(&lexical)
                .find(|((_, o), path)| !o.read_only && strictly_inside(&lexical[a], path));
            if let Some(((i, o), _)) = outer {
                let p = nested_problem(*i, &o.host, *j, &inner.host);
                self.fail(&p.field, p.message, p.fix);
            }
        }
        if let Some(name) = profile_file {
            for ((i, v), path) in vols.iter().zip(&lexical) {
                let holds = path.as_os_str().is_empty() || path.as_os_str() == name;
                if !v.read_only && path.is_relative() && holds {
                    let p = profile_problem(*i, v, &Path::new(name).display().to_string());
                    self.fail(&p.field, p.message, p.fix);
                }
            }
        }
        vols.into_iter().map(|(_, v)| v).collect()
    }

    /// What both forms share: paths podman's `-v` can carry.
    fn volume_paths(&mut self, field: &str, vol: &Volume) -> bool {
        if !vol.bottle.starts_with('/') {
            self.fail(
                field,
                format!("bottle path {:?} is not absolute", vol.bottle),
                "write the path inside the bottle starting with /, e.g. \"/workspace\"",
            );
            return false;
        }
        for (what, path) in [("host", &vol.host), ("bottle", &vol.bottle)] {
            if path.contains(':') {
                self.fail(
                    field,
                    format!("{what} path {path:?} holds a ':', which podman reads as the end of the path"),
                    "use a path without ':' (a symbolic link inside the profile's folder can name it)",
                );
                return false;
            }
        }
        true
    }
}

impl Volume {
    /// Resolves the host path against `folder`, the profile's folder:
    /// absolute, symbolic links followed as far as the path exists. A
    /// volume that does not say `outside` must stay inside `folder` (a
    /// `./work` that is a link to the home folder does not). Touches
    /// nothing; the problem names `field`.
    pub fn resolve(&self, folder: &Path, field: &str) -> Result<ResolvedVolume, Problem> {
        let problem = |message: String, fix: String| Problem {
            field: field.to_string(),
            message,
            fix,
        };
        let folder = folder.canonicalize().map_err(|e| {
            problem(
                format!(
                    "the profile's folder {} cannot be resolved: {e}",
                    folder.display()
                ),
                "check that the profile's folder exists and can be read".into(),
            )
        })?;
        let (host, missing) = resolve_in(&folder, &self.host).map_err(|e| {
            problem(
                format!(
                    "host path {} cannot be resolved: {e}",
                    folder.join(&self.host).display()
                ),
                "check that you may read it".into(),
            )
        })?;
        let outside = !host.starts_with(&folder);
        if outside && !self.outside {
            return Err(problem(
                format!(
                    "host path {:?} resolves to {}, outside the profile's folder {} (a symbolic link on the way leads there)",
                    self.host,
                    host.display(),
                    folder.display()
                ),
                format!(
                    "replace the link with a folder of its own; or, if the bottle is meant to get {}, write the volume as {}",
                    host.display(),
                    table_form(&host.display().to_string(), &self.bottle, self.read_only)
                ),
            ));
        }
        if host.to_str().is_none_or(|s| s.contains(':')) {
            return Err(problem(
                format!(
                    "host path resolves to {}, which podman's -v cannot carry (a ':' or bytes that are not UTF-8)",
                    host.display()
                ),
                "mount a folder whose path has neither".into(),
            ));
        }
        Ok(ResolvedVolume {
            host,
            bottle: self.bottle.clone(),
            read_only: self.read_only,
            outside,
            missing,
        })
    }
}

/// A host path by its words: `.` dropped, `..` taking back the name
/// before it where there is one.
fn lexical(host: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in Path::new(host).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Whether `inner` lies strictly inside `outer`; a relative path (from the
/// profile's folder) is only compared with a relative one.
fn strictly_inside(inner: &Path, outer: &Path) -> bool {
    inner.is_absolute() == outer.is_absolute() && inner != outer && inner.starts_with(outer)
}

fn nested_problem(outer: usize, outer_host: &str, inner: usize, inner_host: &str) -> Problem {
    Problem {
        field: format!("bottle.volumes[{inner}]"),
        message: format!(
            "host path {inner_host:?} lies inside {outer_host:?} (bottle.volumes[{outer}]), which the bottle may write: it could put a symbolic link where {inner_host:?} is, and the next start would mount what the link names (the host's / as well)"
        ),
        fix: format!(
            "keep the folders apart (e.g. \"./work\" and \"./cache\", side by side), or drop bottle.volumes[{inner}] (the bottle reaches it through bottle.volumes[{outer}]), or make bottle.volumes[{outer}] read-only"
        ),
    }
}

fn profile_problem(i: usize, v: &Volume, file: &str) -> Problem {
    Problem {
        field: format!("bottle.volumes[{i}]"),
        message: format!(
            "host path {:?} holds the profile file {file} and the bottle may write it: it could rewrite the profile that the next `up` runs",
            v.host
        ),
        fix: format!(
            "mount it read-only (\"{}:{}:ro\"), or keep the profile beside the folder the bottle gets, not in it (e.g. \"./work:{}\")",
            v.host, v.bottle, v.bottle
        ),
    }
}

/// The resolved volumes (all of a profile's, in its order) keep apart:
/// none lies strictly inside another the bottle may write (the bottle
/// could put a symbolic link in its place between the check and the
/// mount, or before the next boot of a Quadlet unit).
pub fn volumes_apart(volumes: &[ResolvedVolume]) -> Result<(), Problem> {
    for (j, inner) in volumes.iter().enumerate() {
        if let Some((i, outer)) = volumes
            .iter()
            .enumerate()
            .find(|(_, o)| !o.read_only && strictly_inside(&inner.host, &o.host))
        {
            return Err(nested_problem(
                i,
                &outer.host.display().to_string(),
                j,
                &inner.host.display().to_string(),
            ));
        }
    }
    Ok(())
}

/// None of the resolved `volumes` that the bottle may write holds the
/// profile `file` (as named, and what it resolves to): the bottle would
/// rewrite the profile the next `up` runs. The volumes are in the
/// profile's order.
pub fn profile_outside(volumes: &[ResolvedVolume], file: &Path) -> Result<(), Problem> {
    let named = match (file.parent().map(Path::canonicalize), file.file_name()) {
        (Some(Ok(dir)), Some(name)) => Some(dir.join(name)),
        _ => None,
    };
    let places: Vec<PathBuf> = named.into_iter().chain(file.canonicalize().ok()).collect();
    for (i, v) in volumes.iter().enumerate() {
        if !v.read_only && places.iter().any(|p| p.starts_with(&v.host)) {
            let written = Volume {
                host: v.host.display().to_string(),
                bottle: v.bottle.clone(),
                read_only: false,
                outside: v.outside,
            };
            return Err(profile_problem(i, &written, &file.display().to_string()));
        }
    }
    Ok(())
}

/// The first of the resolved `volumes` that holds `path` (resolved) and
/// that the bottle may write (`writable_only`) or may read; its index.
pub fn volume_holding(
    volumes: &[ResolvedVolume],
    path: &Path,
    writable_only: bool,
) -> Option<usize> {
    volumes
        .iter()
        .position(|v| (!writable_only || !v.read_only) && path.starts_with(&v.host))
}

/// A path as a profile whose folder is `folder` (resolved) writes it,
/// resolved on this machine: joined to `folder` if relative, the longest
/// existing part with symbolic links followed, the rest as written;
/// whether some of it is missing. The one rule for every host path a
/// profile names (volumes, a credential's file and CA).
pub fn resolve_in(folder: &Path, written: &str) -> std::io::Result<(PathBuf, bool)> {
    // Lexically first (`./a/./b` is `a/b`), so that each step back from a
    // missing path drops one real name.
    let joined: PathBuf = folder.join(written).components().collect();
    resolve_existing(&joined)
}

/// `path` with its longest existing ancestor resolved (canonical) and the
/// rest appended as written; whether some of it is missing.
fn resolve_existing(path: &Path) -> std::io::Result<(PathBuf, bool)> {
    let mut existing = path;
    let mut rest = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(resolved) => {
                let missing = !rest.is_empty();
                let full = rest.iter().rev().fold(resolved, |p, c| p.join(c));
                return Ok((full, missing));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else {
                    return Err(e);
                };
                rest.push(name.to_os_string());
                existing = parent;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests;
