//! The firewall against the real kernel: each test runs in a thread that has
//! its own fresh network namespace, and reads the result back with `nft -j`.

use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use rbm_agent::firewall::netlink::NetlinkTransport;
use rbm_agent::firewall::ruleset::{FirewallInput, Interfaces, Ruleset, LEARNED_MAX};
use rbm_agent::firewall::{Firewall, Learn};
use rbm_agent::profile::{Entry, Protocol};
use rbm_agent::profile::{Mode, Ports};
use serde_json::Value;

/// Runs `f` in a new network namespace (namespaces are per thread).
/// Not root: a loud skip, or a failure when CI=true.
fn in_netns(test: &str, f: impl FnOnce() + Send + 'static) {
    if unsafe { libc::geteuid() } != 0 {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test} needs root, and a skip in CI is a failure");
        }
        eprintln!("SKIPPED: {test}: needs root (network namespaces, nftables)");
        return;
    }
    std::thread::spawn(move || {
        // SAFETY: unshare on the current thread only.
        assert_eq!(
            unsafe { libc::unshare(libc::CLONE_NEWNET) },
            0,
            "unshare(CLONE_NEWNET)"
        );
        f();
    })
    .join()
    .unwrap();
}

fn nft_json(args: &[&str]) -> Value {
    let out = Command::new("nft")
        .arg("-j")
        .args(args)
        .output()
        .expect("run nft (install the nftables package)");
    assert!(
        out.status.success(),
        "nft -j {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn items<'a>(v: &'a Value, kind: &str) -> Vec<&'a Value> {
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get(kind))
        .collect()
}

fn input() -> FirewallInput {
    FirewallInput {
        access: Mode::Allowlist,
        cidrs: vec![
            "203.0.113.0/28".parse().unwrap(),
            "2001:db8::/64".parse().unwrap(),
        ],
        upstream_dns: vec!["192.0.2.53".parse().unwrap()],
        bottle_ip: "10.242.0.3".parse().unwrap(),
        entries: vec![Entry {
            host_port: 8890,
            bottle_port: 8888,
            protocol: Protocol::Tcp,
        }],
        interfaces: Interfaces {
            enclave: "eth1".into(),
            uplink: "eth0".into(),
        },
        name_binding: true,
        generation: 0,
        intercept: None,
        only_via_proxy: false,
    }
}

fn firewall() -> Firewall {
    Firewall::new(Box::new(NetlinkTransport::open().unwrap()))
}

#[test]
fn ruleset_installs_and_reads_back() {
    in_netns("ruleset_installs_and_reads_back", || {
        let mut fw = firewall();
        fw.install(&Ruleset::build(&input())).unwrap();
        let v = nft_json(&["list", "ruleset"]);
        let tables = items(&v, "table");
        assert_eq!(tables.len(), 1);
        assert_eq!(tables[0]["name"], "rbm");
        assert_eq!(tables[0]["family"], "inet");
        let chains = items(&v, "chain");
        let forward = chains.iter().find(|c| c["name"] == "forward").unwrap();
        assert_eq!(forward["policy"], "drop");
        assert_eq!(forward["hook"], "forward");
        let rules = items(&v, "rule");
        assert!(
            rules.iter().all(|r| r["expr"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e.get("counter").is_some())),
            "every rule counts"
        );
        let comments: Vec<&str> = rules.iter().filter_map(|r| r["comment"].as_str()).collect();
        assert!(comments.contains(&"accept:learned4-ports"), "{comments:?}");
        // The counters come back over netlink too.
        let counters = fw.counters().unwrap();
        assert_eq!(counters.len(), rules.len());
    });
}

#[test]
fn install_twice_replaces_the_table_whole() {
    in_netns("install_twice_replaces_the_table_whole", || {
        let mut fw = firewall();
        fw.install(&Ruleset::build(&input())).unwrap();
        fw.learn(&[Learn {
            addr: "198.51.100.10".parse().unwrap(),
            ports: Ports::All,
            timeout: Duration::from_secs(60),
        }])
        .unwrap();
        let mut second = input();
        second.access = Mode::Disabled;
        fw.install(&Ruleset::build(&second)).unwrap();
        let v = nft_json(&["list", "ruleset"]);
        assert_eq!(items(&v, "table").len(), 1);
        let comments: Vec<String> = items(&v, "rule")
            .iter()
            .filter_map(|r| r["comment"].as_str().map(String::from))
            .collect();
        assert!(
            !comments.iter().any(|c| c.starts_with("accept:learned")),
            "{comments:?}"
        );
        let learned = nft_json(&["list", "set", "inet", "rbm", "learned4"]);
        assert!(
            items(&learned, "set")[0].get("elem").is_none(),
            "learned addresses are gone with the old table"
        );
    });
}

#[test]
fn cidr_interval_set_holds_exactly_the_ranges() {
    in_netns("cidr_interval_set_holds_exactly_the_ranges", || {
        firewall().install(&Ruleset::build(&input())).unwrap();
        let v = nft_json(&["list", "set", "inet", "rbm", "allow4"]);
        let elems = items(&v, "set")[0]["elem"].to_string();
        assert!(
            elems.contains("203.0.113.0") && elems.contains("28"),
            "{elems}"
        );
        let v = nft_json(&["list", "set", "inet", "rbm", "allow6"]);
        assert!(items(&v, "set")[0]["elem"]
            .to_string()
            .contains("2001:db8::"));
    });
}

#[test]
fn learned_elements_get_timeouts_and_refresh() {
    in_netns("learned_elements_get_timeouts_and_refresh", || {
        let mut fw = firewall();
        fw.install(&Ruleset::build(&input())).unwrap();
        // Learning refreshes the way the kernel was found to, and the try
        // leaves nothing behind.
        let refresh = fw.detect_refresh().unwrap();
        eprintln!("this kernel refreshes by {refresh:?}");
        let tables = nft_json(&["list", "tables"]);
        assert_eq!(items(&tables, "table").len(), 1, "{tables}");
        let a: IpAddr = "198.51.100.10".parse().unwrap();
        let learn = |secs| Learn {
            addr: a,
            ports: Ports::All,
            timeout: Duration::from_secs(secs),
        };
        fw.learn(&[learn(30)]).unwrap();
        fw.learn(&[learn(600)]).unwrap();
        let v = nft_json(&["list", "set", "inet", "rbm", "learned4"]);
        let elem = &items(&v, "set")[0]["elem"][0]["elem"];
        assert_eq!(elem["val"], "198.51.100.10");
        assert_eq!(
            elem["timeout"], 600,
            "re-learning refreshes the timeout: {elem}"
        );
        fw.learn(&[Learn {
            addr: a,
            ports: Ports::Only([443].into()),
            timeout: Duration::from_secs(60),
        }])
        .unwrap();
        let v = nft_json(&["list", "set", "inet", "rbm", "learned4_ports"]);
        assert_eq!(
            items(&v, "set")[0]["elem"].as_array().unwrap().len(),
            2,
            "tcp and udp"
        );
    });
}

#[test]
fn ten_thousand_addresses_fit_in_one_batch() {
    in_netns("ten_thousand_addresses_fit_in_one_batch", || {
        let mut fw = firewall();
        fw.install(&Ruleset::build(&input())).unwrap();
        let many: Vec<Learn> = (0..10_000u32)
            .map(|i| Learn {
                addr: IpAddr::V4((0x0a63_0000 + i).into()),
                ports: Ports::All,
                timeout: Duration::from_secs(60),
            })
            .collect();
        fw.learn(&many).unwrap();
        let v = nft_json(&["list", "set", "inet", "rbm", "learned4"]);
        assert_eq!(
            items(&v, "set")[0]["elem"].as_array().unwrap().len(),
            10_000
        );
    });
}

#[test]
fn a_learned_set_holds_at_most_learned_max_and_then_refuses_as_full() {
    in_netns("a_learned_set_holds_at_most_learned_max", || {
        let mut fw = firewall();
        fw.install(&Ruleset::build(&input())).unwrap();
        fw.detect_refresh().unwrap();
        let learn = |i: u32| Learn {
            addr: IpAddr::V4((0x0a40_0000 + i).into()),
            ports: Ports::All,
            timeout: Duration::from_secs(600),
        };
        let all: Vec<Learn> = (0..LEARNED_MAX).map(learn).collect();
        let started = std::time::Instant::now();
        fw.learn(&all).unwrap();
        // Reported, never asserted: speed is for the benchmarks.
        eprintln!(
            "{LEARNED_MAX} addresses in one batch: {:?}",
            started.elapsed()
        );
        fw.learn(&all[..1])
            .expect("an address already in is refreshed");
        let error = fw.learn(&[learn(LEARNED_MAX)]).unwrap_err();
        assert!(error.is_full(), "{error}");
        let v = nft_json(&["list", "set", "inet", "rbm", "learned4"]);
        assert!(v.to_string().contains(&format!("\"size\":{LEARNED_MAX}")));
    });
}

#[test]
#[ignore = "prints the ruleset for a human to read"]
fn show_ruleset() {
    in_netns("show_ruleset", || {
        firewall().install(&Ruleset::build(&input())).unwrap();
        let out = Command::new("nft")
            .args(["list", "ruleset"])
            .output()
            .unwrap();
        println!("{}", String::from_utf8_lossy(&out.stdout));
    });
}
