//! Benchmark (not a test): time to open 100,000 learned addresses in the
//! kernel, rbm's one netlink batch side by side with the usual peer, `nft -f`
//! with the same elements, in one run, in a fresh network namespace.
//!
//! Then one answer at a time, as a fresh name opens its address: single-
//! address batches timed three ways, interleaved, so that what the kernel
//! costs shows apart from what rbm's own code adds around it:
//! - `Firewall::learn` as the agent calls it, refreshing the way
//!   `Firewall::detect_refresh` found this kernel does (encode; send; read
//!   the acks);
//! - add, delete and add (what a kernel older than 6.12 needs), encoded,
//!   then sent and acked with one reused buffer (the least user space can
//!   do), encode and kernel timed apart;
//! - an add alone, sent the same way (what a kernel that refreshes
//!   timeouts on add, 6.12 and newer, needs).
//!
//! Run as root: `cargo bench -p rbm-agent --bench learn_insert`.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netlink_sys::Socket;
use rbm_agent::firewall::netlink::{netfilter_socket, NetlinkTransport};
use rbm_agent::firewall::ruleset::{sets, FirewallInput, Interfaces, Ruleset, TABLE};
use rbm_agent::firewall::wire::{self, Cmd, Request, NLMSG_ERROR};
use rbm_agent::firewall::{elements, encode, learn_requests, Firewall, Learn, Refresh, Target};
use rbm_agent::profile::{Mode, Ports};

const COUNT: u32 = 100_000;
const ROUNDS: usize = 7;
/// Single-address batches per way and round.
const ONE_BY_ONE: u32 = 2_000;

fn addrs() -> Vec<IpAddr> {
    (0..COUNT)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0x0a63_0000 + i)))
        .collect()
}

fn ruleset() -> Ruleset {
    Ruleset::build(&FirewallInput {
        access: Mode::Allowlist,
        cidrs: vec![],
        upstream_dns: vec![],
        bottle_ip: "10.242.0.3".parse().unwrap(),
        entries: vec![],
        interfaces: Interfaces {
            enclave: "eth1".into(),
            uplink: "eth0".into(),
        },
        name_binding: true,
        generation: 0,
        intercept: None,
        only_via_proxy: false,
    })
}

fn rbm_round(fw: &mut Firewall, items: &[Learn]) -> Duration {
    fw.install(&ruleset()).unwrap();
    let t = Instant::now();
    fw.learn(items).unwrap();
    t.elapsed()
}

fn nft_round(fw: &mut Firewall, script: &str) -> Duration {
    fw.install(&ruleset()).unwrap();
    let t = Instant::now();
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("nft (package nftables)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "nft -f failed");
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The `pct`-th percentile of `v`, in microseconds.
fn us(v: &[Duration], pct: usize) -> f64 {
    let mut v = v.to_vec();
    v.sort();
    v[(v.len() - 1) * pct / 100].as_secs_f64() * 1e6
}

fn learn_item(i: u32) -> Learn {
    Learn {
        addr: IpAddr::V4(Ipv4Addr::from(0x0a40_0000 + i)),
        ports: Ports::All,
        timeout: Duration::from_secs(60),
    }
}

/// Sends `reqs` as one batch and reads every ack into `buf`, reused.
fn send_acked(socket: &Socket, buf: &mut [u8], reqs: &[Request], seq: &mut u32) {
    let mut bytes = Vec::new();
    wire::batch(reqs, *seq, &mut bytes);
    let acks = seq.wrapping_add(1)..seq.wrapping_add(1 + reqs.len() as u32);
    *seq = seq.wrapping_add(reqs.len() as u32 + 2);
    socket.send(&bytes, 0).expect("send the batch");
    let mut pending = reqs.len();
    while pending > 0 {
        let n = socket.recv(&mut &mut buf[..], 0).expect("read the acks");
        for m in wire::messages(&buf[..n]) {
            if m.msg_type == NLMSG_ERROR && acks.contains(&m.seq) {
                assert_eq!(wire::error_code(m.payload), Some(0), "the kernel refused");
                pending -= 1;
            }
        }
    }
}

/// The single-address batches' times, by way.
#[derive(Default)]
struct OneByOne {
    agent: Vec<Duration>,
    encode: Vec<Duration>,
    kernel: Vec<Duration>,
    add_only: Vec<Duration>,
}

fn one_by_one_round(fw: &mut Firewall, socket: &Socket, round: u32, out: &mut OneByOne) {
    fw.install(&ruleset()).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut seq = 1u32;
    let base = round * 3 * ONE_BY_ONE;
    for i in 0..ONE_BY_ONE {
        let item = [learn_item(base + i)];
        let t = Instant::now();
        fw.learn(&item).unwrap();
        out.agent.push(t.elapsed());

        let item = [learn_item(base + ONE_BY_ONE + i)];
        let t = Instant::now();
        let reqs = learn_requests(&[(&item, false)], Refresh::AddDeleteAdd);
        out.encode.push(t.elapsed());
        let t = Instant::now();
        send_acked(socket, &mut buf, &reqs, &mut seq);
        out.kernel.push(t.elapsed());

        let item = [learn_item(base + 2 * ONE_BY_ONE + i)];
        let by_set = elements(&item, Target::Learned);
        let elems = by_set.get(sets::LEARNED4).unwrap();
        let reqs = encode::set_elems(Cmd::NewSetElem, TABLE, sets::LEARNED4, elems);
        let t = Instant::now();
        send_acked(socket, &mut buf, &reqs, &mut seq);
        out.add_only.push(t.elapsed());
    }
}

fn main() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: learn_insert benchmark needs root");
        return;
    }
    let report = std::thread::spawn(|| {
        // SAFETY: affects only this thread.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
        let items: Vec<Learn> = addrs()
            .into_iter()
            .map(|addr| Learn {
                addr,
                ports: Ports::All,
                timeout: Duration::from_secs(60),
            })
            .collect();
        let elems: Vec<String> = addrs().iter().map(|a| format!("{a} timeout 60s")).collect();
        let script = format!("add element inet rbm learned4 {{ {} }}\n", elems.join(", "));
        let mut fw = Firewall::new(Box::new(NetlinkTransport::open().unwrap()));
        fw.install(&ruleset()).unwrap();
        let refresh = fw
            .detect_refresh()
            .expect("trying how the kernel refreshes");
        let mut rbm = Vec::new();
        let mut nft = Vec::new();
        for _ in 0..ROUNDS {
            rbm.push(rbm_round(&mut fw, &items));
            nft.push(nft_round(&mut fw, &script));
        }
        let socket = netfilter_socket().expect("a netfilter socket");
        let _ = socket.set_cap_ack(true);
        let mut one = OneByOne::default();
        for round in 0..ROUNDS as u32 {
            one_by_one_round(&mut fw, &socket, round, &mut one);
        }
        (median(rbm), median(nft), one, refresh)
    })
    .join()
    .unwrap();
    let (rbm, nft, one, refresh) = report;
    println!("learn_insert: {COUNT} addresses, median of {ROUNDS} rounds each, interleaved");
    let rbm_label = format!("rbm netlink batch (refresh: {refresh:?}):");
    println!("  {rbm_label:<54} {:>8.2} ms", rbm.as_secs_f64() * 1e3);
    println!(
        "  nft -f (add only):                                      {:>8.2} ms",
        nft.as_secs_f64() * 1e3
    );
    println!(
        "  ratio rbm / nft: {:.2}",
        rbm.as_secs_f64() / nft.as_secs_f64()
    );
    println!(
        "one answer at a time: {ONE_BY_ONE} single-address batches per way and round, {ROUNDS} rounds; us p50 / p99"
    );
    for (what, v) in [
        ("Firewall::learn, as the agent", &one.agent),
        ("add, delete, add: encoding the three requests", &one.encode),
        ("add, delete, add: send and acks, one buffer", &one.kernel),
        (
            "an add alone: send and acks, one reused buffer",
            &one.add_only,
        ),
    ] {
        println!("  {what:<50} {:>7.1} {:>7.1}", us(v, 50), us(v, 99));
    }
}
