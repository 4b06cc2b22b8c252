//! The whole proxy on loopback: what allowed names get back, and what the
//! firewall learns before that.

use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use super::client::{query, query_edns, tcp, udp};
use super::fake_upstream::FakeUpstream;
use super::harness::{start, Proxy, RecordingLearner};
use super::policy;
use crate::firewall::Learn;
use crate::profile::{Mode, Ports};

const DOMAINS: &[&str] = &[
    "www.allowed.test:443",
    "big.test",
    "stray.test",
    "many.test",
    "nx.test",
];

async fn allowlist_proxy() -> (Proxy, FakeUpstream) {
    let upstream = FakeUpstream::start().await;
    let proxy = start(
        policy(Mode::Allowlist, Mode::Allowlist, DOMAINS),
        vec![upstream.addr],
        RecordingLearner::default(),
    )
    .await;
    (proxy, upstream)
}

fn addrs(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn allowed_name_is_answered_after_its_addresses_are_learned() {
    let (proxy, upstream) = allowlist_proxy().await;
    let request = query("WWW.Allowed.test", RecordType::A);
    let reply = udp(proxy.addr, &request).await;
    proxy.learner.note("answer www.allowed.test");

    assert_eq!(reply.metadata.id, request.metadata.id);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.recursion_desired && reply.metadata.recursion_available);
    assert_eq!(
        reply.queries, request.queries,
        "the question is echoed as asked"
    );
    let owners: Vec<String> = reply
        .answers
        .iter()
        .map(|r| format!("{} {}", r.name, r.record_type()))
        .collect();
    assert_eq!(
        owners,
        ["www.allowed.test. CNAME", "edge.cdn.test. A"],
        "injected records are dropped"
    );
    assert!(reply.authorities.is_empty() && reply.additionals.is_empty());
    assert!(upstream.saw("www.allowed.test"));

    assert_eq!(
        proxy.learner.events(),
        ["learned www.allowed.test", "answer www.allowed.test"]
    );
    let learned = Learn {
        addr: "192.0.2.10".parse().unwrap(),
        ports: Ports::Only([443].into()),
        timeout: Duration::from_secs(30),
    };
    assert_eq!(
        proxy.learner.batches(),
        [("www.allowed.test".to_string(), vec![learned])]
    );
    assert_eq!(proxy.shared.learned()[0].name, "www.allowed.test");
    assert_eq!(proxy.shared.dns_counts().allowed, 1);
}

#[tokio::test]
async fn aaaa_over_tcp_is_learned_too() {
    let (proxy, _upstream) = allowlist_proxy().await;
    let reply = tcp(proxy.addr, &query("www.allowed.test", RecordType::AAAA)).await;
    assert_eq!(addrs(&reply), ["2001:db8::10"]);
    assert_eq!(
        proxy.learner.batches()[0].1[0].addr,
        "2001:db8::10".parse::<std::net::IpAddr>().unwrap()
    );
}

#[tokio::test]
async fn truncated_upstream_answer_is_fetched_again_over_tcp() {
    let (proxy, _upstream) = allowlist_proxy().await;
    let reply = udp(proxy.addr, &query("big.test", RecordType::A)).await;
    assert_eq!(addrs(&reply), ["192.0.2.20"]);
    assert!(!reply.metadata.truncation);
    assert_eq!(proxy.learner.batches().len(), 1);
}

#[tokio::test]
async fn replies_with_a_wrong_id_or_question_are_ignored() {
    let (proxy, _upstream) = allowlist_proxy().await;
    let reply = udp(proxy.addr, &query("stray.test", RecordType::A)).await;
    assert_eq!(addrs(&reply), ["192.0.2.30"]);
}

#[tokio::test]
async fn nxdomain_is_passed_through_and_nothing_is_learned() {
    let (proxy, _upstream) = allowlist_proxy().await;
    let reply = udp(proxy.addr, &query("nx.test", RecordType::A)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert!(proxy.learner.batches().is_empty());
}

#[tokio::test]
async fn an_answer_too_big_for_the_client_is_truncated_over_udp() {
    let (proxy, _upstream) = allowlist_proxy().await;
    let plain = udp(proxy.addr, &query("many.test", RecordType::A)).await;
    assert!(
        plain.metadata.truncation,
        "40 A records do not fit 512 bytes"
    );
    let big = udp(proxy.addr, &query_edns("many.test", RecordType::A, 4096)).await;
    assert!(!big.metadata.truncation);
    assert_eq!(addrs(&big).len(), 40);
    assert_eq!(big.edns.map(|e| e.max_payload()), Some(4096));
    let over_tcp = tcp(proxy.addr, &query("many.test", RecordType::A)).await;
    assert_eq!(addrs(&over_tcp).len(), 40);
    assert!(
        proxy
            .learner
            .batches()
            .iter()
            .all(|(_, items)| items.len() == 40),
        "all addresses are learned in one batch"
    );
}

#[tokio::test]
async fn without_a_grant_the_answer_passes_and_nothing_is_learned() {
    let upstream = FakeUpstream::start().await;
    let p = policy(Mode::Global, Mode::Allowlist, &["www.allowed.test"]);
    let proxy = start(p, vec![upstream.addr], RecordingLearner::default()).await;
    let reply = udp(proxy.addr, &query("other.test", RecordType::A)).await;
    assert_eq!(addrs(&reply), ["192.0.2.40"]);
    assert!(proxy.learner.batches().is_empty());
    assert_eq!(proxy.shared.dns_counts().allowed, 1);
}

#[tokio::test]
async fn a_dead_first_upstream_is_skipped() {
    let upstream = FakeUpstream::start().await;
    let blackhole = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let upstreams = vec![blackhole.local_addr().unwrap(), upstream.addr];
    let proxy = start(
        policy(Mode::Allowlist, Mode::Allowlist, DOMAINS),
        upstreams,
        RecordingLearner::default(),
    )
    .await;
    let reply = udp(proxy.addr, &query("big.test", RecordType::A)).await;
    assert_eq!(addrs(&reply), ["192.0.2.20"]);
    proxy.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_address_still_open_is_not_sent_to_the_kernel_again() {
    let (proxy, _upstream) = allowlist_proxy().await;
    let first = udp(proxy.addr, &query("www.allowed.test", RecordType::A)).await;
    let second = udp(proxy.addr, &query("www.allowed.test", RecordType::A)).await;
    assert_eq!(addrs(&first), addrs(&second));
    assert_eq!(
        proxy.learner.batches().len(),
        1,
        "the first answer keeps 192.0.2.10 open for 30 s; the second needs no kernel call"
    );
    let ttl = second.answers.last().unwrap().ttl;
    assert!(ttl <= 30, "never longer than the address stays open: {ttl}");
}

#[tokio::test]
async fn a_name_asked_again_is_answered_from_the_cache_under_the_policy_in_force() {
    let (proxy, upstream) = allowlist_proxy().await;
    let first = udp(proxy.addr, &query("www.allowed.test", RecordType::A)).await;
    let again = udp(proxy.addr, &query("WWW.allowed.TEST", RecordType::A)).await;
    assert_eq!(addrs(&first), addrs(&again));
    assert_eq!(upstream.questions(), 1, "asked upstream once");
    assert_eq!(proxy.shared.dns_counts().cached, 1);

    // The cache keeps answers, never verdicts: once the name is no longer
    // allowed, its kept answer is refused like any other.
    proxy
        .policy
        .set(policy(Mode::Allowlist, Mode::Allowlist, &["big.test"]));
    let refused = udp(proxy.addr, &query("www.allowed.test", RecordType::A)).await;
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    assert!(refused.answers.is_empty());
}
