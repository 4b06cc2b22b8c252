//! What a profile takes, resolved in a real folder with symlinks.

use std::os::unix::fs::symlink;

use super::*;
use rbm_profile::Profile;

const BASE: &str = "moniker = \"demo\"\n[bottle]\nimage = \"i\"\nVOLUMES\n[enclave]\nsubnet = \"10.242.0.0/24\"\nsentry_ip = \"10.242.0.2\"\nbottle_ip = \"10.242.0.3\"\n[uplink]\ndns = \"allowlist\"\naccess = \"allowlist\"\ndomains = [\"api.anthropic.com\", \"a.test\"]\n";

/// A folder `profile/` holding the profile, beside `elsewhere/` holding a
/// secret; `profile/key` is a symlink to that secret.
struct Folder {
    _t: tempfile::TempDir,
    dir: PathBuf,
    elsewhere: PathBuf,
}

fn folder() -> Folder {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().canonicalize().unwrap();
    let (dir, elsewhere) = (root.join("profile"), root.join("elsewhere"));
    std::fs::create_dir_all(dir.join("work")).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("secret"), "sk-1\n").unwrap();
    std::fs::write(dir.join("own-key"), "sk-2\n").unwrap();
    symlink(elsewhere.join("secret"), dir.join("key")).unwrap();
    symlink(&elsewhere, dir.join("home")).unwrap();
    Folder {
        _t: t,
        dir,
        elsewhere,
    }
}

fn loaded(f: &Folder, volumes: &str, credentials: &str) -> Loaded {
    let text = BASE.replace("VOLUMES", volumes) + credentials;
    let path = f.dir.join("p.toml");
    Loaded {
        profile: Profile::parse(&text, &path).unwrap(),
        path,
        dir: f.dir.clone(),
        text,
        workspace: None,
        recipe: None,
        workspace_volume: None,
    }
}

fn credential(from: &str, extra: &str) -> String {
    format!("[[credential]]\nenv = \"API_KEY\"\nfrom = \"{from}\"\nhosts = [\"api.anthropic.com\"]\n{extra}")
}

#[test]
fn a_path_resolves_through_symlinks_as_far_as_it_exists() {
    let f = folder();
    let resolve = |w: &str| resolve_in(&f.dir, w).unwrap();
    assert_eq!(resolve("./work"), (f.dir.join("work"), false));
    assert_eq!(
        resolve("work/new/deeper"),
        (f.dir.join("work/new/deeper"), true)
    );
    assert_eq!(resolve("key"), (f.elsewhere.join("secret"), false));
    assert_eq!(resolve("home/new"), (f.elsewhere.join("new"), true));
    assert_eq!(resolve("../elsewhere"), (f.elsewhere.clone(), false));
}

#[test]
fn volumes_outside_the_folder_are_marked_and_a_link_out_is_refused() {
    let f = folder();
    let l = loaded(
        &f,
        "volumes = [\"./work:/w:ro\", \"work/new:/n:ro\", { host = \"/etc\", bottle = \"/e\", read_only = true, outside = true }, { host = \"../elsewhere\", bottle = \"/x\", outside = true }, { host = \"home\", bottle = \"/h\", outside = true }]",
        "",
    );
    let takes = Takes::of(&l).unwrap();
    let outside: Vec<bool> = takes.volumes.iter().map(|v| v.outside).collect();
    assert_eq!(outside, [false, false, true, true, true]);
    assert!(takes.needs_yes());
    let lines = takes.lines();
    assert_eq!(
        lines[1],
        format!(
            "volume      {} -> /n (ro), in the profile's folder",
            f.dir.join("work/new").display()
        )
    );
    assert_eq!(
        lines[4],
        format!(
            "volume      {} -> /h, OUTSIDE the profile's folder",
            f.elsewhere.display()
        )
    );
    // The string form says "inside": a link out of the folder is refused.
    let linked = loaded(&f, "volumes = [\"home:/h\"]", "");
    let err = Takes::of(&linked).unwrap_err().to_string();
    assert!(
        err.contains("bottle.volumes[0]") && err.contains("outside"),
        "{err}"
    );
}

#[test]
fn a_profile_that_keeps_to_a_new_folder_needs_no_yes_one_that_exists_does() {
    let f = folder();
    let l = loaded(&f, "volumes = [\"./new:/workspace\"]", "");
    let takes = Takes::of(&l).unwrap();
    assert!(!takes.needs_yes(), "rbm creates ./new for the bottle");
    // What exists is the user's: ./work here, `./.git` or `./.ssh` elsewhere.
    let existing = Takes::of(&loaded(&f, "volumes = [\"./work:/w:ro\"]", "")).unwrap();
    assert!(existing.needs_yes());
    assert!(
        takes
            .to_string()
            .starts_with("takes from this machine:\n  volume      "),
        "{takes}"
    );
    let bare = Takes::of(&loaded(&f, "", "")).unwrap();
    assert!(!bare.needs_yes());
    assert_eq!(
        bare.to_string(),
        "takes no host path and no credential from this machine"
    );
}

#[test]
fn every_credential_is_named_with_its_source_and_hosts() {
    let f = folder();
    let env = credential("env:GITHUB_TOKEN", "");
    let takes = Takes::of(&loaded(&f, "", &env)).unwrap();
    assert!(takes.needs_yes(), "a credential always asks");
    assert_eq!(
        takes.lines(),
        ["credential  API_KEY: from env:GITHUB_TOKEN, sent only to api.anthropic.com"]
    );
    let file = credential("file:own-key", "upstream_ca = \"ca.pem\"\n");
    let takes = Takes::of(&loaded(&f, "", &file)).unwrap();
    assert_eq!(
        takes.lines(),
        [format!(
            "credential  API_KEY: from file:{} (in the profile's folder), sent only to api.anthropic.com; trusts the CA {} for them",
            f.dir.join("own-key").display(),
            f.dir.join("ca.pem").display()
        )]
    );
    let secret = credential("podman-secret:my-token", "");
    let takes = Takes::of(&loaded(&f, "", &secret)).unwrap();
    assert_eq!(
        takes.lines(),
        ["credential  API_KEY: from podman-secret:my-token, sent only to api.anthropic.com"]
    );
}

#[test]
fn a_credential_file_through_a_symlink_out_of_the_folder_is_refused_unless_outside() {
    let f = folder();
    for (from, extra) in [
        ("file:key", ""),
        ("file:own-key", "upstream_ca = \"home/ca.pem\"\n"),
    ] {
        let err = Takes::of(&loaded(&f, "", &credential(from, extra)))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("credential API_KEY: its ")
                && err.contains(&format!("resolves to {}", f.elsewhere.display()))
                && err.contains("outside the profile's folder")
                && err.contains(
                    "fix: put the file itself in the profile's folder, or add `outside = true`"
                ),
            "{err}"
        );
    }
    let meant = credential("file:key", "outside = true\n");
    let takes = Takes::of(&loaded(&f, "", &meant)).unwrap();
    let paths = &takes.credentials[0].paths;
    assert_eq!(paths.file, Some(f.elsewhere.join("secret")));
    assert!(paths.outside);
    assert!(
        takes.lines()[0].contains("OUTSIDE the profile's folder"),
        "{:?}",
        takes.lines()
    );
    let text = credential("file:../elsewhere/secret", "outside = true\n");
    let paths = &Takes::of(&loaded(&f, "", &text)).unwrap().credentials[0].paths;
    assert!(paths.outside && paths.file == Some(f.elsewhere.join("secret")));
}

#[test]
fn entry_ports_are_listed() {
    let f = folder();
    let mut l = loaded(&f, "", "");
    l.profile.entries = vec![rbm_profile::Entry {
        host_port: 5432,
        bottle_port: 8888,
        protocol: rbm_profile::Protocol::Tcp,
    }];
    let takes = Takes::of(&l).unwrap();
    assert_eq!(
        takes.lines(),
        ["entry       127.0.0.1:5432/tcp on this machine -> the bottle's port 8888"]
    );
    assert!(!takes.needs_yes(), "listed, not asked for");
}

#[test]
fn a_credential_file_inside_a_folder_the_bottle_gets_is_refused() {
    let f = folder();
    std::fs::write(f.dir.join("work/token"), "sk-3\n").unwrap();
    std::fs::write(f.dir.join("work/ca.pem"), "pem\n").unwrap();
    let refused = |volumes: &str, cred: &str, needle: &str| {
        let err = Takes::of(&loaded(&f, volumes, cred)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("credential API_KEY")
                && text.contains("bottle.volumes[0]")
                && text.contains(needle)
                && text.contains("move the file out"),
            "{volumes} {cred}: {text}"
        );
        assert_eq!(err.exit_code(), 2);
    };
    let rw = "volumes = [\"./work:/w\"]";
    let ro = "volumes = [\"./work:/w:ro\"]";
    refused(rw, &credential("file:work/token", ""), "read-only");
    refused(rw, &credential("file:./work/token", ""), "may write");
    // Read-only, the bottle still reads the real value there.
    refused(
        ro,
        &credential("file:work/token", ""),
        "read the real value",
    );
    refused(
        rw,
        &credential("file:own-key", "upstream_ca = \"work/ca.pem\""),
        "upstream_ca",
    );
    // The volume given through a link to its folder: the same folder.
    let err = Takes::of(&loaded(
        &f,
        "volumes = [\"./home:/h\"]",
        &credential("file:key", "outside = true"),
    ));
    assert!(err.is_err(), "{err:?}");
    // A CA in a read-only volume, a key beside the volume: fine.
    let ok = loaded(
        &f,
        ro,
        &credential("file:own-key", "upstream_ca = \"work/ca.pem\""),
    );
    assert!(Takes::of(&ok).is_ok(), "{:?}", Takes::of(&ok));
}

#[test]
fn a_request_hosts_ca_outside_the_folder_needs_saying_so_and_a_yes() {
    let f = folder();
    std::fs::write(f.elsewhere.join("ca.pem"), "not read here").unwrap();
    std::fs::write(f.dir.join("ca.pem"), "not read here").unwrap();
    symlink(f.elsewhere.join("ca.pem"), f.dir.join("linked-ca.pem")).unwrap();
    let requests = |ca: &str, extra: &str| {
        format!("[[requests]]\nhosts = [\"a.test\"]\nallow = [\"GET *\"]\nupstream_ca = \"{ca}\"\n{extra}")
    };
    // Inside: listed, no yes needed for it.
    let takes = Takes::of(&loaded(&f, "", &requests("ca.pem", ""))).unwrap();
    assert!(!takes.needs_yes(), "{:?}", takes.lines());
    assert!(
        takes.lines()[0].starts_with("requests    a.test: "),
        "{:?}",
        takes.lines()
    );
    assert!(takes.lines()[0].contains("in the profile's folder"));
    // A link that leads out: refused unless the table says so.
    let err = Takes::of(&loaded(&f, "", &requests("linked-ca.pem", "")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("requests[0].upstream_ca") && err.contains("outside = true"),
        "{err}"
    );
    // Said so: listed as outside, and a yes is needed.
    let takes = Takes::of(&loaded(
        &f,
        "",
        &requests("linked-ca.pem", "outside = true\n"),
    ))
    .unwrap();
    assert!(takes.needs_yes());
    assert!(
        takes.lines()[0].contains("OUTSIDE the profile's folder"),
        "{:?}",
        takes.lines()
    );
}
