//! One request inside an inspected host's TLS: the checks on it (its
//! host, the host's request rules), the placeholders swapped in its head,
//! its trip to the real host over the sentry's own connection, and the
//! answer's way back through redaction.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};

use super::head::{self, Upgrade};
use super::redact::{BoxError, Redacting, Redactor};
use super::swap::{self, Secret};
use crate::policy::PolicyCell;
use crate::profile::{decide, Decision};
use crate::state::{unix_now, Denied, Shared};

pub(super) type ProxyBody = BoxBody<Bytes, BoxError>;
pub(super) type H2Send = hyper::client::conn::http2::SendRequest<Incoming>;

/// The sentry's connection to the real host, one request at a time
/// (HTTP/1.1) or many (HTTP/2).
pub(super) enum Sender {
    H1(tokio::sync::Mutex<hyper::client::conn::http1::SendRequest<Incoming>>),
    H2(H2Send),
}

impl Sender {
    /// HTTP/2 or HTTP/1.1 over `up`, the sentry's connection to the real
    /// host.
    pub(super) async fn connect<T>(up: T, h2: bool) -> anyhow::Result<Sender>
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let io = TokioIo::new(up);
        Ok(if h2 {
            let (send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            Sender::H2(send)
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn.with_upgrades());
            Sender::H1(tokio::sync::Mutex::new(send))
        })
    }

    async fn send(&self, req: Request<Incoming>) -> hyper::Result<Response<Incoming>> {
        match self {
            Sender::H1(send) => {
                let mut send = send.lock().await;
                send.ready().await?;
                send.send_request(req).await
            }
            Sender::H2(send) => {
                let mut send = send.clone();
                send.ready().await?;
                send.send_request(req).await
            }
        }
    }
}

/// What one terminated connection needs for each exchange.
pub(super) struct Exchange {
    pub(super) sender: Sender,
    /// This host's credentials: swapped in.
    pub(super) here: Vec<Secret>,
    /// Other hosts' credentials: their placeholder here is refused.
    pub(super) others: Vec<Secret>,
    pub(super) host: String,
    pub(super) dst: SocketAddr,
    /// The host's request rules, as the last reload left them.
    pub(super) policy: Arc<PolicyCell>,
    pub(super) shared: Arc<Shared>,
}

impl Exchange {
    /// Records a credential denial (status and deny log) and answers the
    /// bottle with `status` and the reason.
    fn deny(&self, status: StatusCode, reason: String) -> Response<ProxyBody> {
        self.deny_as("credential", status, reason)
    }

    fn deny_as(&self, kind: &str, status: StatusCode, reason: String) -> Response<ProxyBody> {
        let body = format!("rbm: {reason}\n");
        self.shared.record_denied(Denied {
            at: unix_now(),
            kind: kind.into(),
            proto: Some("https".into()),
            dst: Some(self.dst),
            name: Some(self.host.clone()),
            reason,
        });
        plain(status, &body)
    }

    pub(super) async fn pass(&self, mut req: Request<Incoming>) -> Response<ProxyBody> {
        if let Err(reason) = head::names_only(&self.host, self.dst.port(), req.uri(), req.headers())
        {
            // The reason quotes the bottle's Host: escaped for the log.
            let shown = crate::shown::shown(&reason);
            tracing::warn!(host = %self.host, reason = %shown, "request for another host refused");
            if self.here.is_empty() {
                return self.deny_as("request", StatusCode::FORBIDDEN, reason);
            }
            let reason = format!("{reason} (the real value goes to {} only)", self.host);
            return self.deny(StatusCode::FORBIDDEN, reason);
        }
        if let Some(refused) = self.check_rules(&mut req) {
            drain(req.into_body()).await;
            return refused;
        }
        let upgrade = match head::upgrade(req.method(), req.headers()) {
            Ok(upgrade) => upgrade,
            Err(reason) => {
                let shown = crate::shown::shown(&reason);
                tracing::warn!(host = %self.host, reason = %shown, "credential: upgrade refused");
                return self.deny(StatusCode::FORBIDDEN, reason);
            }
        };
        // HTTP2-Settings only goes with an upgrade to h2c, refused above.
        req.headers_mut().remove("http2-settings");
        if let Some(env) = self.foreign(&req) {
            let reason = format!(
                "the placeholder of {env} sent to {}, not one of its hosts",
                self.host
            );
            tracing::warn!(host = %self.host, %env, "credential: foreign placeholder refused");
            return self.deny(StatusCode::FORBIDDEN, reason);
        }
        let made = self.swap(&mut req);
        if !self.here.is_empty() {
            ask_uncompressed(req.headers_mut());
        }
        let client_upgrade = (upgrade == Upgrade::WebSocket).then(|| hyper::upgrade::on(&mut req));
        let mut resp = match self.sender.send(req).await {
            Ok(resp) => resp,
            Err(error) => {
                tracing::warn!(host = %self.host, %error, "credential: the real host failed");
                return plain(
                    StatusCode::BAD_GATEWAY,
                    &format!("rbm: {} did not answer: {error}\n", self.host),
                );
            }
        };
        if let Some(encoding) =
            unreadable_encoding(resp.headers()).filter(|_| !self.here.is_empty())
        {
            let reason = format!(
                "{} answered with Content-Encoding {encoding}, from which the real value could not be redacted",
                self.host
            );
            tracing::warn!(host = %self.host, %encoding, "credential: compressed answer refused");
            return self.deny(StatusCode::BAD_GATEWAY, reason);
        }
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            // The real host may switch to another protocol than asked: the
            // bytes after the switch are not redacted, so only a switch to
            // the WebSocket the bottle asked for goes on.
            let Some(client_upgrade) =
                client_upgrade.filter(|_| head::switched_to_websocket(resp.headers()))
            else {
                let reason = format!(
                    "{} switched protocols unasked, or not to WebSocket",
                    self.host
                );
                tracing::warn!(host = %self.host, "credential: switch of protocol refused");
                return self.deny(StatusCode::BAD_GATEWAY, reason);
            };
            let server_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                if let (Ok(a), Ok(b)) = (client_upgrade.await, server_upgrade.await) {
                    let (mut a, mut b) = (TokioIo::new(a), TokioIo::new(b));
                    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                }
            });
        }
        let mut redactor = Redactor::new(&self.here);
        for (form, sent) in made {
            redactor.learn(form, sent);
        }
        // Redaction may change the body's length: it goes without one
        // (chunked, or HTTP/2 frames) instead.
        resp.headers_mut().remove(http::header::CONTENT_LENGTH);
        let (mut head, body) = resp.into_parts();
        if let Err(reason) = redactor.redact_head(&mut head) {
            let reason = format!(
                "{} answered with {reason}, which cannot be redacted",
                self.host
            );
            tracing::warn!(host = %self.host, %reason, "credential: answer refused");
            return self.deny(StatusCode::BAD_GATEWAY, reason);
        }
        let resp = Response::from_parts(head, body);
        resp.map(|body| Redacting::new(body, redactor).boxed())
    }

    /// The host's request rules on `req`: if it has rules and none allows
    /// the request, the 403 for the bottle (and the deny log);
    /// if one does, the request's path becomes the normalised path the
    /// rule matched, so the real host reads what was checked.
    fn check_rules(&self, req: &mut Request<Incoming>) -> Option<Response<ProxyBody>> {
        let policy = self.policy.get();
        let rules = policy.rules_for(&self.host)?;
        let method = req.method().as_str().to_string();
        let refuse = |reason: String| {
            let listed: Vec<String> = rules.iter().map(|r| format!("{:?}", r.text)).collect();
            let shown = crate::shown::shown(&reason);
            tracing::warn!(host = %self.host, reason = %shown, "request refused by the rules");
            self.deny_as(
                "request",
                StatusCode::FORBIDDEN,
                format!(
                    "{method} to {} refused: {reason}; the profile's [[requests]] rules for {} allow only {}",
                    self.host,
                    self.host,
                    listed.join(", ")
                ),
            )
        };
        if let Some(reason) = unruly(&method, req) {
            return Some(refuse(reason));
        }
        let path = match decide(&rules, &method, req.uri().path(), req.uri().query()) {
            Decision::Allow { path } => path,
            Decision::Deny { reason } => return Some(refuse(reason)),
        };
        if path == req.uri().path() {
            // Already as checked (the usual case): nothing to rewrite.
            return None;
        }
        let target = match req.uri().query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        let Ok(path_and_query) = target.parse() else {
            return Some(refuse(format!(
                "its target {target:?} cannot be sent as checked"
            )));
        };
        let mut parts = req.uri().clone().into_parts();
        parts.path_and_query = Some(path_and_query);
        match Uri::from_parts(parts) {
            Ok(uri) if parts_kept(req.uri(), &uri) => {
                *req.uri_mut() = uri;
                None
            }
            _ => Some(refuse(format!(
                "its target {target:?} cannot be sent as checked"
            ))),
        }
    }

    /// The env name of another host's credential whose placeholder the
    /// request carries (in its target or headers).
    fn foreign(&self, req: &Request<Incoming>) -> Option<String> {
        let uri = req.uri().to_string();
        std::iter::once(uri.as_bytes())
            .chain(req.headers().values().map(HeaderValue::as_bytes))
            .find_map(|v| {
                swap::placeholders_in(v, &self.others)
                    .first()
                    .map(|s| s.env.clone())
            })
    }

    /// The placeholders of this host's credentials, real where each
    /// credential goes (`swap::Places`) and nowhere else; returns the
    /// encodings of real values it made, each with what the bottle sent in
    /// its place. The placeholders left elsewhere (the path, other
    /// parameters, other headers) are counted in the log, never shown.
    fn swap(&self, req: &mut Request<Incoming>) -> swap::Made {
        let mut made = Vec::new();
        for (name, value) in req.headers_mut().iter_mut() {
            if let Some(swapped) = swap::swap_header(name.as_str(), value.as_bytes(), &self.here) {
                if let Ok(v) = HeaderValue::from_bytes(&swapped.value) {
                    *value = v;
                    made.extend(swapped.encoded);
                }
            }
        }
        let target = req.uri().path_and_query().map(|pq| pq.as_str().to_string());
        if let Some((target, encoded)) = target.and_then(|t| swap::swap_query(&t, &self.here)) {
            let mut parts = req.uri().clone().into_parts();
            parts.path_and_query = target.parse().ok();
            // A target that does not parse again keeps its placeholder.
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
                made.extend(encoded);
            }
        }
        let left = self.placeholders_left(req);
        if left > 0 {
            tracing::info!(host = %self.host, places = left, "credential: placeholder left as it is outside the credential's headers and query parameter");
        }
        made
    }

    /// How many places of the request's head (its target, each header
    /// value) still hold a placeholder of this host's credentials.
    fn placeholders_left(&self, req: &Request<Incoming>) -> usize {
        let target = req.uri().to_string();
        std::iter::once(target.as_bytes())
            .chain(req.headers().values().map(HeaderValue::as_bytes))
            .filter(|v| !swap::placeholders_in(v, &self.here).is_empty())
            .count()
    }
}

/// Headers that some servers and frameworks read as another method or
/// target than the request line's: the rules would check one request and
/// the host do another.
const OVERRIDES: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "x-original-method",
];

/// Why a request to a host with rules is refused before its rules are
/// read, if it is: what would make the host do more than the request line
/// the rules check. A change of protocol (after a 101 the bytes go both
/// ways unchecked), a header that overrides the method or target, or a
/// body on a method that has none (a server that answers without reading
/// it would read it as the next request on the sentry's connection).
fn unruly(method: &str, req: &Request<Incoming>) -> Option<String> {
    use http_body::Body;
    if req.headers().contains_key(http::header::UPGRADE) || method == "CONNECT" {
        return Some(format!(
            "{method} {}: a change of protocol, whose bytes the rules could not check",
            req.uri().path()
        ));
    }
    if let Some(name) = OVERRIDES.iter().find(|h| req.headers().contains_key(**h)) {
        return Some(format!(
            "a {name} header, which could make the host do another request than the rules checked"
        ));
    }
    let body = req.body();
    let bodiless = matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE");
    if bodiless && !body.is_end_stream() && body.size_hint().exact() != Some(0) {
        return Some(format!(
            "a {method} with a body, which a host could read as another request"
        ));
    }
    None
}

/// Whether a rewritten target kept the original's scheme and authority.
fn parts_kept(before: &Uri, after: &Uri) -> bool {
    before.scheme() == after.scheme() && before.authority() == after.authority()
}

/// Asks the real host for its answer uncompressed: the redactor reads plain
/// bytes, and a real value the host reflects in a compressed body would
/// reach the bottle unseen.
fn ask_uncompressed(headers: &mut http::HeaderMap) {
    headers.insert(
        http::header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
}

/// The Content-Encoding of an answer that the redactor cannot read (any
/// but identity), if any: such an answer is refused, not passed on.
fn unreadable_encoding(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .flat_map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split(',')
                .map(|e| e.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .find(|e| !e.is_empty() && e != "identity")
}

/// How much of a refused request's body is read and dropped, and for how
/// long, before the refusal is sent.
const DRAIN_MAX: usize = 1 << 20;
const DRAIN_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and drops what is left of a refused request's body (a little of
/// it, briefly): a client still sending takes an answer that comes first
/// as a broken stream (curl over HTTP/2), and would show that instead of
/// the reason. Nothing read goes anywhere.
async fn drain(mut body: Incoming) {
    let _ = tokio::time::timeout(DRAIN_WITHIN, async {
        let mut read = 0;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, Bytes::len);
            if read > DRAIN_MAX {
                break;
            }
        }
    })
    .await;
}

/// An answer of the sentry's own: plain text, which clients show (git
/// prints a text/plain error body as `remote: ...`).
fn plain(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(
        Full::new(Bytes::from(text.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_host_is_asked_for_an_uncompressed_answer() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, br"),
        );
        ask_uncompressed(&mut headers);
        let asked: Vec<_> = headers
            .get_all(http::header::ACCEPT_ENCODING)
            .iter()
            .collect();
        assert_eq!(asked, ["identity"]);
    }

    #[test]
    fn a_compressed_answer_is_unreadable_for_the_redactor() {
        let encoded = |values: &[&'static str]| {
            let mut headers = http::HeaderMap::new();
            for v in values {
                headers.append(http::header::CONTENT_ENCODING, HeaderValue::from_static(v));
            }
            unreadable_encoding(&headers)
        };
        assert_eq!(encoded(&[]), None);
        assert_eq!(encoded(&["identity"]), None);
        assert_eq!(encoded(&["gzip"]).as_deref(), Some("gzip"));
        assert_eq!(encoded(&["identity, BR"]).as_deref(), Some("br"));
        assert_eq!(
            encoded(&["identity", "deflate"]).as_deref(),
            Some("deflate")
        );
    }
}
