//! Stand-ins for the model APIs the recipes' agents call (Anthropic
//! Messages, OpenAI Responses, Gemini generateContent), faithful enough
//! that the real CLIs take their answers. Each answers only the world's
//! real key, so an agent gets [`MARKER`] back only if the sentry swapped
//! its placeholder for that key; any other key gets the API's own 401.
//!
//! No I/O here: [`endpoint`] says whether a request is for a stand-in and
//! [`reply`] decides the answer from the request; `https` does the rest.

mod anthropic;
mod gemini;
mod openai;

use std::sync::atomic::{AtomicU64, Ordering};

use hyper::header::HeaderMap;
use hyper::Method;
use serde_json::Value;

/// What every stand-in's answer says, for the tests to look for.
pub const MARKER: &str = "rbm stand-in says hi";

/// The marker as a stream sends it: in two deltas, so a client that shows
/// the marker whole has joined them.
const MARKER_DELTAS: [&str; 2] = ["rbm stand-in ", "says hi"];

/// A model API's endpoint the world stands in for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Anthropic `POST /v1/messages`.
    AnthropicMessages,
    /// Anthropic `POST /v1/messages/count_tokens`.
    AnthropicCountTokens,
    /// Anthropic `GET /v1/models`.
    AnthropicModels,
    /// What Claude Code asks api.anthropic.com beside the model (`/api/...`:
    /// org settings, policy limits, feature flags, event logging; and
    /// `/mcp-registry/...`): 404, which it takes as "none".
    AnthropicNotFound,
    /// OpenAI `POST /v1/responses`.
    OpenAiResponses,
    /// OpenAI `GET /v1/models`.
    OpenAiModels,
    /// Gemini `POST /v1beta/models/MODEL:generateContent` or
    /// `:streamGenerateContent` (`?alt=sse` for server-sent events).
    GeminiGenerate { model: String, stream: bool },
    /// Gemini `POST /v1beta/models/MODEL:countTokens`.
    GeminiCountTokens,
    /// Gemini `GET /v1beta/models`.
    GeminiModels,
}

/// The endpoint `method` and `path` ask for, if a stand-in answers them.
/// `/v1/models` is OpenAI's unless the request carries Anthropic's
/// version header (both APIs list models there).
pub fn endpoint(method: &Method, path: &str, headers: &HeaderMap) -> Option<Endpoint> {
    let anthropic = headers.contains_key("anthropic-version") || headers.contains_key("x-api-key");
    match (method, path) {
        (&Method::POST, "/v1/messages") => Some(Endpoint::AnthropicMessages),
        (&Method::POST, "/v1/messages/count_tokens") => Some(Endpoint::AnthropicCountTokens),
        (&Method::GET, "/v1/models") if anthropic => Some(Endpoint::AnthropicModels),
        (&Method::GET, "/v1/models") => Some(Endpoint::OpenAiModels),
        (&Method::POST, "/v1/responses") => Some(Endpoint::OpenAiResponses),
        (&Method::GET, "/v1beta/models") => Some(Endpoint::GeminiModels),
        _ if path.starts_with("/api/") || path.starts_with("/mcp-registry/") => {
            Some(Endpoint::AnthropicNotFound)
        }
        (&Method::POST, _) => {
            let (model, method) = path.strip_prefix("/v1beta/models/")?.split_once(':')?;
            match method {
                "generateContent" | "streamGenerateContent" => Some(Endpoint::GeminiGenerate {
                    model: model.into(),
                    stream: method == "streamGenerateContent",
                }),
                "countTokens" => Some(Endpoint::GeminiCountTokens),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A request as a stand-in sees it.
pub struct Asked<'a> {
    /// The target's query, without `?`.
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

impl Asked<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Bearer` token of the Authorization header.
    fn bearer(&self) -> Option<&str> {
        let value = self.header("authorization")?;
        let (scheme, token) = value.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim())
    }

    /// The body as JSON (`null` if it is none).
    fn json(&self) -> Value {
        serde_json::from_slice(self.body).unwrap_or(Value::Null)
    }

    /// A token count as plausible as needed: a quarter of the body's bytes.
    fn input_tokens(&self) -> u64 {
        (self.body.len() as u64 / 4).max(1)
    }
}

/// A stand-in's answer: status, headers, and the body in the pieces it
/// is sent in (one per server-sent event when it streams).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<String>,
}

impl Reply {
    fn json(status: u16, value: &Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: vec![value.to_string()],
        }
    }

    fn events(body: Vec<String>) -> Reply {
        Reply {
            status: 200,
            headers: vec![
                ("content-type", "text/event-stream; charset=utf-8".into()),
                ("cache-control", "no-cache".into()),
            ],
            body,
        }
    }

    /// The body whole.
    pub fn text(&self) -> String {
        self.body.concat()
    }
}

/// The answer to `asked` at `endpoint`. `real_key` is the world's key;
/// with none, no key is right (the stand-ins then only refuse).
pub fn reply(endpoint: &Endpoint, asked: &Asked, real_key: Option<&str>) -> Reply {
    let is_real = |key: Option<&str>| key.is_some() && key == real_key;
    match endpoint {
        Endpoint::AnthropicNotFound => anthropic::not_found(),
        Endpoint::AnthropicMessages
        | Endpoint::AnthropicCountTokens
        | Endpoint::AnthropicModels => {
            // Anthropic's own header first; its SDKs also send a bearer token.
            let key = asked.header("x-api-key").or_else(|| asked.bearer());
            if !is_real(key) {
                return anthropic::unauthorized();
            }
            anthropic::reply(endpoint, asked)
        }
        Endpoint::OpenAiResponses | Endpoint::OpenAiModels => {
            if !is_real(asked.bearer()) {
                return openai::unauthorized();
            }
            openai::reply(endpoint, asked)
        }
        Endpoint::GeminiGenerate { .. } | Endpoint::GeminiCountTokens | Endpoint::GeminiModels => {
            let query_key = query_value(asked.query, "key");
            let key = asked.header("x-goog-api-key").or(query_key.as_deref());
            if !is_real(key) {
                return gemini::unauthorized();
            }
            gemini::reply(endpoint, asked)
        }
    }
}

/// The percent-decoded value of `name` in a query string.
fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A fresh id with `prefix` (ids only need to differ within a run).
fn id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{prefix}rbm{:020}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Seconds since the epoch.
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One server-sent event with a name, as Anthropic and OpenAI send them.
fn named_event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const KEY: &str = "sk-real-key";

    /// A request to an endpoint: its headers and query.
    type Case<'a> = (Endpoint, Vec<(&'static str, &'a str)>, &'a str);

    pub(super) fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    /// The JSON of each `data:` line in a streamed body, with its event name.
    pub(super) fn events(reply: &Reply) -> Vec<(String, Value)> {
        let text = reply.text();
        let mut out = Vec::new();
        for block in text
            .split("\n\n")
            .map(|b| b.trim())
            .filter(|b| !b.is_empty())
        {
            let mut name = String::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_string();
                }
                if let Some(data) = line.strip_prefix("data: ") {
                    out.push((name.clone(), serde_json::from_str(data).unwrap()));
                }
            }
        }
        out
    }

    #[test]
    fn each_api_path_is_its_stand_in_and_others_are_not() {
        let none = HeaderMap::new();
        let post = |path| endpoint(&Method::POST, path, &none);
        assert_eq!(post("/v1/messages"), Some(Endpoint::AnthropicMessages));
        assert_eq!(post("/v1/responses"), Some(Endpoint::OpenAiResponses));
        assert_eq!(
            post("/v1beta/models/gemini-2.5-pro:streamGenerateContent"),
            Some(Endpoint::GeminiGenerate {
                model: "gemini-2.5-pro".into(),
                stream: true
            })
        );
        assert_eq!(
            post("/v1beta/models/m:countTokens"),
            Some(Endpoint::GeminiCountTokens)
        );
        assert_eq!(post("/v1beta/models/m:embedContent"), None);
        assert_eq!(post("/stream"), None);
        assert_eq!(
            endpoint(&Method::GET, "/api/claude_code/policy_limits", &none),
            Some(Endpoint::AnthropicNotFound)
        );
        assert_eq!(endpoint(&Method::GET, "/v1/messages", &none), None);
        let anthropic = headers(&[("anthropic-version", "2023-06-01")]);
        assert_eq!(
            endpoint(&Method::GET, "/v1/models", &anthropic),
            Some(Endpoint::AnthropicModels)
        );
        assert_eq!(
            endpoint(&Method::GET, "/v1/models", &none),
            Some(Endpoint::OpenAiModels)
        );
    }

    #[test]
    fn a_wrong_or_missing_key_never_gets_the_marker() {
        let body = br#"{"model":"m","stream":false,"messages":[]}"#;
        let cases: [Case; 5] = [
            (
                Endpoint::AnthropicMessages,
                vec![("x-api-key", "placeholder")],
                "",
            ),
            (Endpoint::AnthropicMessages, vec![], ""),
            (
                Endpoint::OpenAiResponses,
                vec![("authorization", "Basic sk-real-key")],
                "",
            ),
            (Endpoint::GeminiCountTokens, vec![], "key=sk-real-kez"),
            (Endpoint::GeminiModels, vec![("x-goog-api-key", "")], ""),
        ];
        for (endpoint, pairs, query) in cases {
            let h = headers(&pairs);
            let asked = Asked {
                query,
                headers: &h,
                body,
            };
            let r = reply(&endpoint, &asked, Some(KEY));
            assert_eq!(r.status, 401, "{endpoint:?}");
            assert!(!r.text().contains(MARKER));
            assert!(!r.text().contains(KEY));
        }
    }

    #[test]
    fn a_world_without_a_key_takes_none() {
        let h = headers(&[("x-api-key", "")]);
        let asked = Asked {
            query: "",
            headers: &h,
            body: b"{}",
        };
        assert_eq!(
            reply(&Endpoint::AnthropicMessages, &asked, None).status,
            401
        );
    }

    #[test]
    fn each_api_takes_the_real_key_where_its_clients_send_it() {
        let body = br#"{"model":"m","messages":[],"contents":[]}"#;
        let bearer = format!("Bearer {KEY}");
        let cases: [Case; 5] = [
            (Endpoint::AnthropicMessages, vec![("x-api-key", KEY)], ""),
            (
                Endpoint::AnthropicMessages,
                vec![("authorization", &bearer)],
                "",
            ),
            (
                Endpoint::OpenAiResponses,
                vec![("authorization", &bearer)],
                "",
            ),
            (
                Endpoint::GeminiCountTokens,
                vec![("x-goog-api-key", KEY)],
                "",
            ),
            (
                Endpoint::GeminiCountTokens,
                vec![],
                "alt=json&key=sk%2Dreal-key",
            ),
        ];
        for (endpoint, pairs, query) in cases {
            let h = headers(&pairs);
            let asked = Asked {
                query,
                headers: &h,
                body,
            };
            assert_eq!(
                reply(&endpoint, &asked, Some(KEY)).status,
                200,
                "{endpoint:?}"
            );
        }
    }

    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(
            query_value("a=1&key=x%2By+z", "key").as_deref(),
            Some("x+y z")
        );
        assert_eq!(query_value("keys=1", "key"), None);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
