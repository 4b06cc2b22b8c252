//! Gemini's generateContent as generativelanguage.googleapis.com answers
//! it: a GenerateContentResponse, or from `:streamGenerateContent` a JSON
//! array of them (with `?alt=sse`, one `data:` event each, `\r\n`
//! separated as Google sends them); and `:countTokens`.

use serde_json::{json, Value};

use super::{id, query_value, Asked, Endpoint, Reply, MARKER, MARKER_DELTAS};

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
            if !stream {
                return Reply::json(200, &chunk(model, &response_id, MARKER, input, true));
            }
            let chunks: Vec<Value> = MARKER_DELTAS
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    let last = i + 1 == MARKER_DELTAS.len();
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
    fn a_refusal_has_the_google_error_shape() {
        let r = super::unauthorized();
        let e: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
        assert_eq!((r.status, e["error"]["code"].as_u64()), (401, Some(401)));
        assert_eq!(e["error"]["details"][0]["reason"], "API_KEY_INVALID");
    }
}
