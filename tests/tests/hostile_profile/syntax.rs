//! Hostile-profile cases: syntax. A profile's strings are data: a newline
//! in any of them would add a key to the Quadlet unit `rbm-launch quadlet`
//! writes (the issue's `ExecStartPre=`, run as root at every boot), and a
//! `%h` or `$HOME` would be expanded by systemd, so the unit would run
//! something other than what `up` runs. `check` must refuse the first
//! with the file, the field and the fix; the second must pass through
//! Podman's own generator (`quadlet -dryrun`) literally.
//!
//! Monikers hpa1..hpa4; the networks 10.250.70.0/24 and 10.251.70.0/24
//! (`quadlet` creates none; nothing is sent anywhere).

use std::path::Path;

use anyhow::{Context, Result};
use rbm_tests::files::write_file;
use rbm_tests::podman::BOTTLE_IMAGE;

use crate::common::{self, first_error, Ctx, Row, LAUNCH_TIMEOUT};

/// A profile of moniker `moniker` on 10.250.`net`.0/24 (enclave) and
/// 10.251.`net`.0/24 (uplink) whose bottle runs the test image with
/// `bottle`'s lines besides; reaching nothing.
pub fn profile(moniker: &str, net: u8, bottle: &str) -> String {
    common::profile(
        moniker,
        net,
        "rbm hostile profile test",
        bottle,
        common::REACHES_NOTHING,
    )
}

const SERVE: &str = r#"command = ["/rbm-probe", "serve"]"#;

/// The issue's workdir: a unit's worth of keys after a newline.
const INJECTED: &str =
    r#"/tmp\n[Service]\nExecStartPre=/bin/sh -c \"id > /tmp/rbm-pwned\"\n[Container]"#;

pub fn cases(ctx: &Ctx) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let injections = [
        (
            "workdir-injects-a-service-key",
            "bottle.workdir",
            format!("{SERVE}\nworkdir = \"{INJECTED}\""),
        ),
        (
            "env-value-injects-a-service-key",
            "bottle.env.K",
            format!("{SERVE}\nenv = {{ K = \"v\\nExecStartPre=/bin/id\" }}"),
        ),
        (
            "command-word-injects-a-service-key",
            "bottle.command[1]",
            r#"command = ["/rbm-probe", "serve\nExecStartPre=/bin/id"]"#.to_string(),
        ),
        (
            "volume-injects-a-service-key",
            "bottle.volumes[0]",
            format!("{SERVE}\nvolumes = [\"./work:/workspace:ro\\nExecStartPre=/bin/id\"]"),
        ),
    ];
    for (case, field, bottle) in injections {
        let dir = ctx.dir(case)?;
        let file = write_file(&dir, "rbm.toml", &profile("hpa1", 70, &bottle))?;
        let out = ctx.launch(&["check", &path(&file)])?;
        let refused = out.status.code() == Some(2);
        let named = out.stderr.contains(&path(&file))
            && out.stderr.contains(&format!("field `{field}`"))
            && out.stderr.contains("fix:");
        let observed = said(&out, field);
        rows.push(Row::new(
            "syntax",
            case,
            &format!("`{field}` holds a newline and an `ExecStartPre=` line for the unit `quadlet` writes"),
            "`check` refuses it, naming the file, the field and the fix",
            observed,
            refused && named,
        ));
    }
    rows.push(image_option(ctx)?);
    rows.push(quadlet_injection(ctx)?);
    rows.push(quadlet_literal(ctx)?);
    Ok(rows)
}

/// An image named like one of `podman run`'s own options.
fn image_option(ctx: &Ctx) -> Result<Row> {
    let case = "image-is-a-podman-option";
    let dir = ctx.dir(case)?;
    let text = profile("hpa1", 70, SERVE).replace(
        &format!("image = \"{BOTTLE_IMAGE}\""),
        "image = \"--privileged\"",
    );
    let file = write_file(&dir, "rbm.toml", &text)?;
    let out = ctx.launch(&["check", &path(&file)])?;
    let named = out.stderr.contains("field `bottle.image`") && out.stderr.contains("fix:");
    Ok(Row::new(
        "syntax",
        case,
        "`bottle.image = \"--privileged\"`: the image word of `podman run` read as its option",
        "`check` refuses it, naming the field and the fix",
        said(&out, "bottle.image"),
        out.status.code() == Some(2) && named,
    ))
}

pub fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// What rbm-launch said of `field` (its problem line), else its first
/// error line; what it printed if it succeeded.
pub fn said(out: &rbm_tests::Output, field: &str) -> String {
    if out.success() {
        return format!("accepted: {}", out.stdout.trim());
    }
    let named = format!("field `{field}`");
    match out.stderr.lines().find(|l| l.contains(&named)) {
        Some(line) => line.trim().trim_start_matches("- ").to_string(),
        None => first_error(out),
    }
}

/// `rbm-launch quadlet PROFILE --dir DIR/units`, then Podman's generator
/// on those units; the generator's output if both ran.
fn quadlet(ctx: &Ctx, dir: &Path, text: &str) -> Result<(rbm_tests::Output, Option<String>)> {
    let file = write_file(dir, "rbm.toml", text)?;
    let units = path(&dir.join("units"));
    let out = ctx.launch(&["quadlet", &path(&file), "--dir", &units])?;
    if !out.success() {
        return Ok((out, None));
    }
    let dirs = format!("QUADLET_UNIT_DIRS={units}");
    let mut args = vec!["env", &dirs, "/usr/libexec/podman/quadlet", "-dryrun"];
    if ctx.rootless {
        args.push("-user");
    }
    let dryrun = ctx.launcher.enter_run(&args, LAUNCH_TIMEOUT)?.check()?;
    Ok((out, Some(dryrun.stdout)))
}

/// The text of `service` in the generator's dry-run output.
fn service<'a>(dryrun: &'a str, service: &str) -> Result<&'a str> {
    let header = format!("---{service}.service---");
    let start = dryrun
        .find(&header)
        .with_context(|| format!("no {header} in {dryrun}"))?
        + header.len();
    let rest = &dryrun[start..];
    Ok(&rest[..rest.find("\n---").unwrap_or(rest.len())])
}

/// The keys of the `[Service]` section, in order.
fn service_keys(text: &str) -> Vec<String> {
    let mut in_service = false;
    let mut keys = Vec::new();
    for line in text.lines() {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service {
            if let Some((key, _)) = line.split_once('=') {
                keys.push(key.to_string());
            }
        }
    }
    keys
}

/// The issue's attack end to end: the workdir through `quadlet` and the
/// generator. Refused before a unit is written, or at least no
/// `ExecStartPre=` in what systemd would run.
fn quadlet_injection(ctx: &Ctx) -> Result<Row> {
    let case = "quadlet-workdir-injects-exec-start-pre";
    let dir = ctx.dir(case)?;
    let text = profile("hpa2", 70, &format!("{SERVE}\nworkdir = \"{INJECTED}\""));
    let (out, dryrun) = quadlet(ctx, &dir, &text)?;
    let written = dir.join("units").exists();
    let (observed, pass) = match &dryrun {
        Some(d) => {
            let bottle = service(d, "rbm-hpa2-bottle")?;
            let injected = bottle.lines().find(|l| l.starts_with("ExecStartPre="));
            match injected {
                Some(line) => (format!("the generated service runs `{line}`"), false),
                None => (
                    "quadlet wrote units; no ExecStartPre= in the service".into(),
                    false,
                ),
            }
        }
        None => (
            said(&out, "bottle.workdir"),
            !written
                && out.status.code() == Some(2)
                && out.stderr.contains("field `bottle.workdir`")
                && out.stderr.contains("fix:"),
        ),
    };
    Ok(Row::new(
        "syntax",
        case,
        "the issue's workdir (`/tmp\\n[Service]\\nExecStartPre=/bin/sh -c \"id > /tmp/rbm-pwned\"`) through `rbm-launch quadlet` and Podman's generator",
        "`quadlet` refuses it (file, field, fix) and writes no unit",
        observed,
        pass,
    ))
}

/// Values with `%h`, `${HOME}`, `$HOME`, quotes and backslashes (no
/// control characters) through `quadlet` and the generator: the service
/// has exactly the keys of the same profile with plain values, and its
/// `ExecStart=` carries every `%` and `$` doubled, which systemd reads as
/// one literal `%` and `$`.
fn quadlet_literal(ctx: &Ctx) -> Result<Row> {
    let case = "quadlet-values-expand-in-systemd";
    let hostile = r#"command = ["/rbm-probe", "serve", "%h ${HOME} $HOME \"q\" 'q' \\ ;"]
env = { K = "%h ${HOME} $HOME \"q\" 'q' \\ ;" }
volumes = ["./w%h$HOME:/v%h/${HOME}/$HOME"]
workdir = "/w/%h/${HOME}/$HOME/\"q\"/x"
"#;
    let plain = r#"command = ["/rbm-probe", "serve", "x"]
env = { K = "v" }
volumes = ["./w:/v"]
workdir = "/w""#;
    let dir = ctx.dir(case)?;
    let (out, dryrun) = quadlet(ctx, &dir, &profile("hpa3", 70, hostile))?;
    let plain_dir = ctx.dir(&format!("{case}-plain"))?;
    let (plain_out, plain_dryrun) = quadlet(ctx, &plain_dir, &profile("hpa3", 70, plain))?;
    let plain_dryrun = plain_dryrun.with_context(|| {
        format!(
            "the plain profile did not pass `quadlet`: {}",
            plain_out.stderr
        )
    })?;
    let Some(dryrun) = dryrun else {
        return Ok(Row::new(
            "syntax",
            case,
            "values with `%h`, `${HOME}`, `$HOME`, quotes and a backslash in the command, an env value, a volume and the workdir",
            "the generated service has the keys of a plain profile only, and ExecStart= holds each value literally (`%%h`, `$${HOME}`, `$$HOME`)",
            first_error(&out),
            false,
        ));
    };
    let got = service(&dryrun, "rbm-hpa3-bottle")?;
    let want = service(&plain_dryrun, "rbm-hpa3-bottle")?;
    let same_keys = service_keys(got) == service_keys(want);
    let exec = got
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .unwrap_or("")
        .to_string();
    // Quadlet's own specifiers (%t, %N) aside, every % and $ is doubled.
    let ours = exec.replace("%t/%N.cid", "");
    let lone = lone_runs(&ours, '%') + lone_runs(&ours, '$');
    let escaped = ["%%h", "$${HOME}", "$$HOME"]
        .iter()
        .all(|w| exec.contains(w));
    let observed = format!(
        "keys {} those of a plain profile; {lone} lone % or $ in `{exec}`",
        if same_keys { "are" } else { "differ from" }
    );
    Ok(Row::new(
        "syntax",
        case,
        "values with `%h`, `${HOME}`, `$HOME`, quotes and a backslash in the command, an env value, a volume and the workdir",
        "the generated service has the keys of a plain profile only, and ExecStart= holds each value literally (`%%h`, `$${HOME}`, `$$HOME`)",
        observed,
        same_keys && lone == 0 && escaped,
    ))
}

/// How many maximal runs of `c` in `text` are of odd length: systemd
/// expands the last of such a run (`%h`, `$HOME`).
fn lone_runs(text: &str, c: char) -> usize {
    let mut odd = 0;
    let mut run = 0;
    for x in text.chars().chain(std::iter::once('\0')) {
        if x == c {
            run += 1;
        } else {
            odd += run % 2;
            run = 0;
        }
    }
    odd
}
