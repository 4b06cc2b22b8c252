//! Hostile-profile cases: volumes. A shared profile's host paths stay in
//! its own folder: a `./work` that is a symbolic link to the reader's
//! home, a `../x` or an absolute path would hand the untrusted bottle
//! folders its reader never meant to give, and the options `U` (chown
//! the host tree) and `z`/`Z` (relabel it) change the host's files. Only
//! a volume that says `outside = true` leaves the folder, and `up` then
//! says so. A missing workspace is created private (0700).
//!
//! Volumes that the bottle could turn against the host later: one inside
//! another it may write (it puts a link to `/` where the inner folder
//! was, and the next start mounts `/`), a writable one that holds the
//! profile file (it rewrites what the next `up` runs), and a credential's
//! file in a writable volume (it swaps the file for a link to another
//! secret between the yes and the read).
//!
//! Monikers hpa5..hpa8 and hpe1..hpe3; the networks 10.250.71.0/24 and
//! 10.251.71.0/24 (10.250.78.0/24 and 10.251.78.0/24 for hpe), one pair
//! up at a time and stopped after it; nothing is sent anywhere.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Result;
use rbm_tests::files::write_file;
use rbm_tests::launcher::{Launched, Launcher};

use crate::common::{first_error, Ctx, Row};
use crate::syntax::{path, profile, said};

const SERVE: &str = r#"command = ["/rbm-probe", "serve"]"#;

pub fn cases(ctx: &Ctx) -> Result<Vec<Row>> {
    let mut rows = vec![symlinked_workspace(ctx)?];
    rows.extend(refused_by_check(ctx)?);
    rows.push(created(ctx)?);
    rows.push(declared(ctx)?);
    rows.extend(apart(ctx)?);
    rows.push(existing_git_folder(ctx)?);
    Ok(rows)
}

/// `up --yes` of `file` (a yes does not let a volume out: the profile's
/// own words must), stopped again when the result is dropped.
fn up(ctx: &Ctx, file: &Path) -> Result<(rbm_tests::Output, Launched)> {
    let profile = path(file);
    let guard = Launched {
        launcher: Launcher::find(ctx.podman.clone())?,
        profile: profile.clone(),
    };
    Ok((ctx.launch(&["up", "--yes", &profile])?, guard))
}

/// `SOURCE:DESTINATION` of each mount of `container`; None if it does
/// not exist.
fn mounts(ctx: &Ctx, container: &str) -> Option<String> {
    let format = "{{range .Mounts}}{{.Source}}:{{.Destination}} {{end}}";
    let out = ctx
        .podman
        .run(&["container", "inspect", "--format", format, container])
        .ok()?;
    out.success().then(|| out.stdout.trim().to_string())
}

/// The issue's case: `./work` is a link to a folder outside the profile's
/// own (in real life the reader's home); `up` must refuse before anything
/// starts.
fn symlinked_workspace(ctx: &Ctx) -> Result<Row> {
    let case = "symlinked-workspace-leaves-the-folder";
    let dir = ctx.dir(case)?;
    let away = ctx.dir(&format!("{case}-home"))?;
    write_file(&away, "secret.txt", "the reader's file")?;
    std::os::unix::fs::symlink(&away, dir.join("work"))?;
    let bottle = format!("{SERVE}\nvolumes = [\"./work:/workspace\"]");
    let file = write_file(&dir, "rbm.toml", &profile("hpa5", 71, &bottle))?;
    let (out, _stopped) = up(ctx, &file)?;
    let started = mounts(ctx, "rbm-hpa5-bottle");
    let named = out.status.code() == Some(2)
        && out.stderr.contains(&path(&file))
        && out.stderr.contains("bottle.volumes[0]")
        && out.stderr.contains("fix:");
    let observed = match &started {
        Some(mounts) => format!(
            "up made the bottle; its mounts: {mounts} (./work links to {})",
            away.display()
        ),
        None => said(&out, "bottle.volumes[0]"),
    };
    Ok(Row::new(
        "volumes",
        case,
        "`./work` is a symbolic link to a folder outside the profile's (the reader's home)",
        "`up` refuses it, naming the file, the field and the fix; no container starts",
        observed,
        named && started.is_none(),
    ))
}

/// Volumes `check` must refuse by their words alone.
fn refused_by_check(ctx: &Ctx) -> Result<Vec<Row>> {
    let outside = ctx.dir("volume-absolute")?;
    let cases = [
        (
            "dotdot-volume-leaves-the-folder",
            "../x:/x".to_string(),
            "a host path with `..` (`../x:/x`)",
            "outside = true",
        ),
        (
            "absolute-volume-without-outside",
            format!("{}:/data", outside.display()),
            "an absolute host path without `outside = true`",
            "outside = true",
        ),
        (
            "chown-option-U",
            "./work:/workspace:U".to_string(),
            "the option `U`: podman chowns the host folder to the bottle's user",
            "is not allowed",
        ),
        (
            "relabel-option-z",
            "./work:/workspace:z".to_string(),
            "the option `z`: podman relabels the host folder for every container",
            "is not allowed",
        ),
        (
            "relabel-option-Z",
            "./work:/workspace:ro,Z".to_string(),
            "the options `ro,Z`: podman relabels the host folder for this container alone",
            "is not allowed",
        ),
    ];
    let mut rows = Vec::new();
    for (case, volume, tries, needle) in cases {
        let dir = ctx.dir(case)?;
        let bottle = format!("{SERVE}\nvolumes = [\"{volume}\"]");
        let file = write_file(&dir, "rbm.toml", &profile("hpa6", 71, &bottle))?;
        let out = ctx.launch(&["check", &path(&file)])?;
        let pass = out.status.code() == Some(2)
            && out.stderr.contains(&path(&file))
            && out.stderr.contains("field `bottle.volumes[0]`")
            && out.stderr.contains(needle)
            && out.stderr.contains("fix:");
        let observed = said(&out, "bottle.volumes[0]");
        rows.push(Row::new(
            "volumes",
            case,
            tries,
            "`check` refuses it, naming the file, the field and the fix",
            observed,
            pass,
        ));
    }
    Ok(rows)
}

/// A missing `./work` is created inside the folder, 0700 (not the
/// umask's 0755 that let every local user read the bottle's workspace).
fn created(ctx: &Ctx) -> Result<Row> {
    let case = "missing-workspace-created-private";
    let dir = ctx.dir(case)?;
    let bottle = format!("{SERVE}\nvolumes = [\"./work:/workspace\"]");
    let file = write_file(&dir, "rbm.toml", &profile("hpa7", 71, &bottle))?;
    let (out, _stopped) = up(ctx, &file)?;
    let mode = std::fs::metadata(dir.join("work")).map(|m| m.permissions().mode() & 0o777);
    let created = match &mode {
        Ok(m) => format!("./work created {m:o}"),
        Err(e) => format!("./work not created ({e})"),
    };
    Ok(Row::new(
        "volumes",
        case,
        "`./work` does not exist yet",
        "`up` creates it inside the profile's folder, mode 0700",
        if out.success() {
            created
        } else {
            format!("{created}; {}", first_error(&out))
        },
        out.success() && matches!(mode, Ok(0o700)),
    ))
}

/// The control: a volume outside the folder that says `outside = true` is
/// mounted, and `up`'s summary names it as outside.
fn declared(ctx: &Ctx) -> Result<Row> {
    let case = "declared-outside-volume-is-stated";
    let dir = ctx.dir(case)?;
    let data = ctx.dir(&format!("{case}-data"))?;
    let bottle = format!(
        "{SERVE}\nvolumes = [{{ host = \"{}\", bottle = \"/data\", read_only = true, outside = true }}]",
        data.display()
    );
    let file = write_file(&dir, "rbm.toml", &profile("hpa8", 71, &bottle))?;
    let (out, _stopped) = up(ctx, &file)?;
    let stated = format!(
        "volume  {} -> /data (read-only) [outside the profile's folder]",
        data.display()
    );
    let mounted = mounts(ctx, "rbm-hpa8-bottle")
        .is_some_and(|m| m.contains(&format!("{}:/data", data.display())));
    let observed = if out.success() {
        let line = out.stdout.lines().find(|l| l.contains("-> /data"));
        format!(
            "{}; mounted: {mounted}",
            line.map_or("the summary does not name the volume", str::trim)
        )
    } else {
        first_error(&out)
    };
    Ok(Row::new(
        "volumes",
        case,
        "a volume outside the folder that says so: `{ host = \"/abs\", bottle = \"/data\", read_only = true, outside = true }`",
        "`up` mounts it and its summary names it as outside the profile's folder (control)",
        observed,
        out.success() && out.stdout.contains(&stated) && mounted,
    ))
}

/// `check` of a profile whose `[bottle]` holds `bottle` after its image,
/// in a folder of its own for `case` (with `work/cache` and `work/token`),
/// with `credential` appended (it needs the uplink its host). The file and
/// rbm-launch's output.
fn check(
    ctx: &Ctx,
    case: &str,
    bottle: &str,
    credential: &str,
) -> Result<(String, rbm_tests::Output)> {
    let dir = ctx.dir(case)?;
    std::fs::create_dir_all(dir.join("work/cache"))?;
    write_file(&dir.join("work"), "token", "hpe-real-token-0001\n")?;
    let mut text = profile("hpe1", 78, &format!("{SERVE}\n{bottle}"));
    if !credential.is_empty() {
        text = text.replace(
            "dns = \"disabled\"\naccess = \"disabled\"",
            "dns = \"allowlist\"\naccess = \"allowlist\"\ndomains = [\"collect.hpe.test\"]\nupstream_dns = [\"10.251.78.53\"]",
        ) + credential;
    }
    let file = path(&write_file(&dir, "rbm.toml", &text)?);
    let out = ctx.launch(&["check", &file])?;
    Ok((file, out))
}

/// Whether `out` is `check`'s refusal naming `file`, `field` and `needle`
/// with a fix.
fn refused(out: &rbm_tests::Output, file: &str, field: &str, needle: &str) -> bool {
    out.status.code() == Some(2)
        && out.stderr.contains(file)
        && out.stderr.contains(field)
        && out.stderr.contains(needle)
        && out.stderr.contains("fix:")
}

/// Volumes the bottle could use against the host at a later start.
fn apart(ctx: &Ctx) -> Result<Vec<Row>> {
    let mut rows = Vec::new();

    let case = "nested-volume-refused";
    let (file, out) = check(
        ctx,
        case,
        "volumes = [\"./work:/w\", \"./work/cache:/root/.cache\"]",
        "",
    )?;
    rows.push(Row::new(
        "volumes",
        case,
        "`[\"./work:/w\", \"./work/cache:/root/.cache\"]`: the bottle may replace `cache` by a link to `/` before the mount or the next boot",
        "`check` refuses it (exit 2), naming the file, bottle.volumes[1] and the fix",
        said(&out, "bottle.volumes[1]"),
        refused(&out, &file, "field `bottle.volumes[1]`", "lies inside"),
    ));

    let case = "profile-folder-mounted-read-write";
    let (file, out) = check(ctx, case, "volumes = [\".:/src\"]", "")?;
    let (_, ro) = check(ctx, &format!("{case}-ro"), "volumes = [\".:/src:ro\"]", "")?;
    rows.push(Row::new(
        "volumes",
        case,
        "`.:/src`: the bottle may write the profile file that the next `up` runs",
        "`check` refuses it (exit 2) naming the file, bottle.volumes[0] and the fix (`:ro`); `.:/src:ro` is accepted",
        format!("{}; with :ro: {}", said(&out, "bottle.volumes[0]"), if ro.success() { "accepted".to_string() } else { first_error(&ro) }),
        refused(&out, &file, "field `bottle.volumes[0]`", ":ro") && ro.success(),
    ));

    let case = "credential-file-in-a-read-write-volume";
    let (_, out) = check(
        ctx,
        case,
        "volumes = [\"./work:/w\"]",
        "[[credential]]\nenv = \"API_KEY\"\nfrom = \"file:work/token\"\nhosts = [\"collect.hpe.test\"]\n",
    )?;
    rows.push(Row::new(
        "volumes",
        case,
        "`from = \"file:work/token\"` with `./work` mounted read-write: the bottle may swap the file for a link to `~/.git-credentials` between the yes and the read",
        "`check` refuses it (exit 2) naming the credential, the volume and the fix",
        if out.success() { format!("accepted: {}", out.stdout.trim()) } else { first_error(&out) },
        out.status.code() == Some(2)
            && ["credential API_KEY", "work/token", "bottle.volumes[0]", "fix:"]
                .iter()
                .all(|n| out.stderr.contains(n)),
    ));
    Ok(rows)
}

/// A repository's profile that gives its bottle the repository's own
/// `.git` (whose hooks and `core.fsmonitor` run on the next `git status`
/// there): it exists, so it is the user's, and `up` wants a yes for it.
fn existing_git_folder(ctx: &Ctx) -> Result<Row> {
    let dir = ctx.dir("volume-existing-git")?;
    std::fs::create_dir_all(dir.join(".git/hooks"))?;
    let bottle = "command = [\"/rbm-probe\", \"serve\"]\nvolumes = [\"./.git:/g\"]";
    let file = write_file(&dir, "rbm.toml", &profile("hpa9", 71, bottle))?;
    let state = dir.join("state").to_string_lossy().into_owned();
    let guard = Launched {
        launcher: Launcher::find(ctx.podman.clone())?,
        profile: path(&file),
    };
    let out = ctx.launcher.run_with_env(
        &[("XDG_STATE_HOME", &state)],
        &["up", &path(&file)],
        crate::common::LAUNCH_TIMEOUT,
    )?;
    let started = ctx.podman.is_running("rbm-hpa9-bottle").unwrap_or(false);
    drop(guard);
    let refused =
        out.status.code() == Some(2) && out.stderr.contains("takes what no one said yes to");
    Ok(Row::new(
        "volumes",
        "existing-git-folder-without-a-yes",
        "`volumes = [\"./.git:/g\"]` in a repository's profile, started without a terminal and without --yes",
        "refused (exit 2): a folder that exists is the user's, and wants a yes; nothing starts",
        format!(
            "exit {:?}: {}{}",
            out.status.code(),
            first_error(&out),
            if started { "; the bottle runs with .git" } else { "" }
        ),
        refused && !started,
    ))
}
