//! The world's git sites: on the HTTPS servers, every request whose host is
//! a site's is answered by `git http-backend` run as a CGI script (RFC
//! 3875) over the site's directory of bare repositories, so a test can
//! clone, fetch and push through the sentry as it would with GitHub (the
//! smart-HTTP protocol, over HTTP/2 or HTTP/1.1). `git` must be on PATH.
//!
//! [`cgi_env`] and [`parse_head`] do no I/O; [`answer`] runs the script.

use std::convert::Infallible;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::http::uri::Authority;
use hyper::{HeaderMap, Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

use super::chunks::Chunks;

/// The most a script's head (status and headers) may take.
const HEAD_MAX: usize = 64 << 10;
/// How much of the script's output one body chunk carries.
const CHUNK: usize = 64 << 10;
/// Who the backend takes the client for: with a user, it allows pushes.
pub const REMOTE_USER: &str = "test";

/// One git site: requests for `host` (any port) are served from the bare
/// repositories under `root` (`root/ORG/REPO.git` is
/// `https://host/ORG/REPO.git`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSite {
    pub host: String,
    pub root: PathBuf,
}

impl FromStr for GitSite {
    type Err = String;

    /// `HOST=DIR`.
    fn from_str(s: &str) -> Result<GitSite, String> {
        match s.split_once('=') {
            Some((host, root)) if !host.is_empty() && !root.is_empty() => Ok(GitSite {
                host: host.to_string(),
                root: root.into(),
            }),
            _ => Err(format!("{s:?} is not HOST=DIR")),
        }
    }
}

impl std::fmt::Display for GitSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.host, self.root.display())
    }
}

/// The site whose host `authority` names (its port, if any, aside; case
/// does not count, as in DNS).
pub fn site_for<'a>(sites: &'a [GitSite], authority: &str) -> Option<&'a GitSite> {
    let host = Authority::from_str(authority).ok()?;
    sites
        .iter()
        .find(|site| site.host.eq_ignore_ascii_case(host.host()))
}

/// The CGI variables for a request (`parts`) from `peer` to `site`:
/// the request's own, the backend's (the project root, every repository
/// exported, pushes allowed) and each header as `HTTP_NAME`; git reads
/// `HTTP_CONTENT_ENCODING` (gzip request bodies) and `HTTP_GIT_PROTOCOL`
/// (protocol v2) from there. PATH is the only variable of this process
/// the script sees.
pub fn cgi_env(site: &GitSite, parts: &Parts, peer: SocketAddr) -> Vec<(String, OsString)> {
    let mut env: Vec<(String, OsString)> = vec![
        ("GATEWAY_INTERFACE".into(), "CGI/1.1".into()),
        (
            "SERVER_PROTOCOL".into(),
            format!("{:?}", parts.version).into(),
        ),
        ("SERVER_NAME".into(), site.host.clone().into()),
        ("REQUEST_METHOD".into(), parts.method.as_str().into()),
        ("PATH_INFO".into(), parts.uri.path().into()),
        (
            "QUERY_STRING".into(),
            parts.uri.query().unwrap_or("").into(),
        ),
        ("REMOTE_ADDR".into(), peer.ip().to_string().into()),
        ("REMOTE_PORT".into(), peer.port().to_string().into()),
        ("REMOTE_USER".into(), REMOTE_USER.into()),
        ("GIT_PROJECT_ROOT".into(), site.root.clone().into()),
        ("GIT_HTTP_EXPORT_ALL".into(), "1".into()),
        // Pushes need no user's say-so; the repositories may belong to
        // another user than the world's (made by a test, or in a volume).
        ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
        ("GIT_CONFIG_COUNT".into(), "2".into()),
        ("GIT_CONFIG_KEY_0".into(), "http.receivepack".into()),
        ("GIT_CONFIG_VALUE_0".into(), "true".into()),
        ("GIT_CONFIG_KEY_1".into(), "safe.directory".into()),
        ("GIT_CONFIG_VALUE_1".into(), "*".into()),
        (
            "PATH".into(),
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
        ),
    ];
    let header = |name| parts.headers.get(name).map(|v| v.as_bytes().to_vec());
    if let Some(kind) = header(hyper::header::CONTENT_TYPE) {
        env.push(("CONTENT_TYPE".into(), OsString::from_vec(kind)));
    }
    if let Some(length) = header(hyper::header::CONTENT_LENGTH) {
        env.push(("CONTENT_LENGTH".into(), OsString::from_vec(length)));
    }
    if let Some(protocol) = header(hyper::header::HeaderName::from_static("git-protocol")) {
        env.push(("GIT_PROTOCOL".into(), OsString::from_vec(protocol)));
    }
    for (name, value) in &parts.headers {
        let var = format!("HTTP_{}", name.as_str().to_uppercase().replace('-', "_"));
        // As CGI says: a script gets no credentials, nor a second length.
        if matches!(
            var.as_str(),
            "HTTP_AUTHORIZATION" | "HTTP_PROXY_AUTHORIZATION" | "HTTP_CONTENT_LENGTH"
        ) || env.iter().any(|(v, _)| *v == var)
        {
            continue;
        }
        env.push((var, OsString::from_vec(value.as_bytes().to_vec())));
    }
    env
}

/// Where a script's head ends in `out`: its length and where the body
/// starts; `None` until the blank line has come.
pub fn head_end(out: &[u8]) -> Option<(usize, usize)> {
    let crlf = out.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = out.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(c), Some(l)) if l < c => Some((l, l + 2)),
        (Some(c), _) => Some((c, c + 4)),
        (None, Some(l)) => Some((l, l + 2)),
        (None, None) => None,
    }
}

/// A script's head (RFC 3875 section 6.3): the status (`Status:`, else
/// 302 with a `Location:`, else 200) and the other headers.
pub fn parse_head(head: &[u8]) -> Result<(StatusCode, HeaderMap), String> {
    let text = std::str::from_utf8(head).map_err(|_| "the head is not UTF-8".to_string())?;
    let mut status = None;
    let mut headers = HeaderMap::new();
    for line in text.lines().map(|l| l.trim_end_matches('\r')) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("{line:?} is not NAME: VALUE"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split(' ').next().unwrap_or("");
            let code = StatusCode::from_bytes(code.as_bytes())
                .map_err(|_| format!("{value:?} is not a status"))?;
            status = Some(code);
            continue;
        }
        let name = hyper::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{name:?} is not a header name"))?;
        let value = value
            .parse()
            .map_err(|_| format!("{value:?} is not a header value"))?;
        headers.append(name, value);
    }
    let status = status.unwrap_or(if headers.contains_key(hyper::header::LOCATION) {
        StatusCode::FOUND
    } else {
        StatusCode::OK
    });
    Ok((status, headers))
}

/// `git http-backend`'s answer to `req` (from `peer`) for `site`: the
/// request body streams to the script, its output streams back.
pub async fn answer(
    site: &GitSite,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<BoxBody<Bytes, Infallible>> {
    let (parts, body) = req.into_parts();
    let mut child = match Command::new("git")
        .arg("http-backend")
        .env_clear()
        .envs(cgi_env(site, &parts, peer))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return failure(format!("cannot start git http-backend: {e}")),
    };
    let pipes = (child.stdin.take(), child.stdout.take());
    let (Some(stdin), Some(stdout)) = pipes else {
        reap(child);
        return failure("git http-backend has no pipes".into());
    };
    let (stdin, mut stdout) = match (
        pipe::Sender::from_owned_fd(stdin.into()),
        pipe::Receiver::from_owned_fd(stdout.into()),
    ) {
        (Ok(stdin), Ok(stdout)) => (stdin, stdout),
        (Err(e), _) | (_, Err(e)) => {
            reap(child);
            return failure(format!("git http-backend's pipes: {e}"));
        }
    };
    tokio::spawn(feed(body, stdin));
    let mut out = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    let (head_len, body_start) = loop {
        if let Some(end) = head_end(&out) {
            break end;
        }
        match stdout.read(&mut buf).await {
            Ok(n) if n > 0 && out.len() < HEAD_MAX => out.extend_from_slice(&buf[..n]),
            _ => {
                reap(child);
                let out = String::from_utf8_lossy(&out);
                return failure(format!("git http-backend gave no head: {out:?}"));
            }
        }
    };
    let (status, headers) = match parse_head(&out[..head_len]) {
        Ok(head) => head,
        Err(e) => {
            reap(child);
            return failure(format!("git http-backend's head: {e}"));
        }
    };
    let (tx, rx) = mpsc::channel(8);
    let first = Bytes::from(out.split_off(body_start));
    tokio::spawn(async move {
        if !first.is_empty() && tx.send(first).await.is_err() {
            return reap(child);
        }
        loop {
            match stdout.read(&mut buf).await {
                Ok(n) if n > 0 => {
                    if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        break;
                    }
                }
                _ => break,
            }
        }
        // Closing stdout first: a script still writing ends on SIGPIPE.
        drop(stdout);
        reap(child);
    });
    let mut resp = Response::new(Chunks(rx).boxed());
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// Writes the request body to the script's stdin, then closes it.
async fn feed(mut body: Incoming, mut stdin: pipe::Sender) {
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            if stdin.write_all(&data).await.is_err() {
                return;
            }
        }
    }
}

/// Waits for the script off the async threads (no zombie is left).
fn reap(mut child: Child) {
    tokio::task::spawn_blocking(move || {
        let _ = child.wait();
    });
}

/// A 502 that says what went wrong (also on the world's stderr).
fn failure(why: String) -> Response<BoxBody<Bytes, Infallible>> {
    eprintln!("rbm-world: git: {why}");
    let mut resp = Response::new(Full::new(Bytes::from(format!("{why}\n"))).boxed());
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> GitSite {
        "github.test=/srv/git".parse().unwrap()
    }

    #[test]
    fn a_site_reads_back_from_its_flag() {
        assert_eq!(
            site(),
            GitSite {
                host: "github.test".into(),
                root: "/srv/git".into()
            }
        );
        assert_eq!(site().to_string(), "github.test=/srv/git");
        assert!("github.test".parse::<GitSite>().is_err());
        assert!("=/srv".parse::<GitSite>().is_err());
    }

    #[test]
    fn a_site_answers_its_host_on_any_port_and_no_other() {
        let sites = [site()];
        assert!(site_for(&sites, "github.test").is_some());
        assert!(site_for(&sites, "GitHub.Test:8443").is_some());
        assert!(site_for(&sites, "api.github.test").is_none());
        assert!(site_for(&sites, "github.test.evil").is_none());
        assert!(site_for(&sites, "").is_none());
    }

    #[test]
    fn the_backend_gets_the_request_its_protocol_and_encoding_but_no_credentials() {
        let req = Request::post("https://github.test/my-org/tool.git/git-upload-pack?x=1")
            .header("content-type", "application/x-git-upload-pack-request")
            .header("content-length", "42")
            .header("content-encoding", "gzip")
            .header("git-protocol", "version=2")
            .header("authorization", "Bearer secret")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let env = cgi_env(&site(), &parts, "10.0.0.2:5555".parse().unwrap());
        let get = |name: &str| {
            let found: Vec<_> = env.iter().filter(|(n, _)| n == name).collect();
            assert!(found.len() <= 1, "{name} set twice");
            found.first().map(|(_, v)| v.to_string_lossy().into_owned())
        };
        assert_eq!(get("REQUEST_METHOD").unwrap(), "POST");
        assert_eq!(
            get("PATH_INFO").unwrap(),
            "/my-org/tool.git/git-upload-pack"
        );
        assert_eq!(get("QUERY_STRING").unwrap(), "x=1");
        assert_eq!(get("CONTENT_LENGTH").unwrap(), "42");
        assert_eq!(
            get("CONTENT_TYPE").unwrap(),
            "application/x-git-upload-pack-request"
        );
        assert_eq!(get("HTTP_CONTENT_ENCODING").unwrap(), "gzip");
        assert_eq!(get("GIT_PROTOCOL").unwrap(), "version=2");
        assert_eq!(get("HTTP_GIT_PROTOCOL").unwrap(), "version=2");
        assert_eq!(get("REMOTE_ADDR").unwrap(), "10.0.0.2");
        assert_eq!(get("GIT_PROJECT_ROOT").unwrap(), "/srv/git");
        assert_eq!(get("HTTP_AUTHORIZATION"), None);
        assert_eq!(get("HTTP_CONTENT_LENGTH"), None);
        assert!(!env
            .iter()
            .any(|(_, v)| v.to_string_lossy().contains("secret")));
    }

    #[test]
    fn a_head_ends_at_its_blank_line_with_either_line_ending() {
        assert_eq!(head_end(b"Status: 200\r\n\r\nbody"), Some((11, 15)));
        assert_eq!(head_end(b"A: b\n\nbody\r\n\r\n"), Some((4, 6)));
        assert_eq!(head_end(b"A: b\r\n"), None);
    }

    #[test]
    fn a_head_gives_its_status_and_headers() {
        let (status, headers) =
            parse_head(b"Status: 404 Not Found\r\nContent-Type: text/plain\r\nPragma: no-cache")
                .unwrap();
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(headers["content-type"], "text/plain");
        assert!(!headers.contains_key("status"));
        let (status, _) = parse_head(b"Content-Type: x").unwrap();
        assert_eq!(status, StatusCode::OK);
        let (status, _) = parse_head(b"Location: /x").unwrap();
        assert_eq!(status, StatusCode::FOUND);
        assert!(parse_head(b"no colon").is_err());
    }
}
