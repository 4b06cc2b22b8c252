//! The sentry image: `localhost/rbm-sentry:latest`, built from
//! `images/sentry/Containerfile` around the static agent binary, and rebuilt
//! whenever the binary changed. The image carries the binary's modification
//! time in the label `rbm.agent.mtime`; a different (or no) label means stale.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::Error;
use crate::podman::{args, Podman};

pub const SENTRY_IMAGE: &str = "localhost/rbm-sentry:latest";
pub const AGENT_MTIME_LABEL: &str = "rbm.agent.mtime";
/// Where `scripts/build-static` leaves the agent, relative to the repository.
pub const AGENT_IN_REPO: &str = "target/x86_64-unknown-linux-gnu/release/rbm-agent";
pub const CONTAINERFILE_IN_REPO: &str = "images/sentry/Containerfile";
/// Build contexts go under the repository: the Podman 5 wrapper only sees the
/// repository, not the host's /tmp.
pub const CONTEXTS_IN_REPO: &str = "target/rbm-sentry-context";

/// The agent's modification time as `SECONDS.NANOSECONDS`.
pub fn agent_stamp(agent: &Path) -> Result<String, Error> {
    let meta = std::fs::metadata(agent).map_err(|_| Error::AgentMissing {
        path: agent.to_path_buf(),
    })?;
    if !meta.is_file() {
        return Err(Error::AgentMissing {
            path: agent.to_path_buf(),
        });
    }
    let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
    let since = mtime.duration_since(UNIX_EPOCH).unwrap_or_default();
    Ok(format!("{}.{:09}", since.as_secs(), since.subsec_nanos()))
}

/// `label` is what `podman image inspect` printed for the mtime label, or
/// None if the image does not exist.
pub fn needs_build(label: Option<&str>, stamp: &str) -> bool {
    label.map(str::trim) != Some(stamp)
}

/// The agent's stamp if the sentry image must be (re)built for it, None if
/// the image already holds this binary.
pub fn stale_sentry_image(podman: &Podman, agent: &Path) -> Result<Option<String>, Error> {
    let stamp = agent_stamp(agent)?;
    let label = podman
        .run(&args::image_label(SENTRY_IMAGE, AGENT_MTIME_LABEL))
        .ok();
    Ok(needs_build(label.as_deref(), &stamp).then_some(stamp))
}

/// Builds the sentry image around a copy of `agent`, labelled with `stamp`.
pub fn build_sentry_image(
    podman: &Podman,
    repo: &Path,
    agent: &Path,
    stamp: &str,
) -> Result<(), Error> {
    let containerfile = repo.join(CONTAINERFILE_IN_REPO);
    if !containerfile.is_file() {
        return Err(io_error(
            "sentry Containerfile missing",
            &containerfile,
            std::io::ErrorKind::NotFound.into(),
        ));
    }
    let context = Context::new(repo, agent)?;
    podman.run(&args::build(
        SENTRY_IMAGE,
        &[(AGENT_MTIME_LABEL, stamp)],
        &containerfile,
        &context.dir,
    ))?;
    Ok(())
}

/// A fresh build context holding a copy of the agent; removed on drop.
struct Context {
    dir: PathBuf,
}

impl Context {
    fn new(repo: &Path, agent: &Path) -> Result<Context, Error> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let dir = repo
            .join(CONTEXTS_IN_REPO)
            .join(format!("{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| io_error("cannot create build context", &dir, e))?;
        let context = Context { dir };
        std::fs::copy(agent, context.dir.join("rbm-agent")).map_err(|e| {
            io_error(
                "cannot copy the agent into the build context",
                &context.dir,
                e,
            )
        })?;
        Ok(context)
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn io_error(what: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        what,
        path: path.to_path_buf(),
        fix: "run rbm-launch from an rbm checkout whose target/ directory is writable",
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_when_missing_unlabelled_or_different() {
        assert!(needs_build(None, "1.000000001"));
        assert!(needs_build(Some("<no value>\n"), "1.000000001"));
        assert!(needs_build(Some("1.000000000\n"), "1.000000001"));
        assert!(!needs_build(Some("1.000000001\n"), "1.000000001"));
    }

    #[test]
    fn stamp_is_the_mtime_and_a_missing_agent_says_how_to_build_it() {
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("rbm-agent");
        std::fs::write(&agent, b"x").unwrap();
        let stamp = agent_stamp(&agent).unwrap();
        assert!(stamp.contains('.') && stamp.len() > 11, "{stamp}");
        assert_eq!(stamp, agent_stamp(&agent).unwrap());
        let err = agent_stamp(&dir.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("scripts/build-static") && err.contains("--agent"),
            "{err}"
        );
        assert!(
            agent_stamp(dir.path()).is_err(),
            "a directory is not an agent"
        );
    }

    #[test]
    fn context_holds_a_copy_and_is_removed() {
        let repo = tempfile::tempdir().unwrap();
        let agent = repo.path().join("agent-bin");
        std::fs::write(&agent, b"binary").unwrap();
        let ctx = Context::new(repo.path(), &agent).unwrap();
        assert!(ctx.dir.starts_with(repo.path().join(CONTEXTS_IN_REPO)));
        assert_eq!(std::fs::read(ctx.dir.join("rbm-agent")).unwrap(), b"binary");
        let dir = ctx.dir.clone();
        drop(ctx);
        assert!(!dir.exists());
    }
}
