//! `rbm-launch allow`: adds domain rules to a profile file's
//! `uplink.domains`, keeping its comments and layout (`toml_edit`), checks
//! the result with the profile crate before anything is written, replaces
//! the file atomically, and reloads the running pair.

use std::io::Write;
use std::path::{Path, PathBuf};

use rbm_launch::launch::{self, Owner, Present};
use rbm_launch::lookup::{self, Loaded, Places};
use rbm_launch::podman::Podman;
use rbm_launch::{exec, Error};
use rbm_profile::{DomainRule, Ports, Profile, ProfileError};
use toml_edit::{Array, DocumentMut, Item, Value};

/// What adding one rule did to `uplink.domains`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new entry: the rule, or the part of its ports no entry opens yet
    /// (`g.test:22` beside `g.test:443`: entries of one name add up).
    Added(String),
    /// Entries allow it already (the same name or a wildcard above it, on
    /// these ports and more): nothing added. They are listed.
    Covered { by: String },
}

/// The edited text and what each rule did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub text: String,
    pub changes: Vec<(DomainRule, Change)>,
}

impl Edit {
    /// Whether the text differs from what it was made from.
    pub fn changed(&self) -> bool {
        self.changes
            .iter()
            .any(|(_, c)| !matches!(c, Change::Covered { .. }))
    }
}

/// Each of `names` as a domain rule; else every name that is not one,
/// with the profile crate's reason. The names are the user's, but they
/// are quoted with `{:?}` all the same: a control character in an
/// argument must not reach the terminal as itself.
pub fn rules(names: &[String]) -> Result<Vec<DomainRule>, (Vec<String>, String)> {
    let mut rules = Vec::new();
    let mut bad = Vec::new();
    let mut fixes: Vec<String> = Vec::new();
    for name in names {
        match DomainRule::parse(name) {
            Ok(rule) => rules.push(rule),
            Err(e) => {
                bad.push(format!("{name:?} is not a domain rule: {}", e.message));
                if !fixes.contains(&e.fix) {
                    fixes.push(e.fix);
                }
            }
        }
    }
    if bad.is_empty() {
        Ok(rules)
    } else {
        Err((bad, fixes.join("; ")))
    }
}

/// Whether the entry `have` allows names that `want` allows: every name
/// `want` matches, `have` matches too (`*.b.a` is below `*.a`; an exact
/// entry never stands for a wildcard).
fn stands_for(have: &DomainRule, want: &DomainRule) -> bool {
    if want.wildcard {
        have.wildcard && (have.name == want.name || have.matches(&want.name))
    } else {
        have.matches(&want.name)
    }
}

/// What of `want` the entries `have` do not allow yet: `want` with the
/// ports none of them opens (the agent adds up the ports of every entry
/// that matches a name), or None if they allow it all. The entries that
/// allow part of it come along.
fn missing(have: &[DomainRule], want: &DomainRule) -> (Option<DomainRule>, Vec<String>) {
    let by: Vec<&DomainRule> = have.iter().filter(|h| stands_for(h, want)).collect();
    let open = by.iter().fold(None, |acc: Option<Ports>, h| match acc {
        None => Some(h.ports.clone()),
        Some(p) => Some(p.union(&h.ports)),
    });
    let ports = match (open, &want.ports) {
        (Some(Ports::All), _) => None,
        (Some(Ports::Only(open)), Ports::Only(w)) => {
            let rest: std::collections::BTreeSet<u16> = w.difference(&open).copied().collect();
            (!rest.is_empty()).then_some(Ports::Only(rest))
        }
        (_, ports) => Some(ports.clone()),
    };
    let rule = ports.map(|ports| DomainRule {
        ports,
        ..want.clone()
    });
    (rule, by.iter().map(|h| h.to_string()).collect())
}

/// `text` with `rules` in its `uplink.domains`: what the entries allow
/// already is left out, the rest is added after the last entry (on a line
/// of its own in an array written a line an entry). Nothing else of the
/// text changes: no entry is rewritten, no comment moves.
pub fn edit(text: &str, rules: &[DomainRule]) -> Result<Edit, String> {
    let mut doc: DocumentMut = text.parse().map_err(|e| format!("it is not TOML: {e}"))?;
    let uplink = doc
        .get_mut("uplink")
        .and_then(Item::as_table_like_mut)
        .ok_or("it has no [uplink] table")?;
    if uplink.get("domains").is_none() {
        uplink.insert("domains", Item::Value(Value::Array(Array::new())));
    }
    let array = uplink
        .get_mut("domains")
        .and_then(Item::as_array_mut)
        .ok_or("uplink.domains is not an array")?;
    let mut have: Vec<DomainRule> = array
        .iter()
        .map(|v| v.as_str().and_then(|s| DomainRule::parse(s).ok()))
        .collect::<Option<_>>()
        .ok_or("uplink.domains holds an entry that is not a domain rule")?;
    let mut changes = Vec::new();
    for rule in rules {
        let change = match missing(&have, rule) {
            (None, by) => Change::Covered { by: by.join(", ") },
            (Some(add), _) => {
                append(array, &add.to_string());
                have.push(add.clone());
                Change::Added(add.to_string())
            }
        };
        changes.push((rule.clone(), change));
    }
    Ok(Edit {
        text: doc.to_string(),
        changes,
    })
}

/// The raw text of a decor part, empty if it has none.
fn raw(part: Option<&toml_edit::RawString>) -> &str {
    part.and_then(|r| r.as_str()).unwrap_or("")
}

/// Whether the array is written over several lines.
fn multiline(array: &Array) -> bool {
    raw(Some(array.trailing())).contains('\n')
        || array.iter().any(|v| {
            raw(v.decor().prefix()).contains('\n') || raw(v.decor().suffix()).contains('\n')
        })
}

/// The indentation of the array's entries: what follows the line break
/// before the last entry written on a line of its own; in an array of
/// comments only, theirs; else two spaces.
fn indent(array: &Array) -> String {
    let blank = |ws: &&str| ws.chars().all(|c| c == ' ' || c == '\t');
    let prefixes: Vec<&str> = array.iter().map(|v| raw(v.decor().prefix())).collect();
    let of_entries = prefixes
        .iter()
        .rev()
        .find_map(|p| p.rsplit_once('\n').map(|(_, after)| after));
    let of_comments = || {
        raw(Some(array.trailing()))
            .lines()
            .find_map(|l| l.find('#').map(|at| &l[..at]))
    };
    of_entries
        .or_else(of_comments)
        .filter(blank)
        .unwrap_or("  ")
        .to_string()
}

/// Adds `entry` after the array's last value. On one line: `, "entry"`.
/// Over several: on a new line after the last value's line (and its
/// comment), indented like it; what followed that line (commented-out
/// entries, the closing bracket's line) stays after it.
fn append(array: &mut Array, entry: &str) {
    let mut value = Value::from(entry);
    if !multiline(array) {
        let prefix = if array.is_empty() { "" } else { " " };
        value.decor_mut().set_prefix(prefix);
        value.decor_mut().set_suffix("");
        array.push_formatted(value);
        return;
    }
    let indent = indent(array);
    // Whitespace and comments between the last value and the bracket
    // (before and after its comma), split at the end of its line.
    let last_suffix = array
        .iter()
        .last()
        .map(|v| raw(v.decor().suffix()).to_string())
        .unwrap_or_default();
    let gap = format!("{last_suffix}{}", raw(Some(array.trailing())));
    let (same_line, rest) = match (array.is_empty(), gap.find('\n')) {
        // `[` then comment lines: the entry goes first, the comments after it.
        (true, _) => (String::new(), gap.clone()),
        (false, Some(at)) => (gap[..at].to_string(), gap[at..].to_string()),
        (false, None) => (gap.clone(), String::new()),
    };
    if let Some(last) = array.iter_mut().last() {
        last.decor_mut().set_suffix("");
    }
    value
        .decor_mut()
        .set_prefix(format!("{same_line}\n{indent}"));
    value.decor_mut().set_suffix("");
    let comma = array.trailing_comma() || array.is_empty();
    array.push_formatted(value);
    array.set_trailing_comma(comma);
    array.set_trailing(rest);
}

/// Refuses a profile or recipe that rbm ships (`demo`, `claude-code`):
/// the next install or update of rbm replaces it, and an install's files
/// may not be the user's to write. The fix: a copy of one's own.
pub fn editable(loaded: &Loaded, places: &Places, arg: &str) -> Result<(), Error> {
    let Some(shipped) = &places.shipped else {
        return Ok(());
    };
    let file = loaded
        .path
        .canonicalize()
        .unwrap_or_else(|_| loaded.path.clone());
    let under = |dir: PathBuf| dir.canonicalize().is_ok_and(|d| file.starts_with(d));
    let moniker = &loaded.profile.moniker;
    let (what, fix) = if loaded.recipe.is_some() && under(shipped.root.join("recipes")) {
        let dir = file.parent().unwrap_or(&file).display().to_string();
        (
            format!("{dir} is a recipe rbm ships, which the next install or update of rbm replaces"),
            format!("copy it and allow the name in the copy: `cp -r {dir} ./my-{arg}`, `rbm-launch allow ./my-{arg} NAME...`; then `rbm-launch stop {arg}` and `rbm-launch run ./my-{arg}`"),
        )
    } else if under(shipped.profiles()) {
        (
            format!("{} is a profile rbm ships, which the next install or update of rbm replaces", file.display()),
            format!("copy it and allow the name in the copy: `cp {} ./my-{moniker}.toml`, `rbm-launch allow ./my-{moniker}.toml NAME...`; then `rbm-launch stop {arg}` and `rbm-launch up ./my-{moniker}.toml`", file.display()),
        )
    } else {
        return Ok(());
    };
    Err(Error::ProfileArg {
        arg: arg.to_string(),
        what,
        fix,
    })
}

/// `rbm-launch allow PROFILE NAME...`: the names checked, the file
/// edited, checked and written, then the running pair reloaded (through
/// `podman`, asked for only then). Nothing is written unless every name
/// is a domain rule and the result is a valid profile.
pub fn run(
    places: &Places,
    arg: &str,
    names: &[String],
    podman: impl FnOnce() -> Result<Podman, Error>,
) -> Result<u8, Error> {
    let rules = rules(names).map_err(|(bad, fix)| Error::ProfileArg {
        arg: arg.to_string(),
        what: format!("{}; nothing was written", bad.join("; ")),
        fix,
    })?;
    let loaded = lookup::load(arg, places)?;
    editable(&loaded, places, arg)?;
    let file = loaded.path.clone();
    let before = std::fs::read_to_string(&file).map_err(|source| ProfileError::Read {
        file: file.clone(),
        source,
    })?;
    let not_editable = |why: String| Error::ProfileArg {
        arg: arg.to_string(),
        what: format!("cannot add to uplink.domains of {}: {why}", file.display()),
        fix: "add the names to [uplink] domains with an editor".into(),
    };
    let edited = edit(&before, &rules).map_err(not_editable)?;
    for (rule, change) in &edited.changes {
        match change {
            Change::Covered { by } if *by == rule.to_string() => {
                println!("rbm: {rule} is in uplink.domains already; skipped")
            }
            Change::Covered { by } => {
                println!("rbm: {rule}: uplink.domains allows it already ({by}); skipped")
            }
            _ => {}
        }
    }
    if !edited.changed() {
        println!("rbm: nothing to add; {} is unchanged", file.display());
        return Ok(0);
    }
    // What the sentry gets: the file itself, or for a recipe the text
    // `run` makes of it (its image named), edited the same way.
    let sentry_text = match loaded.recipe {
        Some(_) => edit(&loaded.text, &rules).map_err(not_editable)?.text,
        None => edited.text.clone(),
    };
    let checked = Profile::parse(&sentry_text, &file).inspect_err(|_| {
        eprintln!("rbm: with these names the profile would be invalid; nothing was written")
    })?;
    if let Some((rule, _)) = edited
        .changes
        .iter()
        .find(|(rule, _)| missing(&checked.uplink.domains, rule).0.is_some())
    {
        return Err(not_editable(format!(
            "the edited text does not allow {rule} (an unusual layout?); nothing was written"
        )));
    }
    write_atomically(&file, &edited.text, &before)?;
    for (_, change) in &edited.changes {
        match change {
            Change::Added(entry) => println!(
                "rbm: added \"{entry}\" to uplink.domains of {}",
                file.display()
            ),
            Change::Covered { .. } => {}
        }
    }
    reload_if_running(places, arg, podman)
}

/// The pair reloaded with the file as it now is, as `rbm-launch reload`
/// does, if it runs and this file started it.
fn reload_if_running(
    places: &Places,
    arg: &str,
    podman: impl FnOnce() -> Result<Podman, Error>,
) -> Result<u8, Error> {
    let loaded = lookup::load(arg, places)?;
    let names = loaded.profile.names();
    let later = format!("it applies at the next `rbm-launch up {arg}` (or `rbm-launch reload {arg}` once the pair runs)");
    let podman = match podman() {
        Ok(p) => p,
        Err(e) => {
            println!("rbm: not reloaded: no Podman to ask ({e}); {later}");
            return Ok(0);
        }
    };
    if !launch::is_running(&podman, &names.sentry) {
        println!("rbm: {} is not running; {later}", names.sentry);
        return Ok(0);
    }
    // A pair another profile file of the same moniker started is not this
    // file's to change: its sentry would get this file's policy.
    match Present::ask(&podman, &names).owner(&names, &loaded.owner()) {
        Owner::This | Owner::Unlabelled | Owner::Nobody => {}
        Owner::Other(other) => {
            println!("rbm: not reloaded: the running {} was started by {other}, not by {}; `rbm-launch reload {other}` applies that file", names.sentry, loaded.path.display());
            return Ok(0);
        }
        Owner::Unknown => {
            println!("rbm: not reloaded: podman could not list the pair to tell whose it is; run `rbm-launch reload {arg}`");
            return Ok(0);
        }
    }
    exec::reload(&podman, &names, &loaded.text, arg)?;
    Ok(0)
}

/// Replaces `path`'s file by one holding `text`, in one rename: a reader
/// (`up`, an agent restarting, an editor) sees the old file or the new
/// one, never half of it. The new file keeps the old one's permissions
/// (and, for root, its owner). A file changed since it was read as
/// `before` is left alone.
pub fn write_atomically(path: &Path, text: &str, before: &str) -> Result<(), Error> {
    let io = |what, fix, source| Error::Io {
        what,
        path: path.to_path_buf(),
        fix,
        source,
    };
    // The file itself, not a link to it: the link stays a link.
    let real = path
        .canonicalize()
        .map_err(|e| io("cannot resolve", "give the path of an existing profile", e))?;
    let dir = real.parent().unwrap_or(Path::new("."));
    let meta =
        std::fs::metadata(&real).map_err(|e| io("cannot read", "make the profile readable", e))?;
    // The rename needs only the folder; the file's own permission says
    // whether this user may change it.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&real)
        .map_err(|e| {
            io(
                "cannot write",
                "edit a profile you may write (or a copy of it)",
                e,
            )
        })?;
    let name = real
        .file_name()
        .map_or_else(|| "profile".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.rbm-allow-{}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.set_permissions(meta.permissions())?;
        keep_owner(&f, &meta)?;
        f.sync_all()?;
        if std::fs::read_to_string(&real)? != before {
            return Err(std::io::Error::other(
                "it changed while rbm-launch was editing it",
            ));
        }
        std::fs::rename(&tmp, &real)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(
            "cannot replace",
            "check the folder is writable and nothing else edits the profile, then run it again; the profile is unchanged",
            e,
        ));
    }
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Root gives the new file the old one's owner (`sudo rbm-launch allow`
/// must not hand a user's profile to root); anyone else owns what they write.
#[cfg(unix)]
fn keep_owner(f: &std::fs::File, meta: &std::fs::Metadata) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::fchown(f, Some(meta.uid()), Some(meta.gid()))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn keep_owner(_: &std::fs::File, _: &std::fs::Metadata) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> DomainRule {
        DomainRule::parse(s).unwrap()
    }

    fn added(text: &str, names: &[&str]) -> String {
        let rules: Vec<DomainRule> = names.iter().map(|n| rule(n)).collect();
        edit(text, &rules).unwrap().text
    }

    const HEAD: &str = "moniker = \"m\"\n[uplink]\ndns = \"allowlist\"\n";

    #[test]
    fn a_one_line_array_stays_on_one_line() {
        let text = format!("{HEAD}domains = [\"a.test\", \"b.test\"]  # ours\ncidrs = []\n");
        assert_eq!(
            added(&text, &["c.test:443", "*.d.test"]),
            format!("{HEAD}domains = [\"a.test\", \"b.test\", \"c.test:443\", \"*.d.test\"]  # ours\ncidrs = []\n")
        );
        let empty = format!("{HEAD}domains = []\n");
        assert_eq!(
            added(&empty, &["c.test"]),
            format!("{HEAD}domains = [\"c.test\"]\n")
        );
    }

    #[test]
    fn a_new_line_goes_after_the_last_entry_and_its_comment() {
        let text = format!(
            "{HEAD}domains = [\n    \"a.test:443\",   # the API\n    # \"b.test:443\",  # not yet\n]\n"
        );
        assert_eq!(
            added(&text, &["c.test:443", "e.test"]),
            format!("{HEAD}domains = [\n    \"a.test:443\",   # the API\n    \"c.test:443\",\n    \"e.test\",\n    # \"b.test:443\",  # not yet\n]\n")
        );
        // No comma after the last entry: none after the new one either.
        let bare = format!("{HEAD}domains = [\n  \"a.test\"\n]\n");
        assert_eq!(
            added(&bare, &["c.test"]),
            format!("{HEAD}domains = [\n  \"a.test\",\n  \"c.test\"\n]\n")
        );
        // Only comments so far: the entry first, the comments after it.
        let commented = format!("{HEAD}domains = [\n  # \"b.test\",\n]\n");
        assert_eq!(
            added(&commented, &["c.test"]),
            format!("{HEAD}domains = [\n  \"c.test\",\n  # \"b.test\",\n]\n")
        );
    }

    #[test]
    fn a_profile_without_domains_gets_the_key() {
        let text = format!("{HEAD}access = \"global\"\n\n# entries\n[[entry]]\nhost_port = 1\n");
        assert_eq!(
            added(&text, &["c.test"]),
            format!("{HEAD}access = \"global\"\ndomains = [\"c.test\"]\n\n# entries\n[[entry]]\nhost_port = 1\n")
        );
    }

    #[test]
    fn what_the_entries_allow_already_is_skipped_and_only_the_rest_added() {
        let text = format!(
            "{HEAD}domains = [\n  \"a.test\",\n  \"*.w.test:443\",\n  \"g.test:443\",  # git over HTTPS\n]\n"
        );
        let rules: Vec<DomainRule> = [
            "A.test.:22",
            "x.w.test:443",
            "*.v.w.test:443",
            "g.test:22,443",
            "g.test:22",
            "w.test:443",
        ]
        .iter()
        .map(|n| rule(n))
        .collect();
        let e = edit(&text, &rules).unwrap();
        let changes: Vec<&Change> = e.changes.iter().map(|(_, c)| c).collect();
        let by = |s: &str| Change::Covered { by: s.into() };
        assert_eq!(
            changes,
            [
                &by("a.test"),
                &by("*.w.test:443"),
                &by("*.w.test:443"),
                &Change::Added("g.test:22".into()),
                &by("g.test:443, g.test:22"),
                // The apex is not below its wildcard.
                &Change::Added("w.test:443".into()),
            ]
        );
        // The entry and its comment stay as they were; the port is a line of its own.
        assert_eq!(
            e.text,
            format!("{HEAD}domains = [\n  \"a.test\",\n  \"*.w.test:443\",\n  \"g.test:443\",  # git over HTTPS\n  \"g.test:22\",\n  \"w.test:443\",\n]\n")
        );
        // An exact name never stands for a wildcard; all ports are more than some.
        let have = [rule("w.test"), rule("p.test:443")];
        assert_eq!(missing(&have, &rule("*.w.test")).0, Some(rule("*.w.test")));
        assert_eq!(missing(&have, &rule("p.test")).0, Some(rule("p.test")));
        let same = edit(&text, &[rule("a.test")]).unwrap();
        assert!(!same.changed());
        assert_eq!(same.text, text);
    }

    #[test]
    fn names_that_are_not_domain_rules_are_each_refused_with_the_reason() {
        let names: Vec<String> = ["ok.test", "a b.test", "x.test:0", "*", "evil\u{1b}[2J.test"]
            .map(String::from)
            .to_vec();
        let (bad, fix) = rules(&names).unwrap_err();
        assert_eq!(bad.len(), 4, "{bad:?}");
        assert!(
            bad[0].starts_with("\"a b.test\" is not a domain rule: label"),
            "{bad:?}"
        );
        assert!(bad[1].contains("port \"0\""), "{bad:?}");
        assert!(
            bad[3].contains("\\u{1b}") && !bad[3].contains('\u{1b}'),
            "{bad:?}"
        );
        assert!(
            fix.contains("pypi.org") && fix.contains("each 1 to 65535"),
            "{fix}"
        );
        assert_eq!(rules(&names[..1]).unwrap(), [rule("ok.test")]);
    }

    /// The golden pair: a profile written by hand, with comments
    /// everywhere, and the same file after `allow` of a new name, a new
    /// port for a name there, and a name there already.
    #[test]
    fn allow_keeps_every_comment_and_adds_only_the_lines() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
        let input = std::fs::read_to_string(dir.join("allow-in.toml")).unwrap();
        let expected = std::fs::read_to_string(dir.join("allow-out.toml")).unwrap();
        let e = edit(
            &input,
            &[
                rule("registry.npmjs.org:443"),
                rule("github.com:22,443"),
                rule("api.anthropic.com:443"),
            ],
        )
        .unwrap();
        assert_eq!(e.text, expected);
        Profile::parse(&e.text, Path::new("allow-out.toml")).unwrap();
        // Every line of the input is in the output, in order; the output's
        // other lines are the new entries.
        let mut left = expected.lines();
        let mut extra = Vec::new();
        for line in input.lines() {
            loop {
                let out = left
                    .next()
                    .expect("an input line is missing from the output");
                if out == line {
                    break;
                }
                extra.push(out);
            }
        }
        extra.extend(left);
        assert_eq!(
            extra,
            ["    \"registry.npmjs.org:443\",", "    \"github.com:22\","],
            "{expected}"
        );
    }

    #[test]
    fn the_file_is_replaced_whole_with_its_mode_or_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "old\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        }
        let err = write_atomically(&path, "new\n", "other\n").unwrap_err();
        assert!(err.to_string().contains("changed while"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\n");
        write_atomically(&path, "new\n", "old\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o640);
        }
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file stays behind");
    }
}
