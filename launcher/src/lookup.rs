//! Where things are: rbm's own files (the profiles it ships, the agent for
//! the sentry image, scripts/podman5) and the profile a command names.
//!
//! rbm's files are found next to the launcher, whatever the current
//! directory: in an install (`PREFIX/bin/rbm-launch` with
//! `PREFIX/lib/rbm/`, as `scripts/install` lays it out) or in the checkout
//! the launcher was built in (`REPO/target/.../rbm-launch`), or where the
//! user names them (`--rbm-files DIR`, RBM_FILES). Never from the current
//! directory by itself: the sentry is built from these files' agent and
//! holds the real keys, and a folder someone else made (a cloned
//! repository with a `profiles/` and a `scripts/podman5`) must not become
//! the sentry just because rbm-launch was run in it.

use std::path::{Path, PathBuf};

use rbm_profile::{Profile, ProfileError};

use crate::error::Error;
use crate::recipe::Recipe;

/// rbm's files in an install, relative to PREFIX.
pub const LIB_IN_PREFIX: &str = "lib/rbm";

/// The architectures a sentry agent is built for: Podman's name for each
/// (what `podman info` says of its host) and the Rust target that
/// `scripts/build-static` builds it with (static, musl).
pub const AGENT_ARCHES: [(&str, &str); 2] = [
    ("amd64", "x86_64-unknown-linux-musl"),
    ("arm64", "aarch64-unknown-linux-musl"),
];

/// Where `scripts/build-static` leaves the agent for `target`, relative to a checkout.
pub fn agent_in_checkout(target: &str) -> PathBuf {
    Path::new("target").join(target).join("release/rbm-agent")
}

/// rbm's own files, in an install or a checkout. Both hold `profiles/` and
/// `scripts/podman5` under `root`; they differ in where the agents are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipped {
    /// The install's `PREFIX/lib/rbm`, or the checkout.
    pub root: PathBuf,
    /// A checkout (agents where scripts/build-static leaves them), not an
    /// install (agents in `root/ARCH/rbm-agent`).
    checkout: bool,
}

impl Shipped {
    /// An install's `PREFIX/lib/rbm`.
    pub fn install(lib: &Path) -> Shipped {
        Shipped {
            root: lib.to_path_buf(),
            checkout: false,
        }
    }

    /// A checkout of the rbm repository.
    pub fn checkout(repo: &Path) -> Shipped {
        Shipped {
            root: repo.to_path_buf(),
            checkout: true,
        }
    }

    /// The built-in profiles (`demo`, ...).
    pub fn profiles(&self) -> PathBuf {
        self.root.join("profiles")
    }

    /// scripts/podman5, which provisions a Podman 5 where none is installed.
    pub fn podman5(&self) -> PathBuf {
        self.root.join("scripts/podman5")
    }

    /// The static agent for Podman's architecture `arch` (`amd64`, `arm64`),
    /// if rbm builds one.
    pub fn agent(&self, arch: &str) -> Option<PathBuf> {
        let (podman, rust) = AGENT_ARCHES.iter().find(|(a, _)| *a == arch)?;
        Some(if self.checkout {
            self.root.join(agent_in_checkout(rust))
        } else {
            self.root.join(podman).join("rbm-agent")
        })
    }

    /// rbm's files in `dir` as the user named it (`--rbm-files`): a
    /// checkout if it holds the workspace's Cargo.toml, else an install's
    /// `PREFIX/lib/rbm`.
    pub fn named(dir: &Path) -> Shipped {
        if dir.join("Cargo.toml").is_file() {
            Shipped::checkout(dir)
        } else {
            Shipped::install(dir)
        }
    }

    /// rbm's files for a launcher at `exe`: its install, or the checkout it
    /// lies in.
    pub fn beside(exe: &Path) -> Option<Shipped> {
        let prefix = exe.parent()?.parent()?;
        let lib = prefix.join(LIB_IN_PREFIX);
        if lib.join("profiles").is_dir() {
            return Some(Shipped::install(&lib));
        }
        dir_above(exe, is_checkout).map(|repo| Shipped::checkout(&repo))
    }
}

/// A directory holding the rbm repository.
fn is_checkout(dir: &Path) -> bool {
    dir.join("profiles").is_dir() && dir.join("scripts/podman5").is_file()
}

/// The places rbm looks: the current directory, and rbm's own files.
#[derive(Debug, Clone)]
pub struct Places {
    pub cwd: PathBuf,
    pub shipped: Option<Shipped>,
}

impl Places {
    /// The places for this process; `named` is `--rbm-files` (RBM_FILES).
    pub fn from_env(named: Option<&Path>) -> Result<Places, Error> {
        let cwd = std::env::current_dir().map_err(|source| Error::Io {
            what: "cannot read the current directory",
            path: PathBuf::from("."),
            fix: "run rbm-launch from an existing directory",
            source,
        })?;
        let exe = std::env::current_exe().ok();
        Ok(Places::new(cwd, exe.as_deref(), named))
    }

    /// The places for a launcher at `exe` run in `cwd`: rbm's files are
    /// `named` (relative to `cwd`) if given, else those beside `exe`. The
    /// current directory is never searched for them (see the module's
    /// documentation); only a profile NAME is looked up in its `profiles/`.
    pub fn new(cwd: PathBuf, exe: Option<&Path>, named: Option<&Path>) -> Places {
        let shipped = match named {
            Some(dir) => Some(Shipped::named(&cwd.join(dir))),
            None => exe
                .and_then(|e| e.canonicalize().ok())
                .and_then(|e| Shipped::beside(&e)),
        };
        Places { cwd, shipped }
    }

    /// Directories searched for `<name>.toml`, without duplicates.
    pub fn profile_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.cwd.join("profiles")];
        if let Some(profiles) = self.shipped.as_ref().map(Shipped::profiles) {
            if !same_dir(&profiles, &dirs[0]) {
                dirs.push(profiles);
            }
        }
        dirs
    }

    /// The agent binary for a Podman host of architecture `arch`:
    /// `explicit` (--agent or RBM_AGENT_BIN), else the one shipped with rbm.
    pub fn agent(&self, explicit: Option<PathBuf>, arch: &str) -> Result<PathBuf, Error> {
        if let Some(a) = explicit {
            return Ok(a);
        }
        let Some(shipped) = &self.shipped else {
            return Err(Error::AgentMissing {
                arch: arch.to_string(),
                looked: vec![],
            });
        };
        match shipped.agent(arch) {
            Some(a) if a.is_file() => Ok(a),
            Some(a) => Err(Error::AgentMissing {
                arch: arch.to_string(),
                looked: vec![a],
            }),
            None => Err(Error::NoAgentForArch {
                arch: arch.to_string(),
            }),
        }
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

/// The names of the profiles rbm ships (`profiles/*.toml`): a profile of
/// the current directory's `profiles/` may not pass for one of them.
pub const BUILT_IN: &[&str] = &["demo"];

/// A profile argument is a path if it contains `/` or ends in `.toml`;
/// otherwise a name looked up as `profiles/<name>.toml` in `places`.
pub fn find_profile(arg: &str, places: &Places) -> Result<PathBuf, Error> {
    if arg.contains('/') || arg.ends_with(".toml") {
        return Ok(places.cwd.join(arg));
    }
    let dirs = places.profile_dirs();
    let looked: Vec<PathBuf> = dirs.iter().map(|d| d.join(format!("{arg}.toml"))).collect();
    let found: Vec<&PathBuf> = looked.iter().filter(|p| p.is_file()).collect();
    let here = places.cwd.join("profiles");
    // rbm's own profiles, unless the current directory is where they are
    // (rbm's checkout, as scripts/demo runs it).
    let ours = |f: &Path| {
        places
            .shipped
            .as_ref()
            .is_some_and(|s| f.parent().is_some_and(|d| same_dir(d, &s.profiles())))
    };
    if BUILT_IN.contains(&arg)
        && found
            .first()
            .is_some_and(|f| f.starts_with(&here) && !ours(f))
    {
        // Even where rbm's own profiles are not at hand (a bare
        // `cargo install`): `rbm-launch demo` is rbm's demo or nothing.
        return Err(Error::ProfileArg {
            arg: arg.to_string(),
            what: format!(
                "{} in the current directory has the name of a profile rbm ships",
                found[0].display()
            ),
            fix: format!(
                "give its path (`./profiles/{arg}.toml`) if you mean that one; rbm's own is found beside rbm-launch, or with --rbm-files DIR"
            ),
        });
    }
    if let [here, shipped, ..] = found[..] {
        // A repository's own profiles/demo.toml must not pass for the
        // demo rbm ships when someone types `rbm-launch demo` in it.
        return Err(Error::ProfileArg {
            arg: arg.to_string(),
            what: format!(
                "{} in the current directory has the name of a profile rbm ships ({})",
                here.display(),
                shipped.display()
            ),
            fix: format!(
                "give the path of the one you mean: `./profiles/{arg}.toml` for the one here, or {} for rbm's",
                shipped.display()
            ),
        });
    }
    if let Some(found) = found.first() {
        return Ok((*found).clone());
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
    /// The folder `rbm-launch run` gives the agent to work on: whose
    /// owner the bottle's user is on the host (`owner::BottleRoot`),
    /// rather than the profile's folder's.
    pub workspace: Option<PathBuf>,
    /// A recipe's Containerfile, which `rbm-launch run` builds.
    pub recipe: Option<PathBuf>,
    /// The Podman volume `rbm-launch run --workspace-volume` gives the
    /// agent to work on instead of a folder (a remote Podman that shares
    /// no folder of this machine).
    pub workspace_volume: Option<String>,
}

impl Loaded {
    /// The folder whose owner is the bottle's user on the host, when no
    /// sudo tells who the user is: the workspace, else the profile's folder.
    pub fn owners_folder(&self) -> &Path {
        self.workspace.as_deref().unwrap_or(&self.dir)
    }
}

/// Finds, reads and validates a profile (or a recipe's: `recipe`).
/// Touches nothing.
pub fn load(arg: &str, places: &Places) -> Result<Loaded, Error> {
    if let Some(recipe) = Recipe::find(arg, places)? {
        return recipe.load(places);
    }
    let path = find_profile(arg, places)?;
    let text = std::fs::read_to_string(&path).map_err(|source| ProfileError::Read {
        file: path.clone(),
        source,
    })?;
    let profile = Profile::parse(&text, &path)?;
    loaded(arg, path, text, profile, places)
}

/// The profile read from `path` (`text`, validated as `profile`), once
/// its file is seen to be one a bottle cannot rewrite.
pub fn loaded(
    arg: &str,
    path: PathBuf,
    text: String,
    profile: Profile,
    places: &Places,
) -> Result<Loaded, Error> {
    // The profile's folder is what its volumes and files are relative to,
    // and what they may not leave: it must be a real file's folder. A
    // pipe (`curl ... | rbm-launch up /dev/stdin`) would make it /dev.
    let canonical = path
        .canonicalize()
        .ok()
        .filter(|c| c.is_file())
        .ok_or_else(|| Error::ProfileArg {
            arg: arg.to_string(),
            what: format!(
                "{} is not a regular file (a pipe, a device or gone), so it has no folder of its own for its volumes and files",
                path.display()
            ),
            fix: "save the profile as a file in the folder it is meant for, and give that file's path".into(),
        })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // A second name of the same file could lie in a folder the
        // bottle writes: it would rewrite the profile the next `up` runs.
        if std::fs::metadata(&canonical).is_ok_and(|m| m.nlink() > 1) {
            return Err(Error::ProfileArg {
                arg: arg.to_string(),
                what: format!(
                    "{} has other hard links, and one could lie in a folder the bottle may write",
                    canonical.display()
                ),
                fix: "copy it to a file of its own (`cp p.toml p2.toml`) and give that one".into(),
            });
        }
    }
    let dir = canonical
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| places.cwd.clone());
    Ok(Loaded {
        path,
        dir,
        text,
        profile,
        workspace: None,
        recipe: None,
        workspace_volume: None,
    })
}

impl Loaded {
    /// Which profile file owns the pair (the `rbm.profile` label): the
    /// file's canonical path on the machine rbm-launch runs on (a remote
    /// Podman's client), control characters escaped so that the label
    /// stays one line of a listing.
    pub fn owner(&self) -> String {
        let canonical = self
            .path
            .canonicalize()
            .unwrap_or_else(|_| self.path.clone());
        owner_of(&canonical)
    }

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

/// The `rbm.profile` label's value for the profile file at `path`.
pub fn owner_of(path: &Path) -> String {
    path.to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_control() {
                format!("\\u{{{:x}}}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "moniker = \"demo\"\n[bottle]\nimage = \"i\"\n[enclave]\nsubnet = \"10.242.0.0/24\"\nsentry_ip = \"10.242.0.2\"\nbottle_ip = \"10.242.0.3\"\n[uplink]\ndns = \"allowlist\"\naccess = \"allowlist\"\ndomains = [\"pypi.org\", \"*.pythonhosted.org\"]\n";

    /// cwd with profiles/{demo,work}.toml, and a checkout with
    /// profiles/{demo,other}.toml whose launcher is at target/debug.
    fn setup() -> (tempfile::TempDir, Places) {
        let t = tempfile::tempdir().unwrap();
        for f in [
            "cwd/profiles/demo.toml",
            "cwd/profiles/work.toml",
            "repo/profiles/demo.toml",
            "repo/profiles/other.toml",
            "repo/scripts/podman5",
            "repo/target/debug/rbm-launch",
        ] {
            let p = t.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, GOOD).unwrap();
        }
        let exe = t.path().join("repo/target/debug/rbm-launch");
        let places = Places::new(t.path().join("cwd"), Some(&exe), None);
        (t, places)
    }

    #[test]
    fn name_is_looked_up_in_cwd_then_repo() {
        let (t, places) = setup();
        assert_eq!(
            find_profile("work", &places).unwrap(),
            t.path().join("cwd/profiles/work.toml")
        );
        assert_eq!(
            find_profile("other", &places).unwrap(),
            t.path().join("repo/profiles/other.toml")
        );
    }

    #[test]
    fn a_name_here_that_shadows_a_shipped_profile_is_refused() {
        let (_t, places) = setup();
        let err = find_profile("demo", &places).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("has the name of a profile rbm ships")
                && text.contains("./profiles/demo.toml"),
            "{text}"
        );
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn the_built_in_names_are_the_shipped_profiles_and_none_passes_from_here() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles");
        assert_eq!(available(&[shipped]), BUILT_IN);
        // No rbm files at hand: cwd's profiles/demo.toml is still not the demo.
        let (t, _) = setup();
        let bare = Places::new(t.path().join("cwd"), None, None);
        let err = find_profile("demo", &bare).unwrap_err();
        assert!(
            err.to_string()
                .contains("has the name of a profile rbm ships"),
            "{err}"
        );
        assert!(find_profile("work", &bare).is_ok());
        // In rbm's checkout itself, its demo is rbm's.
        let exe = t.path().join("repo/target/debug/rbm-launch");
        let in_repo = Places::new(t.path().join("repo"), Some(&exe), None);
        assert_eq!(
            find_profile("demo", &in_repo).unwrap(),
            t.path().join("repo/profiles/demo.toml")
        );
    }

    #[test]
    fn a_profile_with_another_hard_link_is_refused() {
        let (t, places) = setup();
        let work = t.path().join("cwd/profiles/work.toml");
        std::fs::hard_link(&work, t.path().join("cwd/copy.toml")).unwrap();
        let err = load("work", &places).unwrap_err();
        assert!(err.to_string().contains("has other hard links"), "{err}");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn a_profile_that_is_not_a_regular_file_has_no_folder() {
        let (t, places) = setup();
        // A named pipe, as `... | rbm-launch up /dev/stdin` would give:
        // read through, its folder would be /dev.
        let fifo = t.path().join("cwd/p.toml");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        let writer = std::thread::spawn(move || std::fs::write(&fifo, GOOD).unwrap());
        let err = load("p.toml", &places).unwrap_err();
        writer.join().unwrap();
        assert!(err.to_string().contains("is not a regular file"), "{err}");
        assert_eq!(err.exit_code(), 2);
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
    fn an_install_is_found_beside_the_launcher_whatever_the_cwd() {
        let t = tempfile::tempdir().unwrap();
        let prefix = t.path().join("usr/local");
        std::fs::create_dir_all(prefix.join("bin")).unwrap();
        std::fs::create_dir_all(prefix.join("lib/rbm/profiles")).unwrap();
        std::fs::write(prefix.join("lib/rbm/profiles/demo.toml"), GOOD).unwrap();
        std::fs::create_dir_all(prefix.join("lib/rbm/arm64")).unwrap();
        std::fs::write(prefix.join("lib/rbm/arm64/rbm-agent"), "bin").unwrap();
        let exe = prefix.join("bin/rbm-launch");
        std::fs::write(&exe, "").unwrap();
        let places = Places::new(PathBuf::from("/"), Some(&exe), None);
        let lib = prefix.canonicalize().unwrap().join("lib/rbm");
        assert_eq!(places.shipped, Some(Shipped::install(&lib)));
        assert_eq!(
            find_profile("demo", &places).unwrap(),
            lib.join("profiles/demo.toml")
        );
        assert_eq!(
            places.agent(None, "arm64").unwrap(),
            lib.join("arm64/rbm-agent")
        );
        let missing = places.agent(None, "amd64").unwrap_err().to_string();
        assert!(missing.contains("lib/rbm/amd64/rbm-agent"), "{missing}");
        let odd = places.agent(None, "s390x").unwrap_err().to_string();
        assert!(
            odd.contains("s390x") && odd.contains("amd64, arm64"),
            "{odd}"
        );
        assert_eq!(
            places.agent(Some("/a".into()), "amd64").unwrap(),
            PathBuf::from("/a")
        );
    }

    #[test]
    fn a_checkout_in_or_above_the_cwd_is_never_taken_unless_named() {
        let (t, _) = setup();
        // A launcher elsewhere (cargo install), run inside a folder that
        // looks like rbm's (a cloned repository someone else made): its
        // agent must not become the sentry.
        let elsewhere = t.path().join("bin/rbm-launch");
        for cwd in ["repo", "repo/profiles"] {
            let places = Places::new(t.path().join(cwd), Some(&elsewhere), None);
            assert_eq!(places.shipped, None, "{cwd}");
            let err = places.agent(None, "amd64").unwrap_err().to_string();
            assert!(!err.contains("repo/target"), "{err}");
        }
        // Named, it is used: a checkout (Cargo.toml) or an install's lib/rbm.
        std::fs::write(t.path().join("repo/Cargo.toml"), "").unwrap();
        let named = Places::new(
            t.path().to_path_buf(),
            Some(&elsewhere),
            Some(Path::new("repo")),
        );
        let repo = t.path().join("repo");
        assert_eq!(named.shipped, Some(Shipped::checkout(&repo)));
        let err = named.agent(None, "arm64").unwrap_err().to_string();
        let want = repo.join("target/aarch64-unknown-linux-musl/release/rbm-agent");
        assert!(err.contains(&want.display().to_string()), "{err}");
        let lib = t.path().join("lib/rbm");
        let install = Places::new(PathBuf::from("/"), None, Some(&lib));
        assert_eq!(install.shipped, Some(Shipped::install(&lib)));
        // A profile NAME is still looked up in the cwd's profiles/: naming
        // a profile is the user's own choice.
        let cwd = Places::new(t.path().join("cwd"), Some(&elsewhere), None);
        assert_eq!(
            find_profile("work", &cwd).unwrap(),
            t.path().join("cwd/profiles/work.toml")
        );
    }

    #[test]
    fn the_owner_is_the_canonical_path_on_one_line() {
        let (t, places) = setup();
        let l = load("work", &places).unwrap();
        let canonical = t
            .path()
            .join("cwd/profiles/work.toml")
            .canonicalize()
            .unwrap();
        assert_eq!(l.owner(), canonical.display().to_string());
        assert_eq!(
            owner_of(Path::new("/a\nb\tc/p.toml")),
            "/a\\u{a}b\\u{9}c/p.toml"
        );
    }

    #[test]
    fn load_validates_and_summarizes() {
        let (t, places) = setup();
        let l = load("work", &places).unwrap();
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
