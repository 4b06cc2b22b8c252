//! `watch`: a second socket beside the control socket that streams what
//! the sentry refuses (dropped connections, name-check denials, refused
//! names) as it happens, one JSON object per line.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast::error::RecvError;

use crate::shown::{self, shown, shown_or};
use crate::state::{Denied, Shared};
use crate::status::{bind_socket, StatusError};

/// The watch socket that goes with a control socket (`agent.sock` ->
/// `agent.watch`).
pub fn socket_path(control: &Path) -> PathBuf {
    control.with_extension("watch")
}

/// Binds the watch socket (replacing a stale one) and streams to every
/// client until it goes away. A client too slow to keep up misses events,
/// never slows the agent.
pub fn serve(path: &Path, shared: Arc<Shared>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = bind_socket(path)?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let mut events = shared.watch();
            tokio::spawn(async move {
                loop {
                    let denied = match events.recv().await {
                        Ok(denied) => denied,
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => return,
                    };
                    let mut line = shown::json(serde_json::to_string(&denied).unwrap_or_default());
                    line.push('\n');
                    if stream.write_all(line.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    }))
}

/// Follows the running agent's watch socket, printing each event as it
/// comes (the JSON line itself with `json`), until the agent goes away.
pub fn follow(control: &Path, json: bool) -> Result<(), StatusError> {
    let path = socket_path(control);
    let not_running = |source| StatusError::NotRunning {
        path: path.clone(),
        source,
    };
    let stream = UnixStream::connect(&path).map_err(not_running)?;
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        let text = if json {
            line
        } else {
            match serde_json::from_str::<Denied>(&line) {
                Ok(denied) => render(&denied),
                Err(_) => line,
            }
        };
        if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
            break;
        }
    }
    Ok(())
}

/// One event for a human: `HH:MM:SS UTC  kind  proto dst  name  reason`.
pub fn render(d: &Denied) -> String {
    let day = d.at % 86_400;
    let clock = format!("{:02}:{:02}:{:02}", day / 3600, day % 3600 / 60, day % 60);
    let target = match (&d.proto, d.dst) {
        (Some(proto), Some(dst)) => format!("{} {dst}", shown(proto)),
        _ => "dns".to_string(),
    };
    format!(
        "{clock} {:<10} {target:<30} {:<30} {}",
        shown(&d.kind),
        shown_or(d.name.as_deref(), "-"),
        shown(&d.reason)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denial_reads_as_one_line_with_the_bottle_s_names_escaped() {
        let d = Denied {
            at: 3600 * 25 + 61,
            kind: "connection".into(),
            proto: Some("tcp".into()),
            dst: Some("198.51.100.20:80".parse().unwrap()),
            name: None,
            reason: "never resolved".into(),
        };
        let line = render(&d);
        assert!(
            line.starts_with("01:01:01 connection tcp 198.51.100.20:80"),
            "{line}"
        );
        assert!(line.ends_with("never resolved"));

        let named = Denied {
            kind: "name".into(),
            name: Some("x.test\x1b]0;owned\x07\r".into()),
            reason: "TLS name x.test\x1b]0;owned\x07\r is not allowed".into(),
            ..d.clone()
        };
        let line = render(&named);
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(
            line.contains(r"x.test\u{1b}]0;owned\u{7}\r is not allowed"),
            "{line}"
        );
        assert_eq!(
            socket_path(Path::new("/run/rbm/agent.sock")),
            Path::new("/run/rbm/agent.watch")
        );
    }
}
