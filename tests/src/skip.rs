//! The skip policy: a test that cannot run says so loudly, and in CI
//! (`CI=true`) a skip is a failure.
//!
//! ```ignore
//! #[test]
//! fn nat_hides_the_bottle() {
//!     if require_root("creates network namespaces").is_err() {
//!         return;
//!     }
//!     // ...
//! }
//! ```

use std::env;
use std::fmt;
use std::path::Path;

/// Why a test did not run. Creating one has already reported it.
#[derive(Debug)]
#[must_use = "a skipped test must return early"]
pub struct Skipped(pub String);

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "skipped: {}", self.0)
    }
}

/// Whether we run in CI, where skipping is not allowed.
pub fn in_ci() -> bool {
    env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Reports a skip of the current test: panics in CI, otherwise prints
/// `SKIPPED: <test>: <reason>` to stderr and returns the [`Skipped`] value.
pub fn skip(reason: impl Into<String>) -> Skipped {
    let reason = reason.into();
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_string();
    if in_ci() {
        panic!("SKIPPED in CI (a skip is a failure here): {test}: {reason}");
    }
    eprintln!("\n**********\nSKIPPED: {test}: {reason}\n**********");
    Skipped(reason)
}

/// Requires root (effective uid 0); `reason` says what the test needs it for.
pub fn require_root(reason: &str) -> Result<(), Skipped> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(());
    }
    Err(skip(format!("needs root: {reason}")))
}

/// Requires every tool in `tools` to be found on `PATH`.
pub fn require_tools(tools: &[&str]) -> Result<(), Skipped> {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| find_in_path(t).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(skip(format!(
        "missing tool(s) on PATH: {}",
        missing.join(", ")
    )))
}

/// Root plus `ip`, `nft` and `sysctl`: what a kernel test in network namespaces needs.
pub fn require_netns(reason: &str) -> Result<(), Skipped> {
    require_root(reason)?;
    require_tools(&["ip", "nft", "sysctl"])
}

/// The full path of `tool` if an executable file of that name is on `PATH`.
pub fn find_in_path(tool: &str) -> Option<std::path::PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sh_and_not_nonsense() {
        assert!(find_in_path("sh").is_some());
        assert!(find_in_path("rbm-no-such-tool-xyz").is_none());
    }
}
