//! `rbm-agent`: runs in the sentry (as PID 1 of a `FROM scratch` image).

mod cli;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use cli::{Command, Parsed};
use rbm_agent::denylog::watch;
use rbm_agent::profile::Profile;
use rbm_agent::reload;
use rbm_agent::run::{run, RunOptions};
use rbm_agent::status;
use rbm_agent::supervise;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let command = match cli::parse(&std::env::args_os().collect::<Vec<_>>()) {
        Parsed::Command(command) => command,
        Parsed::Print(text) => {
            let mut out = std::io::stdout();
            let text = cli::for_stream(&text, out.is_terminal());
            let _ = out.write_all(text.as_bytes());
            return ExitCode::SUCCESS;
        }
        Parsed::Error(text) => {
            let mut out = std::io::stderr();
            let text = cli::for_stream(&text, out.is_terminal());
            let _ = out.write_all(text.as_bytes());
            return ExitCode::from(2);
        }
    };
    let runs = matches!(command, None | Some(Command::Run { .. }));
    if runs && supervise::should_supervise(&args) {
        let mut args = args;
        if command.is_none() {
            args.push("run".into());
        }
        return supervise::supervise(&args);
    }
    let command = command.unwrap_or(Command::Run {
        profile: None,
        control: status::DEFAULT_SOCKET.into(),
        resolv_conf: "/etc/resolv.conf".into(),
        secrets: rbm_agent::creds::SECRETS_DIR.into(),
    });
    match command {
        Command::Run {
            profile,
            control,
            resolv_conf,
            secrets,
        } => start(profile, control, resolv_conf, secrets),
        Command::Ca { control } => {
            let (cert, _) = rbm_agent::creds::ca::paths(&control);
            match std::fs::read_to_string(&cert) {
                Ok(pem) => {
                    print!("{pem}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!(
                        "rbm-agent ca: no credential CA at {} ({e}); the profile has no credentials, or the agent has not started",
                        cert.display()
                    );
                    ExitCode::FAILURE
                }
            }
        }
        Command::Status { json, control } => show_status(json, &control),
        Command::Watch { json, control } => match watch::follow(&control, json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Reload {
            profile,
            json,
            control,
        } => reload(profile, json, &control),
        Command::Check { profile } => match Profile::load(&profile) {
            Ok(p) => {
                println!("ok: {}: moniker {}", profile.display(), p.moniker);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn start(
    profile: Option<PathBuf>,
    control: PathBuf,
    resolv_conf: PathBuf,
    secrets: PathBuf,
) -> ExitCode {
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    tracing_subscriber::registry()
        .with(log_filter(std::env::var("RBM_LOG").ok()))
        .with(log)
        .init();
    let result = read_profile(profile).and_then(|(text, origin)| {
        let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        runtime.block_on(run(RunOptions {
            profile_text: text,
            profile_origin: origin,
            control,
            resolv_conf,
            secrets,
        }))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("rbm-agent: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What to log: `RBM_LOG`, comma-separated `LEVEL`, `TARGET` or
/// `TARGET=LEVEL` directives (`RUST_LOG`'s syntax without span filters),
/// or `info,hickory_server=warn` when it is unset or invalid. An empty
/// `RBM_LOG` logs nothing. Release builds have no events below info (see
/// agent/Cargo.toml): there `RBM_LOG` can only quieten.
fn log_filter(var: Option<String>) -> Targets {
    let parsed = var.and_then(|v| {
        let directives: Vec<&str> = v.split(',').filter(|d| !d.is_empty()).collect();
        if directives.is_empty() {
            Some(Targets::new())
        } else {
            directives.join(",").parse().ok()
        }
    });
    parsed.unwrap_or_else(|| {
        Targets::new()
            .with_default(Level::INFO)
            .with_target("hickory_server", Level::WARN)
    })
}

fn reload(profile: Option<PathBuf>, json: bool, control: &std::path::Path) -> ExitCode {
    let text = match &profile {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| format!("cannot read profile {}: {e}", p.display())),
        None => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map(|_| text)
                .map_err(|e| format!("cannot read the profile from stdin: {e}"))
        }
    };
    let outcome = text.and_then(|text| reload::send(control, &text));
    match outcome {
        Ok(outcome) => {
            let code = match outcome {
                reload::Outcome::Reloaded(_) => ExitCode::SUCCESS,
                reload::Outcome::Refused(_) | reload::Outcome::NeedsRestart(_) => ExitCode::from(2),
                reload::Outcome::Failed(_) => ExitCode::FAILURE,
            };
            let text = reload::render(&outcome);
            match (json, &outcome) {
                (true, _) => println!(
                    "{}",
                    serde_json::to_string(&reload::Reply::of(&outcome)).unwrap_or_default()
                ),
                (false, reload::Outcome::Reloaded(_)) => print!("{text}"),
                (false, _) => eprint!("rbm-agent: {text}"),
            }
            code
        }
        Err(e) => {
            eprintln!("rbm-agent reload: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read_profile(path: Option<PathBuf>) -> anyhow::Result<(String, PathBuf)> {
    match path {
        Some(p) => Ok((
            std::fs::read_to_string(&p)
                .with_context(|| format!("cannot read profile {}", p.display()))?,
            p,
        )),
        None => {
            let text = std::env::var("RBM_PROFILE").context(
                "no profile: pass --profile FILE or set RBM_PROFILE to the profile's TOML text",
            )?;
            Ok((text, PathBuf::from("$RBM_PROFILE")))
        }
    }
}

fn show_status(json: bool, control: &std::path::Path) -> ExitCode {
    match status::query(control) {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    rbm_agent::shown::json(
                        serde_json::to_string_pretty(&report).unwrap_or_default()
                    )
                );
            } else {
                print!("{}", status::render(&report));
            }
            if report.ready {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("rbm-agent status: {e}");
            ExitCode::from(3)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(filter: &Targets, target: &str, level: Level) -> bool {
        filter.would_enable(target, &level)
    }

    #[test]
    fn without_rbm_log_the_agent_logs_info_and_hickory_server_only_warnings() {
        for var in [None, Some("info,=nonsense".to_string())] {
            let f = log_filter(var);
            assert!(on(&f, "rbm_agent::run", Level::INFO));
            assert!(!on(&f, "rbm_agent::run", Level::DEBUG));
            assert!(on(&f, "hickory_server::server", Level::WARN));
            assert!(!on(&f, "hickory_server::server", Level::INFO));
        }
    }

    #[test]
    fn rbm_log_takes_levels_and_targets_as_rust_log_does() {
        let f = log_filter(Some("warn,rbm_agent::dns=debug,,netlink_proto".into()));
        assert!(on(&f, "rbm_agent::dns::handler", Level::DEBUG));
        assert!(!on(&f, "rbm_agent::run", Level::INFO));
        assert!(on(&f, "rbm_agent::run", Level::WARN));
        assert!(on(&f, "netlink_proto::connection", Level::TRACE));
    }

    #[test]
    fn an_empty_rbm_log_logs_nothing() {
        let f = log_filter(Some(String::new()));
        assert!(!on(&f, "rbm_agent::run", Level::ERROR));
    }
}
