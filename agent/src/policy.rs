//! What the bottle may resolve and reach: the decision the DNS proxy takes
//! for each name, from the profile's domain rules. Pure logic, no I/O.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use ipnet::IpNet;

use crate::profile::{
    normalize, DomainRule, Enclave, Entry, Mode, Ports, Profile, RequestRule, RequestRules,
};

/// What the DNS proxy does with one question name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Answer REFUSED; nothing goes upstream.
    Refuse,
    /// Forward upstream; if `grant` is set, learn the answered addresses
    /// with those ports.
    Forward { grant: Option<Ports> },
}

/// The agent's input: everything it enforces, nothing about the bottle's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub dns: Mode,
    pub access: Mode,
    pub domains: Vec<DomainRule>,
    pub cidrs: Vec<IpNet>,
    pub upstream_dns: Vec<IpAddr>,
    pub min_ttl: u32,
    /// Names opened an address: the name on the wire must be allowed too.
    pub name_binding: bool,
    pub enclave: Enclave,
    pub entries: Vec<Entry>,
    /// Addresses no DNS answer may open: the machine itself, the enclave,
    /// link-local (cloud metadata), multicast. Only `cidrs` can open them.
    pub protected: Vec<IpNet>,
    /// The Podman host's own addresses and networks (its interfaces, every
    /// Podman network's subnet and gateway, the uplink's gateway): no DNS
    /// answer may open them either, unless a range in `cidrs` holds them.
    pub host: Vec<IpNet>,
    /// The credential hosts and the hosts with request rules: their TLS
    /// goes through the sentry's proxy.
    pub intercept_hosts: Vec<String>,
    /// The profile's `[[requests]]`: each request to their hosts must
    /// match a rule.
    pub requests: Vec<RequestRules>,
    /// Each credential's variable and the placeholder the bottle got: seen
    /// in the clear, they are refused.
    pub placeholders: Vec<(String, Vec<u8>)>,
}

/// Ranges a DNS answer must never open, whatever the name (DNS rebinding:
/// an allowed name that resolves to 127.0.0.1 or 169.254.169.254).
const ALWAYS_PROTECTED: [&str; 9] = [
    "0.0.0.0/8",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "224.0.0.0/3",
    "::/128",
    "::1/128",
    "::ffff:0:0/96",
    "fe80::/10",
    "ff00::/8",
];

/// The always-protected ranges plus the enclave itself.
pub fn protected_ranges(enclave: &Enclave) -> Vec<IpNet> {
    let mut v: Vec<IpNet> = ALWAYS_PROTECTED
        .iter()
        .map(|n| n.parse().expect("valid constant"))
        .collect();
    v.push(IpNet::V4(enclave.subnet));
    v
}

/// The variable in which the launcher hands the sentry the Podman host's
/// addresses and networks (`Policy::host`), comma-separated.
pub const HOST_ENV: &str = "RBM_HOST_NETS";

/// `HOST_ENV`'s value: addresses (`10.88.0.1`, `fd00::1`) and networks
/// (`10.88.0.0/16`), separated by commas; empty entries are skipped.
pub fn parse_host_nets(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<IpNet>()
                .map(|net| net.trunc())
                .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{HOST_ENV}: {t:?} is neither an address nor a network"))
        })
        .collect()
}

/// The policy in force, shared by everything that enforces it and replaced
/// whole by a reload: a reader takes the current one for one decision.
#[derive(Debug)]
pub struct PolicyCell(RwLock<Arc<Policy>>);

impl PolicyCell {
    pub fn new(policy: Policy) -> PolicyCell {
        PolicyCell(RwLock::new(Arc::new(policy)))
    }

    pub fn get(&self) -> Arc<Policy> {
        self.0.read().unwrap().clone()
    }

    pub fn set(&self, policy: Policy) {
        *self.0.write().unwrap() = Arc::new(policy);
    }
}

impl Policy {
    pub fn from_profile(p: &Profile) -> Policy {
        Policy {
            dns: p.uplink.dns,
            access: p.uplink.access,
            domains: p.uplink.domains.clone(),
            cidrs: p.uplink.cidrs.clone(),
            upstream_dns: p.uplink.upstream_dns.clone(),
            min_ttl: p.uplink.min_ttl,
            name_binding: p.uplink.name_binding,
            enclave: p.enclave,
            entries: p.entries.clone(),
            protected: protected_ranges(&p.enclave),
            host: vec![],
            intercept_hosts: {
                let mut hosts: Vec<String> = p
                    .credentials
                    .iter()
                    .flat_map(|c| c.hosts.clone())
                    .chain(p.requests.iter().flat_map(|r| r.hosts.clone()))
                    .collect();
                hosts.sort();
                hosts.dedup();
                hosts
            },
            requests: p.requests.clone(),
            placeholders: vec![],
        }
    }

    /// The request rules of `host`, if it has any: then every request to
    /// it must match one, and it is reached only through the proxy.
    pub fn rules_for(&self, host: &str) -> Option<Vec<&RequestRule>> {
        let host = normalize(host);
        self.requests
            .iter()
            .find(|r| r.hosts.contains(&host))
            .map(|r| r.allow.iter().collect())
    }

    /// The variable of the credential whose placeholder `data` carries.
    pub fn placeholder_in(&self, data: &[u8]) -> Option<&str> {
        self.placeholders
            .iter()
            .find(|(_, p)| crate::creds::swap::contains(data, p))
            .map(|(env, _)| env.as_str())
    }

    /// Whether `qname`'s connections go through the credential proxy.
    pub fn intercepts(&self, qname: &str) -> bool {
        let qname = normalize(qname);
        self.intercept_hosts.contains(&qname)
    }

    /// Whether the name on the wire is checked: only where names open
    /// addresses (access = allowlist) and unless the profile turned it off.
    pub fn binds_names(&self) -> bool {
        self.name_binding && self.access == Mode::Allowlist
    }

    /// Whether a DNS answer may open `ip` (see `protected` and `host`).
    /// DNS rebinding: an allowed name that resolves to the workstation's
    /// LAN address or a Podman bridge's gateway would open the services
    /// listening there (only the profile's own `cidrs` may).
    pub fn may_learn(&self, ip: IpAddr) -> bool {
        let within = |nets: &[IpNet]| nets.iter().any(|net| net.contains(&ip));
        !within(&self.protected) && (!within(&self.host) || within(&self.cidrs))
    }

    /// The ports the domain rules give `qname`, if any rule matches.
    pub fn grant_for(&self, qname: &str) -> Option<Ports> {
        let qname = normalize(qname);
        let grant = self.domains.iter().filter(|r| r.matches(&qname)).fold(
            None,
            |acc: Option<Ports>, r| {
                Some(match acc {
                    None => r.ports.clone(),
                    Some(p) => p.union(&r.ports),
                })
            },
        );
        // A host with request rules is reached on 443 only, through the
        // proxy that checks them: any other port (SSH for git, plain HTTP)
        // would carry its requests past the rules.
        match grant {
            Some(_) if self.rules_for(&qname).is_some() => {
                Some(Ports::Only(std::iter::once(443).collect()))
            }
            other => other,
        }
    }

    pub fn verdict(&self, qname: &str) -> Verdict {
        let grant = self.grant_for(qname);
        let learn = |g: Option<Ports>| {
            if self.access == Mode::Allowlist {
                g
            } else {
                None
            }
        };
        match (self.dns, grant) {
            (Mode::Disabled, _) => Verdict::Refuse,
            (Mode::Allowlist, None) => Verdict::Refuse,
            (Mode::Allowlist, Some(g)) => Verdict::Forward {
                grant: learn(Some(g)),
            },
            (Mode::Global, g) => Verdict::Forward { grant: learn(g) },
        }
    }

    /// How long a learned address stays open for an answer with `ttl`.
    pub fn learn_timeout(&self, ttl: u32) -> u32 {
        ttl.max(self.min_ttl).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;
    use std::path::Path;

    #[test]
    fn case_and_trailing_dot_are_ignored() {
        let p = policy_with(&["PyPI.org"]);
        assert!(p.grant_for("PYPI.ORG.").is_some());
        assert!(p.grant_for("pypi.org").is_some());
    }

    #[test]
    fn grants_union_the_ports_of_every_matching_rule() {
        let p = policy_with(&["github.com:22", "github.com:443"]);
        assert_eq!(
            p.grant_for("github.com"),
            Some(Ports::Only([22, 443].into()))
        );
        let p = policy_with(&["*.example.org:443", "a.example.org"]);
        assert_eq!(p.grant_for("a.example.org"), Some(Ports::All));
        assert_eq!(
            p.grant_for("b.example.org"),
            Some(Ports::Only([443].into()))
        );
    }

    fn policy_with(domains: &[&str]) -> Policy {
        let list = domains
            .iter()
            .map(|d| format!("{d:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        policy_modes("allowlist", "allowlist", &list)
    }

    fn policy_modes(dns: &str, access: &str, domains: &str) -> Policy {
        let text = format!(
            "moniker = \"tt\"\n[bottle]\nimage = \"i\"\n[enclave]\nsubnet = \"10.242.0.0/24\"\nsentry_ip = \"10.242.0.2\"\nbottle_ip = \"10.242.0.3\"\n[uplink]\ndns = \"{dns}\"\naccess = \"{access}\"\ndomains = [{domains}]\nmin_ttl = 30\n"
        );
        Policy::from_profile(&Profile::parse(&text, Path::new("t.toml")).unwrap())
    }

    #[test]
    fn verdicts_follow_modes() {
        let p = policy_modes("allowlist", "allowlist", "\"a.test\"");
        assert_eq!(
            p.verdict("a.test"),
            Verdict::Forward {
                grant: Some(Ports::All)
            }
        );
        assert_eq!(p.verdict("b.test"), Verdict::Refuse);
        let p = policy_modes("global", "allowlist", "\"a.test\"");
        assert_eq!(
            p.verdict("a.test"),
            Verdict::Forward {
                grant: Some(Ports::All)
            }
        );
        assert_eq!(p.verdict("b.test"), Verdict::Forward { grant: None });
        let p = policy_modes("disabled", "allowlist", "\"a.test\"");
        assert_eq!(p.verdict("a.test"), Verdict::Refuse);
        let p = policy_modes("allowlist", "global", "\"a.test\"");
        assert_eq!(p.verdict("a.test"), Verdict::Forward { grant: None });
        let p = policy_modes("allowlist", "disabled", "\"a.test\"");
        assert_eq!(p.verdict("a.test"), Verdict::Forward { grant: None });
    }

    #[test]
    fn answers_may_not_open_the_machine_the_enclave_or_metadata() {
        let p = policy_with(&["a.test"]);
        for ip in [
            "127.0.0.1",
            "169.254.169.254",
            "10.242.0.2",
            "10.242.0.3",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!p.may_learn(ip.parse().unwrap()), "{ip} must be protected");
        }
        for ip in ["198.51.100.10", "10.243.0.9", "2001:db8::1"] {
            assert!(p.may_learn(ip.parse().unwrap()), "{ip} may be learned");
        }
    }

    #[test]
    fn the_podman_host_s_addresses_are_not_learned_unless_cidrs_hold_them() {
        let mut p = policy_with(&["a.test"]);
        p.host = parse_host_nets("192.168.1.20, 10.88.0.0/16,10.89.0.1,fd00::7,").unwrap();
        for ip in [
            "192.168.1.20",
            "10.88.0.1",
            "10.88.3.4",
            "10.89.0.1",
            "fd00::7",
        ] {
            assert!(!p.may_learn(ip.parse().unwrap()), "{ip} is the host's");
        }
        for ip in ["192.168.1.21", "10.89.0.2", "198.51.100.10"] {
            assert!(p.may_learn(ip.parse().unwrap()), "{ip} may be learned");
        }
        p.cidrs = vec!["192.168.1.0/24".parse().unwrap()];
        assert!(
            p.may_learn("192.168.1.20".parse().unwrap()),
            "cidrs open it"
        );
        p.cidrs = vec!["127.0.0.0/8".parse().unwrap()];
        assert!(
            !p.may_learn("127.0.0.1".parse().unwrap()),
            "cidrs do not make loopback learnable"
        );
        assert!(parse_host_nets("10.88.0.1,nope").is_err());
        assert_eq!(parse_host_nets("").unwrap(), vec![]);
        assert_eq!(
            parse_host_nets("10.88.0.1/16").unwrap(),
            ["10.88.0.0/16".parse::<IpNet>().unwrap()]
        );
    }

    #[test]
    fn ttl_floor() {
        let p = policy_with(&["a.test"]);
        assert_eq!(p.learn_timeout(5), 30);
        assert_eq!(p.learn_timeout(300), 300);
        let mut p0 = p.clone();
        p0.min_ttl = 0;
        assert_eq!(
            p0.learn_timeout(0),
            1,
            "a zero timeout would mean 'never expires' to the kernel"
        );
    }
}
