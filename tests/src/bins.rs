//! Where the statically linked test binaries (rbm-world, rbm-probe, rbm-agent)
//! are found: they go into `FROM scratch` images and into network namespaces.

use std::env;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// Environment variable that overrides the directory of static binaries.
pub const STATIC_DIR_ENV: &str = "RBM_STATIC_DIR";

/// The target triple the static binaries are built for (this machine's
/// architecture, musl: see scripts/build-static).
pub const STATIC_TARGET: &str = "x86_64-unknown-linux-musl";

/// Where scripts/build-static leaves the arm64 agent, relative to the workspace.
pub const ARM64_AGENT: &str = "target/aarch64-unknown-linux-musl/release/rbm-agent";

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `$RBM_STATIC_DIR`, or `<workspace>/target/x86_64-unknown-linux-musl/release`.
pub fn static_dir() -> PathBuf {
    match env::var_os(STATIC_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root()
            .join("target")
            .join(STATIC_TARGET)
            .join("release"),
    }
}

/// The path of the static binary `name`, or an error that says how to build it.
pub fn static_bin(name: &str) -> Result<PathBuf> {
    let path = static_dir().join(name);
    if path.is_file() {
        return Ok(path);
    }
    bail!(
        "static binary {name} not found at {}\n\
         build it first, from {}:\n    scripts/build-static\n\
         (or point {STATIC_DIR_ENV} at a directory that holds it)",
        path.display(),
        workspace_root().display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_names_the_build_command() {
        let err = static_bin("rbm-no-such-binary").unwrap_err().to_string();
        assert!(err.contains("scripts/build-static"), "{err}");
        assert!(err.contains("rbm-no-such-binary"), "{err}");
    }
}
