//! Throwaway files for tests: zone files, configs, logs.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tempfile::TempDir;

/// A fresh directory under the system temp dir, removed on drop.
pub fn temp_dir() -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix("rbmt-")
        .tempdir()
        .context("cannot create a temporary directory")
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    fs::write(&path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
