//! Credentials at `up`: the real values go to Podman secrets that only the
//! sentry mounts; the bottle gets a random placeholder in each variable and
//! trusts the profile's credential CA (made in the sentry, fetched from it)
//! through a mounted bundle and the usual variables. Nothing of a real
//! value is in the bottle's environment, files, image or `podman inspect`;
//! no placeholder is in an argument vector (other local users read those
//! in /proc): podman gets `-e NAME` and the value in its own environment.
//! The secrets rbm makes carry its labels, and `stop` removes only those.

use std::path::Path;

use base64::Engine;
use rbm_profile::{Names, Profile, Source};

use crate::error::Error;
use crate::podman::{args, Podman};
use crate::takes;

/// Where the bottle finds the CA files.
pub const BUNDLE_PATH: &str = "/etc/rbm/ca-bundle.pem";
pub const CA_PATH: &str = "/etc/rbm/rbm-ca.pem";

/// One credential as `up` sets it up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub env: String,
    /// The Podman secret holding the real value.
    pub secret: String,
    /// Whether rbm made that secret (and removes it at `stop`).
    pub ours: bool,
    pub placeholder: String,
    /// The extra CA (PEM) the sentry trusts for the hosts' certificates.
    pub upstream_ca: Option<String>,
}

/// The name prefix of every secret rbm makes for a profile.
pub fn secret_prefix(names: &Names) -> String {
    format!("{}-", names.sentry.trim_end_matches("-sentry"))
}

pub fn cred_secret(names: &Names, env: &str) -> String {
    format!("{}cred-{env}", secret_prefix(names))
}

pub fn ca_secret(names: &Names) -> String {
    format!("{}ca", secret_prefix(names))
}

pub fn bundle_secret(names: &Names) -> String {
    format!("{}ca-bundle", secret_prefix(names))
}

/// A placeholder: `rbm-` and 32 random hex digits. Worthless outside the
/// sentry, unique enough that the sentry never mistakes text for it.
pub fn placeholder() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| Error::Credential {
        env: String::new(),
        message: format!("no randomness for a placeholder: {e}"),
        fix: "run rbm-launch again".into(),
    })?;
    Ok(format!(
        "rbm-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// Whether podman itself (or the dynamic loader, or Go's runtime) reads
/// the variable `name`. The bottle's placeholders reach podman in its own
/// environment, under the credential's name, so a profile must not name
/// one of these: it would change what podman does (CONTAINER_HOST,
/// XDG_RUNTIME_DIR, LD_PRELOAD, PATH, ...).
pub fn podman_reads(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "TMPDIR",
        "TZ",
        "LANG",
        "TERM",
        "NOTIFY_SOCKET",
        "SSH_AUTH_SOCK",
        "REGISTRY_AUTH_FILE",
        "GODEBUG",
        "GOGC",
        "GOMAXPROCS",
        "GOMEMLIMIT",
        "GOTRACEBACK",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "ALL_PROXY",
        "FTP_PROXY",
    ];
    const PREFIXES: &[&str] = &[
        "CONTAINER",
        "_CONTAINERS",
        "PODMAN",
        "BUILDAH",
        "STORAGE_",
        "LD_",
        "DYLD_",
        "XDG_",
        "LC_",
        "DBUS_",
        "SYSTEMD_",
        "LISTEN_",
        "RBM_",
    ];
    let upper = name.to_ascii_uppercase();
    EXACT.contains(&upper.as_str()) || PREFIXES.iter().any(|p| upper.starts_with(p))
}

/// Reads each credential's real value (before anything starts: a missing
/// one stops `up` with its name) and puts it into a Podman secret that
/// carries rbm's labels (`owner` is the profile file, [`args::labels`]).
pub fn prepare(
    podman: &Podman,
    profile: &Profile,
    dir: &Path,
    owner: &str,
) -> Result<Vec<Planned>, Error> {
    let names = profile.names();
    let mut planned = Vec::new();
    for c in &profile.credentials {
        let fail = |message: String, fix: &str| Error::Credential {
            env: c.env.clone(),
            message,
            fix: fix.into(),
        };
        if podman_reads(&c.env) {
            return Err(fail(
                format!("podman itself reads {}, and rbm-launch hands podman the bottle's placeholder in that variable", c.env),
                "name the credential's variable otherwise (the bottle's program reads it under that name)",
            ));
        }
        // Resolved and checked again here, where they are read: a file
        // that leads out of the profile's folder needs `outside = true`.
        let paths = takes::credential_paths(c, dir, &profile.bottle.volumes)?;
        let upstream_ca = match (&c.upstream_ca, &paths.upstream_ca) {
            (Some(file), Some(path)) => Some(std::fs::read_to_string(path).map_err(|e| {
                fail(
                    format!("cannot read its upstream_ca {file}: {e}"),
                    "correct the path (relative to the profile's directory)",
                )
            })?),
            _ => None,
        };
        let (secret, ours) = match &c.from {
            Source::PodmanSecret(name) => {
                // By its exact name: Podman also takes a prefix of a
                // secret's ID, and `a` may be some other profile's key.
                let out = podman.output(&[
                    "secret".into(),
                    "inspect".into(),
                    "--format".into(),
                    "{{.Spec.Name}}".into(),
                    name.clone(),
                ])?;
                let found = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if !out.status.success() || found != *name {
                    return Err(fail(
                        format!("no Podman secret is named exactly {name}"),
                        "create it with `podman secret create NAME FILE` and name it in full, or name another source",
                    ));
                }
                (name.clone(), false)
            }
            source => {
                let value = read_value(source, paths.file.as_deref())
                    .map_err(|m| fail(m, "set it, or point `from` at where the value is"))?;
                let secret = cred_secret(&names, &c.env);
                podman.run_with_input(&create_secret(&secret, profile, owner), value.as_bytes())?;
                (secret, true)
            }
        };
        planned.push(Planned {
            env: c.env.clone(),
            secret,
            ours,
            placeholder: placeholder()?,
            upstream_ca,
        });
    }
    Ok(planned)
}

/// `podman secret create --replace --label ... NAME -`: the value comes
/// on stdin, never on a command line; the labels say rbm made it (for
/// `stop`) and for which profile file.
pub fn create_secret(name: &str, profile: &Profile, owner: &str) -> Vec<String> {
    let mut a: Vec<String> = ["secret", "create", "--replace"].map(String::from).to_vec();
    a.extend(args::labels(profile, owner));
    a.extend([name.to_string(), "-".to_string()]);
    a
}

/// The variable that carries the `[[requests]]` hosts' extra CAs to the
/// agent (JSON: host name to PEM).
pub const UPSTREAM_CAS_ENV: &str = "RBM_UPSTREAM_CAS";

/// The extra CA each `[[requests]]` host's real certificate is verified
/// against (read now, before anything starts), as the sentry's
/// environment: none, or `UPSTREAM_CAS_ENV` with its JSON.
pub fn request_cas(
    profile: &Profile,
    file: &Path,
    dir: &Path,
) -> Result<Vec<(String, String)>, Error> {
    let mut cas = serde_json::Map::new();
    for (i, r) in profile.requests.iter().enumerate() {
        if r.upstream_ca.is_none() {
            continue;
        }
        let (path, _) = takes::request_ca_path(r, i, file, dir)?;
        let pem = std::fs::read_to_string(&path).map_err(|e| {
            takes::problem(
                file,
                format!("requests[{i}].upstream_ca"),
                format!("cannot read {ca}: {e}", ca = path.display()),
                "correct the path (relative to the profile's directory)",
            )
        })?;
        for host in &r.hosts {
            cas.insert(host.clone(), serde_json::Value::String(pem.clone()));
        }
    }
    if cas.is_empty() {
        return Ok(vec![]);
    }
    Ok(vec![(
        UPSTREAM_CAS_ENV.to_string(),
        serde_json::Value::Object(cas).to_string(),
    )])
}

/// The variable that carries the credentials' placeholders to the agent.
pub const CREDENTIALS_ENV: &str = "RBM_CREDENTIALS";

/// The real value from `source`; `file` is a `file:` source's path,
/// resolved (`takes::credential_paths`).
fn read_value(source: &Source, file: Option<&Path>) -> Result<String, String> {
    let value = match (source, file) {
        (Source::Env(name), _) => std::env::var(name)
            .map_err(|_| format!("{source}: the variable {name} is not set for rbm-launch"))?,
        (Source::File(_), Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| format!("{source}: cannot read {}: {e}", path.display()))?,
        (Source::File(_), None) => unreachable!("a file: source has its path resolved"),
        (Source::PodmanSecret(_), _) => unreachable!("a Podman secret is not read"),
    };
    let value = value.strip_suffix('\n').unwrap_or(&value).to_string();
    if value.is_empty() {
        return Err(format!("{source} is empty"));
    }
    Ok(value)
}

/// What the sentry is told (RBM_CREDENTIALS): placeholders and extra CAs.
pub fn sentry_json(planned: &[Planned]) -> String {
    let list: Vec<serde_json::Value> = planned
        .iter()
        .map(|p| {
            serde_json::json!({
                "env": p.env,
                "placeholder": p.placeholder,
                "upstream_ca": p.upstream_ca,
            })
        })
        .collect();
    serde_json::Value::Array(list).to_string()
}

/// The sentry's `podman run` arguments for the credentials; the value of
/// `-e RBM_CREDENTIALS` is in [`sentry_env`].
pub fn sentry_args(planned: &[Planned]) -> Vec<String> {
    if planned.is_empty() {
        return vec![];
    }
    let mut a = Vec::new();
    for p in planned {
        a.push("--secret".into());
        a.push(format!("{},target=rbm-cred-{}", p.secret, p.env));
    }
    a.push("-e".into());
    a.push(CREDENTIALS_ENV.into());
    a
}

/// podman's environment for the sentry's `podman run`: RBM_CREDENTIALS.
pub fn sentry_env(planned: &[Planned]) -> Vec<(String, String)> {
    if planned.is_empty() {
        return vec![];
    }
    vec![(CREDENTIALS_ENV.to_string(), sentry_json(planned))]
}

/// podman's environment for the bottle's `podman run`: each placeholder
/// under its credential's name (`-e NAME` in [`bottle_args`]).
pub fn bottle_env(planned: &[Planned]) -> Vec<(String, String)> {
    planned
        .iter()
        .map(|p| (p.env.clone(), p.placeholder.clone()))
        .collect()
}

/// The public roots and the profile's CA, as one PEM file: what the
/// bottle's TLS stacks trust through SSL_CERT_FILE and the like.
pub fn bundle(ca_pem: &str) -> String {
    let engine = base64::engine::general_purpose::STANDARD;
    let mut out = String::new();
    for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = engine.encode(cert.as_ref());
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out.push_str(ca_pem);
    out
}

/// The bottle's `podman run` arguments: placeholders (named only; their
/// values in [`bottle_env`]), the CA files and the variables that make
/// Node, Python, curl and git trust them.
/// `inspects`: the sentry terminates some hosts' TLS (credentials, or
/// `[[requests]]` without any credential), so the bottle trusts its CA.
pub fn bottle_args(planned: &[Planned], inspects: bool, names: &Names) -> Vec<String> {
    if planned.is_empty() && !inspects {
        return vec![];
    }
    let mut a = Vec::new();
    for p in planned {
        a.push("-e".into());
        a.push(p.env.clone());
    }
    a.push("--secret".into());
    a.push(format!("{},target={BUNDLE_PATH}", bundle_secret(names)));
    a.push("--secret".into());
    a.push(format!("{},target={CA_PATH}", ca_secret(names)));
    for var in [
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "GIT_SSL_CAINFO",
    ] {
        a.push("-e".into());
        a.push(format!("{var}={BUNDLE_PATH}"));
    }
    a.push("-e".into());
    a.push(format!("NODE_EXTRA_CA_CERTS={CA_PATH}"));
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned() -> Vec<Planned> {
        vec![Planned {
            env: "API_KEY".into(),
            secret: "rbm-demo-cred-API_KEY".into(),
            ours: true,
            placeholder: "rbm-0123".into(),
            upstream_ca: None,
        }]
    }

    #[test]
    fn the_bottle_gets_placeholders_and_trust_the_sentry_the_secret() {
        let names = Names::new("demo");
        let bottle = bottle_args(&planned(), true, &names).join(" ");
        assert!(bottle.starts_with("-e API_KEY --secret"), "{bottle}");
        assert_eq!(
            bottle_env(&planned()),
            [("API_KEY".to_string(), "rbm-0123".to_string())]
        );
        assert!(bottle.contains("--secret rbm-demo-ca-bundle,target=/etc/rbm/ca-bundle.pem"));
        assert!(bottle.contains("-e NODE_EXTRA_CA_CERTS=/etc/rbm/rbm-ca.pem"));
        assert!(
            !bottle.contains("cred-"),
            "no real value's secret in the bottle"
        );
        let sentry = sentry_args(&planned()).join(" ");
        assert!(sentry.contains("--secret rbm-demo-cred-API_KEY,target=rbm-cred-API_KEY"));
        assert!(sentry.ends_with("-e RBM_CREDENTIALS"), "{sentry}");
        let env = sentry_env(&planned());
        assert_eq!(env[0].0, "RBM_CREDENTIALS");
        assert!(env[0].1.contains("\"placeholder\":\"rbm-0123\""));
        assert!(bottle_args(&[], false, &names).is_empty() && sentry_args(&[]).is_empty());
        let ruled_only = bottle_args(&[], true, &names).join(" ");
        assert!(ruled_only.contains("--secret rbm-demo-ca-bundle,target=/etc/rbm/ca-bundle.pem"));
        assert!(bottle_env(&[]).is_empty() && sentry_env(&[]).is_empty());
    }

    #[test]
    fn no_placeholder_is_in_an_argument_vector() {
        let names = Names::new("demo");
        let all = [
            bottle_args(&planned(), true, &names),
            sentry_args(&planned()),
        ]
        .concat();
        assert!(all.iter().all(|a| !a.contains("rbm-0123")), "{all:?}");
    }

    #[test]
    fn a_credential_named_like_what_podman_reads_is_refused() {
        for name in [
            "CONTAINER_HOST",
            "XDG_RUNTIME_DIR",
            "LD_PRELOAD",
            "PATH",
            "https_proxy",
            "RBM_PROFILE",
        ] {
            assert!(podman_reads(name), "{name}");
        }
        for name in [
            "API_KEY",
            "GITHUB_TOKEN",
            "GOOGLE_API_KEY",
            "OPENAI_API_KEY",
        ] {
            assert!(!podman_reads(name), "{name}");
        }
    }

    #[test]
    fn secrets_rbm_makes_carry_its_labels_and_come_on_stdin() {
        let p = rbm_profile::Profile::parse(
            crate::podman::args::tests::PROFILE,
            Path::new("/p/demo.toml"),
        )
        .unwrap();
        assert_eq!(
            create_secret("rbm-demo-ca", &p, "/p/demo.toml").join(" "),
            "secret create --replace --label rbm.moniker=demo --label rbm.profile=/p/demo.toml rbm-demo-ca -"
        );
    }

    #[test]
    fn a_value_that_cannot_be_read_names_its_source() {
        let dir = tempfile::tempdir().unwrap();
        let unset = Source::Env("RBM_TEST_SURELY_UNSET_42".into());
        let err = read_value(&unset, None).unwrap_err();
        assert!(err.contains("RBM_TEST_SURELY_UNSET_42 is not set"), "{err}");
        let file = |name: &str| (Source::File(name.into()), dir.path().join(name));
        let (missing, path) = file("nope.txt");
        assert!(read_value(&missing, Some(&path))
            .unwrap_err()
            .contains("cannot read"));
        std::fs::write(dir.path().join("key"), "sk-1\n").unwrap();
        let (key, path) = file("key");
        assert_eq!(
            read_value(&key, Some(&path)).unwrap(),
            "sk-1",
            "one newline dropped"
        );
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let (empty, path) = file("empty");
        assert!(read_value(&empty, Some(&path))
            .unwrap_err()
            .ends_with("is empty"));
    }

    #[test]
    fn placeholders_are_random_and_the_bundle_ends_in_the_ca() {
        let (a, b) = (placeholder().unwrap(), placeholder().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 32);
        let b = bundle("-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n");
        assert!(b.matches("BEGIN CERTIFICATE").count() > 100);
        assert!(b.ends_with("X\n-----END CERTIFICATE-----\n"));
    }
}
