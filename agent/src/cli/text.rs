//! What the command line says back, in clap's words and styles: help and
//! usage texts, errors with their tips, and the similar names they suggest.

use std::ffi::OsStr;

use super::{Arg, Sub, ABOUT, SUBS, TOP_ARGS};

// clap's default styles.
pub(super) fn literal(s: &str) -> String {
    format!("\x1b[1m{s}\x1b[0m")
}

pub(super) fn header(s: &str) -> String {
    format!("\x1b[1m\x1b[4m{s}\x1b[0m")
}

pub(super) fn invalid(s: &str) -> String {
    format!("\x1b[33m{s}\x1b[0m")
}

pub(super) fn valid(s: &str) -> String {
    format!("\x1b[32m{s}\x1b[0m")
}

/// `text` for a stream: styled on a terminal that takes colours, plain
/// elsewhere, by clap's rules (NO_COLOR, CLICOLOR_FORCE, CLICOLOR, TERM,
/// CI).
pub fn for_stream(text: &str, terminal: bool) -> String {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    let clicolor = std::env::var_os("CLICOLOR").map(|v| v != "0");
    let term = std::env::var_os("TERM").is_some_and(|t| t != "dumb");
    let styled = if set("NO_COLOR") {
        false
    } else if set("CLICOLOR_FORCE") {
        true
    } else if clicolor == Some(false) {
        false
    } else {
        terminal && (term || clicolor == Some(true) || std::env::var_os("CI").is_some())
    };
    if styled {
        text.to_string()
    } else {
        plain(text)
    }
}

/// `text` without its styles.
pub(super) fn plain(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("\x1b[") {
        plain.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        rest = after.find('m').map_or("", |end| &after[end + 1..]);
    }
    plain.push_str(rest);
    plain
}

/// strsim's Jaro similarity, which clap's suggestions use (above 0.7).
pub(super) fn jaro(a: &str, b: &str) -> f64 {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let range = (a.len().max(b.len()) / 2).saturating_sub(1);
    let mut b_used = vec![false; b.len()];
    let mut a_matched = Vec::new();
    for (i, ca) in a.iter().enumerate() {
        let lo = i.saturating_sub(range);
        let hi = b.len().min(i + range + 1);
        if let Some(j) = (lo..hi).find(|&j| !b_used[j] && b[j] == *ca) {
            b_used[j] = true;
            a_matched.push(*ca);
        }
    }
    let m = a_matched.len();
    if m == 0 {
        return 0.0;
    }
    let b_matched = b.iter().zip(&b_used).filter(|(_, u)| **u).map(|(c, _)| c);
    let transpositions = a_matched
        .iter()
        .zip(b_matched)
        .filter(|(x, y)| x != y)
        .count()
        / 2;
    let m = m as f64;
    (m / a.len() as f64 + m / b.len() as f64 + (m - transpositions as f64) / m) / 3.0
}

/// The candidates similar to `v`, least similar first (clap's order).
pub(super) fn similar<'a>(v: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut found: Vec<(f64, &str)> = Vec::new();
    for c in candidates {
        let score = jaro(v, c);
        if score > 0.7 {
            let at = found.partition_point(|(s, _)| *s <= score);
            found.insert(at, (score, c));
        }
    }
    found.into_iter().map(|(_, c)| c).collect()
}

/// An error as clap words it: message, tips, usage, the pointer to help.
pub(super) struct Error {
    message: String,
    pub(super) similar: Option<String>,
    pub(super) tips: Vec<String>,
    pub(super) usage: Option<String>,
    /// Whether the command has `--help` to point to (`help` has not).
    pub(super) try_help: bool,
}

impl Error {
    pub(super) fn new(message: String, usage: Option<String>) -> Error {
        Error {
            message,
            similar: None,
            tips: Vec::new(),
            usage,
            try_help: true,
        }
    }

    pub(super) fn render(self) -> String {
        let tip = valid("tip:");
        let mut out = format!("\x1b[1m\x1b[31merror:\x1b[0m {}", self.message);
        if let Some(similar) = &self.similar {
            out += &format!("\n\n  {tip} {similar}");
        }
        if !self.tips.is_empty() && self.similar.is_none() {
            out.push('\n');
        }
        for t in &self.tips {
            out += &format!("\n  {tip} {t}");
        }
        if let Some(usage) = &self.usage {
            out += &format!("\n\n{} {usage}", header("Usage:"));
        }
        if self.try_help {
            out += &format!("\n\nFor more information, try '{}'.", literal("--help"));
        }
        out.push('\n');
        out
    }
}

pub(super) fn unexpected(arg: &str, usage: String) -> Error {
    let message = format!("unexpected argument '{}' found", invalid(arg));
    Error::new(message, Some(usage))
}

pub(super) fn empty_value(arg: &str) -> Error {
    let message = format!(
        "a value is required for '{}' but none was supplied",
        invalid(arg)
    );
    Error::new(message, None)
}

pub(super) fn unrecognized_subcommand(name: &str, usage: String) -> Error {
    let message = format!("unrecognized subcommand '{}'", invalid(name));
    Error::new(message, Some(usage))
}

pub(super) fn unneeded_value(value: &OsStr, arg: &str, usage: String) -> Error {
    let message = format!(
        "unexpected value '{}' for '{}' found; no more were expected",
        invalid(&value.to_string_lossy()),
        literal(arg)
    );
    Error::new(message, Some(usage))
}

/// How to pass `arg` as `check`'s profile.
pub(super) fn trailing_tip(arg: &str) -> String {
    format!(
        "to pass '{}' as a value, use '{}'",
        invalid(arg),
        valid(&format!("-- {arg}"))
    )
}

/// A help section: its title, then each name (plain, and as shown) with
/// its description aligned after the longest name.
pub(super) fn section(title: &str, rows: &[(String, String, String)]) -> String {
    let width = rows.iter().map(|(n, _, _)| n.len()).max().unwrap_or(0);
    let mut out = format!("{}\n", header(title));
    for (name, shown, help) in rows {
        let pad = " ".repeat(width - name.len() + 2);
        out += &format!("  {shown}{pad}{help}\n");
    }
    out
}

pub(super) fn options_section(args: &[Arg]) -> String {
    let rows: Vec<(String, String, String)> = args
        .iter()
        .filter(|a| !a.hidden)
        .map(|a| {
            let (short, shown) = match a.short() {
                Some(c) => (
                    format!("-{c}, "),
                    format!("{}, ", literal(&format!("-{c}"))),
                ),
                None => ("    ".to_string(), "    ".to_string()),
            };
            let help = match (a.default, a.help) {
                (Some(d), "") => format!("[default: {d}]"),
                (Some(d), h) => format!("{h} [default: {d}]"),
                (None, h) => h.to_string(),
            };
            (short + &a.spec(), shown + &a.styled(), help)
        })
        .collect();
    section("Options:", &rows)
}

/// The top level's help: `rbm-agent --help`, `rbm-agent help`.
pub(super) fn top_help(bin: &str) -> String {
    let commands: Vec<(String, String, String)> = SUBS
        .iter()
        .map(|s| (s.name.into(), literal(s.name), s.about.into()))
        .collect();
    format!(
        "{ABOUT}\n\n{} {}\n\n{}\n{}",
        header("Usage:"),
        top_usage(bin),
        section("Commands:", &commands),
        options_section(&TOP_ARGS)
    )
}

pub(super) fn top_usage(bin: &str) -> String {
    format!("{} [COMMAND]", literal(bin))
}

/// The top level's usage line in an error about `flag`.
pub(super) fn top_smart_usage(bin: &str, flag: &str) -> String {
    format!("{} {}", literal(bin), literal(flag))
}

/// A subcommand's help (`-h` and `--help` say the same).
pub(super) fn sub_help(bin: &str, sub: &Sub) -> String {
    let usage = help_usage(bin, sub);
    let mut out = format!("{}\n\n{} {usage}\n", sub.about, header("Usage:"));
    if let Some(p) = sub.positional {
        let help = if sub.args.is_empty() {
            "Print help for the subcommand(s)"
        } else {
            ""
        };
        let rows = [(p.into(), p.into(), help.into())];
        out += &format!("\n{}", section("Arguments:", &rows));
    }
    if !sub.args.is_empty() {
        out += &format!("\n{}", options_section(sub.args));
    }
    out
}

/// A subcommand's usage line: `rbm-agent status [OPTIONS]`.
pub(super) fn help_usage(bin: &str, sub: &Sub) -> String {
    let options = sub.args.iter().any(|a| a.long != "help" && !a.hidden);
    let mut out = literal(&format!("{bin} {}", sub.name));
    if options {
        out += " [OPTIONS]";
    }
    if let Some(p) = sub.positional {
        out += &format!(" {p}");
    }
    out
}

/// The usage line of an error about `used` arguments: them, in the order
/// given, then the positional.
pub(super) fn smart_usage(bin: &str, sub: &Sub, used: &[usize]) -> String {
    let mut specs: Vec<String> = Vec::new();
    for &i in used {
        let spec = sub.args[i].styled();
        if !specs.contains(&spec) {
            specs.push(spec);
        }
    }
    let mut out = literal(&format!("{bin} {}", sub.name));
    for s in specs.iter().map(String::as_str).chain(sub.positional) {
        out += " ";
        out += s;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaro_is_strsims() {
        assert!((jaro("jsn", "json") - 0.9166).abs() < 1e-3);
        assert_eq!(jaro("", ""), 1.0);
        assert_eq!(jaro("abc", "xyz"), 0.0);
    }
}
