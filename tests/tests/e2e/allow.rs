//! `rbm-launch suggest` and `allow` on a running pair: the names the
//! bottle was refused come back as lines for `uplink.domains`, and
//! `allow` writes one into the profile and reloads the sentry, so that it
//! resolves at once, without restarting the bottle.
//!
//! Network safety: as the rest of e2e.rs, only the test's own worlds
//! (10.251.11.0/24).

use super::*;

const SUGGEST: Spec = Spec::new("e2esuggest", 11);

/// The lines of `suggest`'s output that are no comment: the proposals.
fn proposals(stdout: &str) -> Vec<&str> {
    stdout.lines().filter(|l| !l.starts_with('#')).collect()
}

#[test]
fn suggest_proposes_the_refused_names_and_allow_opens_one_at_once() -> Result<()> {
    let Some(lab) = Lab::start(SUGGEST, &[API_HOST, OTHER_HOST])? else {
        return Ok(());
    };
    let other = SUGGEST.world(OTHER_HOST);
    let profile = lab.launched.profile.clone();
    // What the bottle is refused: a name it asks the sentry for (twice),
    // a name it sends in TLS to the allowed name's address (three times:
    // the name check, on port 443), a Host no DNS name has (`*` would be
    // a wildcard once pasted), and an address it never resolved.
    lab.refused(OTHER_NAME)?;
    lab.refused(OTHER_NAME)?;
    let connect_to = format!("{FRONTED_NAME}:443:{API_NAME}:443");
    for _ in 0..3 {
        let fronted = lab.curl(&[
            "-k",
            "--connect-to",
            &connect_to,
            &format!("https://{FRONTED_NAME}/"),
        ])?;
        ensure!(!fronted.success(), "{FRONTED_NAME} went through");
    }
    let hostile = lab.curl(&["-H", "Host: a*b.e2e.test", &format!("http://{API_NAME}/")])?;
    ensure!(!hostile.success(), "the Host a*b.e2e.test went through");
    lab.blocked(&[("tcp", other)], SHUT_MS)?;

    let out = lab.launch("suggest", &[], CMD_TIMEOUT)?.check()?;
    eprintln!("{}", out.stdout);
    assert_eq!(
        proposals(&out.stdout),
        [
            "  \"fronted.e2e.test:443\",  # refused 3 times (tcp 443)",
            "  \"other.e2e.test\",        # refused by DNS; no port seen, so all ports (add :443 to narrow it)",
        ],
        "{}",
        out.stdout
    );
    let command =
        format!("# Allow them all: rbm-launch allow {profile} {FRONTED_NAME}:443 {OTHER_NAME}");
    assert!(out.stdout.contains(&command), "{}", out.stdout);
    // The address and the Host are counted, never shown.
    assert!(
        out.stdout.contains("by address only")
            && out.stdout.contains("1 name that is not a DNS name")
            && !out.stdout.contains("a*b"),
        "{}",
        out.stdout
    );

    // `allow` as the user who runs rbm-launch (rootless: not root, who
    // wrote the profile here); the bottle is not restarted.
    set_mode(&profile, 0o666)?;
    let bottle = identity(&lab.podman, &SUGGEST.name("bottle"))?;
    let out = lab
        .launch("allow", &[OTHER_NAME, API_NAME], CMD_TIMEOUT)?
        .check()?;
    eprintln!("{}", out.stdout);
    assert!(
        out.stdout.contains(&format!(
            "rbm: {API_NAME} is in uplink.domains already; skipped"
        )) && out.stdout.contains(&format!("rbm: added \"{OTHER_NAME}\""))
            && out
                .stdout
                .contains(&format!("reloaded: added {OTHER_NAME}")),
        "{}",
        out.stdout
    );
    lab.resolves(OTHER_NAME, SUGGEST.uplink(OTHER_HOST))?;
    lab.reaches(other)?;
    assert_eq!(identity(&lab.podman, &SUGGEST.name("bottle"))?, bottle);
    // The file: the line added, nothing else changed.
    let was = format!("domains = [\"{API_NAME}\"]");
    let now = format!("domains = [\"{API_NAME}\", \"{OTHER_NAME}\"]");
    assert_eq!(
        std::fs::read_to_string(&profile)?,
        SUGGEST.profile().replace(&was, &now)
    );

    // What the profile allows now is no longer proposed; a name that is
    // not one is refused, and nothing written.
    let out = lab.launch("suggest", &[], CMD_TIMEOUT)?.check()?;
    assert_eq!(
        proposals(&out.stdout),
        ["  \"fronted.e2e.test:443\",  # refused 3 times (tcp 443)"],
        "{}",
        out.stdout
    );
    let before = std::fs::read_to_string(&profile)?;
    let refused = lab.launch("allow", &["ok.e2e.test", "bad name.test"], CMD_TIMEOUT)?;
    assert_eq!(refused.status.code(), Some(2), "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("\"bad name.test\" is not a domain rule")
            && refused.stderr.contains("nothing was written"),
        "{}",
        refused.stderr
    );
    assert_eq!(std::fs::read_to_string(&profile)?, before);
    Ok(())
}

fn set_mode(path: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {path}"))
}
