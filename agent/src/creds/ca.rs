//! The credential CA: made in the sentry the first time the agent starts
//! (its key never leaves the sentry), kept beside the control socket so a
//! restarted agent signs with the same one, and constrained by X.509 name
//! constraints to the credential hosts: a client that trusts it cannot be
//! shown any other site with it. Leaf certificates are made on demand, one
//! per host, and kept.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, GeneralSubtree, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, NameConstraints,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

/// The CA and the leaves it made.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    ca_pem: String,
    hosts: Vec<String>,
    leaves: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

/// Where the CA of a control socket is kept (`agent.sock` -> `agent.ca.pem`
/// and `agent.ca.key`).
pub fn paths(control: &Path) -> (PathBuf, PathBuf) {
    (
        control.with_extension("ca.pem"),
        control.with_extension("ca.key"),
    )
}

fn ca_params(moniker: &str, hosts: &[String]) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("rbm {moniker} credential CA"));
    dn.push(DnType::OrganizationName, "rbm");
    params.distinguished_name = dn;
    // What RFC 5280 asks of a CA, and OpenSSL's strict mode (Python 3.13's
    // default) checks: basicConstraints critical and keyUsage (rcgen
    // writes both critical), a subjectKeyIdentifier (rcgen writes one for
    // every CA) and, though a self-signed one may omit it, an
    // authorityKeyIdentifier (its own key's).
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.use_authority_key_identifier_extension = true;
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: hosts
            .iter()
            .map(|h| GeneralSubtree::DnsName(h.clone()))
            .collect(),
        excluded_subtrees: vec![],
    });
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    params
}

impl Authority {
    /// The CA kept at `cert`/`key`, or a new one written there.
    pub fn load_or_create(
        cert: &Path,
        key: &Path,
        moniker: &str,
        hosts: &[String],
    ) -> anyhow::Result<Authority> {
        let params = ca_params(moniker, hosts);
        let (key_pair, ca_pem) = match (std::fs::read_to_string(key), std::fs::read_to_string(cert))
        {
            (Ok(key_pem), Ok(ca_pem)) => (
                KeyPair::from_pem(&key_pem).context("the kept CA key is unreadable")?,
                ca_pem,
            ),
            _ => {
                let key_pair = KeyPair::generate().context("generating the CA key")?;
                let ca = params
                    .self_signed(&key_pair)
                    .context("signing the CA certificate")?;
                if let Some(dir) = key.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                write_private(key, key_pair.serialize_pem().as_bytes())
                    .with_context(|| format!("writing {}", key.display()))?;
                std::fs::write(cert, ca.pem())
                    .with_context(|| format!("writing {}", cert.display()))?;
                (key_pair, ca.pem())
            }
        };
        let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("the kept CA certificate is unreadable: {e}"))?;
        Ok(Authority {
            issuer: Issuer::new(params, key_pair),
            ca_der,
            ca_pem,
            hosts: hosts.to_vec(),
            leaves: Mutex::default(),
        })
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The certificate and key the proxy shows for `host` (a credential
    /// host; `None` for any other name).
    pub fn leaf(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        if !self.hosts.iter().any(|h| h == host) {
            return None;
        }
        let mut leaves = self.leaves.lock().unwrap();
        if let Some(leaf) = leaves.get(host) {
            return Some(leaf.clone());
        }
        let leaf = self.make_leaf(host).map_err(|e| {
            tracing::error!(host, error = %e, "cannot make a certificate");
        });
        let leaf = Arc::new(leaf.ok()?);
        leaves.insert(host.to_string(), leaf.clone());
        Some(leaf)
    }

    fn make_leaf(&self, host: &str) -> anyhow::Result<CertifiedKey> {
        let (cert, key) = self.issue(host)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = rustls::crypto::ring::sign::any_supported_type(&key_der)?;
        Ok(CertifiedKey::new(
            vec![cert.der().clone(), self.ca_der.clone()],
            signing,
        ))
    }

    /// A new certificate for `host`, signed by the CA, and its key.
    fn issue(&self, host: &str) -> anyhow::Result<(rcgen::Certificate, KeyPair)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![host.to_string()])?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, host);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // A leaf without an authorityKeyIdentifier is refused by OpenSSL's
        // strict mode ("Missing Authority Key Identifier"), on by default
        // in Python 3.13. The identifier is the CA key's, derived as for
        // the CA's subjectKeyIdentifier (rcgen's default method; a CA kept
        // from an older agent had it too). `ExplicitNoCa` gives the leaf
        // its own subjectKeyIdentifier and a basicConstraints saying it is
        // no CA.
        params.use_authority_key_identifier_extension = true;
        params.is_ca = IsCa::ExplicitNoCa;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(90);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert, key))
    }
}

/// Writes a file only its owner may read.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_kept_and_signs_only_its_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = paths(&dir.path().join("agent.sock"));
        let hosts = vec!["api.a.test".to_string()];
        let first = Authority::load_or_create(&cert, &key, "tt", &hosts).unwrap();
        assert!(first.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let again = Authority::load_or_create(&cert, &key, "tt", &hosts).unwrap();
        assert_eq!(first.ca_pem(), again.ca_pem(), "a restart keeps the CA");
        assert!(first.leaf("api.a.test").is_some());
        assert!(first.leaf("other.test").is_none());
        let mode = std::fs::metadata(&key).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }

    /// The CA, a leaf for `host` and its key, as PEM files in `dir`.
    fn write_leaf(authority: &Authority, host: &str, dir: &Path) -> [PathBuf; 3] {
        let (cert, key) = authority.issue(host).unwrap();
        let files = [
            dir.join("ca.pem"),
            dir.join("leaf.pem"),
            dir.join("leaf.key"),
        ];
        std::fs::write(&files[0], authority.ca_pem()).unwrap();
        std::fs::write(&files[1], cert.pem()).unwrap();
        std::fs::write(&files[2], key.serialize_pem()).unwrap();
        files
    }

    /// A TLS handshake in memory, no socket: Python's `ssl` as a server
    /// with the leaf, and as a client with the checks Python 3.13 makes
    /// by default (`VERIFY_X509_STRICT`).
    const STRICT_HANDSHAKE: &str = r#"
import ssl, sys
ca, cert, key, host = sys.argv[1:]
server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server.load_cert_chain(cert, key)
client = ssl.create_default_context(cafile=ca)
client.verify_flags |= ssl.VERIFY_X509_STRICT
c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
sides = [(client.wrap_bio(c_in, c_out, server_hostname=host), c_out, s_in),
         (server.wrap_bio(s_in, s_out, server_side=True), s_out, c_in)]
done = set()
for _ in range(20):
    for i, (side, out, peer) in enumerate(sides):
        if i not in done:
            try:
                side.do_handshake()
                done.add(i)
            except ssl.SSLWantReadError:
                pass
        peer.write(out.read())
print("verified" if done == {0, 1} else "stuck")
"#;

    /// Whether `tool` runs here; says so loudly when it does not.
    fn have(tool: &str) -> bool {
        let there = std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !there {
            eprintln!("SKIPPED: {tool} is not on this machine; the strict X.509 check with it did not run");
        }
        there
    }

    #[test]
    fn clients_that_verify_strictly_as_python_3_13_does_take_the_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = paths(&dir.path().join("agent.sock"));
        let hosts = vec!["api.a.test".to_string()];
        let authority = Authority::load_or_create(&cert, &key, "tt", &hosts).unwrap();
        let [ca, leaf, leaf_key] = write_leaf(&authority, "api.a.test", dir.path());
        if have("python3") {
            let out = std::process::Command::new("python3")
                .args(["-c", STRICT_HANDSHAKE])
                .args([&ca, &leaf, &leaf_key])
                .arg("api.a.test")
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success() && said.trim() == "verified", "{said}");
        }
        if have("openssl") {
            for cert in [&ca, &leaf] {
                let out = std::process::Command::new("openssl")
                    .args(["verify", "-x509_strict", "-CAfile"])
                    .args([&ca, cert])
                    .output()
                    .unwrap();
                let said = String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr);
                assert!(out.status.success(), "{}: {said}", cert.display());
            }
        }
    }
}
