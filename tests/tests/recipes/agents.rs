//! The real agent CLIs from npm, each in its built-in recipe's image (the
//! recipe's own Containerfile and files, its own profile's allowlist and
//! environment), answer a prompt through the sentry: `rbm-launch run` of
//! the recipe, against a stand-in of the agent's API in the test world
//! (HTTPS with the world's CA, given to the sentry as `upstream_ca`), which
//! answers only the real key. Then: the stand-in saw the real key; the
//! bottle's environment, files and `podman inspect` hold only the
//! placeholder; a name the profile does not allow, asked from inside the
//! agent's container, is refused and never reaches the world.
//!
//! What the test changes in the recipe's profile, and why: the moniker and
//! the networks (the test's own), `upstream_dns` (the world's DNS), the
//! credential's source (a file) and `upstream_ca` (the world's CA), and
//! `attach`, which first waits until the API's name resolves (the world
//! starts on the uplink network `run` creates) and then runs the recipe's
//! own agent command.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{bail, ensure, Context, Result};
use rbm_tests::certs::TestCa;
use rbm_tests::podman::{recipe_base_image, RecipeBase, WorldContainer};
use rbm_tests::world::apis::MARKER;
use rbm_tests::world::https::HttpsServer;
use rbm_tests::world::setup::WorldSetup;

use crate::common::{built_in_copy, wait_for_uplink, write_profile, Ctx, Stop, RUN_TIMEOUT};

/// The key the sentry holds and the stand-in wants.
const REAL_KEY: &str = "sk-real-7f3a9c2e41d8b6a0";
/// A name no recipe allows; the world would answer it.
const REFUSED: &str = "refused.e2e.test";
/// The world's host number on the uplink.
const WORLD_HOST: u8 = 10;

/// One agent: its built-in recipe and how to ask it one thing.
struct Agent {
    recipe: &'static str,
    moniker: &'static str,
    n: u8,
    api: &'static str,
    key_env: &'static str,
    /// What `run` passes to the recipe's agent after `--`.
    prompt: &'static [&'static str],
}

const CLAUDE: Agent = Agent {
    recipe: "claude-code",
    moniker: "rcclaude",
    n: 81,
    api: "api.anthropic.com",
    key_env: "ANTHROPIC_API_KEY",
    prompt: &["-p", "say hi"],
};

const CODEX: Agent = Agent {
    recipe: "codex",
    moniker: "rccodex",
    n: 82,
    api: "api.openai.com",
    key_env: "OPENAI_API_KEY",
    prompt: &["exec", "--skip-git-repo-check", "say hi"],
};

const GEMINI: Agent = Agent {
    recipe: "gemini-cli",
    moniker: "rcgemini",
    n: 83,
    api: "generativelanguage.googleapis.com",
    key_env: "GEMINI_API_KEY",
    prompt: &["-p", "say hi"],
};

#[test]
fn claude_code_answers_through_the_sentry() -> Result<()> {
    answers(&CLAUDE)
}

#[test]
fn codex_answers_through_the_sentry() -> Result<()> {
    answers(&CODEX)
}

#[test]
fn gemini_cli_answers_through_the_sentry() -> Result<()> {
    answers(&GEMINI)
}

fn answers(agent: &Agent) -> Result<()> {
    let Some(ctx) = Ctx::new("runs a real agent CLI through rbm-launch run")? else {
        return Ok(());
    };
    recipe_base_image(&ctx.podman, RecipeBase::Node)?;
    let world_ip = Ipv4Addr::new(10, 251, agent.n, WORLD_HOST);
    let ca = TestCa::new("rbm recipes world CA")?;
    let leaf = ca.leaf(&[agent.api])?;
    let dir = test_recipe(agent, &ca.cert_pem, world_ip)?;
    let ws = ctx.workspace(agent.moniker)?;
    let recipe = dir.to_string_lossy().into_owned();
    let mut args = vec!["run", "--yes", "--keep", &recipe];
    let ws_arg = ws.to_string_lossy().into_owned();
    args.push(&ws_arg);
    args.push("--");
    args.extend(agent.prompt.iter().copied());
    let _cleanup = Stop {
        ctx: &ctx,
        recipe: recipe.clone(),
        moniker: agent.moniker,
    };
    let build = ctx.build_args()?;
    let mut run = ctx
        .launcher
        .spawn_with_env(&[("RBM_BUILD_ARGS", &build)], &args)?;
    // The world joins the uplink network as soon as `run` has made it.
    let uplink = wait_for_uplink(&ctx, &mut run, agent.moniker)?;
    let zone = format!(
        "{api}. A 60 {world_ip}\n{REFUSED}. A 60 {world_ip}\n",
        api = agent.api
    );
    let setup = WorldSetup::new(&zone)
        .dns(SocketAddr::from((world_ip, 53)))
        .https([HttpsServer {
            addr: SocketAddr::from((world_ip, 443)),
            cert: leaf.chain_pem.clone(),
            key: leaf.key_pem.clone(),
        }])
        .api_key(REAL_KEY);
    let world = WorldContainer::start(
        &ctx.podman,
        &format!("rbm-{}-world", agent.moniker),
        &uplink,
        world_ip,
        &setup,
    )?;
    let out = run.finish(RUN_TIMEOUT)?;
    ensure!(
        out.success() && out.stdout.contains(MARKER),
        "{} did not print the stand-in's answer ({}):\nstdout: {}\nstderr: {}",
        agent.recipe,
        out.status,
        out.stdout.trim(),
        out.stderr.trim()
    );
    // The stand-in answered only because the real key arrived.
    let requests = world.https_requests()?;
    let keyed = requests.iter().any(|r| {
        r.authorization.contains(REAL_KEY) || r.headers.values().any(|v| v.contains(REAL_KEY))
    });
    ensure!(keyed, "the stand-in never saw the real key: {requests:?}");
    let bottle = format!("rbm-{}-bottle", agent.moniker);
    placeholder_only(&ctx, &bottle, agent)?;
    refused_inside(&ctx, &bottle)?;
    ensure!(
        !world.was_asked(REFUSED)?,
        "the world was asked the refused name"
    );
    Ok(())
}

/// The bottle holds a placeholder for the key, never the key: in its
/// environment, its files and what `podman inspect` says of it.
fn placeholder_only(ctx: &Ctx, bottle: &str, agent: &Agent) -> Result<()> {
    let env = ctx.podman.run_ok(&["exec", bottle, "env"])?.stdout;
    let line = env
        .lines()
        .find(|l| l.starts_with(&format!("{}=", agent.key_env)))
        .with_context(|| format!("no {} in the bottle", agent.key_env))?;
    ensure!(
        line.starts_with(&format!("{}=rbm-", agent.key_env)) && !env.contains(REAL_KEY),
        "the bottle's environment: {line}"
    );
    let inspect = ctx.podman.run_ok(&["inspect", bottle])?.stdout;
    ensure!(!inspect.contains(REAL_KEY), "podman inspect shows the key");
    let found = ctx.podman.run(&[
        "exec",
        bottle,
        "grep",
        "-rlsF",
        "--exclude-dir=proc",
        "--exclude-dir=sys",
        "--exclude-dir=dev",
        REAL_KEY,
        "/",
    ])?;
    ensure!(
        found.status.code() == Some(1) && found.stdout.trim().is_empty(),
        "the key is in the bottle's files ({}): {}",
        found.status,
        found.stdout.trim()
    );
    Ok(())
}

/// A name the profile does not allow, looked up from inside the agent's
/// container (with Node, as the agent would), is refused.
fn refused_inside(ctx: &Ctx, bottle: &str) -> Result<()> {
    let script = format!(
        "require('dns').lookup('{REFUSED}', (e, a) => console.log(e ? 'refused ' + e.code : 'resolved ' + a))"
    );
    let out = ctx
        .podman
        .run_ok(&["exec", bottle, "node", "-e", &script])?
        .stdout;
    ensure!(
        out.trim().starts_with("refused"),
        "{REFUSED} from the bottle: {}",
        out.trim()
    );
    Ok(())
}

/// A copy of the built-in recipe `agent.recipe` with the test's changes to
/// its profile (see the module's documentation).
fn test_recipe(agent: &Agent, ca_pem: &str, world_ip: Ipv4Addr) -> Result<std::path::PathBuf> {
    let (dir, mut bottle, mut p) = built_in_copy(agent.recipe, agent.moniker, agent.n, world_ip)?;
    // The key and the world's CA beside the recipe, never in it: the
    // recipe's folder is its build's context (rbm-launch refuses a key there).
    let outside = rbm_tests::podman::fresh_dir(&format!("recipe-{}-key", agent.moniker))?;
    let (key, ca) = (outside.join("key.txt"), outside.join("world-ca.pem"));
    std::fs::write(&ca, ca_pem)?;
    std::fs::write(&key, REAL_KEY)?;
    let command: Vec<toml::Value> = match bottle.get("attach") {
        Some(toml::Value::Array(a)) => a.clone(),
        _ => bail!("the recipe's profile has no bottle.attach"),
    };
    let program = command
        .first()
        .and_then(|v| v.as_str())
        .context("bottle.attach is empty")?
        .to_string();
    let mut attach: Vec<toml::Value> = vec![
        "sh".into(),
        "-c".into(),
        format!(
            "until getent hosts {} >/dev/null; do sleep 0.2; done; exec \"$@\"",
            agent.api
        )
        .into(),
        program.into(),
    ];
    attach.extend(command);
    bottle.insert("attach".into(), attach.into());
    let creds = match p.get_mut("credential") {
        Some(toml::Value::Array(c)) => c,
        _ => bail!("the recipe's profile has no [[credential]]"),
    };
    for c in creds.iter_mut() {
        let c = c.as_table_mut().context("a credential is a table")?;
        c.insert("from".into(), format!("file:{}", key.display()).into());
        c.insert("upstream_ca".into(), ca.display().to_string().into());
        c.insert("outside".into(), true.into());
    }
    write_profile(&dir, bottle, p)?;
    Ok(dir)
}
