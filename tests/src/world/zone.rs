//! The world's zone: one record per line, `NAME TYPE TTL VALUE`, with TYPE
//! one of A, AAAA, CNAME, TXT, HTTPS; `#` starts a comment (outside quotes).
//! An HTTPS value is `PRIORITY TARGET` and parameters `alpn=a,b`,
//! `ipv4hint=IP,IP`, `ipv6hint=IP,IP`, `ech=HEX`.
//!
//! ```text
//! api.example.test.      A     60  198.51.100.10
//! www.example.test       CNAME 60  api.example.test.
//! note.example.test      TXT   60  "hello world"
//! ```
//!
//! Names are case-insensitive; a missing trailing dot is added.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::svcb::{
    Alpn, EchConfigList, IpHint, SvcParamKey, SvcParamValue, SVCB,
};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, HTTPS, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// Longest CNAME chain followed before answering SERVFAIL (loops).
const MAX_CHAIN: usize = 16;

/// TXT character-strings hold at most 255 bytes each.
const TXT_CHUNK: usize = 255;

#[derive(Debug, Clone)]
struct Entry {
    rtype: RecordType,
    ttl: u32,
    data: RData,
}

/// The records the world is authoritative for.
#[derive(Debug, Default)]
pub struct Zone {
    names: HashMap<String, Vec<Entry>>,
}

/// The result of a lookup: the rcode and the answer section.
#[derive(Debug)]
pub struct Lookup {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
}

impl Zone {
    pub fn load(path: &Path) -> Result<Zone> {
        let text = fs::read_to_string(path)
            .with_context(|| format!("cannot read zone file {}", path.display()))?;
        Zone::parse(&text).with_context(|| format!("in zone file {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Zone> {
        let mut zone = Zone::default();
        for (number, line) in text.lines().enumerate() {
            let line = strip_comment(line).trim();
            if line.is_empty() {
                continue;
            }
            let (name, entry) =
                parse_line(line).with_context(|| format!("line {}: {line:?}", number + 1))?;
            zone.names.entry(name).or_default().push(entry);
        }
        Ok(zone)
    }

    /// Answers `qname`/`qtype`, following CNAMEs within the zone: the answer
    /// holds the CNAME records, then the records of the final name. The rcode
    /// is NXDOMAIN when the (final) name has no records at all.
    pub fn lookup(&self, qname: &Name, qtype: RecordType) -> Lookup {
        let mut answers = Vec::new();
        let mut current = qname.clone();
        for _ in 0..MAX_CHAIN {
            let Some(entries) = self.names.get(&key(&current.to_ascii())) else {
                return Lookup {
                    rcode: ResponseCode::NXDomain,
                    answers,
                };
            };
            let follow = qtype != RecordType::CNAME && qtype != RecordType::ANY;
            if let Some(cname) = entries
                .iter()
                .find(|e| follow && e.rtype == RecordType::CNAME)
            {
                answers.push(Record::from_rdata(
                    current.clone(),
                    cname.ttl,
                    cname.data.clone(),
                ));
                let RData::CNAME(target) = &cname.data else {
                    unreachable!("CNAME entry")
                };
                current = target.0.clone();
                continue;
            }
            let matching = entries
                .iter()
                .filter(|e| qtype == RecordType::ANY || e.rtype == qtype);
            answers.extend(
                matching.map(|e| Record::from_rdata(current.clone(), e.ttl, e.data.clone())),
            );
            return Lookup {
                rcode: ResponseCode::NoError,
                answers,
            };
        }
        Lookup {
            rcode: ResponseCode::ServFail,
            answers: Vec::new(),
        }
    }
}

/// Lower-case, with a trailing dot: the form names are stored under.
fn key(name: &str) -> String {
    let mut key = name.to_ascii_lowercase();
    if !key.ends_with('.') {
        key.push('.');
    }
    key
}

fn fqdn(name: &str) -> Result<Name> {
    Name::from_ascii(key(name)).map_err(|e| anyhow!("bad domain name {name:?}: {e}"))
}

/// Drops a `#` comment that is not inside double quotes.
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

/// Splits off the first whitespace-separated word.
fn word(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start();
    let end = text.find(char::is_whitespace)?;
    Some((&text[..end], text[end..].trim_start()))
}

fn parse_line(line: &str) -> Result<(String, Entry)> {
    let format = "expected `NAME TYPE TTL VALUE`";
    let (name, rest) = word(line).ok_or_else(|| anyhow!(format))?;
    let (rtype, rest) = word(rest).ok_or_else(|| anyhow!(format))?;
    let (ttl, value) = word(rest).ok_or_else(|| anyhow!(format))?;
    let ttl: u32 = ttl
        .parse()
        .map_err(|_| anyhow!("TTL {ttl:?} is not a number"))?;
    let (rtype, data) = parse_value(rtype, value.trim())?;
    Ok((
        key(fqdn(name)?.to_ascii().as_str()),
        Entry { rtype, ttl, data },
    ))
}

fn parse_value(rtype: &str, value: &str) -> Result<(RecordType, RData)> {
    let bad = |e: &dyn std::fmt::Display| anyhow!("bad {rtype} value {value:?}: {e}");
    match rtype.to_ascii_uppercase().as_str() {
        "A" => Ok((
            RecordType::A,
            RData::A(A(value.parse().map_err(|e| bad(&e))?)),
        )),
        "AAAA" => Ok((
            RecordType::AAAA,
            RData::AAAA(AAAA(value.parse().map_err(|e| bad(&e))?)),
        )),
        "CNAME" => Ok((RecordType::CNAME, RData::CNAME(CNAME(fqdn(value)?)))),
        "TXT" => Ok((RecordType::TXT, RData::TXT(txt(value)))),
        "HTTPS" => Ok((RecordType::HTTPS, RData::HTTPS(HTTPS(service(value)?)))),
        other => bail!("unsupported record type {other:?} (use A, AAAA, CNAME, TXT or HTTPS)"),
    }
}

/// An HTTPS value: `PRIORITY TARGET key=value...`.
fn service(value: &str) -> Result<SVCB> {
    let mut words = value.split_whitespace();
    let (Some(priority), Some(target)) = (words.next(), words.next()) else {
        bail!("expected `PRIORITY TARGET key=value...`, got {value:?}");
    };
    let priority: u16 = priority
        .parse()
        .map_err(|_| anyhow!("priority {priority:?} is not a number"))?;
    let target = if target == "." {
        Name::root()
    } else {
        fqdn(target)?
    };
    let mut params = Vec::new();
    for param in words {
        let (key, list) = param
            .split_once('=')
            .ok_or_else(|| anyhow!("parameter {param:?} is not key=value"))?;
        let items = || list.split(',');
        let bad = |e: &dyn std::fmt::Display| anyhow!("bad {key} {list:?}: {e}");
        let entry = match key {
            "alpn" => (
                SvcParamKey::Alpn,
                SvcParamValue::Alpn(Alpn(items().map(String::from).collect())),
            ),
            "ipv4hint" => (
                SvcParamKey::Ipv4Hint,
                SvcParamValue::Ipv4Hint(IpHint(
                    items()
                        .map(|i| i.parse().map(A).map_err(|e| bad(&e)))
                        .collect::<Result<_>>()?,
                )),
            ),
            "ipv6hint" => (
                SvcParamKey::Ipv6Hint,
                SvcParamValue::Ipv6Hint(IpHint(
                    items()
                        .map(|i| i.parse().map(AAAA).map_err(|e| bad(&e)))
                        .collect::<Result<_>>()?,
                )),
            ),
            "ech" => (
                SvcParamKey::EchConfigList,
                SvcParamValue::EchConfigList(EchConfigList(hex(list)?)),
            ),
            other => bail!("unsupported HTTPS parameter {other:?}"),
        };
        params.push(entry);
    }
    Ok(SVCB::new(priority, target, params))
}

fn hex(text: &str) -> Result<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| anyhow!("{text:?} is not hex"))
        })
        .collect()
}

/// A TXT value, surrounding quotes removed, split into 255-byte strings.
fn txt(value: &str) -> TXT {
    let text = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    let chunks = text
        .as_bytes()
        .chunks(TXT_CHUNK)
        .map(<[u8]>::to_vec)
        .collect::<Vec<_>>();
    TXT::from_bytes(chunks.iter().map(Vec::as_slice).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONE: &str = "\
# comment
api.example.test.   A     60  198.51.100.10
API.example.test    AAAA  60  2001:db8::10   # trailing comment
www.example.test    CNAME 30  alias.example.test
alias.example.test  CNAME 30  api.example.test.
note.example.test   TXT   60  \"hello # not a comment\"
loop1.example.test  CNAME 60  loop2.example.test
loop2.example.test  CNAME 60  loop1.example.test
dangling.example.test CNAME 60 gone.example.test
";

    fn lookup(name: &str, qtype: RecordType) -> Lookup {
        Zone::parse(ZONE)
            .unwrap()
            .lookup(&Name::from_ascii(name).unwrap(), qtype)
    }

    fn data(l: &Lookup) -> Vec<String> {
        l.answers
            .iter()
            .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
            .collect()
    }

    #[test]
    fn https_records_carry_their_parameters() {
        let zone =
            Zone::parse("a.test HTTPS 60 1 . alpn=h2,http/1.1 ipv4hint=192.0.2.1 ech=00ff\n")
                .unwrap();
        let found = zone.lookup(&fqdn("a.test").unwrap(), RecordType::HTTPS);
        let RData::HTTPS(HTTPS(svcb)) = &found.answers[0].data else {
            panic!("{found:?}")
        };
        assert_eq!(svcb.svc_params.len(), 3);
        assert_eq!(
            svcb.svc_params[2].1,
            SvcParamValue::EchConfigList(EchConfigList(vec![0, 255]))
        );
        assert!(Zone::parse("a.test HTTPS 60 1 . ech=zz\n").is_err());
    }

    #[test]
    fn answers_case_insensitively_with_query_case() {
        let l = lookup("Api.Example.TEST.", RecordType::A);
        assert_eq!(l.rcode, ResponseCode::NoError);
        assert_eq!(data(&l), vec!["Api.Example.TEST. A 198.51.100.10"]);
        assert_eq!(
            data(&lookup("api.example.test.", RecordType::AAAA)),
            vec!["api.example.test. AAAA 2001:db8::10"]
        );
    }

    #[test]
    fn follows_cname_chains() {
        let l = lookup("www.example.test.", RecordType::A);
        assert_eq!(
            data(&l),
            vec![
                "www.example.test. CNAME alias.example.test.",
                "alias.example.test. CNAME api.example.test.",
                "api.example.test. A 198.51.100.10",
            ]
        );
        let l = lookup("www.example.test.", RecordType::CNAME);
        assert_eq!(
            data(&l),
            vec!["www.example.test. CNAME alias.example.test."]
        );
    }

    #[test]
    fn nxdomain_nodata_loops_and_txt() {
        assert_eq!(
            lookup("nope.example.test.", RecordType::A).rcode,
            ResponseCode::NXDomain
        );
        let nodata = lookup("api.example.test.", RecordType::TXT);
        assert_eq!(
            (nodata.rcode, nodata.answers.len()),
            (ResponseCode::NoError, 0)
        );
        assert_eq!(
            lookup("loop1.example.test.", RecordType::A).rcode,
            ResponseCode::ServFail
        );
        let dangling = lookup("dangling.example.test.", RecordType::A);
        assert_eq!(
            (dangling.rcode, dangling.answers.len()),
            (ResponseCode::NXDomain, 1)
        );
        assert_eq!(
            data(&lookup("note.example.test.", RecordType::TXT)),
            vec!["note.example.test. TXT hello # not a comment"]
        );
    }

    #[test]
    fn rejects_bad_lines_with_line_numbers() {
        let err = Zone::parse("a.test A 60 1.2.3.4\nb.test MX 60 x\n").unwrap_err();
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
        assert!(Zone::parse("a.test A sixty 1.2.3.4").is_err());
        assert!(Zone::parse("a.test A 60 not-an-ip").is_err());
        assert!(Zone::parse("a.test A 60").is_err());
    }
}
