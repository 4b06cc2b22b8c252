//! The yes a profile needs before rbm-launch reads a secret for it or gives
//! its bottle a host path outside its folder: `before_start` (which `up`
//! and `quadlet` call first) prints what the profile takes, then goes on
//! only if the user said yes to this very profile before, says it now on a
//! terminal, or passed `--yes`. A yes is remembered by the profile's hash
//! (its path, its text and what it takes) in `$XDG_STATE_HOME/rbm/trusted`,
//! so a profile that changes is asked about again.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::lookup::Loaded;
use crate::takes::{self, Takes};

/// The file of remembered yeses under the state directory.
const STORE: &str = "rbm/trusted";

/// Prints what `loaded` takes from this machine and, if it takes a secret
/// or a host path outside its folder, goes on only with a yes: remembered,
/// `yes` (`--yes`), or typed on a terminal. `again` is the command line
/// that says yes, for the fix. Returns what it takes. Nothing has started
/// yet.
pub fn before_start(loaded: &Loaded, again: &str, yes: bool) -> Result<Takes, Error> {
    let takes = Takes::of(loaded)?;
    println!("{}", takes::statement(loaded, &takes));
    consent(loaded, &takes, again, yes, &Store::from_env(), || {
        ask(loaded)
    })?;
    Ok(takes)
}

/// The yes for what `loaded` takes (`takes`), if it needs one: from
/// `store`, `yes`, or `ask` (None: no terminal). Ok to go on.
fn consent(
    loaded: &Loaded,
    takes: &Takes,
    again: &str,
    yes: bool,
    store: &Store,
    ask: impl FnOnce() -> Option<bool>,
) -> Result<(), Error> {
    let hash = profile_hash(loaded, takes);
    if !takes.needs_yes() {
        // Nothing of the user's yet; the folders rbm is about to create
        // will exist next time, and this profile as it is needs no yes
        // for them then. Best effort: without it, the user is asked.
        let _ = store.add(&hash);
        return Ok(());
    }
    match decide(store.holds(&hash), yes, ask) {
        Decision::Remembered => {
            eprintln!(
                "rbm-launch: you said yes to this profile before ({})",
                store.describe()
            );
            Ok(())
        }
        Decision::Yes => {
            if let Err(e) = store.add(&hash) {
                eprintln!(
                    "rbm-launch: warning: cannot remember the yes in {}: {e}; you will be asked again",
                    store.describe()
                );
            }
            Ok(())
        }
        Decision::Declined => Err(Error::Declined {
            profile: takes::shown(loaded),
        }),
        Decision::NoTerminal => Err(Error::NeedsYes {
            profile: takes::shown(loaded),
            takes: takes.lines(),
            command: again.to_string(),
            store: store.describe(),
        }),
    }
}

/// What to do with a profile that needs a yes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// Said before, to this profile as it is.
    Remembered,
    /// Said now (`--yes` or on the terminal): go on and remember it.
    Yes,
    /// Asked on the terminal; the answer was not yes.
    Declined,
    /// Nobody to ask and no `--yes`.
    NoTerminal,
}

/// `remembered`: the store holds the profile's hash; `yes`: `--yes`;
/// `ask`: asks on a terminal (None: there is none).
fn decide(remembered: bool, yes: bool, ask: impl FnOnce() -> Option<bool>) -> Decision {
    if remembered {
        Decision::Remembered
    } else if yes {
        Decision::Yes
    } else {
        match ask() {
            Some(true) => Decision::Yes,
            Some(false) => Decision::Declined,
            None => Decision::NoTerminal,
        }
    }
}

/// Asks on the terminal whether to go on; None if stdin or stderr is not one.
fn ask(loaded: &Loaded) -> Option<bool> {
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return None;
    }
    eprint!(
        "rbm-launch: {} wants what is listed above. Start it? Type yes to go on: ",
        takes::shown(loaded).display()
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).ok()?;
    Some(is_yes(&answer))
}

fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "yes" | "y")
}

/// The hash a yes is remembered by: sha256 of the profile's resolved path,
/// its text, what it takes (resolved paths: a symlink that now leads
/// elsewhere asks again) and its credentials' upstream CAs, hex.
pub fn profile_hash(loaded: &Loaded, takes: &Takes) -> String {
    let path = takes::shown(loaded);
    let mut h = Sha256::new();
    h.update(b"rbm trust 1\0");
    h.update(path.to_string_lossy().as_bytes());
    h.update(b"\0");
    h.update(loaded.text.as_bytes());
    h.update(b"\0");
    h.update(takes.lines().join("\n").as_bytes());
    // The CA the sentry trusts for a credential's hosts is what the key's
    // safety rests on: a changed CA file asks again, as a changed text does.
    let request_cas = takes
        .requests
        .iter()
        .filter_map(|(_, ca)| ca.as_ref().map(|c| &c.0));
    for ca in takes
        .credentials
        .iter()
        .filter_map(|c| c.paths.upstream_ca.as_ref())
        .chain(request_cas)
    {
        h.update(b"\0");
        h.update(std::fs::read(ca).unwrap_or_default());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The remembered yeses: one hash a line, in a file only the user reads.
#[derive(Debug, Clone)]
pub struct Store {
    path: Option<PathBuf>,
}

impl Store {
    /// `$XDG_STATE_HOME/rbm/trusted`, else `~/.local/state/rbm/trusted`
    /// (on Windows `%LOCALAPPDATA%\rbm\trusted`); none if no such place is known.
    pub fn from_env() -> Store {
        let var = |name: &str| {
            std::env::var_os(name)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        let state = var("XDG_STATE_HOME")
            .or_else(|| var("HOME").map(|h| h.join(".local/state")))
            .or_else(|| var("LOCALAPPDATA"));
        Store {
            path: state.map(|s| s.join(STORE)),
        }
    }

    pub fn at(path: &Path) -> Store {
        Store {
            path: Some(path.to_path_buf()),
        }
    }

    /// The file, for messages.
    pub fn describe(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => "nowhere: neither XDG_STATE_HOME nor HOME is set".into(),
        }
    }

    /// Whether `hash` was said yes to. A store that cannot be read holds
    /// nothing (the user is asked again).
    pub fn holds(&self, hash: &str) -> bool {
        let Some(path) = &self.path else {
            return false;
        };
        std::fs::read_to_string(path)
            .map(|text| text.lines().any(|l| l.trim() == hash))
            .unwrap_or(false)
    }

    /// Remembers `hash`: the directories 0700, the file 0600.
    pub fn add(&self, hash: &str) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Err(std::io::Error::other(
                "neither XDG_STATE_HOME nor HOME is set",
            ));
        };
        if self.holds(hash) {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            let mut b = std::fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
            b.create(dir)?;
        }
        let mut o = std::fs::OpenOptions::new();
        o.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        o.open(path)?.write_all(format!("{hash}\n").as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbm_profile::Profile;

    const TEXT: &str = "moniker = \"demo\"\n[bottle]\nimage = \"i\"\n[enclave]\nsubnet = \"10.242.0.0/24\"\nsentry_ip = \"10.242.0.2\"\nbottle_ip = \"10.242.0.3\"\n[uplink]\ndns = \"allowlist\"\naccess = \"allowlist\"\ndomains = [\"a.test\"]\n[[credential]]\nenv = \"K\"\nfrom = \"env:HOST_TOKEN\"\nhosts = [\"a.test\"]\n";

    fn loaded(dir: &Path, text: &str) -> Loaded {
        let path = dir.join("p.toml");
        std::fs::write(&path, text).unwrap();
        Loaded {
            profile: Profile::parse(text, &path).unwrap(),
            path,
            dir: dir.to_path_buf(),
            text: text.into(),
            workspace: None,
            recipe: None,
            workspace_volume: None,
        }
    }

    #[test]
    fn a_yes_is_remembered_or_given_else_asked_and_without_a_terminal_refused() {
        let never = || -> Option<bool> { panic!("asked though the answer was known") };
        assert_eq!(decide(true, false, never), Decision::Remembered);
        assert_eq!(decide(false, true, never), Decision::Yes);
        assert_eq!(decide(false, false, || Some(true)), Decision::Yes);
        assert_eq!(decide(false, false, || Some(false)), Decision::Declined);
        assert_eq!(decide(false, false, || None), Decision::NoTerminal);
        for answer in ["yes\n", "Y\n", " YES "] {
            assert!(is_yes(answer), "{answer:?}");
        }
        for answer in ["", "\n", "no\n", "yess", "ok"] {
            assert!(!is_yes(answer), "{answer:?}");
        }
    }

    #[test]
    fn a_changed_profile_or_another_path_has_another_hash() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let hash = |l: &Loaded| profile_hash(l, &Takes::of(l).unwrap());
        let one = hash(&loaded(&a, TEXT));
        assert_eq!(one.len(), 64);
        assert_eq!(one, hash(&loaded(&a, TEXT)), "the same profile");
        let changed = TEXT.replace("HOST_TOKEN", "OTHER_TOKEN");
        assert_ne!(one, hash(&loaded(&a, &changed)));
        assert_ne!(one, hash(&loaded(&b, TEXT)), "the same text elsewhere");
        // The same text whose upstream CA file changed.
        std::fs::write(a.join("ca.pem"), "one").unwrap();
        let with_ca = format!("{TEXT}upstream_ca = \"ca.pem\"\n");
        let first = hash(&loaded(&a, &with_ca));
        std::fs::write(a.join("ca.pem"), "two").unwrap();
        assert_ne!(first, hash(&loaded(&a, &with_ca)), "another CA");
    }

    #[test]
    fn a_credential_needs_a_yes_once_and_again_when_the_profile_changes() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::at(&t.path().join("state/rbm/trusted"));
        let go = |text: &str, yes: bool, answer: Option<bool>| {
            let l = loaded(t.path(), text);
            let takes = Takes::of(&l).unwrap();
            consent(
                &l,
                &takes,
                "rbm-launch up --yes p.toml",
                yes,
                &store,
                || answer,
            )
        };
        let err = go(TEXT, false, None).unwrap_err();
        let msg = err.to_string();
        assert_eq!(err.exit_code(), 2);
        assert!(
            msg.contains("credential  K: from env:HOST_TOKEN, sent only to a.test")
                && msg.contains("nothing started; fix:")
                && msg.contains("run `rbm-launch up --yes p.toml`"),
            "{msg}"
        );
        assert!(
            !t.path().join("state").exists(),
            "a refusal remembers nothing"
        );
        let declined = go(TEXT, false, Some(false)).unwrap_err().to_string();
        assert!(declined.starts_with("you did not say yes"), "{declined}");
        go(TEXT, true, None).unwrap();
        go(TEXT, false, None).expect("remembered");
        let other_host = TEXT.replace("\"a.test\"]\n", "\"b.test\"]\n");
        assert!(
            go(&other_host, false, None).is_err(),
            "changed: asked again"
        );
        go(&other_host, false, Some(true)).expect("a yes on the terminal");
        go(&other_host, false, None).expect("remembered too");
        let no_credential = TEXT.split("[[credential]]").next().unwrap();
        go(no_credential, false, None).expect("nothing to say yes to");
    }

    #[test]
    fn a_folder_rbm_creates_needs_no_yes_now_nor_once_it_exists() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::at(&t.path().join("state/rbm/trusted"));
        let text = TEXT.split("[[credential]]").next().unwrap().replace(
            "image = \"i\"\n",
            "image = \"i\"\nvolumes = [\"./work:/w\"]\n",
        );
        let go = |text: &str| {
            let l = loaded(t.path(), text);
            let takes = Takes::of(&l).unwrap();
            consent(&l, &takes, "again", false, &store, || None)
        };
        go(&text).expect("./work is rbm's to create");
        std::fs::create_dir(t.path().join("work")).unwrap();
        go(&text).expect("the same profile: remembered");
        // Another profile naming what exists there asks.
        let other = text.replace("./work:/w", "./work:/x");
        assert!(go(&other).is_err(), "an existing folder asks");
    }

    #[test]
    fn the_store_keeps_one_hash_a_line_for_the_user_alone() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("state/rbm/trusted");
        let store = Store::at(&path);
        assert!(!store.holds("ab"), "no file yet");
        store.add("ab").unwrap();
        store.add("cd").unwrap();
        store.add("ab").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "ab\ncd\n");
        assert!(store.holds("cd") && !store.holds("c"));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert!(Store { path: None }.add("ab").is_err());
        assert!(!Store { path: None }.holds("ab"));
    }
}
