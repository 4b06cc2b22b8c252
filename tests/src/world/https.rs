//! The world's HTTPS servers: TLS with a certificate the test made
//! (HTTP/2 or HTTP/1.1 by ALPN). Each request is logged as `https ` and a
//! JSON `HttpsRequest` (its version, host, path, query and headers) before
//! it is answered; the answer
//! echoes the Authorization header (`auth: VALUE`), and `/stream` sends it
//! in three chunks 300 ms apart (a response that must arrive as it comes);
//! `/gzip` sends it gzip-encoded when the request accepts gzip (as real
//! servers compress). The model APIs' paths get their stand-ins instead
//! (`apis`), which answer only the world's real key, and PyPI's (the
//! index on pypi.org, the files on files.pythonhosted.org) get `pypi`.
//! A git site's host gets `git http-backend` on every path (`git_http`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use super::apis;
use super::chunks::Chunks;
use super::git_http::{self, GitSite};

/// Where a request's line goes (the world's log).
pub type Record = Arc<dyn Fn(&str) + Send + Sync>;

/// What `/big` sends: 64 MiB in 64 KiB chunks.
pub const BIG_BYTES: usize = 64 << 20;
const BIG_CHUNK: usize = 64 << 10;

/// What starts an HTTPS request line in the world's log.
pub const HTTPS_LINE: &str = "https ";

/// One HTTPS server: where, and its chain and key (PEM files, or PEM text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsServer {
    pub addr: SocketAddr,
    pub cert: String,
    pub key: String,
}

impl std::str::FromStr for HttpsServer {
    type Err = String;

    /// `ADDR,CERT_FILE,KEY_FILE`.
    fn from_str(s: &str) -> Result<HttpsServer, String> {
        let parts: Vec<&str> = s.split(',').collect();
        let [addr, cert, key] = parts[..] else {
            return Err(format!("{s:?} is not ADDR,CERT_FILE,KEY_FILE"));
        };
        Ok(HttpsServer {
            addr: addr.parse().map_err(|e| format!("{addr:?}: {e}"))?,
            cert: cert.into(),
            key: key.into(),
        })
    }
}

impl std::fmt::Display for HttpsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{},{},{}", self.addr, self.cert, self.key)
    }
}

/// One request as the world logged it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct HttpsRequest {
    pub version: String,
    pub host: String,
    pub path: String,
    /// The target's query, without `?`; empty if it had none.
    pub query: String,
    pub authorization: String,
    /// Every header but Authorization, by lowercase name; the values of a
    /// name given more than once joined with ", ".
    pub headers: std::collections::BTreeMap<String, String>,
}

/// The HTTPS requests in a log's text.
pub fn parse_https(text: &str) -> Vec<HttpsRequest> {
    text.lines()
        .filter_map(|l| l.strip_prefix(HTTPS_LINE))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A PEM file's text, or the text itself if it is PEM (a world in a
/// container gets its certificate on the command line).
fn pem(file_or_text: &str) -> Result<Vec<u8>> {
    if file_or_text.starts_with("-----BEGIN") {
        return Ok(file_or_text.as_bytes().to_vec());
    }
    std::fs::read(file_or_text).with_context(|| format!("reading {file_or_text}"))
}

fn acceptor(server: &HttpsServer) -> Result<TlsAcceptor> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem(&server.cert)?)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("the certificate chain: {e}"))?;
    let key =
        PrivateKeyDer::from_pem_slice(&pem(&server.key)?).map_err(|e| anyhow!("the key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What answers behind the servers' TLS besides the echo.
#[derive(Debug, Clone, Default)]
pub struct Backends {
    /// The key the model API stand-ins take (none: no key).
    pub api_key: Option<String>,
    /// The hosts whose every request `git http-backend` answers.
    pub git: Vec<GitSite>,
}

/// Binds `server` (errors here, before `ready`) and serves it, with
/// `backends` behind it.
pub async fn bind(
    server: &HttpsServer,
    log: Record,
    backends: Backends,
) -> Result<impl std::future::Future<Output = ()>> {
    let acceptor = acceptor(server)?;
    let listener = TcpListener::bind(server.addr)
        .await
        .with_context(|| format!("cannot bind https {}", server.addr))?;
    Ok(serve(listener, acceptor, log, Arc::new(backends)))
}

/// The most of a request body a stand-in reads (an agent's first request
/// carries its whole system prompt and tool list).
const API_BODY_MAX: usize = 32 << 20;

async fn serve(listener: TcpListener, acceptor: TlsAcceptor, log: Record, backends: Arc<Backends>) {
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, log, backends) = (acceptor.clone(), log.clone(), backends.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req| {
                let (log, backends) = (log.clone(), backends.clone());
                async move { Ok::<_, Infallible>(answer(&log, &backends, peer, req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await;
        });
    }
}

async fn answer(
    log: &Record,
    backends: &Backends,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<BoxBody<Bytes, Infallible>> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default()
    };
    let host = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_else(|| header("host"));
    let auth = header("authorization");
    let gzip = req.uri().path() == "/gzip" && header("accept-encoding").contains("gzip");
    let mut headers = std::collections::BTreeMap::<String, String>::new();
    for (name, value) in req.headers() {
        if name != hyper::header::AUTHORIZATION {
            let value = String::from_utf8_lossy(value.as_bytes());
            headers
                .entry(name.as_str().into())
                .and_modify(|v| *v = format!("{v}, {value}"))
                .or_insert_with(|| value.into_owned());
        }
    }
    let logged = HttpsRequest {
        version: format!("{:?}", req.version()),
        host,
        path: req.uri().path().into(),
        query: req.uri().query().unwrap_or("").into(),
        authorization: auth.clone(),
        headers,
    };
    log(&format!(
        "{HTTPS_LINE}{}",
        serde_json::to_string(&logged).expect("strings serialize")
    ));
    if let Some(site) = git_http::site_for(&backends.git, &logged.host) {
        return git_http::answer(site, req, peer).await;
    }
    if let Some(page) = super::pypi::page(&logged.host, req.uri().path()) {
        let mut resp = Response::new(Full::new(Bytes::from(page.body)).boxed());
        *resp.status_mut() = hyper::StatusCode::from_u16(page.status).unwrap_or_default();
        resp.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(page.content_type),
        );
        return resp;
    }
    if let Some(endpoint) = apis::endpoint(req.method(), req.uri().path(), req.headers()) {
        return stand_in(&endpoint, req, backends.api_key.as_deref()).await;
    }
    let line = format!("auth: {auth}\n");
    if req.headers().contains_key(hyper::header::UPGRADE) {
        // An upgraded connection echoes every byte (the protocol aside).
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let (mut read, mut write) = tokio::io::split(TokioIo::new(upgraded));
                let _ = tokio::io::copy(&mut read, &mut write).await;
            }
        });
        let mut resp = Response::new(Full::new(Bytes::new()).boxed());
        *resp.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
        resp.headers_mut().insert(
            hyper::header::UPGRADE,
            "websocket".parse().expect("a header"),
        );
        resp.headers_mut().insert(
            hyper::header::CONNECTION,
            "upgrade".parse().expect("a header"),
        );
        return resp;
    }
    if req.uri().path() == "/big" {
        // BIG_BYTES as fast as the client takes them (throughput).
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            let chunk = Bytes::from(vec![b'x'; BIG_CHUNK]);
            for _ in 0..BIG_BYTES / BIG_CHUNK {
                if tx.send(chunk.clone()).await.is_err() {
                    return;
                }
            }
        });
        return Response::new(Chunks(rx).boxed());
    }
    if req.uri().path() == "/stream" {
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            for i in 0..3 {
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                let chunk = Bytes::from(format!("chunk {i} {line}"));
                if tx.send(chunk).await.is_err() {
                    return;
                }
            }
        });
        return Response::new(Chunks(rx).boxed());
    }
    if gzip {
        let mut resp =
            Response::new(Full::new(Bytes::from(super::gzip::gzip(line.as_bytes()))).boxed());
        resp.headers_mut().insert(
            hyper::header::CONTENT_ENCODING,
            "gzip".parse().expect("a header"),
        );
        return resp;
    }
    Response::new(Full::new(Bytes::from(line)).boxed())
}

/// A model API's answer from its stand-in, streamed in its pieces.
async fn stand_in(
    endpoint: &apis::Endpoint,
    req: Request<Incoming>,
    api_key: Option<&str>,
) -> Response<BoxBody<Bytes, Infallible>> {
    let (parts, body) = req.into_parts();
    let Ok(body) = Limited::new(body, API_BODY_MAX).collect().await else {
        let mut resp = Response::new(Full::new(Bytes::new()).boxed());
        *resp.status_mut() = hyper::StatusCode::PAYLOAD_TOO_LARGE;
        return resp;
    };
    let body = body.to_bytes();
    let asked = apis::Asked {
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        body: &body,
    };
    let reply = apis::reply(endpoint, &asked, api_key);
    let (tx, rx) = mpsc::channel(reply.body.len().max(1));
    for piece in reply.body {
        // The channel holds every piece: this never waits.
        let _ = tx.try_send(Bytes::from(piece));
    }
    let mut resp = Response::new(Chunks(rx).boxed());
    *resp.status_mut() = hyper::StatusCode::from_u16(reply.status).unwrap_or(hyper::StatusCode::OK);
    for (name, value) in reply.headers {
        if let Ok(value) = value.parse() {
            resp.headers_mut().insert(name, value);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logged_request_reads_back_with_its_query_and_headers() {
        let r = HttpsRequest {
            version: "HTTP/2.0".into(),
            host: "api.test".into(),
            path: "/a b".into(),
            query: "k=v".into(),
            authorization: "Bearer x y".into(),
            headers: [("x-title".to_string(), "t\nu".to_string())].into(),
        };
        let log = format!(
            "other line\n{HTTPS_LINE}{}\n",
            serde_json::to_string(&r).unwrap()
        );
        assert_eq!(parse_https(&log), vec![r]);
    }

    /// POSTs `body` to `path` on a world HTTPS server with `api_key`, over
    /// TLS as a CLI would; the answer's status and body, and the log.
    async fn post_to_stand_in(
        api_key: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String, Vec<HttpsRequest>) {
        let ca = crate::certs::TestCa::new("stand-in test CA").unwrap();
        let leaf = ca.leaf(&["api.test"]).unwrap();
        let server = HttpsServer {
            addr: "127.0.0.1:0".parse().unwrap(),
            cert: leaf.chain_pem,
            key: leaf.key_pem,
        };
        let listener = TcpListener::bind(server.addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let lines = Arc::new(std::sync::Mutex::new(String::new()));
        let sink = Arc::clone(&lines);
        let log: Record = Arc::new(move |l: &str| sink.lock().unwrap().push_str(&format!("{l}\n")));
        let backends = Backends {
            api_key: Some(api_key.into()),
            git: vec![],
        };
        tokio::spawn(serve(
            listener,
            acceptor(&server).unwrap(),
            log,
            Arc::new(backends),
        ));

        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("api.test").unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut req = Request::post(path).header("host", "api.test");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let resp = send
            .send_request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.into_body().collect().await.unwrap().to_bytes();
        let logged = parse_https(&lines.lock().unwrap());
        (status, String::from_utf8_lossy(&text).into_owned(), logged)
    }

    #[tokio::test]
    async fn a_model_api_path_gets_its_stand_in_streamed_and_logged() {
        let (status, body, logged) = post_to_stand_in(
            "sk-real",
            "/v1/messages",
            &[
                ("x-api-key", "sk-real"),
                ("content-type", "application/json"),
            ],
            r#"{"model":"claude-x","stream":true,"max_tokens":5,"messages":[]}"#,
        )
        .await;
        assert_eq!(status, 200);
        assert!(body.starts_with("event: message_start\n"), "{body}");
        assert!(body.contains("\"text\":\"says hi\""));
        assert_eq!(logged.len(), 1);
        assert_eq!(logged[0].path, "/v1/messages");
        assert_eq!(logged[0].headers["x-api-key"], "sk-real");
    }

    #[tokio::test]
    async fn a_placeholder_key_gets_the_apis_refusal_and_is_logged() {
        let (status, body, logged) = post_to_stand_in(
            "sk-real",
            "/v1/responses",
            &[("authorization", "Bearer placeholder")],
            r#"{"model":"gpt-x","stream":true,"input":[]}"#,
        )
        .await;
        assert_eq!(status, 401);
        assert!(body.contains("invalid_api_key"), "{body}");
        assert!(!body.contains(apis::MARKER));
        assert_eq!(logged[0].authorization, "Bearer placeholder");
    }
}
