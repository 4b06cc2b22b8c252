//! Gemini's generateContent as generativelanguage.googleapis.com answers
//! it: a GenerateContentResponse, or from `:streamGenerateContent` a JSON
//! array of them (with `?alt=sse`, one `data:` event each, `\r\n`
//! separated as Google sends them); and `:countTokens`. A request for JSON
//! (`responseMimeType`, as the CLI's model router asks) gets a JSON value
//! shaped by its schema, with the marker in its strings.

use serde_json::{json, Value};

use super::{id, query_value, Asked, Endpoint, Reply, MARKER, MARKER_DELTAS};

/// Deepest schema nesting followed (a request may nest without end).
const SCHEMA_DEPTH: usize = 16;

pub(super) fn unauthorized() -> Reply {
    // Google answers a wrong key 400 API_KEY_INVALID; the stand-in says it
    // with 401, as all the stand-ins refuse, in Google's error shape.
    Reply::json(
        401,
        &json!({"error": {
            "code": 401,
            "message": "API key not valid. Please pass a valid API key.",
            "status": "UNAUTHENTICATED",
            "details": [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }],
        }}),
    )
}

pub(super) fn reply(endpoint: &Endpoint, asked: &Asked) -> Reply {
    match endpoint {
        Endpoint::GeminiGenerate { model, stream } => {
            let response_id = id("");
            let input = asked.input_tokens();
            let config = &asked.json()["generationConfig"];
            let deltas: Vec<String> = if config["responseMimeType"] == "application/json" {
                let schema = match &config["responseJsonSchema"] {
                    Value::Null => &config["responseSchema"],
                    schema => schema,
                };
                vec![instance(schema).to_string()]
            } else {
                MARKER_DELTAS.iter().map(|d| d.to_string()).collect()
            };
            if !stream {
                let text = deltas.concat();
                return Reply::json(200, &chunk(model, &response_id, &text, input, true));
            }
            let chunks: Vec<Value> = deltas
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    let last = i + 1 == deltas.len();
                    chunk(model, &response_id, text, input, last)
                })
                .collect();
            if query_value(asked.query, "alt").as_deref() == Some("sse") {
                Reply::events(
                    chunks
                        .iter()
                        .map(|c| format!("data: {c}\r\n\r\n"))
                        .collect(),
                )
            } else {
                Reply::json(200, &Value::Array(chunks))
            }
        }
        Endpoint::GeminiCountTokens => Reply::json(
            200,
            &json!({"totalTokens": asked.input_tokens(),
                    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": asked.input_tokens()}]}),
        ),
        _ => Reply::json(200, &models()),
    }
}

/// One GenerateContentResponse with `text`; the last has the finish reason.
fn chunk(model: &str, response_id: &str, text: &str, input: u64, last: bool) -> Value {
    let mut candidate = json!({
        "content": {"parts": [{"text": text}], "role": "model"},
        "index": 0,
    });
    let mut usage = json!({"promptTokenCount": input, "totalTokenCount": input});
    if last {
        candidate["finishReason"] = "STOP".into();
        usage = json!({
            "promptTokenCount": input,
            "candidatesTokenCount": 6,
            "totalTokenCount": input + 6,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": input}],
        });
    }
    json!({
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": model,
        "responseId": response_id,
    })
}

/// A value that fits `schema` (JSON Schema, or Gemini's with upper-case
/// types): the first of an enum, every property of an object, the marker
/// for a string, the minimum (or 1) for a number.
fn instance(schema: &Value) -> Value {
    instance_at(schema, 0)
}

fn instance_at(schema: &Value, depth: usize) -> Value {
    if depth > SCHEMA_DEPTH {
        return Value::Null;
    }
    if let Some(first) = schema["enum"].get(0) {
        return first.clone();
    }
    if let Some(value) = schema.get("const") {
        return value.clone();
    }
    for choice in ["anyOf", "oneOf"] {
        if let Some(first) = schema[choice].get(0) {
            return instance_at(first, depth + 1);
        }
    }
    let kind = match &schema["type"] {
        Value::String(t) => t.to_ascii_lowercase(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| !t.eq_ignore_ascii_case("null"))
            .unwrap_or("null")
            .to_ascii_lowercase(),
        _ if schema.get("properties").is_some() => "object".into(),
        _ => "string".into(),
    };
    match kind.as_str() {
        "object" => Value::Object(
            schema["properties"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, property)| (name.clone(), instance_at(property, depth + 1)))
                .collect(),
        ),
        "array" => match schema["minItems"].as_u64() {
            Some(n) if n > 0 => json!([instance_at(&schema["items"], depth + 1)]),
            _ => json!([]),
        },
        "integer" | "number" => schema["minimum"]
            .as_i64()
            .or_else(|| schema["minimum"].as_str().and_then(|m| m.parse().ok()))
            .map_or(json!(1), |m| json!(m)),
        "boolean" => json!(false),
        "null" => Value::Null,
        _ => json!(MARKER),
    }
}

fn models() -> Value {
    let models: Vec<Value> = ["gemini-2.5-pro", "gemini-2.5-flash"]
        .iter()
        .map(|m| {
            json!({"name": format!("models/{m}"), "displayName": m,
                   "supportedGenerationMethods": ["generateContent", "countTokens"]})
        })
        .collect();
    json!({"models": models})
}

#[cfg(test)]
mod tests {
    use super::super::tests::{headers, KEY};
    use super::super::{reply as answer, Asked, Endpoint, Reply, MARKER};

    fn ask(stream: bool, query: &str) -> Reply {
        let h = headers(&[("x-goog-api-key", KEY)]);
        let asked = Asked {
            query,
            headers: &h,
            body: br#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#,
        };
        let endpoint = Endpoint::GeminiGenerate {
            model: "gemini-x".into(),
            stream,
        };
        answer(&endpoint, &asked, Some(KEY))
    }

    fn text_of(chunks: &[serde_json::Value]) -> String {
        chunks
            .iter()
            .map(|c| {
                c["candidates"][0]["content"]["parts"][0]["text"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn a_streamed_answer_comes_as_sse_chunks_the_last_one_finished() {
        let r = ask(true, "alt=sse");
        let body = r.text();
        assert!(body.starts_with("data: {"));
        let chunks: Vec<serde_json::Value> = body
            .split("\r\n\r\n")
            .filter(|b| !b.is_empty())
            .map(|b| serde_json::from_str(b.strip_prefix("data: ").unwrap()).unwrap())
            .collect();
        assert_eq!(text_of(&chunks), MARKER);
        assert_eq!(chunks[0]["candidates"][0]["content"]["role"], "model");
        assert!(chunks[0]["candidates"][0].get("finishReason").is_none());
        let last = chunks.last().unwrap();
        assert_eq!(last["candidates"][0]["finishReason"], "STOP");
        assert!(last["usageMetadata"]["candidatesTokenCount"].is_u64());
        assert_eq!(last["modelVersion"], "gemini-x");
    }

    #[test]
    fn a_stream_without_sse_is_a_json_array_and_generate_one_response() {
        let array: Vec<serde_json::Value> = serde_json::from_str(&ask(true, "").text()).unwrap();
        assert_eq!(text_of(&array), MARKER);
        let one: serde_json::Value = serde_json::from_str(&ask(false, "").text()).unwrap();
        assert_eq!(text_of(std::slice::from_ref(&one)), MARKER);
        assert_eq!(one["candidates"][0]["finishReason"], "STOP");
    }

    #[test]
    fn a_request_for_json_gets_a_value_its_schema_takes() {
        let h = headers(&[("x-goog-api-key", KEY)]);
        let body = serde_json::json!({
            "contents": [],
            "generationConfig": {
                "responseMimeType": "application/json",
                "responseJsonSchema": {
                    "type": "OBJECT",
                    "properties": {
                        "complexity_reasoning": {"type": "STRING"},
                        "complexity_score": {"type": "INTEGER", "minimum": 1},
                        "model_choice": {"type": "string", "enum": ["flash", "pro"]},
                        "steps": {"type": "array", "items": {"type": "string"}},
                        "ok": {"type": ["boolean", "null"]},
                    },
                },
            },
        })
        .to_string();
        let asked = Asked {
            query: "",
            headers: &h,
            body: body.as_bytes(),
        };
        let endpoint = Endpoint::GeminiGenerate {
            model: "m".into(),
            stream: false,
        };
        let r = answer(&endpoint, &asked, Some(KEY));
        let v: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
        let text = text_of(std::slice::from_ref(&v));
        let got: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            got,
            serde_json::json!({"complexity_reasoning": MARKER, "complexity_score": 1,
                               "model_choice": "flash", "steps": [], "ok": false})
        );
    }

    #[test]
    fn a_deeply_nested_schema_still_ends() {
        let mut schema = serde_json::json!({"type": "object"});
        for _ in 0..40 {
            schema = serde_json::json!({"type": "object", "properties": {"a": schema}});
        }
        let value = super::instance(&schema);
        assert!(value.is_object());
    }

    #[test]
    fn a_refusal_has_the_google_error_shape() {
        let r = super::unauthorized();
        let e: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
        assert_eq!((r.status, e["error"]["code"].as_u64()), (401, Some(401)));
        assert_eq!(e["error"]["details"][0]["reason"], "API_KEY_INVALID");
    }
}
