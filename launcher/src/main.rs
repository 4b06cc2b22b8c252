//! rbm-launch's command line: parse, then dispatch to the library.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand};
use rbm_launch::launch::{self, UpOptions};
use rbm_launch::lookup::{self, Loaded, Places, Shipped};
use rbm_launch::owner::BottleRoot;
use rbm_launch::podman::find::{self, PROVISIONED};
use rbm_launch::podman::host::{hardening, Engine, Host, Mode, DEVCONF_INHERIT};
use rbm_launch::podman::{Podman, Remote};
use rbm_launch::recipe::{self, Recipe};
use rbm_launch::takes::{self, Takes};
use rbm_launch::{exec, hostnets, quadlet, trust, Error};
use rbm_profile::{ProfileError, ResolvedVolume};

mod allow;
mod suggest;

const AFTER_HELP: &str = "\
PROFILE is a path if it contains '/' or ends in .toml; otherwise NAME means
profiles/NAME.toml, looked up in the current directory, then among the
profiles shipped with rbm (next to the rbm-launch binary: PREFIX/lib/rbm
of an install, or the checkout it was built in; or --rbm-files DIR); a
NAME found in both is refused (give the path of the one you mean). rbm's
own files (the sentry's agent, scripts/podman5) are never taken from the
current directory, nor is a profile from a pipe (/dev/stdin).

`rbm-launch PROFILE` is `rbm-launch up PROFILE`. Examples:
  rbm-launch run claude-code           Claude Code on this folder, its key held by the sentry
  rbm-launch recipes                   the built-in recipes (an agent in a bottle, one command)
  rbm-launch demo                      start the built-in demo profile
  rbm-launch status demo --json        the sentry agent's state
  rbm-launch shell demo -- rbm-probe dns example.com
  rbm-launch reload demo               apply the profile's changed [uplink] policy now
  rbm-launch suggest ./my.toml         the domain lines what the sentry refused would need
  rbm-launch allow ./my.toml pypi.org:443   add it to uplink.domains and reload
  rbm-launch stop demo                 remove bottle, sentry and networks
  rbm-launch up --yes ./rbm.toml       for scripts: say yes to what the profile takes
  rbm-launch info                      which Podman and agent rbm-launch uses

`up` and `quadlet` first print what the profile takes from this machine (host
paths, credentials and the hosts they go to); a credential or a path outside
the profile's folder needs a yes, asked on the terminal (or --yes) and then
remembered for that profile as it is, in $XDG_STATE_HOME/rbm/trusted.

Podman 5 or newer is required (older podman lacks `network create --route`),
rootful or rootless, local or remote (podman machine on macOS and Windows,
CONTAINER_HOST, --connection, --remote): rbm-launch asks Podman what it is. Without
--podman it takes the first podman in an absolute PATH entry that is Podman 5, else the
private Podman 5 that `scripts/podman5 up` provisioned (as root) on this
machine.

Exit codes: 0 ok, 2 bad profile or usage (or no yes), 1 other errors; status and shell
pass through the exit code of the command they run.";

/// Runs an untrusted container (the bottle) behind a trusted one (the sentry)
/// whose filter is its only way to the network.
#[derive(Parser)]
#[command(name = "rbm-launch", version, after_help = AFTER_HELP, arg_required_else_help = true)]
#[command(
    override_usage = "rbm-launch [OPTIONS] [up] <PROFILE>\n       rbm-launch [OPTIONS] <COMMAND> <PROFILE>"
)]
struct Cli {
    /// The podman program to run; must be Podman 5 or newer [default: found by itself, see below]
    #[arg(long, env = "RBM_PODMAN", value_name = "PATH", global = true)]
    podman: Option<PathBuf>,

    /// The `podman system connection` to use (a podman machine, a remote Podman service);
    /// podman itself also honours CONTAINER_CONNECTION and CONTAINER_HOST
    #[arg(long, value_name = "NAME", global = true)]
    connection: Option<String>,

    /// Talk to the default `podman system connection` (podman --remote)
    #[arg(long, global = true)]
    remote: bool,

    /// rbm's own files (built-in profiles, agents, scripts/podman5): a checkout of rbm or an
    /// install's PREFIX/lib/rbm [default: beside the rbm-launch binary; never the current
    /// directory]
    #[arg(long, env = "RBM_FILES", value_name = "DIR", global = true)]
    rbm_files: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the sentry, wait until its filter is in force, then start the bottle (the default)
    Up(UpArgs),
    /// Remove the bottle, then the sentry, then the profile's networks (and the secrets rbm made
    /// for it); only a pair this profile file started, or one without rbm's profile label
    Stop {
        #[command(flatten)]
        profile: ProfileArg,
        /// Remove whatever has the profile's moniker, even a pair another profile file started
        /// (e.g. when that file moved)
        #[arg(long)]
        force: bool,
    },
    /// Show the sentry agent's state (`rbm-agent status` in the sentry)
    Status {
        #[command(flatten)]
        profile: ProfileArg,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Follow what the sentry refuses (dropped connections with their reason, names denied on
    /// the wire, refused DNS names) as it happens, like `podman events`
    Watch {
        #[command(flatten)]
        profile: ProfileArg,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// Apply a changed [uplink] policy (domains, cidrs, access, ...) to the running pair at once,
    /// without restarting the bottle: added names work at once, connections to what only removed
    /// names opened are cut
    Reload(ProfileArg),
    /// Add domain rules to the profile file's uplink.domains (comments kept), reload the pair
    Allow {
        #[command(flatten)]
        profile: ProfileArg,
        /// An exact name or a `*.` wildcard, with `:PORT[,PORT...]` or all ports
        #[arg(value_name = "NAME[:PORTS]", required = true)]
        names: Vec<String>,
    },
    /// Print the uplink.domains lines that what the sentry refused would need, most refused first
    Suggest(ProfileArg),
    /// Write the profile as Quadlet units (two networks, sentry and bottle) so systemd runs the
    /// pair at boot; makes the sentry image as `up` does
    Quadlet {
        #[command(flatten)]
        up: UpArgs,
        /// Where to write the units (rootful: /etc/containers/systemd; rootless:
        /// ~/.config/containers/systemd)
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Validate the profile only; touch nothing
    Check(ProfileArg),
    /// Tell which Podman (version, rootful or rootless) and which agent rbm-launch uses
    Info,
    /// Run a recipe: build its bottle image (once, again when the recipe changes), start the
    /// pair with DIR as the agent's workspace, attach the terminal to the agent; leaving the
    /// agent stops the pair
    Run(RunArgs),
    /// List the recipes rbm ships, a line each
    Recipes,
    /// Run a command in the bottle (default /bin/sh), e.g. `shell demo -- rbm-probe dns example.com`
    Shell {
        #[command(flatten)]
        profile: ProfileArg,
        /// The command and its arguments (after `--`)
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "CMD"
        )]
        command: Vec<String>,
    },
}

#[derive(Args)]
struct ProfileArg {
    /// Profile name (profiles/NAME.toml) or path to a .toml file
    #[arg(value_name = "PROFILE")]
    profile: String,
}

#[derive(Args)]
struct UpArgs {
    /// Profile name (profiles/NAME.toml) or path to a .toml file
    #[arg(value_name = "PROFILE")]
    profile: String,

    #[command(flatten)]
    start: StartArgs,
}

/// What `up`, `quadlet` and `run` share.
#[derive(Args)]
struct StartArgs {
    /// The static rbm-agent binary for the sentry image [default: the one shipped with rbm for
    /// the Podman host's architecture: PREFIX/lib/rbm/ARCH/rbm-agent of an install, or what
    /// scripts/build-static built in the checkout]
    #[arg(long, env = "RBM_AGENT_BIN", value_name = "PATH")]
    agent: Option<PathBuf>,

    /// How long to wait for the sentry's filter before giving up
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    ready_timeout: u64,

    /// Say yes to what the profile takes from this machine (its credentials, host paths outside
    /// its folder) without being asked, for scripts; read the list it prints first. The yes is
    /// remembered for this profile as it is
    #[arg(long)]
    yes: bool,
}

#[derive(Args)]
struct RunArgs {
    /// A recipe rbm ships (`rbm-launch recipes` lists them) or the path of a folder holding a
    /// Containerfile and a profile.toml (`./my-recipe`)
    #[arg(value_name = "RECIPE")]
    recipe: String,

    /// The folder the agent works on, mounted read-write at /workspace [default: the current
    /// directory]
    #[arg(value_name = "DIR")]
    dir: Option<PathBuf>,

    /// A Podman volume as the workspace instead of a folder (created if missing): for a remote
    /// Podman that shares no folder of this machine
    #[arg(long, value_name = "NAME", conflicts_with = "dir")]
    workspace_volume: Option<String>,

    /// Leave the pair running when the agent exits (`rbm-launch stop RECIPE` removes it)
    #[arg(long)]
    keep: bool,

    /// Start the pair and return without attaching (`rbm-launch shell RECIPE` gets in)
    #[arg(long, conflicts_with = "keep")]
    detach: bool,

    #[command(flatten)]
    start: StartArgs,

    /// Arguments for the agent, after `--` (e.g. `-- -p "say hi"`)
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(default_to_up(std::env::args_os().collect()));
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.downcast_ref::<Error>().map_or(1, Error::exit_code))
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let places = Places::from_env(cli.rbm_files.as_deref())?;
    let chosen = Chosen {
        program: cli.podman,
        remote: Remote {
            default: cli.remote,
            connection: cli.connection,
        },
    };
    match cli.command {
        Command::Up(a) => up(chosen, &places, a),
        Command::Quadlet { up: a, dir } => quadlet(chosen, &places, a, &dir),
        Command::Check(p) => {
            let loaded = lookup::load(&p.profile, &places)?;
            let takes = Takes::of(&loaded)?;
            println!("{}", loaded.summary());
            println!("{}", takes::statement(&loaded, &takes));
            Ok(0)
        }
        Command::Info => info(chosen, &places),
        Command::Run(a) => run_recipe(chosen, &places, a),
        Command::Recipes => {
            let all = recipe::built_in(&places);
            if all.is_empty() {
                println!("no recipes beside rbm-launch; name rbm's files with --rbm-files DIR (or RBM_FILES)");
            }
            let width = all.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
            for (name, description) in &all {
                println!("{name:width$}  {description}");
            }
            println!("\nrun one with `rbm-launch run NAME [DIR]` (DIR: the folder it works on, default here); your own: `rbm-launch run ./FOLDER` (a Containerfile and a profile.toml)");
            Ok(0)
        }
        Command::Stop { profile: p, force } => {
            let l = lookup::load(&p.profile, &places)?;
            let podman = find_podman(chosen, &places)?;
            let names = l.profile.names();
            let (host, present) = launch::host_and_present(&podman, &names);
            let podman = podman.with_mode(host?.mode);
            if !force {
                launch::may_take(&present, &l, &p.profile, launch::Action::Stop)?;
            }
            launch::stop_present(&podman, &names, &p.profile, &present)?;
            println!(
                "rbm: {} stopped; nothing of moniker {} remains",
                p.profile, l.profile.moniker
            );
            Ok(0)
        }
        Command::Status { profile: p, json } => {
            let (podman, _, l) = ready(chosen, &places, &p.profile)?;
            Ok(exec::status(&podman, &l.profile.names(), json, &p.profile)?)
        }
        Command::Watch { profile: p, json } => {
            let (podman, _, l) = ready(chosen, &places, &p.profile)?;
            Ok(exec::watch(&podman, &l.profile.names(), json, &p.profile)?)
        }
        Command::Reload(p) => {
            let (podman, _, l) = ready(chosen, &places, &p.profile)?;
            exec::reload(&podman, &l.profile.names(), &l.text, &p.profile)?;
            Ok(0)
        }
        Command::Allow { profile: p, names } => {
            Ok(allow::run(&places, &p.profile, &names, || {
                podman(chosen, &places).map(|(p, _)| p)
            })?)
        }
        Command::Suggest(p) => {
            let (podman, _, l) = ready(chosen, &places, &p.profile)?;
            Ok(suggest::run(&podman, &l, &places, &p.profile)?)
        }
        Command::Shell {
            profile: p,
            command,
        } => {
            let (podman, _, l) = ready(chosen, &places, &p.profile)?;
            Ok(exec::shell(
                &podman,
                &l.profile.names(),
                &command,
                &p.profile,
            )?)
        }
    }
}

/// What the command line says of podman.
struct Chosen {
    program: Option<PathBuf>,
    remote: Remote,
}

/// The podman to use: as chosen, else found.
fn find_podman(chosen: Chosen, places: &Places) -> Result<Podman, Error> {
    Ok(find_engine(chosen, places)?.0)
}

/// The podman to use, and what `podman version` said of it if it was
/// found on PATH and is run as it was asked (not `--remote` or through
/// a named connection).
fn find_engine(chosen: Chosen, places: &Places) -> Result<(Podman, Option<Engine>), Error> {
    let script = places.shipped.as_ref().map(Shipped::podman5);
    let path = std::env::var_os("PATH");
    let found = find::find(
        chosen.program,
        path.as_deref(),
        Path::new(PROVISIONED),
        script.as_deref(),
    )?;
    let as_asked = !chosen.remote.default && chosen.remote.connection.is_none();
    let engine = found.engine.filter(|_| as_asked);
    Ok((
        Podman::new(found.program).with_remote(chosen.remote),
        engine,
    ))
}

/// The podman to use and what it says it is.
fn podman(chosen: Chosen, places: &Places) -> Result<(Podman, Host), Error> {
    let podman = find_podman(chosen, places)?;
    let host = Host::detect(&podman)?;
    Ok((podman.with_mode(host.mode), host))
}

/// Loads the profile (first: a bad one touches nothing), then finds podman.
fn ready(chosen: Chosen, places: &Places, arg: &str) -> Result<(Podman, Host, Loaded), Error> {
    let loaded = lookup::load(arg, places)?;
    let (podman, host) = podman(chosen, places)?;
    Ok((podman, host, loaded))
}

/// The options of `up` (and `quadlet`) from their arguments, for a
/// Podman that runs containers on `arch`.
fn up_options(places: &Places, arch: &str, a: UpArgs) -> Result<UpOptions, Error> {
    Ok(UpOptions {
        agent: places.agent(a.start.agent, arch)?,
        ready_timeout: Duration::from_secs(a.start.ready_timeout),
        profile_arg: a.profile,
    })
}

/// `up`: the profile, what it takes (and the yes for it), podman, then
/// `launch::up`.
fn up(chosen: Chosen, places: &Places, a: UpArgs) -> anyhow::Result<u8> {
    let loaded = lookup::load(&a.profile, places)?;
    trust::before_start(
        &loaded,
        &format!("rbm-launch up --yes {}", a.profile),
        a.start.yes,
    )?;
    let podman = find_podman(chosen, places)?;
    launch::up(&podman, &loaded, |engine| {
        up_options(places, &engine.arch, a)
    })?;
    Ok(0)
}

/// `rbm-launch run`: the recipe and its workspace, the yes, the image,
/// `up`, then the agent on the terminal; the pair stops when it exits
/// (unless --keep or --detach). Exits with the agent's code.
fn run_recipe(chosen: Chosen, places: &Places, a: RunArgs) -> anyhow::Result<u8> {
    let found = Recipe::named(&a.recipe, places)?;
    let mut loaded = found.load(places)?;
    let again = match &a.workspace_volume {
        Some(name) => {
            recipe::add_workspace_volume(&mut loaded, &a.recipe, name)?;
            format!(
                "rbm-launch run --yes --workspace-volume {name} {}",
                a.recipe
            )
        }
        None => workspace_folder(&mut loaded, &a, places)?,
    };
    trust::before_start(&loaded, &again, a.start.yes)?;
    run_built(chosen, places, a, &found, &loaded)
}

/// The folder the workspace is (DIR, default the current one), checked
/// and added to `loaded`; the command line that says yes to it.
fn workspace_folder(loaded: &mut Loaded, a: &RunArgs, places: &Places) -> Result<String, Error> {
    let dir = a.dir.clone().unwrap_or_else(|| places.cwd.clone());
    let dir = places
        .cwd
        .join(&dir)
        .canonicalize()
        .ok()
        .filter(|d| d.is_dir())
        .ok_or_else(|| Error::Recipe {
            arg: a.recipe.clone(),
            what: format!("the workspace {} is not a folder", dir.display()),
            fix:
                "name an existing folder for the agent to work on (default: the current directory)"
                    .into(),
        })?;
    recipe::check_workspace(&a.recipe, &dir, &homes())?;
    recipe::add_workspace(loaded, &dir)?;
    Ok(format!(
        "rbm-launch run --yes {} {}",
        a.recipe,
        shell_word(&dir.to_string_lossy())
    ))
}

/// The rest of `run_recipe`: the image, the pair, the agent.
fn run_built(
    chosen: Chosen,
    places: &Places,
    a: RunArgs,
    found: &Recipe,
    loaded: &Loaded,
) -> anyhow::Result<u8> {
    let podman = find_podman(chosen, places)?;
    recipe::build(&podman, found, &loaded.profile.bottle.image)?;
    let up = UpArgs {
        profile: a.recipe.clone(),
        start: a.start,
    };
    launch::up(&podman, loaded, |engine| {
        up_options(places, &engine.arch, up)
    })?;
    let names = loaded.profile.names();
    let arg = &a.recipe;
    if a.detach {
        println!("rbm: get in with `rbm-launch shell {arg}`; remove the pair with `rbm-launch stop {arg}`");
        return Ok(0);
    }
    let mut command = loaded
        .profile
        .bottle
        .attach
        .clone()
        .unwrap_or_else(|| vec!["/bin/sh".into()]);
    command.extend(a.args);
    let workdir = loaded
        .profile
        .bottle
        .workdir
        .as_deref()
        .unwrap_or(recipe::WORKSPACE);
    let code = exec::attach(&podman, &names, workdir, &command, arg);
    if a.keep {
        println!("rbm: {arg} keeps running; `rbm-launch shell {arg}` gets in, `rbm-launch stop {arg}` removes it");
    } else {
        launch::stop(&podman, &names, arg)?;
        println!(
            "rbm: {arg} stopped; nothing of moniker {} remains",
            loaded.profile.moniker
        );
    }
    Ok(code?)
}

/// The home folders a workspace may not hold: $HOME, and under sudo
/// (where $HOME is root's) the home of the user sudo names.
fn homes() -> Vec<PathBuf> {
    let mut homes: Vec<PathBuf> = std::env::var_os("HOME")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    #[cfg(unix)]
    if let Some(uid) = std::env::var("SUDO_UID").ok().and_then(|u| u.parse().ok()) {
        homes.extend(rbm_launch::owner::home_of(uid));
    }
    homes
}

/// `s` as one word for a shell command line (quoted if it needs to be).
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+,:=@".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// `rbm-launch quadlet`: the units, the profile beside them, and the
/// commands that start them.
fn quadlet(chosen: Chosen, places: &Places, a: UpArgs, dir: &Path) -> anyhow::Result<u8> {
    let loaded = lookup::load(&a.profile, places)?;
    quadlet::carries(&loaded, &a.profile)?;
    if let Some(c) = loaded.profile.credentials.first() {
        return Err(Error::Credential {
            env: c.env.clone(),
            message: "Quadlet units do not carry credentials yet (their CA and placeholders are made at `up`)".into(),
            fix: format!("start this profile with `rbm-launch up {}`", a.profile),
        }
        .into());
    }
    let again = format!(
        "rbm-launch quadlet --yes --dir {} {}",
        dir.display(),
        a.profile
    );
    trust::before_start(&loaded, &again, a.start.yes)?;
    let (podman, host) = podman(chosen, places)?;
    let opts = up_options(places, &host.arch, a)?;
    let images = launch::Images::ask(&podman, &loaded.profile);
    let root = BottleRoot::of(&host, loaded.owners_folder());
    let volumes: Vec<String> = launch::prepare(&podman, &host.arch, root, &loaded, &opts, images)?
        .iter()
        .map(ResolvedVolume::podman_arg)
        .collect();
    let present = launch::Present::ask(&podman, &loaded.profile.names());
    let host_nets = hostnets::with_local(present.host_nets, &loaded.profile);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    let profile = dir.join(quadlet::profile_file(&loaded.profile));
    // All units first: a value that cannot be written leaves no file.
    let units =
        quadlet::units(&loaded.profile, &profile, &volumes, &host_nets, root).map_err(|p| {
            Error::Profile(ProfileError::Invalid {
                file: loaded.path.clone(),
                problems: vec![p],
            })
        })?;
    std::fs::write(&profile, &loaded.text)
        .with_context(|| format!("cannot write {}", profile.display()))?;
    for unit in units {
        let path = dir.join(&unit.file);
        std::fs::write(&path, &unit.text)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("rbm: wrote {}", path.display());
    }
    let user = if host.mode == Mode::Rootless {
        " --user"
    } else {
        ""
    };
    let bottle = loaded.profile.names().bottle;
    println!("rbm: start the pair now and at every boot with:");
    println!("  systemctl{user} daemon-reload");
    println!("  systemctl{user} start {bottle}.service");
    Ok(0)
}

/// `rbm-launch info`: what rbm-launch would use, and where it looks.
fn info(chosen: Chosen, places: &Places) -> anyhow::Result<u8> {
    match &places.shipped {
        Some(s) => println!("rbm files: {}", s.root.display()),
        None => println!(
            "rbm files: none beside rbm-launch; name them with --rbm-files DIR (or RBM_FILES)"
        ),
    }
    let dirs: Vec<String> = places
        .profile_dirs()
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    println!("profiles:  {}", dirs.join(", "));
    let devconf = std::fs::read_to_string(DEVCONF_INHERIT).ok();
    println!("hardening: {}", hardening(devconf.as_deref()));
    let (podman, host) = match podman(chosen, places) {
        Ok(found) => found,
        Err(e) => {
            println!("podman:    none usable");
            return Err(e.into());
        }
    };
    println!("podman:    {}", podman.program().display());
    println!("           {}", host.describe());
    match places.agent(None, &host.arch) {
        Ok(a) => println!("agent:     {} (for {})", a.display(), host.arch),
        Err(e) => println!("agent:     {e}"),
    }
    Ok(0)
}

/// `rbm-launch [OPTIONS] PROFILE` means `rbm-launch up [OPTIONS] PROFILE`:
/// if the first word that is not an option (or an option's value) is not a
/// command, insert `up` in front of the arguments.
fn default_to_up(args: Vec<OsString>) -> Vec<OsString> {
    let cli = Cli::command();
    let up = cli.find_subcommand("up").expect("up is a command");
    let takes_value = |long: &str| {
        cli.get_arguments()
            .chain(up.get_arguments())
            .any(|a| a.get_long() == Some(long) && a.get_action().takes_values())
    };
    let mut i = 1;
    while let Some(word) = args.get(i).map(|a| a.to_string_lossy()) {
        if word == "--" {
            i += 1;
            break;
        }
        match word.strip_prefix("--") {
            Some(long) if !long.contains('=') && takes_value(long) => i += 2,
            _ if word.starts_with('-') && word.len() > 1 => i += 1,
            _ => break,
        }
    }
    let Some(first) = args.get(i).map(|a| a.to_string_lossy()) else {
        return args;
    };
    if first == "help" || cli.find_subcommand(first.as_ref()).is_some() {
        return args;
    }
    let mut out = args;
    out.insert(1, "up".into());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(line: &str) -> String {
        let args = line.split_whitespace().map(OsString::from).collect();
        default_to_up(args)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn a_bare_profile_means_up() {
        assert_eq!(norm("rbm-launch demo"), "rbm-launch up demo");
        assert_eq!(
            norm("rbm-launch --podman /p demo"),
            "rbm-launch up --podman /p demo"
        );
        assert_eq!(
            norm("rbm-launch --ready-timeout=5 --agent a ./x.toml"),
            "rbm-launch up --ready-timeout=5 --agent a ./x.toml"
        );
    }

    #[test]
    fn commands_help_and_nothing_are_left_alone() {
        for line in [
            "rbm-launch",
            "rbm-launch --help",
            "rbm-launch -V",
            "rbm-launch up demo",
            "rbm-launch --podman p stop demo",
            "rbm-launch help shell",
            "rbm-launch shell demo -- ls",
            "rbm-launch info",
        ] {
            assert_eq!(norm(line), line);
        }
    }

    #[test]
    fn every_form_parses() {
        let parse = |line: &str| {
            Cli::try_parse_from(default_to_up(
                line.split_whitespace().map(OsString::from).collect(),
            ))
        };
        assert!(
            matches!(parse("rbm-launch demo").unwrap().command, Command::Up(ref a) if a.profile == "demo" && a.start.ready_timeout == 30 && !a.start.yes)
        );
        assert!(
            matches!(parse("rbm-launch --yes ./p.toml").unwrap().command, Command::Up(ref a) if a.profile == "./p.toml" && a.start.yes)
        );
        assert!(matches!(
            parse("rbm-launch quadlet --yes --dir /d demo").unwrap().command,
            Command::Quadlet { ref up, .. } if up.start.yes
        ));
        assert!(matches!(
            parse("rbm-launch --podman /p stop demo").unwrap().command,
            Command::Stop { force: false, .. }
        ));
        assert!(matches!(
            parse("rbm-launch stop --force demo").unwrap().command,
            Command::Stop { force: true, .. }
        ));
        assert_eq!(
            parse("rbm-launch --rbm-files /opt/rbm info")
                .unwrap()
                .rbm_files,
            Some(PathBuf::from("/opt/rbm"))
        );
        assert!(matches!(
            parse("rbm-launch status demo --json").unwrap().command,
            Command::Status { json: true, .. }
        ));
        assert!(matches!(
            parse("rbm-launch check demo").unwrap().command,
            Command::Check(_)
        ));
        assert!(matches!(
            parse("rbm-launch watch demo --json").unwrap().command,
            Command::Watch { json: true, .. }
        ));
        assert!(matches!(
            parse("rbm-launch reload demo").unwrap().command,
            Command::Reload(ref p) if p.profile == "demo"
        ));
        match parse("rbm-launch shell demo -- rbm-probe dns -x example.com")
            .unwrap()
            .command
        {
            Command::Shell { profile, command } => {
                assert_eq!(profile.profile, "demo");
                assert_eq!(command, ["rbm-probe", "dns", "-x", "example.com"]);
            }
            _ => panic!("not shell"),
        }
        assert_eq!(
            parse("rbm-launch --podman /x demo").unwrap().podman,
            Some(PathBuf::from("/x"))
        );
        assert!(matches!(
            parse("rbm-launch info").unwrap().command,
            Command::Info
        ));
        match parse("rbm-launch run --yes claude-code /p --keep -- -p hi")
            .unwrap()
            .command
        {
            Command::Run(r) => {
                assert_eq!(r.recipe, "claude-code");
                assert_eq!(r.dir, Some(PathBuf::from("/p")));
                assert!(r.keep && !r.detach && r.start.yes);
                assert_eq!(r.args, ["-p", "hi"]);
            }
            _ => panic!("not run"),
        }
        assert!(matches!(
            parse("rbm-launch run ./mine").unwrap().command,
            Command::Run(ref r) if r.dir.is_none() && r.args.is_empty()
        ));
        assert!(parse("rbm-launch run --keep --detach x").is_err());
        assert!(matches!(
            parse("rbm-launch recipes").unwrap().command,
            Command::Recipes
        ));
        assert!(
            matches!(parse("rbm-launch allow p.toml a.test *.b.test:443").unwrap().command,
            Command::Allow { ref profile, ref names } if profile.profile == "p.toml" && names == &["a.test", "*.b.test:443"])
        );
        assert!(parse("rbm-launch allow p.toml").is_err());
        assert!(matches!(
            parse("rbm-launch suggest demo").unwrap().command,
            Command::Suggest(_)
        ));
        assert_eq!(shell_word("/home/me/p"), "/home/me/p");
        assert_eq!(shell_word("/a b/it's"), "'/a b/it'\\''s'");
        let remote = parse("rbm-launch --connection mac demo").unwrap();
        assert_eq!(remote.connection.as_deref(), Some("mac"));
        assert!(parse("rbm-launch --remote stop demo").unwrap().remote);
    }
}
