//! Reading the JSON that rbm-probe prints.

use anyhow::{anyhow, Context, Result};
use serde_json::Value;

use crate::cmd::Output;

/// Parses one JSON object from a program's stdout (surrounding blank lines allowed).
pub fn parse_json(stdout: &str) -> Result<Value> {
    let text = stdout.trim();
    let value: Value = serde_json::from_str(text)
        .with_context(|| format!("stdout is not one JSON value: {text:?}"))?;
    if !value.is_object() {
        return Err(anyhow!("expected a JSON object, got {value}"));
    }
    Ok(value)
}

/// Parses a probe's stdout whatever its exit status (the probe prints JSON on
/// failure too); the error names the command and its stderr.
pub fn probe_json(out: &Output) -> Result<Value> {
    parse_json(&out.stdout).with_context(|| {
        format!(
            "`{}` ({}) printed no JSON\nstderr: {}",
            out.command,
            out.status,
            out.stderr.trim()
        )
    })
}

/// `value[key]` as a string, or an error showing the whole value.
pub fn str_field<'a>(value: &'a Value, key: &str) -> Result<&'a str> {
    value[key]
        .as_str()
        .ok_or_else(|| anyhow!("no string field {key:?} in {value}"))
}

/// `value[key]` as a list of strings (e.g. a DNS report's `addrs`).
pub fn str_list(value: &Value, key: &str) -> Result<Vec<String>> {
    let list = value[key]
        .as_array()
        .ok_or_else(|| anyhow!("no list field {key:?} in {value}"))?;
    list.iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| anyhow!("field {key:?} holds a non-string in {value}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_probe_reports() {
        let v = parse_json("\n{\"rcode\":\"NoError\",\"addrs\":[\"192.0.2.1\"]}\n").unwrap();
        assert_eq!(str_field(&v, "rcode").unwrap(), "NoError");
        assert_eq!(str_list(&v, "addrs").unwrap(), vec!["192.0.2.1"]);
        assert!(str_field(&v, "error").is_err());
        assert!(parse_json("ready").is_err());
        assert!(parse_json("[1]").is_err());
    }
}
