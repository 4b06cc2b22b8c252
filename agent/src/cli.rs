//! `rbm-agent`'s command line, read by hand: clap took 4% of the static
//! agent for six subcommands and nine flags. It answers as clap 4 did: the
//! same help, version and usage texts, the same errors (exit code 2) with
//! their tips, the same order of checks (clap's parser, reduced to long
//! options, `-h`/`-V`, subcommands and `check`'s one positional), and the
//! same styles on a terminal: texts are made styled, and [`for_stream`]
//! strips the styles where clap would not show them.

mod text;

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use rbm_agent::{creds, status};

pub use text::for_stream;
use text::{
    empty_value, help_usage, invalid, literal, similar, smart_usage, sub_help, top_help,
    top_smart_usage, top_usage, trailing_tip, unexpected, unneeded_value, unrecognized_subcommand,
    valid, Error,
};

pub enum Command {
    Run {
        profile: Option<PathBuf>,
        control: PathBuf,
        resolv_conf: PathBuf,
        secrets: PathBuf,
    },
    Status {
        json: bool,
        control: PathBuf,
    },
    Watch {
        json: bool,
        control: PathBuf,
    },
    Reload {
        profile: Option<PathBuf>,
        json: bool,
        control: PathBuf,
    },
    Ca {
        control: PathBuf,
    },
    Check {
        profile: PathBuf,
    },
}

/// What the command line asks for.
pub enum Parsed {
    /// Do this; `None` (no subcommand) means `run`.
    Command(Option<Command>),
    /// Print this on stdout and exit 0 (help, version).
    Print(String),
    /// Print this on stderr and exit 2.
    Error(String),
}

const ABOUT: &str =
    "The rbm sentry's filtering agent: nftables over netlink and a DNS allowlist proxy";
const VERSION: &str = concat!("rbm-agent ", env!("CARGO_PKG_VERSION"), "\n");

/// A long option (`value` names its value) or flag.
struct Arg {
    long: &'static str,
    value: Option<&'static str>,
    help: &'static str,
    default: Option<&'static str>,
    hidden: bool,
}

const fn opt(long: &'static str, value: &'static str, help: &'static str) -> Arg {
    Arg {
        long,
        value: Some(value),
        help,
        default: None,
        hidden: false,
    }
}

const fn flag(long: &'static str, help: &'static str) -> Arg {
    Arg {
        long,
        value: None,
        help,
        default: None,
        hidden: false,
    }
}

const fn control(help: &'static str) -> Arg {
    Arg {
        default: Some(status::DEFAULT_SOCKET),
        ..opt("control", "CONTROL", help)
    }
}

/// `-h, --help`, which every command but `help` has after its own arguments.
const HELP: Arg = flag("help", "Print help");
const VERSION_FLAG: Arg = flag("version", "Print version");

struct Sub {
    name: &'static str,
    about: &'static str,
    args: &'static [Arg],
    /// `check`'s profile and `help`'s command names.
    positional: Option<&'static str>,
}

const RUN: usize = 0;
const STATUS: usize = 1;
const WATCH: usize = 2;
const RELOAD: usize = 3;
const CA: usize = 4;
const HELP_SUB: usize = 6;

const SUBS: [Sub; 7] = [
    Sub {
        name: "run",
        about: "Program the filter, serve DNS and the control socket until SIGTERM (the default)",
        args: &[
            opt(
                "profile",
                "PROFILE",
                "Profile file; without it the profile's TOML text is read from $RBM_PROFILE",
            ),
            control("Control socket path"),
            Arg {
                default: Some("/etc/resolv.conf"),
                ..opt(
                    "resolv-conf",
                    "RESOLV_CONF",
                    "Where to find upstream resolvers when the profile names none",
                )
            },
            Arg {
                default: Some(creds::SECRETS_DIR),
                ..opt(
                    "secrets",
                    "SECRETS",
                    "Where the credentials' real values are (rbm-cred-ENV files)",
                )
            },
            // Be the agent itself, not its supervisor (which, as the
            // sentry's PID 1, restarts it when it dies).
            Arg {
                hidden: true,
                ..flag("worker", "")
            },
            HELP,
        ],
        positional: None,
    },
    Sub {
        name: "status",
        about: "Tell what is allowed, learned and denied. Exit 0 only when the agent is ready",
        args: &[flag("json", ""), control(""), HELP],
        positional: None,
    },
    Sub {
        name: "watch",
        about: "Follow what the sentry refuses, as it happens (until interrupted)",
        args: &[flag("json", "One JSON object per line"), control(""), HELP],
        positional: None,
    },
    Sub {
        name: "reload",
        about: "Apply a changed profile to the running agent at once, without a restart: only its [uplink] policy may differ. Exit 0 reloaded, 2 refused (nothing changed), 1 failed (nothing changed)",
        args: &[
            opt(
                "profile",
                "PROFILE",
                "The profile file; without it the profile's text is read from stdin",
            ),
            flag("json", "Print what happened as JSON"),
            control(""),
            HELP,
        ],
        positional: None,
    },
    Sub {
        name: "ca",
        about: "Print the certificate (PEM) of the CA the credential proxy signs with, for the bottle to trust",
        args: &[control(""), HELP],
        positional: None,
    },
    Sub {
        name: "check",
        about: "Validate a profile and exit",
        args: &[HELP],
        positional: Some("<PROFILE>"),
    },
    Sub {
        name: "help",
        about: "Print this message or the help of the given subcommand(s)",
        args: &[],
        positional: Some("[COMMAND]..."),
    },
];

const TOP_ARGS: [Arg; 2] = [HELP, VERSION_FLAG];

impl Arg {
    /// `--control <CONTROL>`, `--json`.
    fn spec(&self) -> String {
        match self.value {
            Some(v) => format!("--{} <{v}>", self.long),
            None => format!("--{}", self.long),
        }
    }

    /// The spec with the flag in bold, as usage lines and help show it.
    fn styled(&self) -> String {
        let flag = literal(&format!("--{}", self.long));
        match self.value {
            Some(v) => format!("{flag} <{v}>"),
            None => flag,
        }
    }

    fn short(&self) -> Option<char> {
        match self.long {
            "help" => Some('h'),
            "version" => Some('V'),
            _ => None,
        }
    }
}

/// The program's name in usage lines: the file name it was started as.
fn bin_name(argv0: Option<&OsStr>) -> String {
    argv0
        .and_then(|a| std::path::Path::new(a).file_name())
        .and_then(|f| f.to_str())
        .unwrap_or("rbm-agent")
        .to_string()
}

/// `-x` and `-xyz`, but neither `-` nor `--...`.
fn is_short(arg: &OsStr) -> bool {
    let b = arg.as_encoded_bytes();
    b.len() > 1 && b[0] == b'-' && b[1] != b'-'
}

/// `--name` or `--name=value` (not `--` alone): the name and the value.
fn as_long(arg: &OsStr) -> Option<(String, Option<OsString>)> {
    let rest = arg.as_encoded_bytes().strip_prefix(b"--")?;
    if rest.is_empty() {
        return None;
    }
    let (name, value) = match rest.iter().position(|&b| b == b'=') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    // SAFETY: split at an ASCII byte of bytes that came from an OsStr.
    let os = |b: &[u8]| unsafe { OsStr::from_encoded_bytes_unchecked(b) }.to_os_string();
    Some((os(name).to_string_lossy().into_owned(), value.map(os)))
}

pub fn parse(args: &[OsString]) -> Parsed {
    let bin = bin_name(args.first().map(OsString::as_os_str));
    let rest = args.get(1..).unwrap_or_default();
    match parse_top(&bin, rest) {
        Ok(parsed) => parsed,
        Err(e) => Parsed::Error(e.render()),
    }
}

fn sub_named(name: &OsStr) -> Option<usize> {
    SUBS.iter().position(|s| OsStr::new(s.name) == name)
}

fn parse_top(bin: &str, args: &[OsString]) -> Result<Parsed, Error> {
    let usage = top_usage(bin);
    let mut trailing = false;
    for (at, arg) in args.iter().enumerate() {
        if !trailing {
            match sub_named(arg) {
                Some(HELP_SUB) => return help_subcommand(bin, &args[at + 1..]),
                Some(i) => return parse_sub(bin, i, &args[at + 1..]),
                None => {}
            }
            if arg == "--" {
                trailing = true;
                continue;
            }
            if let Some((name, value)) = as_long(arg) {
                let answer = match name.as_str() {
                    "help" => top_help(bin),
                    "version" => VERSION.to_string(),
                    _ => return Err(top_unknown_long(bin, &name, &args[at + 1..], usage)),
                };
                let flag = format!("--{name}");
                return match value {
                    Some(v) => Err(unneeded_value(&v, &flag, top_smart_usage(bin, &flag))),
                    None => Ok(Parsed::Print(answer)),
                };
            }
            if is_short(arg) {
                return match arg.to_string_lossy().chars().nth(1) {
                    Some('h') => Ok(Parsed::Print(top_help(bin))),
                    Some('V') => Ok(Parsed::Print(VERSION.to_string())),
                    c => Err(unexpected(&format!("-{}", c.unwrap_or_default()), usage)),
                };
            }
        }
        let shown = arg.to_string_lossy();
        if trailing && sub_named(arg).is_some() {
            let mut e = unexpected(&shown, usage);
            e.tips.push(format!(
                "subcommand '{}' exists; to use it, remove the '{}' before it",
                valid(&shown),
                invalid("--")
            ));
            return Err(e);
        }
        let candidates: Vec<String> = similar(&shown, SUBS.iter().map(|s| s.name))
            .iter()
            .map(|c| format!("'{}'", valid(c)))
            .collect();
        let mut e = unrecognized_subcommand(&shown, usage);
        e.similar = match candidates.as_slice() {
            [] => None,
            [one] => Some(format!("a similar subcommand exists: {one}")),
            many => Some(format!(
                "some similar subcommands exist: {}",
                many.join(", ")
            )),
        };
        return Err(e);
    }
    Ok(Parsed::Command(None))
}

/// An unknown `--name` before any subcommand: a similar top-level flag, or
/// a subcommand named later on the line that has it.
fn top_unknown_long(bin: &str, name: &str, later: &[OsString], usage: String) -> Error {
    let mut e = unexpected(&format!("--{name}"), usage);
    if let Some(flag) = similar(name, TOP_ARGS.iter().map(|a| a.long)).pop() {
        let flag = format!("--{flag}");
        e.similar = Some(format!("a similar argument exists: '{}'", valid(&flag)));
        e.usage = Some(top_smart_usage(bin, &flag));
        return e;
    }
    let in_sub = SUBS
        .iter()
        .filter_map(|s| {
            let flag = similar(name, s.args.iter().map(|a| a.long)).pop()?;
            let at = later.iter().position(|a| a == s.name)?;
            Some((at, s.name, flag))
        })
        .min_by_key(|(at, _, _)| *at);
    if let Some((_, sub, flag)) = in_sub {
        let both = valid(&format!("{sub} --{flag}"));
        e.tips.push(format!("'{both}' exists"));
    }
    e
}

fn help_subcommand(bin: &str, names: &[OsString]) -> Result<Parsed, Error> {
    let mut current: Option<usize> = None;
    for name in names {
        let found = match current {
            None => sub_named(name),
            // Subcommands have no subcommands of their own.
            Some(_) => None,
        };
        match found {
            Some(i) => current = Some(i),
            None => {
                let (usage, try_help) = match current {
                    None => (top_usage(bin), true),
                    Some(i) => (help_usage(bin, &SUBS[i]), i != HELP_SUB),
                };
                let mut e = unrecognized_subcommand(&name.to_string_lossy(), usage);
                e.try_help = try_help;
                return Err(e);
            }
        }
    }
    Ok(Parsed::Print(match current {
        None => top_help(bin),
        Some(i) => sub_help(bin, &SUBS[i]),
    }))
}

/// What clap holds back until the next argument (or the end): the last
/// option and its value, or the positional.
enum Pending {
    Arg(usize, Option<OsString>),
    Positional(OsString),
}

/// A subcommand's arguments as clap holds them while parsing: those given
/// (in order), and the pending one.
struct Matches<'a> {
    bin: &'a str,
    sub: &'a Sub,
    given: Vec<(usize, Option<OsString>)>,
    pending: Option<Pending>,
    positional: Option<OsString>,
}

impl Matches<'_> {
    /// Records an argument (an option with its value): an error if it was
    /// given before (it is then forgotten) or its value is missing or empty.
    fn take(&mut self, i: usize, value: Option<OsString>) -> Result<(), Error> {
        let arg = &self.sub.args[i];
        if arg.value.is_some() && value.is_none() {
            return Err(empty_value(&arg.spec()));
        }
        if let Some(at) = self.given.iter().position(|(g, _)| *g == i) {
            self.given.remove(at);
            let message = format!(
                "the argument '{}' cannot be used multiple times",
                invalid(&arg.spec())
            );
            return Err(Error::new(message, Some(help_usage(self.bin, self.sub))));
        }
        self.given.push((i, None));
        match value {
            Some(v) if v.is_empty() => Err(empty_value(&arg.spec())),
            v => {
                self.given.last_mut().expect("just pushed").1 = v;
                Ok(())
            }
        }
    }

    fn resolve(&mut self) -> Result<(), Error> {
        match self.pending.take() {
            Some(Pending::Arg(i, value)) => self.take(i, value),
            Some(Pending::Positional(v)) if v.is_empty() => Err(empty_value("<PROFILE>")),
            Some(Pending::Positional(v)) => {
                self.positional = Some(v);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// The visible arguments given, for an error's usage line.
    fn used(&self) -> Vec<usize> {
        self.given
            .iter()
            .map(|(i, _)| *i)
            .filter(|&i| !self.sub.args[i].hidden)
            .collect()
    }

    fn value(&self, long: &str) -> Option<PathBuf> {
        self.given
            .iter()
            .find(|(i, _)| self.sub.args[*i].long == long)
            .and_then(|(_, v)| v.clone())
            .map(PathBuf::from)
    }

    fn path(&self, long: &str) -> PathBuf {
        self.value(long).unwrap_or_else(|| {
            let arg = self.sub.args.iter().find(|a| a.long == long);
            PathBuf::from(arg.and_then(|a| a.default).unwrap_or_default())
        })
    }

    fn flag(&self, long: &str) -> bool {
        self.given
            .iter()
            .any(|(i, _)| self.sub.args[*i].long == long)
    }
}

fn parse_sub(bin: &str, index: usize, args: &[OsString]) -> Result<Parsed, Error> {
    let sub = &SUBS[index];
    let mut m = Matches {
        bin,
        sub,
        given: Vec::new(),
        pending: None,
        positional: None,
    };
    let find = |name: &str| sub.args.iter().position(|a| a.long == name);
    let mut trailing = false;
    // Whether the last option still takes the next argument as its value.
    let mut wants_value = false;
    let mut positional_taken = false;
    for arg in args {
        if !trailing {
            if arg == "--" {
                trailing = true;
                continue;
            }
            if let Some((name, value)) = as_long(arg) {
                wants_value = false;
                let Some(i) = find(&name) else {
                    let _ = m.resolve();
                    return Err(sub_unknown_long(&m, &name, trailing));
                };
                let a = &sub.args[i];
                match (a.value, value) {
                    (None, Some(v)) => {
                        let usage = attached_value_usage(&m, i);
                        return Err(unneeded_value(&v, &a.spec(), usage));
                    }
                    (None, None) if a.long == "help" => {
                        m.resolve()?;
                        return Ok(Parsed::Print(sub_help(bin, sub)));
                    }
                    (None, None) => {
                        m.resolve()?;
                        m.take(i, None)?;
                    }
                    (Some(_), Some(v)) => {
                        m.resolve()?;
                        m.take(i, Some(v))?;
                    }
                    (Some(_), None) => {
                        m.resolve()?;
                        m.pending = Some(Pending::Arg(i, None));
                        wants_value = true;
                    }
                }
                continue;
            }
            if is_short(arg) {
                if arg.to_string_lossy().chars().nth(1) == Some('h') {
                    m.resolve()?;
                    return Ok(Parsed::Print(sub_help(bin, sub)));
                }
                let _ = m.resolve();
                let c = arg.to_string_lossy().chars().nth(1).unwrap_or_default();
                let mut e = unexpected(&format!("-{c}"), help_usage(bin, sub));
                if sub.positional.is_some() {
                    e.tips.push(trailing_tip(&format!("-{c}")));
                }
                return Err(e);
            }
            if wants_value {
                wants_value = false;
                if let Some(Pending::Arg(_, value)) = &mut m.pending {
                    *value = Some(arg.clone());
                }
                continue;
            }
        }
        if sub.positional.is_some() && !positional_taken {
            m.resolve()?;
            m.pending = Some(Pending::Positional(arg.clone()));
            positional_taken = true;
            continue;
        }
        let _ = m.resolve();
        return Err(unexpected(&arg.to_string_lossy(), help_usage(bin, sub)));
    }
    m.resolve()?;
    let command = match index {
        RUN => Command::Run {
            profile: m.value("profile"),
            control: m.path("control"),
            resolv_conf: m.path("resolv-conf"),
            secrets: m.path("secrets"),
        },
        STATUS => Command::Status {
            json: m.flag("json"),
            control: m.path("control"),
        },
        WATCH => Command::Watch {
            json: m.flag("json"),
            control: m.path("control"),
        },
        RELOAD => Command::Reload {
            profile: m.value("profile"),
            json: m.flag("json"),
            control: m.path("control"),
        },
        CA => Command::Ca {
            control: m.path("control"),
        },
        // check
        _ => match m.positional {
            Some(p) => Command::Check {
                profile: PathBuf::from(p),
            },
            None => {
                let message = format!(
                    "the following required arguments were not provided:\n  {}",
                    valid("<PROFILE>")
                );
                return Err(Error::new(message, Some(help_usage(bin, sub))));
            }
        },
    };
    Ok(Parsed::Command(Some(command)))
}

/// The usage line of a flag given a value (`--json=1`): the flag, and once
/// any argument was given, all of them as one group (clap's derive makes
/// one of each subcommand's arguments, and that error shows it).
fn attached_value_usage(m: &Matches, flag: usize) -> String {
    if m.given.is_empty() {
        return smart_usage(m.bin, m.sub, &[flag]);
    }
    let mut out = literal(&format!("{} {}", m.bin, m.sub.name));
    if m.sub.args[flag].long == "help" {
        out += &format!(" {}", literal("--help"));
    }
    let members: Vec<String> = m
        .sub
        .args
        .iter()
        .filter(|a| a.long != "help")
        .map(Arg::spec)
        .collect();
    out += &format!(" <{}>", members.join("|"));
    out
}

/// An unknown `--name` in a subcommand: a similar flag of it (its usage
/// then shows it), or for `check` how to pass it as the profile.
fn sub_unknown_long(m: &Matches, name: &str, trailing: bool) -> Error {
    let sub = m.sub;
    let mut used = m.used();
    let similar_flag = similar(name, sub.args.iter().map(|a| a.long)).pop();
    if let Some(flag) = similar_flag {
        let i = sub
            .args
            .iter()
            .position(|a| a.long == flag)
            .expect("a flag of sub");
        if !used.contains(&i) && !sub.args[i].hidden {
            used.push(i);
        }
    }
    let usage = if used.is_empty() {
        help_usage(m.bin, sub)
    } else {
        smart_usage(m.bin, sub, &used)
    };
    let mut e = unexpected(&format!("--{name}"), usage);
    if let Some(flag) = similar_flag {
        let flag = valid(&format!("--{flag}"));
        e.similar = Some(format!("a similar argument exists: '{flag}'"));
    } else if sub.positional.is_some() && !trailing {
        e.tips.push(trailing_tip(&format!("--{name}")));
    }
    e
}

#[cfg(test)]
mod tests {
    use super::text::plain;
    use super::*;

    fn parse_line(line: &str) -> Parsed {
        let args: Vec<OsString> = line.split_whitespace().map(OsString::from).collect();
        parse(&args)
    }

    fn error(line: &str) -> String {
        match parse_line(line) {
            Parsed::Error(e) => plain(&e),
            _ => panic!("{line} parsed"),
        }
    }

    fn printed(line: &str) -> String {
        match parse_line(line) {
            Parsed::Print(text) => plain(&text),
            _ => panic!("{line} printed nothing"),
        }
    }

    #[test]
    fn no_subcommand_and_run_take_the_defaults() {
        assert!(matches!(parse_line("/rbm-agent"), Parsed::Command(None)));
        let Parsed::Command(Some(Command::Run {
            profile,
            control,
            resolv_conf,
            secrets,
        })) = parse_line("rbm-agent run --worker")
        else {
            panic!("not run");
        };
        assert_eq!(profile, None);
        assert_eq!(control, PathBuf::from(status::DEFAULT_SOCKET));
        assert_eq!(resolv_conf, PathBuf::from("/etc/resolv.conf"));
        assert_eq!(secrets, PathBuf::from(creds::SECRETS_DIR));
    }

    #[test]
    fn options_take_the_next_argument_or_what_follows_the_equals_sign() {
        let Parsed::Command(Some(Command::Reload {
            profile,
            json,
            control,
        })) = parse_line("rbm-agent reload --control=/c --json --profile -")
        else {
            panic!("not reload");
        };
        assert_eq!(profile, Some(PathBuf::from("-")));
        assert!(json);
        assert_eq!(control, PathBuf::from("/c"));
        let Parsed::Command(Some(Command::Check { profile })) =
            parse_line("rbm-agent check -- --json")
        else {
            panic!("not check");
        };
        assert_eq!(profile, PathBuf::from("--json"));
    }

    #[test]
    fn help_and_version_name_the_program_as_it_was_started() {
        let help = printed("/x/agent --help");
        assert!(help.contains("\nUsage: agent [COMMAND]\n"), "{help}");
        assert_eq!(printed("rbm-agent help run"), printed("rbm-agent run -h"));
        assert!(printed("a status --help").contains(
            "      --control <CONTROL>  [default: /run/rbm/agent.sock]\n  -h, --help               Print help\n"
        ));
        assert!(!printed("a run --help").contains("worker"));
        assert_eq!(printed("a -V"), "rbm-agent 0.1.0\n");
    }

    #[test]
    fn errors_say_what_clap_said() {
        assert_eq!(
            error("a stats"),
            "error: unrecognized subcommand 'stats'\n\n  tip: a similar subcommand exists: 'status'\n\nUsage: a [COMMAND]\n\nFor more information, try '--help'.\n"
        );
        assert_eq!(
            error("a status --control x --jsn"),
            "error: unexpected argument '--jsn' found\n\n  tip: a similar argument exists: '--json'\n\nUsage: a status --control <CONTROL> --json\n\nFor more information, try '--help'.\n"
        );
        assert_eq!(
            error("a check --bogus"),
            "error: unexpected argument '--bogus' found\n\n  tip: to pass '--bogus' as a value, use '-- --bogus'\n\nUsage: a check <PROFILE>\n\nFor more information, try '--help'.\n"
        );
        assert_eq!(
            error("a status --control --json"),
            "error: a value is required for '--control <CONTROL>' but none was supplied\n\nFor more information, try '--help'.\n"
        );
        assert_eq!(
            error("a --profile x run"),
            "error: unexpected argument '--profile' found\n\n  tip: 'run --profile' exists\n\nUsage: a [COMMAND]\n\nFor more information, try '--help'.\n"
        );
        assert!(error("a status --json --json").contains("'--json' cannot be used multiple times"));
        assert!(error("a check").contains("required arguments were not provided:\n  <PROFILE>"));
    }

    #[test]
    fn a_terminal_gets_clap_styles() {
        let Parsed::Error(e) = parse_line("a stats") else {
            panic!("no error");
        };
        assert!(e.starts_with(
            "\x1b[1m\x1b[31merror:\x1b[0m unrecognized subcommand '\x1b[33mstats\x1b[0m'"
        ));
        assert!(e.contains("\x1b[1m\x1b[4mUsage:\x1b[0m \x1b[1ma\x1b[0m [COMMAND]"));
        assert_eq!(plain("\x1b[1mrun\x1b[0m x"), "run x");
    }
}
