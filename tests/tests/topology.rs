//! The Topology helper builds what the kernel tests assume: addresses,
//! routes (including Podman's extra default route in the sentry) and
//! forwarding, with unique names, and removes it all again.

use std::time::Duration;

use anyhow::Result;
use rbm_tests::netns::IP_TIMEOUT;
use rbm_tests::{require_netns, run_ok, Ns, Topology};
use serde_json::Value;

const T: Duration = IP_TIMEOUT;

/// `ip -j ...` inside `ns`, parsed.
fn ip_json(topo: &Topology, ns: Ns, args: &[&str]) -> Result<Vec<Value>> {
    let mut all = vec!["-j"];
    all.extend_from_slice(args);
    let out = topo.exec_ok(ns, "ip", &all, T)?;
    Ok(serde_json::from_str(&out.stdout)?)
}

fn defaults(routes: &[Value]) -> Vec<(String, String, u64)> {
    routes
        .iter()
        .filter(|r| r["dst"] == "default")
        .map(|r| {
            (
                r["gateway"].as_str().unwrap_or("").to_string(),
                r["dev"].as_str().unwrap_or("").to_string(),
                r["metric"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn sentry_looks_like_podman_made_it() -> Result<()> {
    if require_netns("creates network namespaces").is_err() {
        return Ok(());
    }
    let topo = Topology::builder().build()?;
    let mut v4 = defaults(&ip_json(&topo, Ns::Sentry, &["-4", "route"])?);
    v4.sort();
    assert_eq!(
        v4,
        vec![
            ("10.242.0.1".into(), "eth1".into(), 200),
            ("10.243.0.1".into(), "eth0".into(), 0)
        ]
    );
    let v6 = defaults(&ip_json(&topo, Ns::Sentry, &["-6", "route"])?);
    assert_eq!(
        v6.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ["fd00:243::1"]
    );
    let bottle = defaults(&ip_json(&topo, Ns::Bottle, &["route"])?);
    assert_eq!(bottle[0].0, "10.242.0.2");
    let forward = topo.exec_ok(
        Ns::Sentry,
        "sysctl",
        &["-n", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"],
        T,
    )?;
    assert_eq!(
        forward.stdout.split_whitespace().collect::<Vec<_>>(),
        ["1", "1"]
    );
    Ok(())
}

#[test]
fn names_are_unique_and_teardown_removes_everything() -> Result<()> {
    if require_netns("creates network namespaces").is_err() {
        return Ok(());
    }
    let a = Topology::builder().build()?;
    let b = Topology::builder().build()?;
    assert_ne!(a.name(Ns::World), b.name(Ns::World));
    a.set_resolv_conf(Ns::Bottle, "nameserver 192.0.2.53\n")?;
    let out = a.exec_ok(Ns::Bottle, "cat", &["/etc/resolv.conf"], T)?;
    assert_eq!(out.stdout, "nameserver 192.0.2.53\n");
    let names: Vec<String> = Ns::ALL.iter().map(|ns| a.name(*ns).to_string()).collect();
    let dir = a.dir().to_path_buf();
    a.close()?;
    let list = run_ok("ip", &["-j", "netns", "list"], T)?.stdout;
    let list: Value = if list.trim().is_empty() {
        Value::Array(vec![])
    } else {
        serde_json::from_str(&list)?
    };
    let left: Vec<&str> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["name"].as_str())
        .collect();
    for name in &names {
        assert!(
            !left.contains(&name.as_str()),
            "{name} still exists: {left:?}"
        );
        assert!(!std::path::Path::new("/etc/netns").join(name).exists());
    }
    assert!(!dir.exists(), "temp dir {} left behind", dir.display());
    drop(b);
    Ok(())
}
