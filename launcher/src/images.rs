//! The sentry image, `localhost/rbm-sentry:latest`: one file, the static
//! agent at `/rbm-agent`, its entry point (see images/sentry/README.md).
//!
//! It is made with `podman import` from a tar archive streamed on stdin, not
//! with `podman build`: no build context has to be visible to Podman, so it
//! works the same for a rootless user, for a Podman in another mount
//! namespace (scripts/podman5) or on another machine, and with an installed
//! rbm-launch that has no checkout. The image carries the agent's stamp
//! (modification time and size) in the label `rbm.agent.stamp`; a different
//! (or no) label means the image is stale and is made again.

use std::path::Path;
use std::time::UNIX_EPOCH;

use crate::error::Error;
use crate::podman::{args, Podman};

pub const SENTRY_IMAGE: &str = "localhost/rbm-sentry:latest";
pub const AGENT_STAMP_LABEL: &str = "rbm.agent.stamp";
/// Where the agent is in the image.
pub const AGENT_IN_IMAGE: &str = "rbm-agent";
/// The image's configuration, as Containerfile instructions.
pub const CONFIG: [&str; 2] = [r#"ENTRYPOINT ["/rbm-agent"]"#, r#"CMD ["run"]"#];

/// The agent's modification time and size, as `SECONDS.NANOSECONDS-SIZE`.
pub fn agent_stamp(agent: &Path) -> Result<String, Error> {
    let missing = || Error::AgentMissing {
        arch: "the Podman host's".into(),
        looked: vec![agent.to_path_buf()],
    };
    let meta = std::fs::metadata(agent).map_err(|_| missing())?;
    if !meta.is_file() {
        return Err(missing());
    }
    let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
    let since = mtime.duration_since(UNIX_EPOCH).unwrap_or_default();
    Ok(format!(
        "{}.{:09}-{}",
        since.as_secs(),
        since.subsec_nanos(),
        meta.len()
    ))
}

/// `label` is what `podman image inspect` printed for the stamp label, or
/// None if the image does not exist.
pub fn needs_build(label: Option<&str>, stamp: &str) -> bool {
    label.map(str::trim) != Some(stamp)
}

/// Imports the sentry image for architecture `arch` (Podman's name):
/// `agent` as its only file, labelled with `stamp`.
pub fn build_sentry_image(
    podman: &Podman,
    agent: &Path,
    stamp: &str,
    arch: &str,
) -> Result<(), Error> {
    let binary = std::fs::read(agent).map_err(|source| Error::Io {
        what: "cannot read the agent binary",
        path: agent.to_path_buf(),
        fix: "check that the file is readable by your user",
        source,
    })?;
    let layer = single_file_tar(AGENT_IN_IMAGE, 0o755, &binary);
    let mut config: Vec<String> = CONFIG.iter().map(|c| c.to_string()).collect();
    config.push(format!("LABEL {AGENT_STAMP_LABEL}={stamp}"));
    podman.run_with_input(&args::import(SENTRY_IMAGE, arch, &config), &layer)?;
    Ok(())
}

/// A POSIX ustar archive holding one regular file `name` (owned by root).
pub fn single_file_tar(name: &str, mode: u32, data: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 512;
    let mut header = [0u8; BLOCK];
    let mut put = |at: usize, bytes: &[u8]| header[at..at + bytes.len()].copy_from_slice(bytes);
    let octal = |width: usize, value: u64| format!("{value:0w$o}\0", w = width - 1).into_bytes();
    assert!(name.len() < 100, "tar member name too long: {name}");
    put(0, name.as_bytes());
    put(100, &octal(8, u64::from(mode)));
    put(108, &octal(8, 0)); // uid
    put(116, &octal(8, 0)); // gid
    put(124, &octal(12, data.len() as u64));
    put(136, &octal(12, 0)); // mtime: fixed, so the same binary gives the same layer
    put(148, b"        "); // checksum field counts as spaces while summing
    put(156, b"0"); // regular file
    put(257, b"ustar\0");
    put(263, b"00");
    put(265, b"root");
    put(297, b"root");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());

    let padded = data.len().div_ceil(BLOCK) * BLOCK;
    let mut out = Vec::with_capacity(BLOCK + padded + 2 * BLOCK);
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    out.resize(BLOCK + padded + 2 * BLOCK, 0); // padding, then two zero blocks: the end
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fake_program;

    #[test]
    fn stale_when_missing_unlabelled_or_different() {
        assert!(needs_build(None, "1.000000001-5"));
        assert!(needs_build(Some("<no value>\n"), "1.000000001-5"));
        assert!(needs_build(Some("1.000000000-5\n"), "1.000000001-5"));
        assert!(!needs_build(Some("1.000000001-5\n"), "1.000000001-5"));
    }

    #[test]
    fn stamp_is_mtime_and_size_and_a_missing_agent_says_how_to_get_one() {
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("rbm-agent");
        std::fs::write(&agent, b"x").unwrap();
        let stamp = agent_stamp(&agent).unwrap();
        assert!(stamp.ends_with("-1") && stamp.contains('.'), "{stamp}");
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
    fn the_layer_is_a_tar_that_tar_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..1300u32).map(|i| (i % 251) as u8).collect();
        let archive = single_file_tar("rbm-agent", 0o755, &data);
        assert_eq!(archive.len() % 512, 0);
        let file = dir.path().join("layer.tar");
        std::fs::write(&file, &archive).unwrap();
        let list = std::process::Command::new("tar")
            .arg("-tvf")
            .arg(&file)
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&list.stdout);
        assert!(list.status.success(), "{listing}");
        assert!(
            listing.starts_with("-rwxr-xr-x root/root      1300 ")
                && listing.trim_end().ends_with(" rbm-agent"),
            "{listing}"
        );
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let x = std::process::Command::new("tar")
            .arg("-xf")
            .arg(&file)
            .arg("-C")
            .arg(&out)
            .status()
            .unwrap();
        assert!(x.success());
        assert_eq!(std::fs::read(out.join("rbm-agent")).unwrap(), data);
    }

    #[test]
    fn the_image_is_imported_from_stdin_with_its_config_and_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let got = dir.path().join("stdin.tar");
        let log = dir.path().join("args");
        let script = format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {}\ncat > {}\n",
            log.display(),
            got.display()
        );
        let podman = Podman::new(fake_program(dir.path(), "podman", &script));
        let agent = dir.path().join("agent");
        std::fs::write(&agent, b"#!binary").unwrap();
        build_sentry_image(&podman, &agent, "1.5-8", "arm64").unwrap();
        let args = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            args.lines().collect::<Vec<_>>(),
            [
                "import",
                "--quiet",
                "--arch",
                "arm64",
                "--change",
                r#"ENTRYPOINT ["/rbm-agent"]"#,
                "--change",
                r#"CMD ["run"]"#,
                "--change",
                "LABEL rbm.agent.stamp=1.5-8",
                "-",
                SENTRY_IMAGE
            ]
        );
        assert_eq!(
            std::fs::read(&got).unwrap(),
            single_file_tar("rbm-agent", 0o755, b"#!binary")
        );
    }
}
