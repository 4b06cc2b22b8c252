//! What a profile takes from the machine that runs it: the host paths its
//! bottle gets, the secrets rbm-launch reads for it and the hosts each is
//! sent to. `up` and `quadlet` print it before anything starts, and
//! `trust` wants a yes for it. A profile is often someone else's (a
//! repository's `rbm.toml`): this is what it could take from the user.

use std::fmt;
use std::path::{Path, PathBuf};

use rbm_profile::{
    leaves_folder, resolve_in, Credential, Entry, Problem, ProfileError, RequestRules,
    ResolvedVolume, Source, Volume,
};

use crate::error::Error;
use crate::lookup::Loaded;

/// What a profile takes, in the order the profile names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Takes {
    /// Resolved: where on this machine, and whether outside the folder.
    pub volumes: Vec<ResolvedVolume>,
    /// Loopback ports of this machine that lead into the bottle (a port
    /// a local service would use gets the bottle's answers instead).
    pub entries: Vec<Entry>,
    pub credentials: Vec<Taken>,
    /// Hosts whose TLS the sentry opens to check each request, with the
    /// extra CA (resolved) it trusts for them and whether that CA lies
    /// outside the profile's folder.
    pub requests: Vec<(Vec<String>, Option<PlacedCa>)>,
    /// A recipe's Containerfile: `run` builds it, its RUN lines with
    /// Podman's network, not the sentry's filter.
    pub build: Option<PathBuf>,
    /// The Podman volume `run` mounts as the workspace.
    pub workspace_volume: Option<String>,
}

/// An extra CA file, resolved, and whether it lies outside the profile's
/// folder.
pub type PlacedCa = (PathBuf, bool);

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
        let invalid = |problem| {
            Error::Profile(ProfileError::Invalid {
                file: loaded.path.clone(),
                problems: vec![problem],
            })
        };
        let volumes = loaded.profile.resolve_volumes(dir).map_err(invalid)?;
        // Resolved too, so that `check` also sees a link to the folder.
        rbm_profile::profile_outside(&volumes, &loaded.path).map_err(invalid)?;
        let credentials = loaded
            .profile
            .credentials
            .iter()
            .map(|c| {
                Ok(Taken {
                    env: c.env.clone(),
                    from: c.from.clone(),
                    hosts: c.hosts.clone(),
                    paths: credential_paths(c, dir, &loaded.profile.bottle.volumes)?,
                })
            })
            .collect::<Result<_, Error>>()?;
        let requests = loaded
            .profile
            .requests
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let ca = match &r.upstream_ca {
                    Some(_) => Some(request_ca_path(r, i, &loaded.path, dir)?),
                    None => None,
                };
                Ok((r.hosts.clone(), ca))
            })
            .collect::<Result<_, Error>>()?;
        Ok(Takes {
            volumes,
            entries: loaded.profile.entries.clone(),
            credentials,
            requests,
            build: loaded.recipe.clone(),
            workspace_volume: loaded.workspace_volume.clone(),
        })
    }

    /// Whether the user must say yes first: the profile reads a secret,
    /// gives the bottle a host path outside its folder, or one that exists
    /// already in it (what is there is the user's: a profile saved in the
    /// home folder could name `./.ssh`, a repository's `./.git`, whose
    /// hooks run on the next `git status`). A folder rbm creates for the
    /// bottle needs none; the yes `trust` then remembers keeps it so.
    pub fn needs_yes(&self) -> bool {
        !self.credentials.is_empty()
            || self.build.is_some()
            || self
                .requests
                .iter()
                .any(|(_, ca)| ca.as_ref().is_some_and(|c| c.1))
            || self.volumes.iter().any(|v| v.outside || !v.missing)
    }

    /// One line per thing taken, e.g. `credential API_KEY: from
    /// env:ANTHROPIC_API_KEY, sent only to api.anthropic.com`.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(file) = &self.build {
            out.push(format!(
                "build       {}: its RUN lines run with Podman's network (not through the sentry) before the pair starts",
                file.display()
            ));
        }
        for v in &self.volumes {
            let options = if v.read_only { " (ro)" } else { "" };
            out.push(format!(
                "volume      {} -> {}{options}, {}",
                v.host.display(),
                v.bottle,
                place(v.outside)
            ));
        }
        if let Some(name) = &self.workspace_volume {
            out.push(format!(
                "volume      Podman volume {name} -> {} (read-write)",
                crate::recipe::WORKSPACE
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
        for (hosts, ca) in &self.requests {
            let mut line = format!(
                "requests    {}: the sentry opens their TLS and checks each request against the profile's rules",
                hosts.join(", ")
            );
            if let Some((ca, outside)) = ca {
                line += &format!(
                    "; trusts the CA {} ({}) for them",
                    ca.display(),
                    place(*outside)
                );
            }
            out.push(line);
        }
        for e in &self.entries {
            out.push(format!(
                "entry       127.0.0.1:{}/{} on this machine -> the bottle's port {}",
                e.host_port,
                e.protocol.as_str(),
                e.bottle_port
            ));
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

/// A profile error at `field` of `file`, as `check` reports one.
pub fn problem(file: &Path, field: String, message: String, fix: impl Into<String>) -> Error {
    Error::Profile(ProfileError::Invalid {
        file: file.to_path_buf(),
        problems: vec![Problem {
            field,
            message,
            fix: fix.into(),
        }],
    })
}

/// The `upstream_ca` of `requests[i]`, resolved, and whether it lies
/// outside the profile's folder (symlinks followed), which only a table
/// that says `outside = true` may (the rule its text already passed); it
/// then needs the user's yes, as a credential's file does.
pub fn request_ca_path(
    r: &RequestRules,
    i: usize,
    file: &Path,
    dir: &Path,
) -> Result<(PathBuf, bool), Error> {
    let dir = &folder(dir);
    let written = r.upstream_ca.as_deref().unwrap_or_default();
    let field = format!("requests[{i}].upstream_ca");
    let (resolved, _) = resolve_in(dir, written).map_err(|e| {
        problem(
            file,
            field.clone(),
            format!("{written} cannot be resolved: {e}"),
            "check that the file exists and that you may read it",
        )
    })?;
    let outside = leaves_folder(written) || !resolved.starts_with(dir);
    if !r.outside && outside {
        return Err(problem(
            file,
            field,
            format!("{written} leads outside the profile's folder (to {})", resolved.display()),
            "put the CA file in the profile's folder, or add `outside = true` to this table if you mean it",
        ));
    }
    Ok((resolved, outside))
}

fn place(outside: bool) -> &'static str {
    if outside {
        "OUTSIDE the profile's folder"
    } else {
        "in the profile's folder"
    }
}

/// A credential's file and CA, resolved. A path that resolves outside the
/// profile's folder (a symlink in the folder that leads to `~/.ssh/id_ed25519`)
/// is refused unless the credential says `outside = true`: the same rule
/// as for its text, which the profile's checks apply. One inside a folder
/// the bottle gets (`volumes`, the profile's) is refused as well: a
/// writable one lets the bottle put a link to `~/.git-credentials` there
/// between the yes and the read, and a `file:` in any of them hands the
/// bottle the real value.
pub fn credential_paths(
    c: &Credential,
    dir: &Path,
    volumes: &[Volume],
) -> Result<CredentialPaths, Error> {
    let dir = &folder(dir);
    // Each volume by its words and resolved (one that cannot be resolved
    // is refused where volumes are).
    let lexical = |written: &str| -> PathBuf { dir.join(written).components().collect() };
    let mounted: Vec<(&Volume, Vec<PathBuf>)> = volumes
        .iter()
        .map(|v| {
            let resolved = resolve_in(dir, &v.host).ok().map(|(p, _)| p);
            (v, resolved.into_iter().chain([lexical(&v.host)]).collect())
        })
        .collect();
    let in_volume = |field: &str, written: &str, resolved: &Path| {
        let places = [resolved.to_path_buf(), lexical(written)];
        let secret = field == "file";
        let (i, v) = mounted
            .iter()
            .enumerate()
            .find(|(_, (v, hosts))| {
                (secret || !v.read_only)
                    && hosts
                        .iter()
                        .any(|h| places.iter().any(|p| p.starts_with(h)))
            })
            .map(|(i, (v, _))| (i, *v))?;
        let (why, fix) = if v.read_only {
            (
                "the bottle could read the real value there",
                "move the file out of the folder the bottle gets (e.g. beside it)",
            )
        } else {
            (
                "the bottle may write there and could put a link to another file of yours in its place before rbm-launch reads it",
                "move the file out of the folder the bottle gets (e.g. beside it), or mount that volume read-only",
            )
        };
        Some(Error::Credential {
            env: c.env.clone(),
            message: format!(
                "its {field} {written} lies inside the folder {} that the bottle gets (bottle.volumes[{i}]): {why}",
                v.host
            ),
            fix: fix.into(),
        })
    };
    let mut paths = CredentialPaths::default();
    let mut check = |field: &str, written: &str| {
        let (resolved, _) = resolve_in(dir, written).map_err(|e| Error::Credential {
            env: c.env.clone(),
            message: format!("its {field} {written} cannot be resolved: {e}"),
            fix: "check that the file exists and that you may read it".into(),
        })?;
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
        if let Some(err) = in_volume(field, written, &resolved) {
            return Err(err);
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

/// The profile's folder with its symlinks followed, as `resolve_in`
/// gives paths in it.
fn folder(dir: &Path) -> PathBuf {
    dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
}

#[cfg(test)]
mod tests;
