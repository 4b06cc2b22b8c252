//! What a profile takes from the machine that runs it: the host paths its
//! bottle gets, the secrets rbm-launch reads for it and the hosts each is
//! sent to. `up` and `quadlet` print it before anything starts, and
//! `trust` wants a yes for it. A profile is often someone else's (a
//! repository's `rbm.toml`): this is what it could take from the user.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use rbm_profile::{leaves_folder, Credential, Profile, Source};

use crate::error::Error;
use crate::lookup::Loaded;

/// What a profile takes, in the order the profile names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Takes {
    pub volumes: Vec<Volume>,
    pub credentials: Vec<Taken>,
}

/// A host path the bottle gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// Resolved: absolute, symlinks followed as far as the path exists.
    pub host: PathBuf,
    /// The path in the bottle, and the options as written (may be empty).
    pub bottle: String,
    pub options: String,
    /// It lies outside the profile's folder.
    pub outside: bool,
}

/// A credential: where rbm-launch reads its real value, and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub env: String,
    pub from: Source,
    pub hosts: Vec<String>,
    pub paths: CredentialPaths,
}

/// The files a credential reads, resolved and checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialPaths {
    /// Its `file:` source.
    pub file: Option<PathBuf>,
    /// Its `upstream_ca`.
    pub upstream_ca: Option<PathBuf>,
    /// One of them lies outside the profile's folder (`outside = true`).
    pub outside: bool,
}

impl Takes {
    /// What `loaded` takes. Fails if a credential's file or CA resolves
    /// (through a symlink) outside the profile's folder and the credential
    /// does not say `outside = true`.
    pub fn of(loaded: &Loaded) -> Result<Takes, Error> {
        let dir = &folder(&loaded.dir);
        let volumes = loaded
            .profile
            .bottle
            .volumes
            .iter()
            .map(|v| {
                let mut parts = v.splitn(3, ':');
                let written = parts.next().unwrap_or_default();
                let host = resolve(dir, written);
                Volume {
                    outside: volume_outside(dir, written, &host),
                    host,
                    bottle: parts.next().unwrap_or_default().to_string(),
                    options: parts.next().unwrap_or_default().to_string(),
                }
            })
            .collect();
        let credentials = loaded
            .profile
            .credentials
            .iter()
            .map(|c| {
                Ok(Taken {
                    env: c.env.clone(),
                    from: c.from.clone(),
                    hosts: c.hosts.clone(),
                    paths: credential_paths(c, dir)?,
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(Takes {
            volumes,
            credentials,
        })
    }

    /// Whether the user must say yes first: the profile reads a secret, or
    /// gives the bottle a host path outside its folder.
    pub fn needs_yes(&self) -> bool {
        !self.credentials.is_empty() || self.volumes.iter().any(|v| v.outside)
    }

    /// One line per thing taken, e.g. `credential API_KEY: from
    /// env:ANTHROPIC_API_KEY, sent only to api.anthropic.com`.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for v in &self.volumes {
            let options = if v.options.is_empty() {
                String::new()
            } else {
                format!(" ({})", v.options)
            };
            out.push(format!(
                "volume      {} -> {}{options}, {}",
                v.host.display(),
                v.bottle,
                place(v.outside)
            ));
        }
        for c in &self.credentials {
            let from = match (&c.from, &c.paths.file) {
                (Source::File(_), Some(file)) => {
                    format!("file:{} ({})", file.display(), place(c.paths.outside))
                }
                (from, _) => from.to_string(),
            };
            let mut line = format!(
                "credential  {}: from {from}, sent only to {}",
                c.env,
                c.hosts.join(", ")
            );
            if let Some(ca) = &c.paths.upstream_ca {
                line += &format!("; trusts the CA {} for them", ca.display());
            }
            out.push(line);
        }
        out
    }
}

impl fmt::Display for Takes {
    /// The statement `up` prints before it starts anything.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines = self.lines();
        if lines.is_empty() {
            return write!(f, "takes no host path and no credential from this machine");
        }
        write!(f, "takes from this machine:")?;
        for line in lines {
            write!(f, "\n  {line}")?;
        }
        Ok(())
    }
}

/// What `up` and `check` print: the profile (its resolved path) and what
/// it takes.
pub fn statement(loaded: &Loaded, takes: &Takes) -> String {
    format!("rbm: {} {takes}", shown(loaded).display())
}

/// The profile's path as shown: resolved (no `./` or symlink in it).
pub fn shown(loaded: &Loaded) -> PathBuf {
    loaded
        .path
        .canonicalize()
        .unwrap_or_else(|_| loaded.path.clone())
}

fn place(outside: bool) -> &'static str {
    if outside {
        "OUTSIDE the profile's folder"
    } else {
        "in the profile's folder"
    }
}

/// The volumes' host paths (resolved, as `resolve` gives them) that lie
/// outside the profile's folder `dir`: absolute, with `..`, or resolving
/// elsewhere through a symlink. What counts as outside is the volumes'
/// rule; a yes is asked for each.
pub fn outside_paths(profile: &Profile, dir: &Path) -> Vec<PathBuf> {
    let dir = &folder(dir);
    profile
        .bottle
        .volumes
        .iter()
        .filter_map(|v| {
            let written = v.split(':').next().unwrap_or_default();
            let resolved = resolve(dir, written);
            volume_outside(dir, written, &resolved).then_some(resolved)
        })
        .collect()
}

/// Whether a volume's host path, `written` in the profile and `resolved`,
/// lies outside the profile's folder `dir` (resolved): the one rule
/// `outside_paths` and `Takes` apply.
fn volume_outside(dir: &Path, written: &str, resolved: &Path) -> bool {
    leaves_folder(written) || !resolved.starts_with(dir)
}

/// A credential's file and CA, resolved. A path that resolves outside the
/// profile's folder (a symlink in the folder that leads to `~/.ssh/id_ed25519`)
/// is refused unless the credential says `outside = true`: the same rule
/// as for its text, which the profile's checks apply.
pub fn credential_paths(c: &Credential, dir: &Path) -> Result<CredentialPaths, Error> {
    let dir = &folder(dir);
    let mut paths = CredentialPaths::default();
    let mut check = |field: &str, written: &str| {
        let resolved = resolve(dir, written);
        let inside = !leaves_folder(written) && resolved.starts_with(dir);
        if !inside && !c.outside {
            return Err(Error::Credential {
                env: c.env.clone(),
                message: format!(
                    "its {field} {written} resolves to {}, outside the profile's folder {}",
                    resolved.display(),
                    dir.display()
                ),
                fix: "put the file itself in the profile's folder, or add `outside = true` to this credential if you mean it (rbm-launch then names the file and asks you before it reads it)".into(),
            });
        }
        paths.outside |= !inside;
        Ok(resolved)
    };
    if let Source::File(written) = &c.from {
        paths.file = Some(check("file", written)?);
    }
    if let Some(written) = &c.upstream_ca {
        paths.upstream_ca = Some(check("upstream_ca", written)?);
    }
    Ok(paths)
}

/// `path` as written in a profile whose folder is `dir` (absolute and
/// resolved), resolved: joined to `dir` if relative, its longest existing
/// part with symlinks followed, the rest with `.` and `..` applied.
pub fn resolve(dir: &Path, path: &str) -> PathBuf {
    let joined = dir.join(path);
    let mut existing = joined.as_path();
    let mut rest = Vec::new();
    let base = loop {
        if let Ok(real) = existing.canonicalize() {
            break real;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            // `..` last, or the root: take it as written.
            _ => return lexical(&joined),
        }
    };
    let mut out = base;
    for name in rest.iter().rev() {
        out.push(name);
    }
    lexical(&out)
}

/// The profile's folder with its symlinks followed, as `resolve` gives
/// paths in it.
fn folder(dir: &Path) -> PathBuf {
    dir.canonicalize().unwrap_or_else(|_| lexical(dir))
}

/// `path` with `.` and `..` components applied to the text.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests;
