//! Test helpers: fake programs (a podman that logs and answers as told).
//!
//! A fake is a script that the test then executes. Writing it from this
//! process would race with the other test threads: a thread that forks
//! while the script is open for writing hands that descriptor to its
//! child, which keeps it until it execs, and executing the script in that
//! window fails with "Text file busy". So the script is written by a
//! short-lived `sh` child instead: this process never holds a writable
//! descriptor of it, and the child has exited before the script runs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Writes `script` to `dir/name`, executable; returns the path.
pub fn fake_program(dir: &Path, name: &str, script: &str) -> PathBuf {
    let path = dir.join(name);
    let mut child = Command::new("/bin/sh")
        .args([
            "-c",
            "cat > \"$1.tmp\" && chmod 755 \"$1.tmp\" && mv -f \"$1.tmp\" \"$1\"",
        ])
        .arg("sh")
        .arg(&path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("cannot start /bin/sh to write a fake program");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(script.as_bytes())
        .expect("cannot hand the script to /bin/sh");
    let status = child.wait().expect("/bin/sh did not finish");
    assert!(
        status.success(),
        "writing {} failed: {status}",
        path.display()
    );
    path
}
