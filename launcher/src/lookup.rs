//! Where things are: the rbm repository (for profiles, the sentry's
//! Containerfile and the agent binary) and the profile a command names.

use std::path::{Path, PathBuf};

use rbm_agent::profile::{Profile, ProfileError};

use crate::error::Error;

/// The two places rbm looks: the current directory, and the repository the
/// launcher executable was built in (found by walking up to `profiles/`).
#[derive(Debug, Clone)]
pub struct Places {
    pub cwd: PathBuf,
    pub exe_repo: Option<PathBuf>,
}

impl Places {
    pub fn from_env() -> Result<Places, Error> {
        let cwd = std::env::current_dir().map_err(|source| Error::Io {
            what: "cannot read the current directory",
            path: PathBuf::from("."),
            fix: "run rbm-launch from an existing directory",
            source,
        })?;
        let exe_repo = std::env::current_exe()
            .ok()
            .and_then(|exe| dir_above(&exe, |d| d.join("profiles").is_dir()));
        Ok(Places { cwd, exe_repo })
    }

    /// The rbm repository: the executable's, else the nearest directory at or
    /// above the current one that holds `images/sentry/Containerfile`.
    pub fn repo(&self) -> Option<PathBuf> {
        let has_images = |d: &Path| d.join("images/sentry/Containerfile").is_file();
        match &self.exe_repo {
            Some(r) if has_images(r) => Some(r.clone()),
            _ => dir_above(&self.cwd, has_images),
        }
    }

    /// Directories searched for `<name>.toml`, without duplicates.
    pub fn profile_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.cwd.join("profiles")];
        if let Some(r) = &self.exe_repo {
            let d = r.join("profiles");
            if !same_dir(&d, &dirs[0]) {
                dirs.push(d);
            }
        }
        dirs
    }
}

/// The nearest directory at or above `start` for which `is_it` holds.
pub fn dir_above(start: &Path, is_it: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|d| d.is_dir() && is_it(d))
        .map(Path::to_path_buf)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// A profile argument is a path if it contains `/` or ends in `.toml`;
/// otherwise a name looked up as `profiles/<name>.toml` in `places`.
pub fn find_profile(arg: &str, places: &Places) -> Result<PathBuf, Error> {
    if arg.contains('/') || arg.ends_with(".toml") {
        return Ok(places.cwd.join(arg));
    }
    let dirs = places.profile_dirs();
    let looked: Vec<PathBuf> = dirs.iter().map(|d| d.join(format!("{arg}.toml"))).collect();
    if let Some(found) = looked.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    Err(Error::UnknownProfile {
        name: arg.to_string(),
        looked,
        available: available(&dirs),
    })
}

/// Profile names (file stems of `*.toml`) in `dirs`, sorted, without duplicates.
pub fn available(dirs: &[PathBuf]) -> Vec<String> {
    let mut names: Vec<String> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".toml").map(str::to_string)
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// A validated profile with the file it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file, as found.
    pub path: PathBuf,
    /// The absolute directory holding it (relative volume paths start here).
    pub dir: PathBuf,
    /// The file's text, handed to the agent unchanged.
    pub text: String,
    pub profile: Profile,
}

/// Finds, reads and validates a profile. Touches nothing.
pub fn load(arg: &str, places: &Places) -> Result<Loaded, Error> {
    let path = find_profile(arg, places)?;
    let text = std::fs::read_to_string(&path).map_err(|source| ProfileError::Read {
        file: path.clone(),
        source,
    })?;
    let profile = Profile::parse(&text, &path)?;
    let canonical = path.canonicalize().unwrap_or_else(|_| path.clone());
    let dir = canonical
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| places.cwd.clone());
    Ok(Loaded {
        path,
        dir,
        text,
        profile,
    })
}

impl Loaded {
    /// The one line `rbm-launch check` prints.
    pub fn summary(&self) -> String {
        let p = &self.profile;
        let e = &p.enclave;
        format!(
            "ok: {}: moniker {}, bottle {}, enclave {} (sentry {}, bottle {}), dns {}, access {}, {}, {}, {}",
            self.path.display(),
            p.moniker,
            p.bottle.image,
            e.subnet,
            e.sentry_ip,
            e.bottle_ip,
            p.uplink.dns.as_str(),
            p.uplink.access.as_str(),
            count(p.uplink.domains.len(), "domain"),
            count(p.uplink.cidrs.len(), "cidr"),
            count(p.entries.len(), "entry port")
        )
    }
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "moniker = \"demo\"\n[bottle]\nimage = \"i\"\n[enclave]\nsubnet = \"10.242.0.0/24\"\nsentry_ip = \"10.242.0.2\"\nbottle_ip = \"10.242.0.3\"\n[uplink]\ndns = \"allowlist\"\naccess = \"allowlist\"\ndomains = [\"pypi.org\", \"*.pythonhosted.org\"]\n";

    /// cwd with profiles/{demo,work}.toml, and a repo with profiles/{demo,other}.toml.
    fn setup() -> (tempfile::TempDir, Places) {
        let t = tempfile::tempdir().unwrap();
        for f in [
            "cwd/profiles/demo.toml",
            "cwd/profiles/work.toml",
            "repo/profiles/demo.toml",
            "repo/profiles/other.toml",
        ] {
            let p = t.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, GOOD).unwrap();
        }
        let places = Places {
            cwd: t.path().join("cwd"),
            exe_repo: Some(t.path().join("repo")),
        };
        (t, places)
    }

    #[test]
    fn name_is_looked_up_in_cwd_then_repo() {
        let (t, places) = setup();
        assert_eq!(
            find_profile("demo", &places).unwrap(),
            t.path().join("cwd/profiles/demo.toml")
        );
        assert_eq!(
            find_profile("other", &places).unwrap(),
            t.path().join("repo/profiles/other.toml")
        );
    }

    #[test]
    fn path_is_taken_as_is_relative_to_cwd() {
        let (t, places) = setup();
        assert_eq!(
            find_profile("x/y", &places).unwrap(),
            t.path().join("cwd/x/y")
        );
        assert_eq!(
            find_profile("mine.toml", &places).unwrap(),
            t.path().join("cwd/mine.toml")
        );
        assert_eq!(
            find_profile("/abs/p.toml", &places).unwrap(),
            PathBuf::from("/abs/p.toml")
        );
    }

    #[test]
    fn unknown_name_lists_where_it_looked_and_what_exists() {
        let (t, places) = setup();
        let err = find_profile("nope", &places).unwrap_err();
        match &err {
            Error::UnknownProfile {
                looked, available, ..
            } => {
                assert_eq!(
                    looked,
                    &[
                        t.path().join("cwd/profiles/nope.toml"),
                        t.path().join("repo/profiles/nope.toml")
                    ]
                );
                assert_eq!(available, &["demo", "other", "work"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            err.to_string().contains("available: demo, other, work"),
            "{err}"
        );
    }

    #[test]
    fn repo_is_found_above_the_cwd_when_the_exe_is_elsewhere() {
        let (t, mut places) = setup();
        let cf = t.path().join("cwd/images/sentry/Containerfile");
        std::fs::create_dir_all(cf.parent().unwrap()).unwrap();
        std::fs::write(&cf, "FROM scratch\n").unwrap();
        places.cwd = t.path().join("cwd/profiles");
        assert_eq!(places.repo(), Some(t.path().join("cwd")));
        places.cwd = t.path().to_path_buf();
        assert_eq!(places.repo(), None);
    }

    #[test]
    fn load_validates_and_summarizes() {
        let (t, places) = setup();
        let l = load("demo", &places).unwrap();
        assert_eq!(l.dir, t.path().join("cwd/profiles").canonicalize().unwrap());
        assert_eq!(l.text, GOOD);
        let s = l.summary();
        assert!(
            s.starts_with("ok: ")
                && s.contains(": moniker demo, bottle i,")
                && s.contains("2 domains, 0 cidrs, 0 entry ports"),
            "{s}"
        );
        std::fs::write(
            t.path().join("cwd/bad.toml"),
            GOOD.replace("\"demo\"", "\"D\""),
        )
        .unwrap();
        let err = load("bad.toml", &places).unwrap_err();
        assert!(
            matches!(err, Error::Profile(_)) && err.exit_code() == 2,
            "{err}"
        );
        assert!(err.to_string().contains("field `moniker`"), "{err}");
    }
}
