//! Hostile-profile cases: credentials. A shared profile names a secret of
//! the user's (an environment variable, a file through a symlink or `..`,
//! another profile's Podman secret) and a host of its own to send it to.
//! rbm-launch must say what it takes and want a yes for it first, remember
//! the yes only for the profile as it was, and keep files outside the
//! profile's folder and other profiles' secrets out of reach.
//!
//! Monikers hpd1..hpd9, networks 10.250.76.0/24 and 10.251.76.0/24 (the
//! profiles' own, created by rbm-launch; nothing is sent anywhere). The
//! trust store is each case's own (`XDG_STATE_HOME` in its folder).

use std::path::Path;

use anyhow::Result;
use rbm_tests::files::write_file;
use rbm_tests::podman::BOTTLE_IMAGE;
use rbm_tests::Output;

use crate::common::{self, first_error, Ctx, Row, LAUNCH_TIMEOUT};

const GROUP: &str = "credentials";
/// The variable a hostile profile reads, and its value for the test.
const TOKEN_VAR: &str = "HPD_TOKEN";
const TOKEN: &str = "hpd-real-token-0001";
/// The host the profile sends it to (never resolved: nothing runs there).
const HOST: &str = "collect.hpd.test";
/// Another profile's secret, as rbm names them.
const OTHER_SECRET: &str = "rbm-hpd9-cred-HPD_TOKEN";

pub fn cases(ctx: &Ctx) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    rows.extend(env_credential(ctx)?);
    rows.push(file_through_a_symlink(ctx)?);
    rows.push(file_up_the_tree(ctx)?);
    rows.push(another_profiles_secret(ctx)?);
    rows.push(secret_by_id_prefix(ctx)?);
    Ok(rows)
}

/// A profile of moniker `moniker` whose credential API_KEY comes `from`
/// and goes to `host`.
fn profile(moniker: &str, from: &str, host: &str) -> String {
    format!(
        r#"moniker = "{moniker}"
description = "rbm hostile profile: credentials"

[bottle]
image = "{BOTTLE_IMAGE}"

[enclave]
subnet = "10.250.76.0/24"
sentry_ip = "10.250.76.2"
bottle_ip = "10.250.76.3"

[uplink]
dns = "allowlist"
access = "allowlist"
domains = ["{host}"]
upstream_dns = ["10.251.76.53"]
subnet = "10.251.76.0/24"

[[credential]]
env = "API_KEY"
from = "{from}"
hosts = ["{host}"]
"#
    )
}

/// Runs rbm-launch with the token in its environment and the case's own
/// trust store in `dir`, without a terminal (stdin is /dev/null).
fn launch(ctx: &Ctx, dir: &Path, args: &[&str]) -> Result<Output> {
    let state = dir.join("state");
    let state = state.to_string_lossy();
    ctx.launcher.run_with_env(
        &[(TOKEN_VAR, TOKEN), ("XDG_STATE_HOME", &state)],
        args,
        LAUNCH_TIMEOUT,
    )
}

fn clean(ctx: &Ctx, m: &str) -> Result<()> {
    common::clean(&ctx.podman, m)
}

/// `clean` now and on drop, even after a failed case.
struct Clean<'a> {
    ctx: &'a Ctx,
    moniker: &'a str,
}

impl<'a> Clean<'a> {
    fn new(ctx: &'a Ctx, moniker: &'a str) -> Result<Clean<'a>> {
        clean(ctx, moniker)?;
        Ok(Clean { ctx, moniker })
    }
}

impl Drop for Clean<'_> {
    fn drop(&mut self) {
        if let Err(e) = clean(self.ctx, self.moniker) {
            eprintln!("cleanup of {}: {e:#}", self.moniker);
        }
    }
}

fn secrets(ctx: &Ctx, moniker: &str) -> Result<Vec<String>> {
    let out = ctx
        .podman
        .run_ok(&["secret", "ls", "--format", "{{.Name}}"])?;
    let prefix = format!("rbm-{moniker}-");
    Ok(out
        .stdout
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(String::from)
        .collect())
}

/// What of `moniker` exists: containers, networks, secrets (names).
fn left(ctx: &Ctx, moniker: &str) -> Result<Vec<String>> {
    let prefix = format!("rbm-{moniker}-");
    let mut names: Vec<String> = ctx
        .podman
        .run_ok(&["ps", "--all", "--format", "{{.Names}}"])?
        .stdout
        .lines()
        .map(String::from)
        .chain(ctx.podman.network_names()?)
        .filter(|n| n.starts_with(&prefix))
        .collect();
    names.extend(secrets(ctx, moniker)?);
    names.sort();
    Ok(names)
}

/// Whether the pair of `moniker` runs.
fn running(ctx: &Ctx, moniker: &str) -> Result<bool> {
    Ok(ctx.podman.is_running(&format!("rbm-{moniker}-sentry"))?
        && ctx.podman.is_running(&format!("rbm-{moniker}-bottle"))?)
}

/// What a refused command showed, for the table: its exit code, first
/// error line (and the first line it lists) and what was left.
fn refused(out: &Output, left: &[String]) -> String {
    format!(
        "exit {:?}: {}; left: {}",
        out.status.code(),
        error_lines(out),
        if left.is_empty() {
            "nothing".to_string()
        } else {
            left.join(", ")
        }
    )
}

/// The first error line, with the first indented line after it (what a
/// list of problems or of what a profile takes starts with).
fn error_lines(out: &Output) -> String {
    let first = first_error(out);
    let listed = out
        .stderr
        .lines()
        .skip_while(|l| !l.starts_with("error:"))
        .find(|l| l.starts_with("  "))
        .map(str::trim);
    match listed {
        Some(l) => format!("{first} {l}"),
        None => first,
    }
}

/// Whether `out` is a refusal (exit 2) whose message holds every needle,
/// with nothing of the moniker left.
fn is_refusal(out: &Output, needles: &[&str], left: &[String]) -> bool {
    out.status.code() == Some(2)
        && left.is_empty()
        && needles.iter().all(|n| out.stderr.contains(n))
}

/// The statement line `up` prints for the credential.
fn statement(from: &str, host: &str) -> String {
    format!("credential  API_KEY: from {from}, sent only to {host}")
}

/// `env:` without a yes, with `--yes`, remembered, and changed.
fn env_credential(ctx: &Ctx) -> Result<Vec<Row>> {
    let m = "hpd1";
    let _clean = Clean::new(ctx, m)?;
    let dir = ctx.dir("cred-env")?;
    let from = format!("env:{TOKEN_VAR}");
    let text = profile(m, &from, HOST);
    let file = write_file(&dir, "profile.toml", &text)?;
    let file = file.to_string_lossy();
    let mut rows = Vec::new();

    let out = launch(ctx, &dir, &["up", &file])?;
    let gone = left(ctx, m)?;
    rows.push(Row::new(
        GROUP,
        "env-credential-without-a-yes",
        &format!("reads the user's {TOKEN_VAR} (from = \"{from}\") and sends it to {HOST}; `up` without a terminal and without --yes"),
        "refused (exit 2) before anything starts; the message names the variable and the host, and the fix (--yes)",
        refused(&out, &gone),
        is_refusal(&out, &[&statement(&from, HOST), "--yes"], &gone),
    ));
    clean(ctx, m)?;

    let out = launch(ctx, &dir, &["up", "--yes", &file])?;
    let said = statement(&from, HOST);
    let up = out.success() && running(ctx, m)?;
    rows.push(Row::new(
        GROUP,
        "env-credential-with-yes",
        "the same profile, `up --yes` (a script that read what it takes)",
        "starts; what it prints before starting names the variable and the host",
        format!(
            "exit {:?}, pair running: {up}, statement: {}",
            out.status.code(),
            if out.stdout.contains(&said) {
                "named"
            } else {
                "missing"
            }
        ),
        up && out.stdout.contains(&said),
    ));

    let out = launch(ctx, &dir, &["up", &file])?;
    let store = std::fs::read_to_string(dir.join("state/rbm/trusted")).unwrap_or_default();
    let up = out.success() && running(ctx, m)?;
    let remembered = out.stderr.contains("said yes to this profile before");
    rows.push(Row::new(
        GROUP,
        "env-credential-remembered",
        "the same profile again, `up` without --yes and without a terminal",
        "starts: the yes is remembered (one hash in $XDG_STATE_HOME/rbm/trusted) and said so",
        format!(
            "exit {:?}, pair running: {up}, remembered said: {remembered}, store: {} line(s)",
            out.status.code(),
            store.lines().count()
        ),
        up && remembered && store.lines().count() == 1 && out.stdout.contains(&said),
    ));
    clean(ctx, m)?;

    // The profile's author changes it after the yes: the token now goes
    // to another host of theirs.
    let other = "exfil.hpd.test";
    write_file(&dir, "profile.toml", &profile(m, &from, other))?;
    let out = launch(ctx, &dir, &["up", &file])?;
    let gone = left(ctx, m)?;
    rows.push(Row::new(
        GROUP,
        "changed-profile-asks-again",
        &format!("after that yes, the profile changes hosts to {other}; `up` without --yes"),
        "refused again (exit 2), naming the new host; nothing starts",
        refused(&out, &gone),
        is_refusal(&out, &[&statement(&from, other), "--yes"], &gone),
    ));
    Ok(rows)
}

/// `file:key` where `key` is a symlink to a file outside the folder.
fn file_through_a_symlink(ctx: &Ctx) -> Result<Row> {
    let m = "hpd2";
    let _clean = Clean::new(ctx, m)?;
    let dir = ctx.dir("cred-symlink")?;
    let elsewhere = ctx.dir("cred-symlink-elsewhere")?;
    let secret = write_file(&elsewhere, "id_token", &format!("{TOKEN}\n"))?;
    std::os::unix::fs::symlink(&secret, dir.join("key"))?;
    let file = write_file(&dir, "profile.toml", &profile(m, "file:key", HOST))?;
    let out = launch(ctx, &dir, &["up", &file.to_string_lossy()])?;
    let gone = left(ctx, m)?;
    Ok(Row::new(
        GROUP,
        "credential-file-through-a-symlink",
        &format!(
            "from = \"file:key\", key a symlink in the profile's folder to {}",
            secret.display()
        ),
        "refused (exit 2): the file resolves outside the profile's folder; the fix names outside = true; nothing starts, nothing read",
        refused(&out, &gone),
        is_refusal(
            &out,
            &["outside the profile's folder", "outside = true"],
            &gone,
        ),
    ))
}

/// `file:../secret` without `outside = true`: `check` refuses it.
fn file_up_the_tree(ctx: &Ctx) -> Result<Row> {
    let dir = ctx.dir("cred-dotdot")?;
    let file = write_file(
        &dir,
        "profile.toml",
        &profile("hpd3", "file:../secret", HOST),
    )?;
    let out = ctx.launch(&["check", &file.to_string_lossy()])?;
    Ok(Row::new(
        GROUP,
        "credential-file-up-the-tree",
        "from = \"file:../secret\" without outside = true; `rbm-launch check`",
        "refused (exit 2) naming the file, credential[0].from and the fix (outside = true)",
        format!("exit {:?}: {}", out.status.code(), error_lines(&out)),
        out.status.code() == Some(2)
            && ["profile.toml", "credential[0].from", "outside = true"]
                .iter()
                .all(|n| out.stderr.contains(n)),
    ))
}

/// `podman-secret:` of another profile (moniker hpd9), which exists.
fn another_profiles_secret(ctx: &Ctx) -> Result<Row> {
    let m = "hpd4";
    let _clean = Clean::new(ctx, m)?;
    let _other = Clean::new(ctx, "hpd9")?;
    let dir = ctx.dir("cred-other-secret")?;
    let value = write_file(&dir, "value", TOKEN)?;
    ctx.podman
        .run_ok(&["secret", "create", OTHER_SECRET, &value.to_string_lossy()])?;
    let from = format!("podman-secret:{OTHER_SECRET}");
    let file = write_file(&dir, "profile.toml", &profile(m, &from, HOST))?;
    let out = launch(ctx, &dir, &["up", &file.to_string_lossy()])?;
    let gone = left(ctx, m)?;
    Ok(Row::new(
        GROUP,
        "another-profiles-podman-secret",
        &format!("from = \"{from}\" (the secret rbm made for profile hpd9, which exists)"),
        "refused (exit 2) naming the secret and the fix; nothing starts",
        refused(&out, &gone),
        is_refusal(
            &out,
            &["credential[0].from", OTHER_SECRET, "another profile"],
            &gone,
        ),
    ))
}

/// `podman-secret:` with a few hex digits: Podman takes a prefix of a
/// secret's ID as well as its name, so `a` may be another profile's key.
fn secret_by_id_prefix(ctx: &Ctx) -> Result<Row> {
    let m = "hpd5";
    let _clean = Clean::new(ctx, m)?;
    let _other = Clean::new(ctx, "hpd8")?;
    let dir = ctx.dir("cred-id-prefix")?;
    let value = write_file(&dir, "value", TOKEN)?;
    let other = "rbm-hpd8-cred-HPD_TOKEN";
    let id = ctx
        .podman
        .run_ok(&["secret", "create", other, &value.to_string_lossy()])?
        .stdout
        .trim()
        .to_string();
    let prefix = &id[..6.min(id.len())];
    let from = format!("podman-secret:{prefix}");
    let file = write_file(&dir, "profile.toml", &profile(m, &from, HOST))?;
    let out = launch(ctx, &dir, &["up", "--yes", &file.to_string_lossy()])?;
    let gone = left(ctx, m)?;
    Ok(Row::new(
        GROUP,
        "podman-secret-by-id-prefix",
        &format!("from = \"{from}\": the first digits of the ID of {other}, the secret rbm made for profile hpd8"),
        "refused (exit 2): no secret is named exactly that; nothing starts",
        refused(&out, &gone),
        is_refusal(&out, &["no Podman secret is named exactly", prefix], &gone),
    ))
}
