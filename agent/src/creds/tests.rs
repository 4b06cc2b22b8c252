//! Requests through a credential host's exchange on loopback: a bottle
//! that writes raw HTTP/1.1, the exchange as the proxy serves it, and a
//! stand-in for the real host that records the bytes it got and answers
//! with bytes the test writes. Each test is named after the attack.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::exchange::{Exchange, Sender};
use super::swap::{Places, Secret};
use crate::policy::PolicyCell;
use crate::profile::{Mode, RequestRule, RequestRules};
use crate::state::Shared;

const HOST: &str = "api.a.test";
const REAL: &str = "sk-real-value-of-a-0123456789";
const PLACEHOLDER: &str = "rbm-placeholder-aaaaaaaaaaaaaaaa";
/// Another host's credential.
const OTHER_PLACEHOLDER: &str = "rbm-placeholder-bbbbbbbbbbbbbbbb";

/// A credential that goes in Authorization, `x-api-key`, `x-custom-key`
/// and the query parameter `key`.
fn secret(env: &str, placeholder: &str, real: &str) -> Secret {
    Secret {
        env: env.into(),
        placeholder: placeholder.into(),
        real: real.into(),
        places: Places {
            headers: vec!["x-api-key".into(), "x-custom-key".into()],
            query: Some("key".into()),
        },
    }
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// What each side saw of one request.
struct Trip {
    /// Everything the bottle read back.
    bottle: String,
    /// Everything the real host read.
    host: String,
}

/// Reads until the peer closes or stays silent for a while.
async fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut wait = Duration::from_secs(5);
    while let Ok(Ok(n)) = tokio::time::timeout(wait, s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        wait = Duration::from_millis(300);
    }
    got
}

/// `request` from the bottle through the exchange; the real host answers
/// what `answer` makes of the request head it got.
async fn trip(request: &str, answer: impl FnOnce(&str) -> String + Send + 'static) -> Trip {
    trip_ruled(&[], request, answer).await
}

/// `trip`, with `rules` as HOST's `[[requests]]` (none: no rules).
async fn trip_ruled(
    rules: &[&str],
    request: &str,
    answer: impl FnOnce(&str) -> String + Send + 'static,
) -> Trip {
    let mut policy = crate::dns::tests::policy(Mode::Allowlist, Mode::Allowlist, &[HOST]);
    if !rules.is_empty() {
        policy.requests = vec![RequestRules {
            hosts: vec![HOST.into()],
            allow: rules
                .iter()
                .map(|r| RequestRule::parse(r).unwrap())
                .collect(),
            upstream_ca: None,
            outside: false,
        }];
    }
    let real_host = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let real_addr = real_host.local_addr().unwrap();
    let host_side = tokio::spawn(async move {
        let (mut s, _) = real_host.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !complete(&got) {
            match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => return String::from_utf8_lossy(&got).into_owned(),
            }
        }
        let got = String::from_utf8_lossy(&got).into_owned();
        s.write_all(answer(&got).as_bytes()).await.unwrap();
        s.shutdown().await.unwrap();
        got
    });
    let sender = Sender::connect(TcpStream::connect(real_addr).await.unwrap(), false)
        .await
        .unwrap();
    let exchange = Arc::new(Exchange {
        sender,
        here: vec![secret("KEY_A", PLACEHOLDER, REAL)],
        others: vec![secret("KEY_B", OTHER_PLACEHOLDER, "sk-real-value-of-b")],
        host: HOST.into(),
        dst: SocketAddr::from(([127, 0, 0, 1], 443)),
        policy: Arc::new(PolicyCell::new(policy)),
        shared: Arc::new(Shared::default()),
    });
    let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = proxy.local_addr().unwrap();
    tokio::spawn(async move {
        let (s, _) = proxy.accept().await.unwrap();
        let service = hyper::service::service_fn(move |req| {
            let exchange = exchange.clone();
            async move { Ok::<_, std::convert::Infallible>(exchange.pass(req).await) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(s), service)
            .with_upgrades()
            .await;
    });
    let mut bottle = TcpStream::connect(proxy_addr).await.unwrap();
    bottle.write_all(request.as_bytes()).await.unwrap();
    let got = read_all(&mut bottle).await;
    drop(bottle);
    Trip {
        bottle: String::from_utf8_lossy(&got).into_owned(),
        host: host_side.await.unwrap(),
    }
}

/// Whether `got` holds a request's whole head, and as much body as its
/// Content-Length says.
fn complete(got: &[u8]) -> bool {
    let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    got.len() >= end + 4 + length
}

/// A plain 200 whose body echoes the request head.
fn echo(head: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
        head.len()
    )
}

fn status(trip: &Trip) -> &str {
    trip.bottle.lines().next().unwrap_or("")
}

#[tokio::test]
async fn a_request_for_another_host_inside_the_credential_hosts_tls_gets_no_real_value() {
    let auth = format!("Authorization: Bearer {PLACEHOLDER}\r\nConnection: close\r\n\r\n");
    for (what, head) in [
        (
            "another Host",
            format!("GET / HTTP/1.1\r\nHost: evil.test\r\n{auth}"),
        ),
        (
            "an absolute target for another host",
            format!("GET https://evil.test/ HTTP/1.1\r\nHost: {HOST}\r\n{auth}"),
        ),
        (
            "an absolute target with another port",
            format!("GET https://{HOST}:8443/ HTTP/1.1\r\nHost: {HOST}\r\n{auth}"),
        ),
        (
            "a Host with another port",
            format!("GET / HTTP/1.1\r\nHost: {HOST}:8443\r\n{auth}"),
        ),
        (
            "a Host with user information",
            format!("GET / HTTP/1.1\r\nHost: x@{HOST}\r\n{auth}"),
        ),
        (
            "two Host headers",
            format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nHost: evil.test\r\n{auth}"),
        ),
        (
            "two Host headers naming the credential host",
            format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nHost: {HOST}\r\n{auth}"),
        ),
    ] {
        let t = trip(&head, echo).await;
        assert!(
            status(&t).starts_with("HTTP/1.1 403"),
            "{what}: {}",
            t.bottle
        );
        assert_eq!(t.host, "", "{what}: the real host got a request");
    }
    for (what, head) in [
        (
            "its name",
            format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n{auth}"),
        ),
        (
            "its name in capitals, with the connection's port",
            format!("GET / HTTP/1.1\r\nHost: API.A.Test:443\r\n{auth}"),
        ),
        (
            "an absolute target for it",
            format!("GET https://{HOST}/x HTTP/1.1\r\nHost: {HOST}\r\n{auth}"),
        ),
    ] {
        let t = trip(&head, echo).await;
        assert!(
            status(&t).starts_with("HTTP/1.1 200"),
            "{what}: {}",
            t.bottle
        );
        assert!(
            t.host.contains(&format!("Bearer {REAL}")),
            "{what}: {}",
            t.host
        );
    }
}

/// A 101 to whatever protocol the request asked for, then the real value
/// in the switched stream.
fn switch(head: &str) -> String {
    let to = head
        .lines()
        .find_map(|l| l.strip_prefix("upgrade: ").or(l.strip_prefix("Upgrade: ")))
        .unwrap_or("h2c");
    format!("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {to}\r\n\r\nraw {REAL}\n")
}

#[tokio::test]
async fn an_upgrade_to_another_protocol_cannot_carry_the_real_value_past_redaction() {
    let auth = format!("Authorization: Bearer {PLACEHOLDER}\r\n\r\n");
    for (what, head) in [
        (
            "h2c",
            format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n{auth}"),
        ),
        (
            "websocket and another",
            format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket, foo/1\r\n{auth}"),
        ),
        (
            "CONNECT",
            format!("CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n{auth}"),
        ),
    ] {
        let t = trip(&head, switch).await;
        assert!(status(&t).starts_with("HTTP/1.1 403"), "{what}: {}", t.bottle);
        assert!(!t.bottle.contains(REAL), "{what}: {}", t.bottle);
        assert_eq!(t.host, "", "{what}: the real host got a request");
    }
    // A settings header without an upgrade is not passed on.
    let head = format!(
        "GET / HTTP/1.1\r\nHost: {HOST}\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nConnection: close\r\n{auth}"
    );
    let t = trip(&head, echo).await;
    assert!(status(&t).starts_with("HTTP/1.1 200"), "{}", t.bottle);
    assert!(
        !t.host.to_ascii_lowercase().contains("http2-settings"),
        "{}",
        t.host
    );
    // A WebSocket upgrade passes, but the real host must switch to
    // WebSocket, not to something else.
    let ws = format!(
        "GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n{auth}"
    );
    let t = trip(&ws, switch).await;
    assert!(status(&t).starts_with("HTTP/1.1 101"), "{}", t.bottle);
    assert!(t.host.contains(&format!("Bearer {REAL}")), "{}", t.host);
    let t = trip(&ws, |_| switch("Upgrade: h2c")).await;
    assert!(status(&t).starts_with("HTTP/1.1 502"), "{}", t.bottle);
    assert!(!t.bottle.contains(REAL), "{}", t.bottle);
}

#[tokio::test]
async fn an_echo_of_basic_credentials_hands_back_the_bottles_own_not_the_real_value_encoded() {
    let bottles = b64(&format!("user:{PLACEHOLDER}"));
    let made = b64(&format!("user:{REAL}"));
    let head = format!(
        "GET / HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Basic {bottles}\r\nConnection: close\r\n\r\n"
    );
    let t = trip(&head, echo).await;
    assert!(t.host.contains(&made), "{}", t.host);
    assert!(!t.bottle.contains(&made), "{}", t.bottle);
    assert!(
        t.bottle.contains(&format!("Basic {bottles}")),
        "{}",
        t.bottle
    );
}

#[tokio::test]
async fn the_real_value_in_base64_is_redacted_like_the_real_value() {
    let head = format!(
        "GET / HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {PLACEHOLDER}\r\nConnection: close\r\n\r\n"
    );
    let body = format!("{} and {}", b64(REAL), b64(REAL).trim_end_matches('='));
    let t = trip(&head, move |_| {
        format!(
            "HTTP/1.1 200 OK\r\nX-Echo: {body}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    })
    .await;
    assert!(status(&t).starts_with("HTTP/1.1 200"), "{}", t.bottle);
    assert!(
        !t.bottle.contains(b64(REAL).trim_end_matches('=')),
        "{}",
        t.bottle
    );
    assert!(t.bottle.contains(&b64(PLACEHOLDER)), "{}", t.bottle);
}

#[tokio::test]
async fn the_real_value_in_a_trailer_or_a_reason_phrase_is_redacted() {
    let head = format!(
        "GET / HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {PLACEHOLDER}\r\nTE: trailers\r\nConnection: close\r\n\r\n"
    );
    let t = trip(&head, |_| {
        format!(
            "HTTP/1.1 200 echo {REAL}\r\nTransfer-Encoding: chunked\r\nTrailer: x-echo\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\nx-echo: {REAL}\r\n\r\n"
        )
    })
    .await;
    assert!(status(&t).starts_with("HTTP/1.1 200"), "{}", t.bottle);
    assert!(t.bottle.contains("hello"), "{}", t.bottle);
    assert!(!t.bottle.contains(REAL), "{}", t.bottle);
    assert!(
        status(&t).ends_with(&format!("200 echo {PLACEHOLDER}")),
        "{}",
        t.bottle
    );
    assert!(
        t.bottle.contains(&format!("x-echo: {PLACEHOLDER}")),
        "{}",
        t.bottle
    );
}

#[tokio::test]
async fn a_real_value_that_cannot_be_redacted_gets_502() {
    let head = format!(
        "GET / HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {PLACEHOLDER}\r\nConnection: close\r\n\r\n"
    );
    // A header's name cannot be rewritten in place.
    let t = trip(&head, |_| {
        format!("HTTP/1.1 200 OK\r\nx-{REAL}: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    })
    .await;
    assert!(status(&t).starts_with("HTTP/1.1 502"), "{}", t.bottle);
    assert!(!t.bottle.contains(REAL), "{}", t.bottle);
}

#[tokio::test]
async fn a_placeholder_outside_where_the_credential_goes_reaches_the_host_as_the_placeholder() {
    // A host that stores and shows what it gets (an issue's title, a
    // path in its logs) would publish the real value written there.
    let body = format!("{{\"title\":\"{PLACEHOLDER}\"}}");
    let head = format!(
        "POST /issues/{PLACEHOLDER}?title={PLACEHOLDER}&key={PLACEHOLDER} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {PLACEHOLDER}\r\nx-title: {PLACEHOLDER}\r\nx-note: see {PLACEHOLDER}\r\nx-api-key: {PLACEHOLDER}\r\nx-custom-key: {PLACEHOLDER}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let t = trip(&head, echo).await;
    assert!(status(&t).starts_with("HTTP/1.1 200"), "{}", t.bottle);
    let first = t.host.lines().next().unwrap_or("");
    assert_eq!(
        first,
        format!("POST /issues/{PLACEHOLDER}?title={PLACEHOLDER}&key={REAL} HTTP/1.1"),
        "only the credential's query parameter gets the real value: {}",
        t.host
    );
    let host = t.host.to_ascii_lowercase();
    for stays in ["x-title: ", "x-note: see "] {
        assert!(
            host.contains(&format!("{stays}{PLACEHOLDER}")),
            "{}",
            t.host
        );
    }
    assert!(
        t.host.ends_with(&body),
        "the body is never swapped: {}",
        t.host
    );
    for swapped in ["authorization: bearer ", "x-api-key: ", "x-custom-key: "] {
        assert!(host.contains(&format!("{swapped}{REAL}")), "{}", t.host);
    }
    assert_eq!(t.host.matches(REAL).count(), 4, "{}", t.host);
    // What the host echoes comes back as the placeholder everywhere.
    assert!(!t.bottle.contains(REAL), "{}", t.bottle);
}

const READ_ONLY: &[&str] = &[
    "GET *",
    "POST /*/*/git-upload-pack",
    "POST /my-org/*/git-receive-pack",
];

#[tokio::test]
async fn a_push_the_rules_refuse_never_reaches_the_host() {
    let push = format!(
        "POST /other-org/tool.git/git-receive-pack HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 4\r\nConnection: close\r\n\r\n0000"
    );
    let trip = trip_ruled(READ_ONLY, &push, echo).await;
    assert!(status(&trip).contains("403"), "{}", trip.bottle);
    assert!(
        trip.bottle
            .contains("no rule allows POST /other-org/tool.git/git-receive-pack"),
        "{}",
        trip.bottle
    );
    assert_eq!(trip.host, "", "the host got the push");
}

#[tokio::test]
async fn a_second_request_on_a_kept_alive_connection_is_checked_too() {
    let two = format!(
        "GET /my-org/tool.git/info/refs HTTP/1.1\r\nHost: {HOST}\r\n\r\n\
         POST /my-org/../other-org/tool.git/git-receive-pack HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let trip = trip_ruled(READ_ONLY, &two, |head| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{head}",
            head.len()
        )
    })
    .await;
    assert!(status(&trip).contains("200"), "{}", trip.bottle);
    assert!(
        trip.bottle.contains("403 Forbidden")
            && trip
                .bottle
                .contains("POST /other-org/tool.git/git-receive-pack"),
        "{}",
        trip.bottle
    );
    assert!(
        trip.host.starts_with("GET /my-org/tool.git/info/refs"),
        "{}",
        trip.host
    );
    assert!(!trip.host.contains("receive-pack"), "{}", trip.host);
}

#[tokio::test]
async fn the_host_reads_the_path_the_rules_checked() {
    let get = format!(
        "GET /my-org/%74ool.git//./info/refs?service=git-upload-pack HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
    );
    let trip = trip_ruled(READ_ONLY, &get, echo).await;
    assert!(status(&trip).contains("200"), "{}", trip.bottle);
    assert!(
        trip.host
            .starts_with("GET /my-org/tool.git/info/refs?service=git-upload-pack HTTP/1.1"),
        "{}",
        trip.host
    );
}

#[tokio::test]
async fn a_key_for_reading_only_cannot_write() {
    let auth = format!("Authorization: Bearer {PLACEHOLDER}");
    let post = format!(
        "POST /v1/things HTTP/1.1\r\nHost: {HOST}\r\n{auth}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    let trip = trip_ruled(&["GET /v1/**"], &post, echo).await;
    assert!(status(&trip).contains("403"), "{}", trip.bottle);
    assert_eq!(trip.host, "", "the write reached the host");
    let get =
        format!("GET /v1/things HTTP/1.1\r\nHost: {HOST}\r\n{auth}\r\nConnection: close\r\n\r\n");
    let trip = trip_ruled(&["GET /v1/**"], &get, echo).await;
    assert!(status(&trip).contains("200"), "{}", trip.bottle);
    assert!(
        trip.host.contains(&format!("Bearer {REAL}")),
        "{}",
        trip.host
    );
}

#[tokio::test]
async fn what_would_make_a_ruled_host_do_more_than_the_checked_request_is_refused() {
    for (what, extra) in [
        ("an upgrade", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x\r\nSec-WebSocket-Version: 13\r\n"),
        ("a method override", "X-HTTP-Method-Override: POST\r\n"),
        ("a target override", "X-Original-URL: /other-org/tool.git/git-receive-pack\r\n"),
        ("a GET with a body", "Content-Length: 60\r\n"),
    ] {
        let body = if extra.starts_with("Content-Length") {
            "POST /other-org/tool.git/git-receive-pack HTTP/1.1\r\nHost: x\r\n\r\n".to_string() + "0000000000000"
        } else {
            String::new()
        };
        let get = format!(
            "GET /my-org/tool.git/info/refs HTTP/1.1\r\nHost: {HOST}\r\n{extra}Connection: close\r\n\r\n{body}"
        );
        let trip = trip_ruled(READ_ONLY, &get, echo).await;
        assert!(status(&trip).contains("403"), "{what}: {}", trip.bottle);
        assert_eq!(trip.host, "", "{what} reached the host");
    }
}
