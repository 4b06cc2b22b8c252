//! Any text: profile parsing never panics, and a profile that parses is consistent (nothing to restart against itself, rules print back as themselves).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rbm_agent::policy::{Policy, Verdict};
use rbm_profile::{normalize, DomainRule, Ports, Profile};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(profile) = Profile::parse(text, Path::new("fuzz.toml")) else {
        return;
    };
    assert_eq!(
        Profile::parse(text, Path::new("fuzz.toml")).ok().as_ref(),
        Some(&profile)
    );
    assert!(profile.restart_fields(&profile).is_empty());

    let e = profile.enclave;
    assert!(e.subnet.prefix_len() <= 29);
    assert!(e.subnet.contains(&e.sentry_ip) && e.subnet.contains(&e.bottle_ip));
    assert_ne!(e.sentry_ip, e.bottle_ip);
    for ip in [e.sentry_ip, e.bottle_ip] {
        assert!(ip != e.subnet.network() && ip != e.subnet.broadcast());
    }
    assert!(profile.uplink.min_ttl <= 86_400);

    for rule in &profile.uplink.domains {
        assert_eq!(rule.name, normalize(&rule.name));
        assert_eq!(
            DomainRule::parse(&rule.to_string()).as_ref(),
            Ok(rule),
            "{rule}"
        );
        assert_eq!(rule.matches(&rule.name), !rule.wildcard, "{rule}");
        assert!(
            rule.matches(&format!("x.{}", rule.name)) == rule.wildcard,
            "{rule}"
        );
        if let Ports::Only(ports) = &rule.ports {
            assert!(!ports.is_empty() && !ports.contains(&0), "{rule}");
        }
    }
    for net in &profile.uplink.cidrs {
        assert!(net.prefix_len() > 0 && net.trunc() == *net, "{net}");
    }
    for entry in &profile.entries {
        assert!(entry.host_port != 0 && entry.bottle_port != 0);
    }

    let policy = Policy::from_profile(&profile);
    for host in profile.credentials.iter().flat_map(|c| &c.hosts) {
        assert!(policy.intercepts(host), "{host}");
        match policy.verdict(host) {
            Verdict::Forward {
                grant: Some(Ports::All),
            } => {}
            Verdict::Forward {
                grant: Some(Ports::Only(ports)),
            } => assert!(ports.contains(&443), "{host}"),
            other => panic!("credential host {host} gets {other:?}"),
        }
    }
});
