//! Volume forms, the options allow-list, and where host paths resolve.

use std::os::unix::fs::symlink;

use super::*;
use crate::tests::{has, parse, problems, with};

fn volumes(list: &str) -> Result<Vec<Volume>, Vec<Problem>> {
    let text = with(
        "volumes = [\"./work:/workspace\"]",
        &format!("volumes = {list}"),
    );
    match parse(&text) {
        Ok(p) => Ok(p.bottle.volumes),
        Err(_) => Err(problems(&text)),
    }
}

fn vol(host: &str, bottle: &str, read_only: bool, outside: bool) -> Volume {
    Volume {
        host: host.into(),
        bottle: bottle.into(),
        read_only,
        outside,
    }
}

#[test]
fn the_string_form_stays_in_the_folder_and_the_table_form_may_leave_it() {
    assert_eq!(
        volumes(r#"["./work:/workspace", "data:/data:ro", "./a/b:/b:rw"]"#).unwrap(),
        [
            vol("./work", "/workspace", false, false),
            vol("data", "/data", true, false),
            vol("./a/b", "/b", false, false),
        ]
    );
    assert_eq!(
        volumes(r#"[{ host = "/srv/data", bottle = "/data", read_only = true, outside = true }, { host = "./w", bottle = "/w" }]"#)
            .unwrap(),
        [
            vol("/srv/data", "/data", true, true),
            vol("./w", "/w", false, false)
        ]
    );
}

#[test]
fn a_path_that_leaves_the_folder_needs_outside_and_the_fix_shows_it() {
    for list in [
        r#"["../x:/x"]"#,
        r#"["/data:/data:ro"]"#,
        r#"["./a/../../x:/x"]"#,
    ] {
        let p = volumes(list).unwrap_err();
        assert!(
            has(&p, "bottle.volumes[0]", "outside the profile's folder")
                && has(&p, "bottle.volumes[0]", "outside = true }"),
            "{list}: {p:?}"
        );
    }
    let p = volumes(r#"["/data:/data:ro"]"#).unwrap_err();
    assert!(
        has(
            &p,
            "bottle.volumes[0]",
            r#"{ host = "/data", bottle = "/data", read_only = true, outside = true }"#
        ),
        "{p:?}"
    );
    let p = volumes(r#"[{ host = "/data", bottle = "/data" }]"#).unwrap_err();
    assert!(
        has(&p, "bottle.volumes[0].host", "add outside = true"),
        "{p:?}"
    );
}

#[test]
fn options_that_change_the_host_are_refused() {
    for opt in [
        "U", "z", "Z", "ro,U", "idmap", "suid", "dev", "exec", "O", "rshared", "ro,z",
    ] {
        let p = volumes(&format!(r#"["./work:/workspace:{opt}"]"#)).unwrap_err();
        assert!(
            has(&p, "bottle.volumes[0]", "is not allowed")
                && has(&p, "bottle.volumes[0]", "\"./work:/workspace:ro\""),
            "{opt}: {p:?}"
        );
    }
}

#[test]
fn malformed_volumes_name_the_field_and_the_fix() {
    for (list, field, needle) in [
        (
            r#"["./work"]"#,
            "bottle.volumes[0]",
            "not HOST_PATH:BOTTLE_PATH",
        ),
        (
            r#"["./work:workspace"]"#,
            "bottle.volumes[0]",
            "not absolute",
        ),
        (r#"[":/x"]"#, "bottle.volumes[0]", "not HOST_PATH"),
        (
            r#"[3]"#,
            "bottle.volumes[0]",
            "is not a volume (a TOML integer)",
        ),
        (
            r#"[{ host = "./w" }]"#,
            "bottle.volumes[0].bottle",
            "is missing",
        ),
        (
            r#"[{ host = "./w", bottle = "/w", ro = true }]"#,
            "bottle.volumes[0].ro",
            "not a volume key",
        ),
        (
            r#"[{ host = "./w", bottle = "/w", outside = "yes" }]"#,
            "bottle.volumes[0].outside",
            "not true or false",
        ),
        (
            r#"[{ host = "", bottle = "/w" }]"#,
            "bottle.volumes[0].host",
            "is empty",
        ),
        (
            r#"[{ host = "./a:b", bottle = "/w" }]"#,
            "bottle.volumes[0]",
            "holds a ':'",
        ),
    ] {
        let p = volumes(list).unwrap_err();
        assert!(has(&p, field, needle), "{list}: {p:?}");
    }
}

fn folder() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let folder = t.path().join("profile");
    std::fs::create_dir(&folder).unwrap();
    let folder = folder.canonicalize().unwrap();
    (t, folder)
}

#[test]
fn a_missing_folder_inside_resolves_inside_and_is_marked_missing() {
    let (_t, folder) = folder();
    std::fs::create_dir(folder.join("a")).unwrap();
    let r = vol("./a/./b/c", "/w", false, false)
        .resolve(&folder, "bottle.volumes[0]")
        .unwrap();
    assert_eq!(r.host, folder.join("a/b/c"));
    assert!(r.missing && !r.outside);
    let r = vol("a", "/w", true, false).resolve(&folder, "f").unwrap();
    assert_eq!(r.host, folder.join("a"));
    assert!(!r.missing);
    assert_eq!(
        r.podman_arg(),
        format!("{}:/w:ro", folder.join("a").display())
    );
}

#[test]
fn a_symlink_out_of_the_folder_is_refused_unless_the_volume_says_outside() {
    let (t, folder) = folder();
    let away = t.path().join("home");
    std::fs::create_dir(&away).unwrap();
    let away = away.canonicalize().unwrap();
    symlink(&away, folder.join("work")).unwrap();
    for host in ["./work", "work/sub/missing"] {
        let p = vol(host, "/workspace", false, false)
            .resolve(&folder, "bottle.volumes[0]")
            .unwrap_err();
        assert_eq!(p.field, "bottle.volumes[0]");
        assert!(
            p.message.contains(&away.display().to_string())
                && p.message.contains("outside the profile's folder")
                && p.fix.contains("outside = true"),
            "{p}"
        );
    }
    let r = vol("./work", "/workspace", false, true)
        .resolve(&folder, "f")
        .unwrap();
    assert_eq!(r.host, away);
    assert!(r.outside && !r.missing);
    assert!(
        r.to_string().contains("[outside the profile's folder]"),
        "{r}"
    );
    // A link that stays inside is only a name.
    std::fs::create_dir(folder.join("real")).unwrap();
    symlink(folder.join("real"), folder.join("alias")).unwrap();
    let r = vol("alias", "/a", false, false)
        .resolve(&folder, "f")
        .unwrap();
    assert_eq!(r.host, folder.join("real"));
    assert!(!r.outside);
}

#[test]
fn an_outside_path_resolves_as_the_profile_says() {
    let (t, folder) = folder();
    let r = vol("../", "/up", true, true).resolve(&folder, "f").unwrap();
    assert_eq!(r.host, t.path().canonicalize().unwrap());
    assert!(r.outside);
    let r = vol("/nonexistent/rbm/x", "/x", false, true)
        .resolve(&folder, "f")
        .unwrap();
    assert!(r.missing && r.outside);
    // Inside after all: not marked.
    let r = vol(&folder.display().to_string(), "/p", false, true)
        .resolve(&folder, "f")
        .unwrap();
    assert!(!r.outside);
}

#[test]
fn a_volume_inside_another_the_bottle_may_write_is_refused_by_its_words() {
    for list in [
        r#"["./work:/w", "./work/cache:/root/.cache"]"#,
        r#"[".:/src", "./work:/workspace:ro"]"#,
        r#"["./work:/w:rw", "work/./cache:/c"]"#,
    ] {
        let p = volumes(list).unwrap_err();
        assert!(
            has(&p, "bottle.volumes[1]", "lies inside")
                && has(&p, "bottle.volumes[1]", "keep the folders apart"),
            "{list}: {p:?}"
        );
    }
    // Side by side, the same folder twice, or inside a read-only one: fine.
    for list in [
        r#"["./work:/w", "./cache:/root/.cache"]"#,
        r#"["./work:/w", "./work:/w2:ro"]"#,
        r#"["./work:/w:ro", "./work/cache:/root/.cache"]"#,
        r#"["./workspace:/w", "./work:/x"]"#,
    ] {
        assert!(volumes(list).is_ok(), "{list}: {:?}", volumes(list));
    }
}

#[test]
fn a_read_write_volume_holding_the_profile_file_is_refused() {
    for list in [
        r#"[".:/src"]"#,
        r#"["./:/src:rw"]"#,
        r#"["./x.toml:/p.toml"]"#,
    ] {
        let p = volumes(list).unwrap_err();
        assert!(
            has(&p, "bottle.volumes[0]", "holds the profile file")
                && has(&p, "bottle.volumes[0]", ":ro\""),
            "{list}: {p:?}"
        );
    }
    assert!(volumes(r#"[".:/src:ro"]"#).is_ok());
    assert!(volumes(r#"["./y.toml:/p.toml"]"#).is_ok());
}

fn resolved(host: PathBuf, read_only: bool) -> ResolvedVolume {
    ResolvedVolume {
        host,
        bottle: "/b".into(),
        read_only,
        outside: false,
        missing: false,
    }
}

#[test]
fn resolved_volumes_inside_a_writable_one_and_the_profile_file_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().canonicalize().unwrap();
    std::fs::create_dir_all(dir.join("work/cache")).unwrap();
    std::fs::create_dir(dir.join("other")).unwrap();
    // `./cache` is a link into `./work`: apart by their words, not on disk.
    symlink(dir.join("work/cache"), dir.join("cache")).unwrap();
    let text = with(
        "volumes = [\"./work:/workspace\"]",
        "volumes = [\"./work:/w\", \"./cache:/c\"]",
    );
    let p = parse(&text).unwrap();
    let err = p.resolve_volumes(&dir).unwrap_err();
    assert_eq!(err.field, "bottle.volumes[1]", "{err:?}");
    assert!(err.message.contains("lies inside"), "{err:?}");

    let file = dir.join("rbm.toml");
    std::fs::write(&file, "").unwrap();
    let folder = resolved(dir.clone(), false);
    let err = profile_outside(&[resolved(dir.join("other"), false), folder], &file).unwrap_err();
    assert_eq!(err.field, "bottle.volumes[1]", "{err:?}");
    assert!(profile_outside(&[resolved(dir.clone(), true)], &file).is_ok());
    // A profile that is a link into a writable volume is refused as well.
    let link = dir.join("other/rbm.toml");
    symlink(&file, &link).unwrap();
    assert!(profile_outside(&[resolved(dir.join("work"), false)], &link).is_ok());
    assert!(profile_outside(&[resolved(dir.clone(), false)], &link).is_err());
    assert_eq!(
        volume_holding(
            &[resolved(dir.join("work"), true)],
            &dir.join("work/k"),
            true
        ),
        None
    );
    assert_eq!(
        volume_holding(
            &[resolved(dir.join("work"), true)],
            &dir.join("work/k"),
            false
        ),
        Some(0)
    );
}
