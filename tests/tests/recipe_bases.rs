//! The stand-ins for the official base images of the recipes
//! (`scripts/recipe-bases`, imported by `recipe_base_image`): a recipe
//! written for `node:24-trixie-slim` or `python:3.13-slim-trixie` must find
//! here what it finds there. Offline: nothing is installed from a registry.
//!
//! Needs root and `RBM_PODMAN` (the first build of the Debian roots takes a
//! minute or two; they are cached under /var/cache/rbm).

use std::collections::BTreeMap;

use anyhow::{ensure, Result};
use rbm_tests::podman::{recipe_base_image, require_podman, Podman, RecipeBase};

/// Runs `script` with `sh -c` in a throwaway container of `base` (as the
/// image's own user) and returns the `key=value` lines it printed.
fn facts(podman: &Podman, base: RecipeBase, script: &str) -> Result<BTreeMap<String, String>> {
    let out = podman.run_ok(&[
        "run",
        "--rm",
        "--pull=never",
        base.image(),
        "sh",
        "-c",
        script,
    ])?;
    Ok(out
        .stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// The image's own configuration: `User|Entrypoint|Cmd` (JSON lists).
fn config(podman: &Podman, base: RecipeBase) -> Result<String> {
    let out = podman.run_ok(&[
        "image",
        "inspect",
        "--format",
        "{{.Config.User}}|{{json .Config.Entrypoint}}|{{json .Config.Cmd}}",
        base.image(),
    ])?;
    Ok(out.stdout.trim().to_string())
}

fn expect(facts: &BTreeMap<String, String>, key: &str, want: &str) -> Result<()> {
    let got = facts.get(key).map(String::as_str);
    ensure!(
        got == Some(want),
        "{key}: want {want:?}, got {got:?} (all: {facts:?})"
    );
    Ok(())
}

#[test]
fn a_node_recipe_finds_node_24_npm_into_usr_local_and_user_node() -> Result<()> {
    let Ok(podman) = require_podman("imports the recipes' node base") else {
        return Ok(());
    };
    recipe_base_image(&podman, RecipeBase::Node)?;
    let facts = facts(
        &podman,
        RecipeBase::Node,
        "echo uid=$(id -u); \
         echo node=$(node -p 'process.versions.node.split(\".\")[0]'); \
         echo npm=$(npm --version | cut -d. -f1); \
         echo prefix=$(npm prefix --global); \
         echo user=$(id -u node):$(id -g node):$(getent passwd node | cut -d: -f6)",
    )?;
    expect(&facts, "uid", "0")?;
    expect(&facts, "node", "24")?;
    // npm 12 would block the agents' install scripts (claude's native binary).
    expect(&facts, "npm", "11")?;
    expect(&facts, "prefix", "/usr/local")?;
    expect(&facts, "user", "1000:1000:/home/node")?;
    // No USER, as the official image: a recipe installs as root.
    let config = config(&podman, RecipeBase::Node)?;
    ensure!(
        config == r#"|["docker-entrypoint.sh"]|["node"]"#,
        "config: {config}"
    );
    // The official entrypoint runs options and scripts through node.
    let out = podman.run_ok(&[
        "run",
        "--rm",
        "--pull=never",
        RecipeBase::Node.image(),
        "-p",
        "6*7",
    ])?;
    ensure!(
        out.stdout.trim() == "42",
        "`IMAGE -p 6*7` printed {:?}",
        out.stdout
    );
    Ok(())
}

#[test]
fn a_python_recipe_can_pip_install_as_root_without_pep_668_refusal() -> Result<()> {
    let Ok(podman) = require_podman("imports the recipes' python base") else {
        return Ok(());
    };
    recipe_base_image(&podman, RecipeBase::Python)?;
    // Offline, pip fails to find the package; Debian's marker would make it
    // refuse before looking ("externally-managed-environment").
    let facts = facts(
        &podman,
        RecipeBase::Python,
        "echo uid=$(id -u); \
         echo python=$(python -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'); \
         echo refused=$(pip install --no-index rbm-no-such-package 2>&1 | grep -c externally-managed); \
         python -m venv /tmp/v && echo venv=$(/tmp/v/bin/python -m pip --version | cut -d' ' -f1)",
    )?;
    expect(&facts, "uid", "0")?;
    expect(&facts, "python", "3.13")?;
    expect(&facts, "refused", "0")?;
    expect(&facts, "venv", "pip")?;
    let config = config(&podman, RecipeBase::Python)?;
    ensure!(config == r#"|null|["python3"]"#, "config: {config}");
    Ok(())
}
