//! What the witness saw and what the battery writes: a case as attacks.py
//! reports it, the packets the witness recorded leaving the sentry, which
//! case each packet belongs to (and whether that case allows it), and the
//! table tests/battery/results-podman-VERSION-MODE.md.

use super::*;

/// One case's line from attacks.py, and what the witness saw in its window.
pub(super) struct Case {
    pub(super) id: String,
    pub(super) group: String,
    pub(super) tries: String,
    pub(super) expected: String,
    pub(super) observed: String,
    pub(super) bottle_ok: bool,
    /// Gets out by design, as README's limits say: passing means it got
    /// out exactly as described there and nothing else left.
    pub(super) limit: bool,
    pub(super) t0: f64,
    pub(super) t1: f64,
    pub(super) egress: Vec<String>,
    pub(super) escaped: Vec<String>,
}

impl Case {
    pub(super) fn from_json(v: &Value) -> Result<Case> {
        let s = |k: &str| {
            v[k].as_str()
                .map(str::to_string)
                .context(format!("no {k} in {v}"))
        };
        Ok(Case {
            id: s("id")?,
            group: s("group")?,
            tries: s("tries")?,
            expected: s("expected")?,
            observed: s("observed")?,
            bottle_ok: v["ok"].as_bool().context("no ok")?,
            limit: v["limit"].as_bool().unwrap_or(false),
            t0: v["t0"].as_f64().context("no t0")?,
            t1: v["t1"].as_f64().context("no t1")?,
            egress: v["egress"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            escaped: Vec::new(),
        })
    }

    pub(super) fn passed(&self) -> bool {
        self.bottle_ok && self.escaped.is_empty()
    }

    /// A failure the README names as an open gap (not yet closed in rbm):
    /// shown as such in the table, and not a failure of this test.
    pub(super) fn open_gap(&self) -> bool {
        !self.passed() && OPEN_GAPS.contains(&self.id.as_str())
    }

    pub(super) fn result(&self) -> &'static str {
        if self.passed() && self.limit {
            "gets out by design (README: limits)"
        } else if self.passed() {
            "pass"
        } else if self.open_gap() {
            "**open gap** (README)"
        } else {
            "**FAIL**"
        }
    }
}

/// A packet the sentry sent out of its uplink, from `tcpdump -q -tt -n`.
#[derive(Debug)]
pub(super) struct Packet {
    pub(super) t: f64,
    pub(super) dst: String,
    pub(super) port: Option<u16>,
    /// TCP payload length (`tcp N`), if TCP.
    pub(super) tcp_len: Option<usize>,
    pub(super) line: String,
}

pub(super) fn parse_packet(line: &str) -> Option<Packet> {
    let mut words = line.split_whitespace();
    let t: f64 = words.next()?.parse().ok()?;
    let family = words.next()?;
    if family != "IP" && family != "IP6" {
        return None;
    }
    let _src = words.next()?;
    if words.next()? != ">" {
        return None;
    }
    let dst = words.next()?.trim_end_matches(':');
    let rest: Vec<&str> = words.collect();
    if family == "IP6"
        && ["solicitation", "advertisement", "listener"]
            .iter()
            .any(|w| rest.contains(w))
    {
        return None; // the kernel's own neighbour discovery and MLD
    }
    let (addr, port) = match (family, dst.rsplit_once('.')) {
        ("IP", Some((a, p))) if a.matches('.').count() == 3 => (a.to_string(), p.parse().ok()),
        _ => (dst.to_string(), None),
    };
    let tcp_len = match rest.as_slice() {
        ["tcp", n, ..] => n.parse().ok(),
        _ => None,
    };
    Some(Packet {
        t,
        dst: addr,
        port,
        tcp_len,
        line: line.to_string(),
    })
}

/// Whether `allow` covers `p`: "IP:PORT" anything to it, "IP:PORT/empty"
/// TCP without payload, "IP:PORT<T" anything sent before epoch time T.
pub(super) fn allowed(p: &Packet, allow: &[String]) -> bool {
    allow.iter().any(|a| {
        let (a, until) = match a.split_once('<') {
            Some((a, t)) => (a, t.parse().unwrap_or(0.0)),
            None => (a.as_str(), f64::INFINITY),
        };
        if p.t >= until {
            return false;
        }
        let (target, empty) = match a.strip_suffix("/empty") {
            Some(t) => (t, true),
            None => (a, false),
        };
        let Some((ip, port)) = target.rsplit_once(':') else {
            return false;
        };
        ip == p.dst
            && p.port.map(|x| x.to_string()).as_deref() == Some(port)
            && (!empty || p.tcp_len == Some(0))
    })
}

/// Lays every packet over the case windows: a packet not allowed by the
/// case it falls in, or in no case at all, is an escape. A packet within a
/// case's own window is that case's; `gap` after a case's end catches its
/// late packets in the pause before the next one.
pub(super) fn attribute(cases: &mut [Case], packets: &[Packet], gap: f64) -> Vec<String> {
    let mut stray = Vec::new();
    for p in packets {
        let within = cases.iter().position(|c| p.t >= c.t0 && p.t <= c.t1);
        let late = || cases.iter().position(|c| p.t >= c.t0 && p.t <= c.t1 + gap);
        match within.or_else(late).map(|i| &mut cases[i]) {
            Some(c) if allowed(p, &c.egress) => {}
            Some(c) => c.escaped.push(p.line.clone()),
            None => stray.push(p.line.clone()),
        }
    }
    stray
}

pub(super) fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

pub(super) fn table(
    label: &str,
    cases: &[Case],
    stray: &[String],
    trap: usize,
    memory: &str,
) -> String {
    let lifecycle = cases.iter().filter(|c| c.group == "lifecycle").count();
    let passed = cases.iter().filter(|c| c.passed()).count();
    let limits = cases.iter().filter(|c| c.passed() && c.limit).count();
    let gaps = cases.iter().filter(|c| c.open_gap()).count();
    let attacks = cases.iter().filter(|c| c.group != "control").count();
    let mut t = format!(
        "# rbm escape battery: {label}\n\n\
         Written by `tests/tests/battery.rs` (the last run on this Podman); do not edit.\n\
         {attacks} attacks ({lifecycle} of them lifecycle) and {} controls: {passed} of {} passed \
         ({limits} of them rows that get out by design, as README's limits say), \
         {gaps} open gap(s) that README names.\n\
         A case passes when the bottle saw the blocked outcome and nothing left the sentry's \
         uplink in its time window but what the case allows (\"Left the sentry\").\n\
         Packets between cases: {}. The trap world received, before the open gaps' cases: {trap}.\n\
         {memory}\n\n\
         | # | group | case | what it tries | expected | observed in the bottle | left the sentry | result |\n\
         |---|---|---|---|---|---|---|---|\n",
        cases.len() - attacks,
        cases.len(),
        stray.len(),
    );
    for (i, c) in cases.iter().enumerate() {
        let left = if c.escaped.is_empty() {
            if c.egress.is_empty() {
                "nothing".to_string()
            } else {
                format!("only {}", c.egress.join(", "))
            }
        } else {
            format!(
                "{} packet(s): {}",
                c.escaped.len(),
                c.escaped
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        };
        let _ = writeln!(
            t,
            "| {} | {} | `{}` | {} | {} | {} | {} | {} |",
            i + 1,
            c.group,
            c.id,
            cell(&c.tries),
            cell(&c.expected),
            cell(&c.observed),
            cell(&left),
            c.result()
        );
    }
    t
}

/// A case judged on the Rust side.
pub(super) fn rust_case(group: &str, id: &str, tries: &str, expected: &str, t0: f64) -> Case {
    Case {
        id: id.to_string(),
        group: group.to_string(),
        tries: tries.to_string(),
        expected: expected.to_string(),
        observed: String::new(),
        bottle_ok: false,
        limit: false,
        t0,
        t1: t0,
        egress: Vec::new(),
        escaped: Vec::new(),
    }
}
