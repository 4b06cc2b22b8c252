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
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
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
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![host.to_string()])?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, host);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(90);
        let cert = params.signed_by(&key, &self.issuer)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = rustls::crypto::ring::sign::any_supported_type(&key_der)?;
        Ok(CertifiedKey::new(
            vec![cert.der().clone(), self.ca_der.clone()],
            signing,
        ))
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
}
