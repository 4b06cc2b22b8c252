//! Anthropic's Messages API as api.anthropic.com answers it: a message, or
//! with `"stream": true` its server-sent events (message_start,
//! content_block_start, ping, content_block_delta, content_block_stop,
//! message_delta, message_stop). Claude Code's other paths get 404.

use serde_json::{json, Value};

use super::{id, named_event, Asked, Endpoint, Reply, MARKER, MARKER_DELTAS};

/// The model named when a request names none.
const DEFAULT_MODEL: &str = "claude-sonnet-4-5";

pub(super) fn unauthorized() -> Reply {
    with_request_id(Reply::json(
        401,
        &json!({
            "type": "error",
            "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        }),
    ))
}

pub(super) fn not_found() -> Reply {
    with_request_id(Reply::json(
        404,
        &json!({
            "type": "error",
            "error": {"type": "not_found_error", "message": "Not found"},
        }),
    ))
}

pub(super) fn reply(endpoint: &Endpoint, asked: &Asked) -> Reply {
    let request = asked.json();
    let reply = match endpoint {
        Endpoint::AnthropicCountTokens => {
            Reply::json(200, &json!({"input_tokens": asked.input_tokens()}))
        }
        Endpoint::AnthropicModels => Reply::json(200, &models()),
        _ if request["stream"] == Value::Bool(true) => stream(&request, asked.input_tokens()),
        _ => Reply::json(200, &message(&request, asked.input_tokens())),
    };
    with_request_id(reply)
}

fn with_request_id(mut reply: Reply) -> Reply {
    reply.headers.push(("request-id", id("req_")));
    reply
}

fn model(request: &Value) -> &str {
    request["model"].as_str().unwrap_or(DEFAULT_MODEL)
}

fn usage(input_tokens: u64, output_tokens: u64) -> Value {
    json!({
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    })
}

/// The whole message, as a request without `stream` gets it.
fn message(request: &Value, input_tokens: u64) -> Value {
    json!({
        "id": id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model(request),
        "content": [{"type": "text", "text": MARKER}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": usage(input_tokens, 6),
    })
}

/// The message as server-sent events, its text in two deltas.
fn stream(request: &Value, input_tokens: u64) -> Reply {
    let start = json!({
        "type": "message_start",
        "message": {
            "id": id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": model(request),
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": usage(input_tokens, 1),
        },
    });
    let mut events = vec![
        named_event("message_start", &start),
        named_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}}),
        ),
        named_event("ping", &json!({"type": "ping"})),
    ];
    for text in MARKER_DELTAS {
        events.push(named_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": text}}),
        ));
    }
    events.extend([
        named_event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 0}),
        ),
        named_event(
            "message_delta",
            &json!({"type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                    "usage": {"output_tokens": 6}}),
        ),
        named_event("message_stop", &json!({"type": "message_stop"})),
    ]);
    Reply::events(events)
}

fn models() -> Value {
    let data: Vec<Value> = [DEFAULT_MODEL, "claude-haiku-4-5"]
        .iter()
        .map(|m| {
            json!({"type": "model", "id": m, "display_name": m,
                   "created_at": "2025-01-01T00:00:00Z"})
        })
        .collect();
    json!({"data": data, "has_more": false,
           "first_id": DEFAULT_MODEL, "last_id": "claude-haiku-4-5"})
}

#[cfg(test)]
mod tests {
    use super::super::tests::{events, headers, KEY};
    use super::super::{reply as answer, Asked, Endpoint, MARKER};

    fn ask(body: &str) -> super::Reply {
        let h = headers(&[("x-api-key", KEY), ("anthropic-version", "2023-06-01")]);
        let asked = Asked {
            query: "",
            headers: &h,
            body: body.as_bytes(),
        };
        answer(&Endpoint::AnthropicMessages, &asked, Some(KEY))
    }

    #[test]
    fn a_streamed_message_comes_as_the_api_sends_its_events() {
        let r = ask(r#"{"model":"claude-x","stream":true,"max_tokens":9,"messages":[]}"#);
        assert_eq!(r.status, 200);
        assert!(r
            .headers
            .iter()
            .any(|(n, v)| *n == "content-type" && v.starts_with("text/event-stream")));
        let events = events(&r);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        for (name, data) in &events {
            assert_eq!(data["type"], name.as_str(), "each event's data names it");
        }
        assert_eq!(events[0].1["message"]["model"], "claude-x");
        assert_eq!(events[0].1["message"]["usage"]["output_tokens"], 1);
        let text: String = events
            .iter()
            .filter(|(n, _)| n == "content_block_delta")
            .map(|(_, d)| {
                assert_eq!(d["delta"]["type"], "text_delta");
                d["delta"]["text"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(text, MARKER);
        assert_eq!(events[6].1["delta"]["stop_reason"], "end_turn");
        assert!(events[6].1["usage"]["output_tokens"].is_u64());
    }

    #[test]
    fn a_message_without_stream_is_one_json_message() {
        let r = ask(r#"{"model":"claude-x","max_tokens":9,"messages":[]}"#);
        let m: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
        assert_eq!(
            (m["type"].as_str(), m["role"].as_str()),
            (Some("message"), Some("assistant"))
        );
        assert_eq!(m["content"][0]["text"], MARKER);
        assert_eq!(m["stop_reason"], "end_turn");
        assert!(m["id"].as_str().unwrap().starts_with("msg_"));
        assert!(r.headers.iter().any(|(n, _)| *n == "request-id"));
    }

    #[test]
    fn a_refusal_has_the_api_error_shape() {
        let r = super::unauthorized();
        let e: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
        assert_eq!((r.status, e["type"].as_str()), (401, Some("error")));
        assert_eq!(e["error"]["type"], "authentication_error");
    }

    #[test]
    fn tokens_are_counted() {
        let h = headers(&[("x-api-key", KEY)]);
        let asked = Asked {
            query: "",
            headers: &h,
            body: b"{\"messages\":[]}",
        };
        let r = answer(&Endpoint::AnthropicCountTokens, &asked, Some(KEY));
        let v: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
        assert!(v["input_tokens"].as_u64().unwrap() > 0);
    }
}
