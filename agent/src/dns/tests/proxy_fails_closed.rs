//! The whole proxy on loopback: refusals that never reach upstream, failures
//! that end in SERVFAIL, and bad input that does not stop the server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{OpCode, Query, ResponseCode};
use hickory_proto::rr::RecordType;

use super::client::{query, tcp, udp, udp_raw};
use super::fake_upstream::FakeUpstream;
use super::harness::{start, Proxy, RecordingLearner, TRY_TIMEOUT};
use super::{name, policy};
use crate::dns::{serve, DnsConfig, DnsError};
use crate::profile::Mode;
use crate::state::Shared;

const DOMAINS: &[&str] = &["www.allowed.test:443", "silent.test"];

async fn proxy_with(learner: RecordingLearner) -> (Proxy, FakeUpstream) {
    let upstream = FakeUpstream::start().await;
    let proxy = start(
        policy(Mode::Allowlist, Mode::Allowlist, DOMAINS),
        vec![upstream.addr],
        learner,
    )
    .await;
    (proxy, upstream)
}

#[tokio::test]
async fn refused_name_is_answered_refused_and_never_sent_upstream() {
    let (proxy, upstream) = proxy_with(RecordingLearner::default()).await;
    let reply = udp(proxy.addr, &query("SeCrEt-Data.Exfil.Test", RecordType::A)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert!(reply.answers.is_empty());
    assert_eq!(
        upstream.questions(),
        0,
        "nothing may leave through a refused name"
    );
    assert_eq!(proxy.shared.refused_names(), ["secret-data.exfil.test"]);
    assert_eq!(proxy.shared.dns_counts().refused, 1);
}

#[tokio::test]
async fn any_and_axfr_are_refused_even_for_allowed_names() {
    let (proxy, upstream) = proxy_with(RecordingLearner::default()).await;
    let reply = udp(proxy.addr, &query("www.allowed.test", RecordType::ANY)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    let reply = tcp(proxy.addr, &query("www.allowed.test", RecordType::AXFR)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert_eq!(upstream.questions(), 0);
    assert_eq!(proxy.shared.dns_counts().refused, 2);
}

#[tokio::test]
async fn a_silent_upstream_gives_servfail_in_bounded_time() {
    let (proxy, upstream) = proxy_with(RecordingLearner::default()).await;
    let started = Instant::now();
    // Bounded: the answer comes at all (the client gives up after 8 s), and
    // only after the proxy waited out its upstream. No speed is asserted.
    let reply = udp(proxy.addr, &query("silent.test", RecordType::A)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert!(
        started.elapsed() >= TRY_TIMEOUT,
        "took {:?}",
        started.elapsed()
    );
    assert!(upstream.saw("silent.test"));
    assert_eq!(proxy.shared.dns_counts().failed, 1);
}

#[tokio::test]
async fn no_upstream_at_all_gives_servfail() {
    let proxy = start(
        policy(Mode::Allowlist, Mode::Allowlist, DOMAINS),
        vec![],
        RecordingLearner::default(),
    )
    .await;
    let reply = udp(proxy.addr, &query("www.allowed.test", RecordType::A)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn a_failing_learner_gives_servfail_and_no_addresses() {
    let (proxy, _upstream) = proxy_with(RecordingLearner {
        fail: true,
        ..RecordingLearner::default()
    })
    .await;
    let reply = udp(proxy.addr, &query("www.allowed.test", RecordType::A)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert!(
        reply.answers.is_empty(),
        "no address may reach the bottle unopened"
    );
    assert!(proxy.shared.learned().is_empty());
    assert_eq!(proxy.shared.dns_counts().failed, 1);
    assert_eq!(proxy.shared.dns_counts().allowed, 0);
}

#[tokio::test]
async fn garbage_and_unsupported_requests_do_not_stop_the_server() {
    let (proxy, _upstream) = proxy_with(RecordingLearner::default()).await;
    let short = udp_raw(proxy.addr, b"\x01\x02junk", Duration::from_millis(300)).await;
    assert!(short.is_none(), "less than a header is dropped");

    // A valid header announcing one question, then a cut-off name.
    let bad_body = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05ab";
    let reply = udp_raw(proxy.addr, bad_body, Duration::from_secs(2))
        .await
        .expect("FORMERR expected");
    let reply = hickory_proto::op::Message::from_vec(&reply).unwrap();
    assert_eq!(
        (reply.metadata.id, reply.metadata.response_code),
        (0x1234, ResponseCode::FormErr)
    );

    let mut two = query("www.allowed.test", RecordType::A);
    two.add_query(Query::query(name("silent.test"), RecordType::A));
    assert_eq!(
        udp(proxy.addr, &two).await.metadata.response_code,
        ResponseCode::FormErr
    );

    let mut status = query("www.allowed.test", RecordType::A);
    status.metadata.op_code = OpCode::Status;
    assert_eq!(
        udp(proxy.addr, &status).await.metadata.response_code,
        ResponseCode::NotImp
    );

    let reply = udp(proxy.addr, &query("www.allowed.test", RecordType::A)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(reply.answers.len(), 2);
}

#[tokio::test]
async fn a_busy_address_fails_serve_before_anything_is_served() {
    let taken = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let listen = taken.local_addr().unwrap();
    let config = DnsConfig {
        listen,
        upstreams: vec![],
        upstream_timeout: TRY_TIMEOUT,
    };
    let policy = Arc::new(crate::policy::PolicyCell::new(policy(
        Mode::Allowlist,
        Mode::Allowlist,
        DOMAINS,
    )));
    let result = serve(
        config,
        policy,
        Arc::new(RecordingLearner::default()),
        Arc::new(Shared::default()),
    )
    .await;
    match result {
        Err(DnsError::Bind {
            proto: "UDP", addr, ..
        }) => assert_eq!(addr, listen),
        Err(other) => panic!("expected a UDP bind error, got {other}"),
        Ok(_) => panic!("serve bound an address that is in use"),
    }
}
