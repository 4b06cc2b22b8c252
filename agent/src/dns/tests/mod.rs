//! Helpers shared by the dns unit tests, and the in-process tests that run
//! the whole proxy on loopback against a fake upstream.

mod client;
mod fake_upstream;
mod harness;
mod proxy_answers;
mod proxy_fails_closed;

use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record};

use crate::policy::Policy;
use crate::profile::Enclave;
use crate::profile::{DomainRule, Mode};

/// A policy with the given modes and uplink.domains, min_ttl 30.
const ENCLAVE: Enclave = Enclave {
    subnet: ipnet::Ipv4Net::new_assert(std::net::Ipv4Addr::new(10, 242, 0, 0), 24),
    sentry_ip: std::net::Ipv4Addr::new(10, 242, 0, 2),
    bottle_ip: std::net::Ipv4Addr::new(10, 242, 0, 3),
};

pub(crate) fn policy(dns: Mode, access: Mode, domains: &[&str]) -> Policy {
    Policy {
        dns,
        access,
        domains: domains
            .iter()
            .map(|d| DomainRule::parse(d).unwrap())
            .collect(),
        cidrs: vec![],
        upstream_dns: vec![],
        min_ttl: 30,
        name_binding: true,
        enclave: ENCLAVE,
        entries: vec![],
        protected: crate::policy::protected_ranges(&ENCLAVE),
        host: vec![],
        intercept_hosts: vec![],
        requests: vec![],
        placeholders: vec![],
    }
}

/// A fully qualified name from "a.test" or "a.test.".
pub(super) fn name(text: &str) -> Name {
    let fqdn = if text.ends_with('.') {
        text.to_string()
    } else {
        format!("{text}.")
    };
    Name::from_ascii(fqdn).unwrap()
}

pub(super) fn a(owner: &str, addr: &str, ttl: u32) -> Record {
    Record::from_rdata(name(owner), ttl, RData::A(A(addr.parse().unwrap())))
}

pub(super) fn aaaa(owner: &str, addr: &str, ttl: u32) -> Record {
    Record::from_rdata(name(owner), ttl, RData::AAAA(AAAA(addr.parse().unwrap())))
}

pub(super) fn cname(owner: &str, target: &str) -> Record {
    Record::from_rdata(name(owner), 60, RData::CNAME(CNAME(name(target))))
}
