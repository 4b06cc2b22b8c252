//! What the fuzz targets share: the profiles whose policy they enforce, the
//! queries whose answers they fuzz, and a runtime to drive the DNS proxy on.

use std::future::Future;
use std::path::Path;
use std::sync::OnceLock;

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use rbm_agent::policy::Policy;
use rbm_profile::Profile;

/// Exact names, ports, a wildcard, CIDRs and a credential host: every kind
/// of rule the DNS proxy and the name check decide with.
pub const ALLOWLIST: &str = r#"
moniker = "fuzz"
description = "the policy the DNS and name fuzz targets enforce"

[bottle]
image = "localhost/fuzz:latest"

[enclave]
subnet = "10.242.0.0/24"
sentry_ip = "10.242.0.2"
bottle_ip = "10.242.0.3"

[uplink]
dns = "allowlist"
access = "allowlist"
domains = ["a.test:443", "*.cdn.test", "b.test:22,443", "*.b.test:8443", "api.cred.test"]
cidrs = ["192.0.2.0/28"]
min_ttl = 30

[[credential]]
env = "API_KEY"
from = "env:API_KEY"
hosts = ["api.cred.test"]
"#;

/// The same rules with `dns = "global"`: other names are forwarded too,
/// without opening anything.
pub fn global() -> String {
    ALLOWLIST.replace("dns = \"allowlist\"", "dns = \"global\"")
}

/// The placeholder the bottle holds for the credential, which the name
/// check must refuse in the clear.
pub const PLACEHOLDER: &[u8] = b"rbm-placeholder-API_KEY-0123456789abcdef";

fn policy_of(text: &str) -> Policy {
    let profile = Profile::parse(text, Path::new("fuzz.toml")).expect("a valid profile");
    let mut policy = Policy::from_profile(&profile);
    policy.placeholders = vec![("API_KEY".into(), PLACEHOLDER.to_vec())];
    policy
}

/// The policy of `ALLOWLIST`, or of `global()`.
pub fn policy(global: bool) -> &'static Policy {
    static POLICIES: OnceLock<[Policy; 2]> = OnceLock::new();
    let policies = POLICIES.get_or_init(|| [policy_of(ALLOWLIST), policy_of(&crate::global())]);
    &policies[usize::from(global)]
}

/// Runs `future` to completion on one runtime kept for the whole run.
pub fn block_on<F: Future>(future: F) -> F::Output {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a Tokio runtime")
        })
        .block_on(future)
}

/// The questions whose upstream answers `dns_answer` fuzzes: exact names,
/// a wildcard, ports, a credential host, upper case, and a name only
/// `global()` forwards. With EDNS (1232 bytes) or without (512).
pub const QUESTIONS: [(&str, RecordType, bool); 8] = [
    ("a.test.", RecordType::A, true),
    ("a.test.", RecordType::AAAA, false),
    ("x.cdn.test.", RecordType::A, true),
    ("a.test.", RecordType::HTTPS, true),
    ("api.cred.test.", RecordType::A, false),
    ("B.Test.", RecordType::A, true),
    ("deep.x.b.test.", RecordType::AAAA, true),
    ("other.test.", RecordType::A, false),
];

/// The ID of every query the targets send.
pub const QUERY_ID: u16 = 0x4242;

/// `QUESTIONS[index]` as the bottle sends it.
pub fn query(index: usize) -> Message {
    let (name, qtype, edns) = QUESTIONS[index % QUESTIONS.len()];
    let mut query = Message::query();
    query.metadata.id = QUERY_ID;
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(
        Name::from_ascii(name).expect("a valid name"),
        qtype,
    ));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        query.set_edns(e);
    }
    query
}

/// Splits `bytes` into pieces, each preceded by its length (two bytes,
/// big-endian); a length past the end takes what is left.
pub fn pieces(mut bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while bytes.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([bytes[0], bytes[1]])).min(bytes.len() - 2);
        out.push(&bytes[2..2 + len]);
        bytes = &bytes[2 + len..];
    }
    out
}

/// `pieces` joined back: what the seeds are written as.
pub fn framed(pieces: &[&[u8]]) -> Vec<u8> {
    pieces
        .iter()
        .flat_map(|p| {
            let len = u16::try_from(p.len()).expect("a piece under 64 KiB");
            len.to_be_bytes().into_iter().chain(p.iter().copied())
        })
        .collect()
}
