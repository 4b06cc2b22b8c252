//! OpenAI's Responses API as api.openai.com streams it to `codex exec`:
//! response.created, response.in_progress, response.output_item.added,
//! response.content_part.added, response.output_text.delta (twice),
//! response.output_text.done, response.content_part.done,
//! response.output_item.done, response.completed. Codex takes the message
//! from output_item.done and the end of the turn from completed.

use serde_json::{json, Value};

use super::{id, named_event, now, Asked, Endpoint, Reply, MARKER, MARKER_DELTAS};

const DEFAULT_MODEL: &str = "gpt-5";

pub(super) fn unauthorized() -> Reply {
    Reply::json(
        401,
        &json!({"error": {
            "message": "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error",
            "param": null,
            "code": "invalid_api_key",
        }}),
    )
}

pub(super) fn reply(endpoint: &Endpoint, asked: &Asked) -> Reply {
    let mut reply = match endpoint {
        Endpoint::OpenAiModels => Reply::json(200, &models()),
        _ => {
            let request = asked.json();
            let model = request["model"].as_str().unwrap_or(DEFAULT_MODEL);
            let turn = Turn {
                response_id: id("resp_"),
                item_id: id("msg_"),
                model: model.to_string(),
                created_at: now(),
                input_tokens: asked.input_tokens(),
            };
            if request["stream"] == Value::Bool(true) {
                turn.stream()
            } else {
                Reply::json(
                    200,
                    &turn.response("completed", vec![turn.message("completed")]),
                )
            }
        }
    };
    reply.headers.push(("x-request-id", id("req_")));
    reply
}

/// One answer's ids and numbers, shared by its events.
struct Turn {
    response_id: String,
    item_id: String,
    model: String,
    created_at: u64,
    input_tokens: u64,
}

impl Turn {
    fn response(&self, status: &str, output: Vec<Value>) -> Value {
        let done = status == "completed";
        json!({
            "id": self.response_id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": null,
            "incomplete_details": null,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": true,
            "tool_choice": "auto",
            "tools": [],
            "usage": if done {
                json!({
                    "input_tokens": self.input_tokens,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": 6,
                    "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": self.input_tokens + 6,
                })
            } else {
                Value::Null
            },
        })
    }

    fn part(text: &str) -> Value {
        json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
    }

    fn message(&self, status: &str) -> Value {
        let content = if status == "completed" {
            vec![Turn::part(MARKER)]
        } else {
            vec![]
        };
        json!({"id": self.item_id, "type": "message", "status": status,
               "role": "assistant", "content": content})
    }

    fn stream(&self) -> Reply {
        let mut seq = 0u64;
        let mut events = Vec::new();
        let mut push = |mut data: Value| {
            let name = data["type"].as_str().unwrap_or_default().to_string();
            data["sequence_number"] = seq.into();
            seq += 1;
            events.push(named_event(&name, &data));
        };
        let at = |extra: Value| {
            let mut v = json!({"item_id": self.item_id, "output_index": 0, "content_index": 0});
            if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
                v.extend(extra);
            }
            v
        };
        push(json!({"type": "response.created", "response": self.response("in_progress", vec![])}));
        push(
            json!({"type": "response.in_progress", "response": self.response("in_progress", vec![])}),
        );
        push(
            json!({"type": "response.output_item.added", "output_index": 0,
                    "item": self.message("in_progress")}),
        );
        push(at(
            json!({"type": "response.content_part.added", "part": Turn::part("")}),
        ));
        for delta in MARKER_DELTAS {
            push(at(
                json!({"type": "response.output_text.delta", "delta": delta, "logprobs": []}),
            ));
        }
        push(at(
            json!({"type": "response.output_text.done", "text": MARKER, "logprobs": []}),
        ));
        push(at(
            json!({"type": "response.content_part.done", "part": Turn::part(MARKER)}),
        ));
        push(
            json!({"type": "response.output_item.done", "output_index": 0,
                    "item": self.message("completed")}),
        );
        push(json!({"type": "response.completed",
                    "response": self.response("completed", vec![self.message("completed")])}));
        Reply::events(events)
    }
}

fn models() -> Value {
    let data: Vec<Value> = [DEFAULT_MODEL, "gpt-5-codex"]
        .iter()
        .map(
            |m| json!({"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "openai"}),
        )
        .collect();
    json!({"object": "list", "data": data})
}

#[cfg(test)]
mod tests {
    use super::super::tests::{events, headers, KEY};
    use super::super::{reply as answer, Asked, Endpoint, MARKER};

    #[test]
    fn a_streamed_response_has_the_events_codex_reads() {
        let bearer = format!("Bearer {KEY}");
        let h = headers(&[("authorization", &bearer)]);
        let body = br#"{"model":"gpt-x","stream":true,"input":[]}"#;
        let asked = Asked {
            query: "",
            headers: &h,
            body,
        };
        let r = answer(&Endpoint::OpenAiResponses, &asked, Some(KEY));
        assert_eq!(r.status, 200);
        let events = events(&r);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.first(), Some(&"response.created"));
        assert_eq!(names.last(), Some(&"response.completed"));
        for (i, (name, data)) in events.iter().enumerate() {
            assert_eq!(data["type"], name.as_str());
            assert_eq!(data["sequence_number"], i as u64);
        }
        let deltas: String = events
            .iter()
            .filter(|(n, _)| n == "response.output_text.delta")
            .map(|(_, d)| d["delta"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(deltas, MARKER);
        let (_, done) = events
            .iter()
            .find(|(n, _)| n == "response.output_item.done")
            .unwrap();
        assert_eq!(done["item"]["type"], "message");
        assert_eq!(done["item"]["role"], "assistant");
        assert_eq!(done["item"]["content"][0]["type"], "output_text");
        assert_eq!(done["item"]["content"][0]["text"], MARKER);
        let completed = &events.last().unwrap().1["response"];
        assert_eq!(completed["status"], "completed");
        assert_eq!(completed["model"], "gpt-x");
        assert_eq!(completed["id"], events[0].1["response"]["id"]);
        assert!(completed["usage"]["total_tokens"].as_u64().unwrap() > 6);
    }

    #[test]
    fn a_refusal_has_the_api_error_shape() {
        let r = super::unauthorized();
        let e: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
        assert_eq!(r.status, 401);
        assert_eq!(e["error"]["code"], "invalid_api_key");
        assert_eq!(e["error"]["type"], "invalid_request_error");
    }

    #[test]
    fn models_are_listed() {
        let bearer = format!("Bearer {KEY}");
        let h = headers(&[("authorization", &bearer)]);
        let asked = Asked {
            query: "",
            headers: &h,
            body: b"",
        };
        let r = answer(&Endpoint::OpenAiModels, &asked, Some(KEY));
        let v: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
        assert_eq!(v["object"], "list");
        assert_eq!(v["data"][0]["object"], "model");
    }
}
