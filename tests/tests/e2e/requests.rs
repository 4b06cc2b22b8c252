//! A profile with request rules and no credential, through Podman: `up`
//! gives the bottle the sentry's CA all the same, the allowed request
//! reaches the world, and a refused one gets the sentry's 403 and never
//! leaves.

use super::*;

const RULED: Spec = Spec {
    requests: true,
    ..Spec::new("e2erules", 12)
};

#[test]
fn a_ruled_host_without_a_credential_is_checked_request_by_request() -> Result<()> {
    let Some(lab) = Lab::start(RULED, &[API_HOST, CRED_HOST])? else {
        return Ok(());
    };
    // The bottle trusts the sentry's CA through the variables `up` set.
    let allowed = format!("https://{CRED_NAME}/e2e/allowed");
    let out = lab.curl(&["-o", "/dev/null", "-w", "%{http_code}", &allowed])?;
    assert_eq!(out.stdout, "200", "{}", out.stderr);
    let refused = format!("https://{CRED_NAME}/elsewhere");
    let out = lab.curl(&["-X", "POST", "--data", "x", &refused])?;
    assert!(
        out.stdout.starts_with("rbm: POST to ")
            && out.stdout.contains("no rule allows POST /elsewhere"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    let got: Vec<String> = lab
        .world(CRED_HOST)
        .https_requests()?
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert_eq!(got, ["/e2e/allowed"]);
    Ok(())
}
