//! The Topology helper builds what the kernel tests assume: addresses,
//! routes (including Podman's extra default route in the sentry) and
//! forwarding, with unique names, and removes it all again.

use std::time::Duration;

use anyhow::Result;
use rbm_tests::netns::{
    enclave_default_route, uplink_default_route, ENCLAVE_ROUTE_METRIC, IP_TIMEOUT,
};
use rbm_tests::{require_netns, run_ok, Ns, Topology};
use serde_json::Value;

const T: Duration = IP_TIMEOUT;

#[test]
fn sentry_looks_like_podman_made_it() -> Result<()> {
    if require_netns("creates network namespaces").is_err() {
        return Ok(());
    }
    let topo = Topology::builder().build()?;
    assert_eq!(
        topo.default_routes(Ns::Sentry, "-4")?,
        [
            uplink_default_route(),
            enclave_default_route(ENCLAVE_ROUTE_METRIC)
        ]
    );
    let v6 = topo.default_routes(Ns::Sentry, "-6")?;
    assert_eq!(
        v6.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ["fd00:243::1"]
    );
    let bottle = topo.default_routes(Ns::Bottle, "-4")?;
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
