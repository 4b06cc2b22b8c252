//! Credentials the bottle never holds. The bottle has a placeholder in an
//! environment variable; the sentry has the real value (a Podman secret)
//! and puts it into the requests the bottle sends to that credential's
//! hosts, and only those: their TLS is terminated in the sentry with a
//! certificate of a CA made for the profile (`ca`, by `proxy`), each
//! request is checked (`head`) and sent on (`exchange`) with its head rewritten
//! (`swap`) over the sentry's own verified TLS connection to the real host,
//! and the answer comes back redacted (`redact`). All other TLS stays end
//! to end.

pub mod ca;
mod exchange;
mod head;
pub mod proxy;
mod redact;
pub mod swap;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::profile::Profile;
use swap::{Places, Secret};

/// What the launcher tells the sentry about each credential, as JSON in
/// this environment variable: the placeholder the bottle got, and the
/// extra CA for the hosts' real certificates (PEM). Nothing secret.
pub const ENV: &str = "RBM_CREDENTIALS";
/// For hosts with request rules, the extra CAs their profile gave for
/// their real certificates: JSON, host name to PEM (the launcher reads the
/// files). Nothing secret.
pub const UPSTREAM_CAS_ENV: &str = "RBM_UPSTREAM_CAS";

/// `UPSTREAM_CAS_ENV`'s value (none: no extra CA).
pub fn upstream_cas(
    passed: Option<&str>,
) -> anyhow::Result<std::collections::HashMap<String, String>> {
    match passed {
        None => Ok(Default::default()),
        Some(json) => {
            serde_json::from_str(json).with_context(|| format!("{UPSTREAM_CAS_ENV} is not valid"))
        }
    }
}

/// Where the real values are: one file per credential, `rbm-cred-ENV`
/// (Podman mounts secrets there).
pub const SECRETS_DIR: &str = "/run/secrets";
/// The TCP port of the proxy on the sentry's enclave address; the bottle's
/// connections to credential hosts are redirected there.
pub const PROXY_PORT: u16 = 15443;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Passed {
    pub env: String,
    pub placeholder: String,
    #[serde(default)]
    pub upstream_ca: Option<String>,
}

/// One credential, ready for the proxy.
#[derive(Debug, Clone)]
pub struct Credential {
    /// With where in a request the real value goes (`swap::Places`).
    pub secret: Secret,
    pub hosts: Vec<String>,
    /// Extra trust anchors for the hosts' real certificates (PEM).
    pub upstream_ca: Option<String>,
}

/// The file a credential's real value is read from.
pub fn secret_file(dir: &Path, env: &str) -> PathBuf {
    dir.join(format!("rbm-cred-{env}"))
}

/// The profile's credentials with their placeholders (`passed`, the JSON
/// of `ENV`) and real values (files in `secrets_dir`). Any credential that
/// cannot be loaded is an error: the agent does not start without it.
pub fn load(
    profile: &Profile,
    passed: Option<&str>,
    secrets_dir: &Path,
) -> anyhow::Result<Vec<Credential>> {
    if profile.credentials.is_empty() {
        return Ok(vec![]);
    }
    let passed: Vec<Passed> = match passed {
        Some(json) => serde_json::from_str(json).with_context(|| format!("{ENV} is not valid"))?,
        None => bail!(
            "the profile has credentials but {ENV} is not set: start the sentry with rbm-launch, which gives the bottle placeholders and the sentry the real values"
        ),
    };
    let mut out = Vec::new();
    for c in &profile.credentials {
        let Some(p) = passed.iter().find(|p| p.env == c.env) else {
            bail!("credential {}: {ENV} names no placeholder for it", c.env);
        };
        let file = secret_file(secrets_dir, &c.env);
        let mut real = std::fs::read(&file).with_context(|| {
            format!(
                "credential {}: cannot read its value at {} (rbm-launch passes it as a Podman secret)",
                c.env,
                file.display()
            )
        })?;
        if real.last() == Some(&b'\n') {
            real.pop();
        }
        if real.is_empty() {
            bail!(
                "credential {}: its value at {} is empty",
                c.env,
                file.display()
            );
        }
        let placeholder = p.placeholder.as_bytes().to_vec();
        if placeholder.len() < 16 || swap::contains(&real, &placeholder) {
            bail!(
                "credential {}: the placeholder must be at least 16 bytes and not part of the value",
                c.env
            );
        }
        out.push(Credential {
            secret: Secret {
                env: c.env.clone(),
                placeholder,
                real,
                places: Places {
                    headers: c.headers.clone(),
                    query: c.query.clone(),
                },
            },
            hosts: c.hosts.clone(),
            upstream_ca: p.upstream_ca.clone(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod load_tests {
    use super::*;

    #[test]
    fn each_credential_goes_where_its_profile_says_and_authorization_only_elsewhere_by_default() {
        let text = "moniker = \"tt\"\n[bottle]\nimage = \"i\"\n[enclave]\nsubnet = \"10.242.0.0/24\"\nsentry_ip = \"10.242.0.2\"\nbottle_ip = \"10.242.0.3\"\n[uplink]\ndns = \"allowlist\"\naccess = \"allowlist\"\ndomains = [\"a.test\", \"g.test\"]\n[[credential]]\nenv = \"A\"\nfrom = \"env:X\"\nhosts = [\"a.test\"]\n[[credential]]\nenv = \"G\"\nfrom = \"env:Y\"\nhosts = [\"g.test\"]\nheaders = [\"X-Custom-Key\"]\nquery = \"key\"\n";
        let profile = Profile::parse(text, Path::new("p.toml")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(secret_file(dir.path(), "A"), "sk-a\n").unwrap();
        std::fs::write(secret_file(dir.path(), "G"), "sk-g").unwrap();
        let passed = r#"[{"env":"A","placeholder":"rbm-aaaaaaaaaaaaaaaa"},{"env":"G","placeholder":"rbm-gggggggggggggggg"}]"#;
        let creds = load(&profile, Some(passed), dir.path()).unwrap();
        let places: Vec<&Places> = creds.iter().map(|c| &c.secret.places).collect();
        assert_eq!(places[0].headers, ["x-api-key", "x-goog-api-key"]);
        assert_eq!(places[0].query, None);
        assert_eq!(places[1].headers, ["x-custom-key"]);
        assert_eq!(places[1].query.as_deref(), Some("key"));
        assert!(places[1].header("authorization") && !places[1].header("x-api-key"));
    }
}
