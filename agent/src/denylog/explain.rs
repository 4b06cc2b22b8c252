//! Why a packet from the bottle was dropped, in words: what the sentry
//! knows of its destination (learned, expired, never resolved, protected)
//! and of the port.

use std::net::IpAddr;
use std::time::Instant;

use super::nflog::LogEntry;
use crate::firewall::ruleset::deny_log;
use crate::names::packet::{ip_header, TCP, UDP};
use crate::policy::Policy;
use crate::profile::{Mode, Ports};
use crate::state::{unix_now, Denied, LearnedRecord, Shared};

/// `None` for what is not an IP packet.
pub fn explain(policy: &Policy, shared: &Shared, entry: &LogEntry) -> Option<Denied> {
    let h = ip_header(&entry.packet)?;
    let l4_port = |at: usize| match h.proto {
        TCP | UDP if !h.later_fragment => {
            h.l4.get(at..at + 2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
        }
        _ => None,
    };
    let (src_port, port) = (l4_port(0), l4_port(2));
    let proto = proto_name(h.proto);
    // A closed connection's packet may be a reply: what counts is the far end.
    let revoked = entry.prefix == deny_log::REVOKED;
    let (far, port) = match h.src {
        IpAddr::V4(src) if revoked && !policy.enclave.subnet.contains(&src) => (h.src, src_port),
        _ => (h.dst, port),
    };
    let record = shared.learned_record(far);
    let reason = if entry.prefix == deny_log::INPUT {
        "to the sentry itself".to_string()
    } else if revoked {
        match &record {
            Some(r) if r.revoked => format!("closed by a reload: {} is no longer allowed", r.name),
            _ => "closed by a reload: no longer allowed".to_string(),
        }
    } else {
        why_forward(policy, record.as_ref(), h.dst, &proto, port)
    };
    Some(Denied {
        at: unix_now(),
        kind: "connection".into(),
        proto: Some(proto),
        dst: Some(std::net::SocketAddr::new(far, port.unwrap_or(0))),
        name: record.map(|r| r.name.to_string()),
        reason,
    })
}

fn why_forward(
    policy: &Policy,
    record: Option<&LearnedRecord>,
    dst: std::net::IpAddr,
    proto: &str,
    port: Option<u16>,
) -> String {
    if policy.access == Mode::Disabled {
        return "uplink.access is disabled".into();
    }
    if !policy.may_learn(dst) {
        return "a protected address (the machine, the Podman host, link-local, multicast or the enclave): no answer opens it".into();
    }
    let Some(record) = record else {
        return "never resolved".into();
    };
    let now = Instant::now();
    if record.revoked {
        return format!("{} is no longer allowed (reloaded)", record.name);
    }
    if record.expires <= now {
        let ago = now.duration_since(record.expires).as_secs();
        return format!("expired {ago} s ago ({})", record.name);
    }
    match (&record.ports, port) {
        (Ports::Only(_), Some(port)) => {
            format!("port {port} not allowed for {}", record.name)
        }
        (Ports::Only(ports), None) => {
            let list: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
            format!(
                "{proto} not allowed for {} (TCP and UDP ports {} only)",
                record.name,
                list.join(",")
            )
        }
        (Ports::All, _) => format!("not allowed for {} at this moment", record.name),
    }
}

fn proto_name(proto: u8) -> String {
    match proto {
        1 => "icmp".into(),
        TCP => "tcp".into(),
        UDP => "udp".into(),
        58 => "icmpv6".into(),
        other => format!("proto {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::tests::policy;
    use crate::firewall::Learn;
    use crate::names::packet::tests::tcp4;
    use std::time::Duration;

    fn entry(prefix: &str, dst: &str) -> LogEntry {
        LogEntry {
            prefix: prefix.into(),
            packet: tcp4(dst.parse().unwrap(), 1, b""),
        }
    }

    fn reason(shared: &Shared, prefix: &str, dst: &str) -> String {
        let p = policy(Mode::Allowlist, Mode::Allowlist, &["a.test", "p.test:443"]);
        explain(&p, shared, &entry(prefix, dst)).unwrap().reason
    }

    #[test]
    fn each_drop_gets_its_reason() {
        let s = Shared::default();
        let learn = |addr: &str, ports: Ports, ms: u64, ago: u64| {
            s.record_learned(
                if ports == Ports::All {
                    "a.test"
                } else {
                    "p.test"
                },
                &[Learn {
                    addr: addr.parse().unwrap(),
                    ports,
                    timeout: Duration::from_millis(ms),
                }],
                Instant::now() - Duration::from_secs(ago),
            )
        };
        learn("198.51.100.30", Ports::All, 1000, 41);
        learn("198.51.100.40", Ports::Only([443].into()), 60_000, 0);
        assert_eq!(reason(&s, "forward", "198.51.100.20:80"), "never resolved");
        assert_eq!(
            reason(&s, "forward", "198.51.100.30:80"),
            "expired 40 s ago (a.test)"
        );
        assert_eq!(
            reason(&s, "forward", "198.51.100.40:80"),
            "port 80 not allowed for p.test"
        );
        assert_eq!(reason(&s, "input", "10.242.0.2:22"), "to the sentry itself");
        assert!(reason(&s, "forward", "169.254.169.254:80").starts_with("a protected address"));
    }
}
