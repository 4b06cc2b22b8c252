//! Hostile-profile cases: root. A bottle started from a shared profile
//! tries to leave something of host root's in its workspace (a setuid-root
//! program any local user could run, a root-owned file) and to keep the
//! capabilities that would let it; checked on the host. One pair (moniker
//! hpb1, subnets 10.250.72.0/24 and 10.251.72.0/24) serves every case; the
//! bottle's shell is the host's static busybox, handed in read-only.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use anyhow::{Context, Result};
use rbm_tests::files::write_file;
use rbm_tests::launcher::{Launched, Launcher};

use crate::common::{self, first_error, Ctx, Row};

const GROUP: &str = "root";
const MONIKER: &str = "hpb1";

/// The capabilities rbm-launch's bottle keeps (launcher/src/podman/args.rs
/// BOTTLE_CAPS): CHOWN 0, DAC_OVERRIDE 1, FOWNER 3, KILL 5, SETGID 6,
/// SETUID 7, NET_BIND_SERVICE 10.
const BOTTLE_CAP_EFF: u64 = 1 | 1 << 1 | 1 << 3 | 1 << 5 | 1 << 6 | 1 << 7 | 1 << 10;

/// The busybox the bottle runs (the test bottle image has none).
const BUSYBOX: &str = "/bin/busybox";

fn profile() -> String {
    common::profile(
        MONIKER,
        72,
        "hostile profile: a bottle that wants host root over its workspace",
        "command = [\"/tools/busybox\", \"sleep\", \"infinity\"]\nvolumes = [\"./tools:/tools:ro\", \"./work:/work\"]",
        common::REACHES_NOTHING,
    )
}

pub fn cases(ctx: &Ctx) -> Result<Vec<Row>> {
    let dir = ctx.dir("root")?;
    let tools = dir.join("tools");
    fs::create_dir(&tools)?;
    fs::copy(BUSYBOX, tools.join("busybox"))
        .with_context(|| format!("{BUSYBOX} (busybox-static) is needed: scripts/deps"))?;
    fs::set_permissions(&tools, fs::Permissions::from_mode(0o755))?;
    let profile = write_file(&dir, "profile.toml", &profile())?;
    let profile = profile.to_string_lossy().into_owned();
    let launched = Launched {
        launcher: Launcher::find(ctx.podman.clone())?,
        profile: profile.clone(),
    };
    let up = ctx.launch(&["up", "--yes", &profile])?;
    if !up.success() {
        let why = format!("rbm-launch up failed: {}", first_error(&up));
        return Ok(every_case(&why));
    }
    let shell = |script: &str| {
        ctx.launch(&[
            "shell",
            &profile,
            "--",
            "/tools/busybox",
            "sh",
            "-c",
            script,
        ])
    };
    let work = dir.join("work");
    let mut rows = Vec::new();

    // 1. A setuid-root program in the workspace.
    let made = shell(
        "/tools/busybox cp /tools/busybox /work/suid && /tools/busybox chown 0:0 /work/suid \
         && /tools/busybox chmod 4755 /work/suid",
    )?;
    let suid = fs::metadata(work.join("suid")).ok();
    let setuid_root = suid
        .as_ref()
        .is_some_and(|m| m.uid() == 0 && m.mode() & 0o4000 != 0);
    rows.push(Row::new(
        GROUP,
        "setuid-root-program-in-workspace",
        &format!(
            "the bottle, as its root, copies a shell into its workspace volume, chowns it 0:0 and \
             sets the setuid bit, for any local user to run as root{}",
            rootless_note(ctx)
        ),
        "no setuid-root file on the host: the file belongs to the user or an unprivileged id",
        describe(&made, suid.as_ref()),
        suid.is_some() && !setuid_root,
    ));

    // 2. A root-owned file.
    let made =
        shell("/tools/busybox touch /work/rootfile && /tools/busybox chown 0:0 /work/rootfile")?;
    let file = fs::metadata(work.join("rootfile")).ok();
    rows.push(Row::new(
        GROUP,
        "root-owned-file-in-workspace",
        &format!(
            "the bottle, as its root, creates a file in its workspace volume and chowns it 0:0{}",
            rootless_note(ctx)
        ),
        "on the host the file belongs to the user or an unprivileged id, never root",
        describe(&made, file.as_ref()),
        file.as_ref().is_some_and(|m| m.uid() != 0 && m.gid() != 0),
    ));

    // 3. The capabilities it keeps.
    let status = shell("/tools/busybox cat /proc/self/status")?;
    let cap_eff = status
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok());
    rows.push(Row::new(
        GROUP,
        "capabilities-beyond-the-listed-ones",
        "the bottle keeps Podman's default capabilities (FSETID, SETFCAP, SETPCAP, SYS_CHROOT ...) \
         and uses them on its files; read from /proc/self/status CapEff in `rbm-launch shell`",
        &format!(
            "CapEff is exactly CHOWN DAC_OVERRIDE FOWNER KILL SETGID SETUID NET_BIND_SERVICE \
             ({BOTTLE_CAP_EFF:#x})"
        ),
        match cap_eff {
            Some(c) => format!("CapEff {c:#x}"),
            None => format!("no CapEff: {}", first_error(&status)),
        },
        cap_eff == Some(BOTTLE_CAP_EFF),
    ));

    // 4. The directory rbm created for ./work.
    let dir_meta = fs::metadata(&work).ok();
    let bottle_root = file.as_ref().map(|m| (m.uid(), m.gid()));
    rows.push(Row::new(
        GROUP,
        "volume-directory-open-to-every-user",
        &format!(
            "the profile names a missing ./work volume, which rbm-launch creates; other local \
             users would reach what the bottle leaves there{}",
            if ctx.rootless {
                " (rootless: the directory was the user's before the fix too, but 0755)"
            } else {
                ""
            }
        ),
        "the directory is 0700 and belongs to the host user the bottle's root maps to \
         (the owner of the file of case root-owned-file-in-workspace)",
        match &dir_meta {
            Some(m) => format!(
                "mode {:o}, owner {}:{}; bottle root is {}",
                m.mode() & 0o7777,
                m.uid(),
                m.gid(),
                bottle_root.map_or("unknown".into(), |(u, g)| format!("{u}:{g}"))
            ),
            None => "no directory".into(),
        },
        dir_meta
            .as_ref()
            .is_some_and(|m| m.mode() & 0o777 == 0o700 && Some((m.uid(), m.gid())) == bottle_root),
    ));
    drop(launched);
    Ok(rows)
}

/// A note for the cases rootless Podman passed before the fix.
fn rootless_note(ctx: &Ctx) -> &'static str {
    if ctx.rootless {
        " (rootless: bottle root was already the user before the fix, so this passed then too)"
    } else {
        ""
    }
}

/// What the bottle's command said and what the host sees of its file.
fn describe(made: &rbm_tests::Output, file: Option<&fs::Metadata>) -> String {
    let said = if made.success() {
        "the bottle's command succeeded".to_string()
    } else {
        format!(
            "the bottle's command failed ({})",
            made.stderr.lines().last().unwrap_or("").trim()
        )
    };
    match file {
        Some(m) => format!(
            "{said}; on the host: owner {}:{}, mode {:o}",
            m.uid(),
            m.gid(),
            m.mode() & 0o7777
        ),
        None => format!("{said}; no file on the host"),
    }
}

/// Every case failed with `why` (the pair did not start).
fn every_case(why: &str) -> Vec<Row> {
    [
        "setuid-root-program-in-workspace",
        "root-owned-file-in-workspace",
        "capabilities-beyond-the-listed-ones",
        "volume-directory-open-to-every-user",
    ]
    .iter()
    .map(|case| {
        Row::new(
            GROUP,
            case,
            "see the other runs",
            "the pair starts",
            why,
            false,
        )
    })
    .collect()
}
