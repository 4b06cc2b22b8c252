//! Bare git repositories for the world's git sites (`git_http`): made
//! under a root as `ORG/REPO.git` with one commit on `main`, and their
//! refs read back, so a test can tell what a push changed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cmd::run_ok;

/// The branch each repository starts with.
pub const BRANCH: &str = "main";
/// The file its one commit adds.
pub const README: &str = "README.md";
const GIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where `ORG/REPO` lives under `root`.
pub fn repo_dir(root: &Path, org: &str, repo: &str) -> PathBuf {
    root.join(org).join(format!("{repo}.git"))
}

/// Makes `root/ORG/REPO.git` for each `(org, repo)`: a bare repository
/// whose `main` (also its HEAD) has one commit adding a README that names
/// it. Returns their paths, in order. Fails if one exists already.
pub fn make_repos(root: &Path, repos: &[(&str, &str)]) -> Result<Vec<PathBuf>> {
    let work = crate::files::temp_dir()?;
    let mut made = Vec::new();
    for (org, repo) in repos {
        let bare = repo_dir(root, org, repo);
        if bare.exists() {
            bail!("{} exists already", bare.display());
        }
        let tree = work.path().join(format!("{org}-{repo}"));
        std::fs::create_dir_all(&tree)?;
        std::fs::write(tree.join(README), format!("# {org}/{repo}\n"))
            .with_context(|| format!("writing the README of {org}/{repo}"))?;
        let tree = tree.display().to_string();
        let bare_s = bare.display().to_string();
        git(&["init", "-q", "-b", BRANCH, &tree])?;
        git(&["-C", &tree, "add", README])?;
        git(&[
            "-C",
            &tree,
            "-c",
            "user.name=rbm world",
            "-c",
            "user.email=world@rbm.test",
            "commit",
            "-q",
            "-m",
            &format!("{org}/{repo}: first commit"),
        ])?;
        git(&["init", "-q", "--bare", "-b", BRANCH, &bare_s])?;
        git(&["-C", &tree, "push", "-q", &bare_s, BRANCH])?;
        made.push(bare);
    }
    Ok(made)
}

/// A repository's refs (`git for-each-ref`): full name, e.g.
/// `refs/heads/main`, to object id.
pub fn refs(repo: &Path) -> Result<BTreeMap<String, String>> {
    let dir = repo.display().to_string();
    let out = git(&[
        "--git-dir",
        &dir,
        "for-each-ref",
        "--format=%(refname) %(objectname)",
    ])?;
    parse_refs(&out.stdout)
}

/// `NAME ID` lines into a map.
fn parse_refs(text: &str) -> Result<BTreeMap<String, String>> {
    text.lines()
        .map(|line| match line.split_once(' ') {
            Some((name, id)) => Ok((name.to_string(), id.to_string())),
            None => bail!("{line:?} is not REF ID"),
        })
        .collect()
}

fn git(args: &[&str]) -> Result<crate::cmd::Output> {
    run_ok("git", args, GIT_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_repo_is_bare_with_one_commit_on_main() {
        if crate::require_tools(&["git"]).is_err() {
            return;
        }
        let root = crate::files::temp_dir().unwrap();
        let made = make_repos(root.path(), &[("my-org", "tool"), ("other-org", "tool")]).unwrap();
        assert_eq!(made[0], root.path().join("my-org/tool.git"));
        assert_eq!(made[1], root.path().join("other-org/tool.git"));
        let (mine, other) = (refs(&made[0]).unwrap(), refs(&made[1]).unwrap());
        assert_eq!(mine.keys().collect::<Vec<_>>(), ["refs/heads/main"]);
        // Each README names its own repository: two different commits.
        assert_ne!(mine["refs/heads/main"], other["refs/heads/main"]);
        assert!(make_repos(root.path(), &[("my-org", "tool")]).is_err());
    }

    #[test]
    fn refs_read_back_by_name() {
        let refs = parse_refs("refs/heads/main abc\nrefs/tags/v1 def\n").unwrap();
        assert_eq!(refs["refs/heads/main"], "abc");
        assert_eq!(refs["refs/tags/v1"], "def");
        assert!(parse_refs("garbage").is_err());
    }
}
