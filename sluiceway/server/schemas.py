"""The JSON Schemas of the HTTP API's bodies (the OpenAPI document's
components) and small builders for them. The routes read JSON with orjson
and validate by hand (no per-request pydantic), so these schemas are where
the request shapes are spelled out for clients, detailed enough to drive a
fuzzer (``tests/test_openapi_fuzz.py``). Paths and parameters are not here:
they come from the route table (``table.py``), next to their handlers.
"""

from __future__ import annotations

from typing import Any

from .errors import JSON

J = dict[str, Any]
SSE = "text/event-stream"


# ------------------------------------------------------------------ helpers
def ref(name: str) -> J:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(props: J, required: tuple[str, ...] = (), *, extra: bool = True, **kw: Any) -> J:
    out: J = {"type": "object", "properties": props, "additionalProperties": extra, **kw}
    if required:
        out["required"] = list(required)
    return out


def s(**kw: Any) -> J:
    return {"type": "string", **kw}


def i(**kw: Any) -> J:
    return {"type": "integer", **kw}


def num(lo: float, hi: float) -> J:
    return {"type": "number", "minimum": lo, "maximum": hi}


def arr(items: J, **kw: Any) -> J:
    return {"type": "array", "items": items, **kw}


def nullable(schema: J) -> J:
    return {"anyOf": [schema, {"type": "null"}]}


BOOL: J = {"type": "boolean"}
TITLE_MAX = 200  # a session title, checked by session_routes against this same figure
MODEL: J = s(minLength=1, maxLength=200, examples=["default"],
             description="A public model name or alias (`provider/model` also works; `default`: the default model)")
RESP_ID: J = s(minLength=1, maxLength=100, description="A response id (resp_…)")
ID: J = s(minLength=1, maxLength=64, pattern="^[A-Za-z0-9_-]+$", description="An id (32 hex characters)")


def body(schema: J, *, required: bool = True) -> J:
    return {"required": required, "content": {JSON: {"schema": schema}}}


def errors(shape: str, *codes: int) -> J:
    out: J = {}
    for code in codes:
        resp: J = {"description": ERROR_TEXT[code], "content": {JSON: {"schema": ref(shape)}}}
        if code == 429:
            resp["headers"] = {"Retry-After": {"description": "Seconds to wait before retrying",
                                               "schema": i(minimum=1)}}
        out[str(code)] = resp
    return out


ERROR_TEXT = {400: "Invalid request", 401: "Missing, unknown or revoked API key",
              403: "The key may not use this model", 404: "Not found",
              409: "Conflicts with an answer being generated", 413: "Request body too large",
              429: "A limit of the API key was reached (or the upstream's)", 502: "The upstream failed",
              503: "The upstream or the store is unavailable", 504: "The upstream timed out"}
GEN_ERRORS = (400, 401, 403, 404, 413, 429, 502, 503, 504)


def ok(schema: J | None = None, *, stream: bool = False, description: str = "OK") -> J:
    content: J = {}
    if schema is not None:
        content[JSON] = {"schema": schema}
    if stream:
        content[SSE] = {"schema": s(description="Server-sent events")}
    return {"description": description, **({"content": content} if content else {})}


# ------------------------------------------------------------------ schemas
TOOL_FUNCTION = obj({"name": s(minLength=1, maxLength=64, pattern="^[A-Za-z0-9_-]+$"), "description": s(),
                     "parameters": {"type": "object"}, "strict": BOOL}, ("name",))

MESSAGES_PROPS: J = {
    "model": MODEL,
    "max_tokens": i(minimum=1, maximum=1_000_000),
    "messages": arr(ref("AnthropicMessage"), minItems=1, maxItems=50),
    "system": {"anyOf": [s(), arr(obj({"type": {"const": "text"}, "text": s()}, ("type", "text")))]},
    "stream": BOOL,
    "temperature": num(0, 1),
    "top_p": num(0, 1),
    "top_k": i(minimum=0),
    "stop_sequences": arr(s(), maxItems=4),
    "tools": arr(obj({"name": s(minLength=1, pattern="^[A-Za-z0-9_-]+$"), "description": s(),
                      "input_schema": {"type": "object"}}, ("name", "input_schema")), maxItems=20),
    "tool_choice": obj({"type": s(enum=["auto", "any", "tool", "none"]), "name": s()}, ("type",)),
    "thinking": obj({"type": s(enum=["enabled", "disabled"]), "budget_tokens": i(minimum=1024)}, ("type",)),
    "metadata": obj({"user_id": s()}),
}

SCHEMAS: J = {
    "OpenAIError": obj({"error": obj({"message": s(), "type": s(), "param": nullable(s()),
                                      "code": nullable(s())}, ("message", "type"))}, ("error",)),
    "AnthropicError": obj({"type": {"const": "error"}, "error": obj({"type": s(), "message": s()},
                                                                     ("type", "message"))}, ("type", "error")),
    "UIError": obj({"error": obj({"message": s(), "code": nullable(s())}, ("message",))}, ("error",)),
    # --- OpenAI Chat Completions
    "ChatContentPart": {"anyOf": [
        obj({"type": {"const": "text"}, "text": s()}, ("type", "text"), extra=False),
        obj({"type": {"const": "image_url"},
             "image_url": obj({"url": s(minLength=1), "detail": s(enum=["auto", "low", "high"])}, ("url",))},
            ("type", "image_url"), extra=False),
    ]},
    "ChatToolCall": obj({"id": s(minLength=1), "type": {"const": "function"},
                         "function": obj({"name": s(minLength=1), "arguments": s()}, ("name", "arguments"))},
                        ("id", "type", "function")),
    "ChatMessage": {"anyOf": [
        obj({"role": s(enum=["system", "developer", "user"]),
             "content": {"anyOf": [s(), arr(ref("ChatContentPart"), minItems=1)]}, "name": s()},
            ("role", "content")),
        obj({"role": {"const": "assistant"}, "content": nullable({"anyOf": [s(), arr(ref("ChatContentPart"))]}),
             "tool_calls": arr(ref("ChatToolCall")), "reasoning_content": s(), "name": s()}, ("role",)),
        obj({"role": {"const": "tool"}, "tool_call_id": s(minLength=1),
             "content": {"anyOf": [s(), arr(ref("ChatContentPart"))]}}, ("role", "tool_call_id", "content")),
    ]},
    "ChatTool": obj({"type": {"const": "function"}, "function": TOOL_FUNCTION}, ("type", "function")),
    "ChatCompletionRequest": obj({
        "model": MODEL,
        "messages": arr(ref("ChatMessage"), minItems=1, maxItems=50),
        "stream": BOOL,
        "stream_options": obj({"include_usage": BOOL}),
        "max_tokens": i(minimum=1, maximum=1_000_000),
        "max_completion_tokens": i(minimum=1, maximum=1_000_000),
        "temperature": num(0, 2),
        "top_p": num(0, 1),
        "n": {"const": 1},
        "stop": {"anyOf": [s(), arr(s(), maxItems=4)]},
        "seed": i(),
        "tools": arr(ref("ChatTool"), maxItems=20),
        "tool_choice": {"anyOf": [s(enum=["auto", "none", "required"]),
                                  obj({"type": {"const": "function"},
                                       "function": obj({"name": s(minLength=1)}, ("name",))},
                                      ("type", "function"))]},
        "parallel_tool_calls": BOOL,
        "response_format": obj({"type": s(enum=["text", "json_object", "json_schema"]),
                                "json_schema": {"type": "object"}}, ("type",)),
        "reasoning_effort": s(enum=["none", "minimal", "low", "medium", "high"]),
        "user": s(),
    }, ("model", "messages")),
    "ChatCompletion": obj({"id": s(), "object": {"const": "chat.completion"}, "created": i(), "model": s(),
                           "choices": arr({"type": "object"}), "usage": {"type": "object"}},
                          ("id", "object", "choices")),
    "Model": obj({"id": s(), "object": {"const": "model"}, "created": i(), "owned_by": s(), "provider": s()},
                 ("id", "object")),
    "ModelList": obj({"object": {"const": "list"}, "data": arr(ref("Model"))}, ("object", "data")),
    # --- OpenAI Responses
    "ResponsesContent": {"anyOf": [
        obj({"type": s(enum=["input_text", "output_text"]), "text": s()}, ("type", "text")),
        obj({"type": {"const": "input_image"}, "image_url": s(minLength=1), "detail": s(enum=["auto", "low", "high"])},
            ("type", "image_url")),
    ]},
    "ResponsesItem": {"anyOf": [
        obj({"type": {"const": "message"}, "role": s(enum=["user", "assistant", "system", "developer"]),
             "content": {"anyOf": [s(), arr(ref("ResponsesContent"), minItems=1)]}}, ("role", "content")),
        obj({"type": {"const": "function_call"}, "call_id": s(minLength=1), "name": s(minLength=1),
             "arguments": s()}, ("type", "call_id", "name", "arguments")),
        obj({"type": {"const": "function_call_output"}, "call_id": s(minLength=1), "output": s()},
            ("type", "call_id", "output")),
    ]},
    "ResponsesRequest": obj({
        "model": MODEL,
        "input": {"anyOf": [s(minLength=1), arr(ref("ResponsesItem"), minItems=1, maxItems=50)]},
        "instructions": s(),
        "stream": BOOL,
        "store": BOOL,
        "background": {"type": "boolean", "description": "Run on after the request ends (needs store)"},
        "previous_response_id": s(minLength=1, maxLength=100, description="Continue a stored response"),
        "max_output_tokens": i(minimum=1, maximum=1_000_000),
        "temperature": num(0, 2),
        "top_p": num(0, 1),
        "tools": arr(obj({"type": {"const": "function"}, "name": s(minLength=1, pattern="^[A-Za-z0-9_-]+$"),
                          "description": s(), "parameters": {"type": "object"}, "strict": BOOL},
                         ("type", "name")), maxItems=20),
        "tool_choice": {"anyOf": [s(enum=["auto", "none", "required"]),
                                  obj({"type": {"const": "function"}, "name": s(minLength=1)}, ("type", "name"))]},
        "parallel_tool_calls": BOOL,
        "reasoning": obj({"effort": s(enum=["none", "minimal", "low", "medium", "high"]),
                          "summary": s(enum=["auto", "concise", "detailed"])}),
        "text": obj({"format": {"type": "object"}}),
        "metadata": {"type": "object", "additionalProperties": s(maxLength=512)},
    }, ("model", "input")),
    # --- Anthropic Messages
    "AnthropicBlock": {"anyOf": [
        obj({"type": {"const": "text"}, "text": s()}, ("type", "text")),
        obj({"type": {"const": "image"}, "source": {"anyOf": [
            obj({"type": {"const": "base64"}, "media_type": s(enum=["image/png", "image/jpeg", "image/gif",
                                                                      "image/webp"]),
                 "data": s(contentEncoding="base64")}, ("type", "media_type", "data")),
            obj({"type": {"const": "url"}, "url": s(minLength=1)}, ("type", "url")),
        ]}}, ("type", "source")),
        obj({"type": {"const": "tool_use"}, "id": s(minLength=1), "name": s(minLength=1),
             "input": {"type": "object"}}, ("type", "id", "name", "input")),
        obj({"type": {"const": "tool_result"}, "tool_use_id": s(minLength=1),
             "content": {"anyOf": [s(), arr(obj({"type": {"const": "text"}, "text": s()}, ("type", "text")))]},
             "is_error": BOOL}, ("type", "tool_use_id")),
        obj({"type": {"const": "thinking"}, "thinking": s(), "signature": s()}, ("type", "thinking")),
    ]},
    "AnthropicMessage": obj({"role": s(enum=["user", "assistant"]),
                             "content": {"anyOf": [s(), arr(ref("AnthropicBlock"), minItems=1)]}},
                            ("role", "content")),
    "MessagesRequest": obj(MESSAGES_PROPS, ("model", "max_tokens", "messages")),
    "CountTokensRequest": obj(MESSAGES_PROPS, ("model", "messages")),
    # --- AI SDK UI message stream
    "UIPart": {"anyOf": [
        obj({"type": s(enum=["text", "reasoning"]), "text": s()}, ("type", "text")),
        obj({"type": {"const": "file"}, "mediaType": s(), "url": s(minLength=1), "filename": s()},
            ("type", "mediaType", "url")),
        obj({"type": {"const": "step-start"}}, ("type",)),
    ]},
    "UIMessage": obj({"id": s(), "role": s(enum=["user", "assistant", "system"]),
                      "parts": arr(ref("UIPart"))}, ("role", "parts")),
    "UIChatRequest": obj({"id": s(), "model": MODEL, "trigger": s(enum=["submit-message", "regenerate-message"]),
                          "messages": arr(ref("UIMessage"), minItems=1, maxItems=50), "system": s(),
                          "temperature": num(0, 2), "maxOutputTokens": i(minimum=1, maximum=1_000_000)},
                         ("messages",)),
    # --- session chat
    "ChatParams": obj({"temperature": num(0, 2), "top_p": num(0, 1), "max_tokens": i(minimum=1, maximum=1_000_000),
                       "seed": i(), "stop": arr(s(), maxItems=4),
                       "reasoning_effort": s(enum=["none", "minimal", "low", "medium", "high"])}, extra=False),
    "SessionChatRequest": obj({
        "message": {"anyOf": [s(minLength=1, maxLength=10_000),
                              obj({"role": {"const": "user"},
                                   "content": {"anyOf": [s(minLength=1), arr(ref("ChatContentPart"), minItems=1,
                                                                             maxItems=17)]}}, ("content",))]},
        "tool_results": ref("ToolResults"),
        "session_id": nullable(ID), "model": nullable(MODEL), "system": nullable(s()),
        "params": ref("ChatParams"),
        "temperature": num(0, 2), "top_p": num(0, 1), "max_tokens": i(minimum=1, maximum=1_000_000), "seed": i(),
        "stop": arr(s(), maxItems=4), "reasoning_effort": s(enum=["none", "minimal", "low", "medium", "high"]),
    }, extra=False, anyOf=[{"required": ["message"]}, {"required": ["tool_results"], "description":
                           "answers to the tool calls the session's last answer waits on (needs session_id)"}]),
    "ToolResults": arr(obj({"tool_call_id": s(minLength=1), "content": s(), "role": {"const": "tool"},
                            "dismissed": {**BOOL, "description": "The user chose not to run the call"}},
                           ("tool_call_id", "content"), extra=False), minItems=1, maxItems=128),
    "SessionFields": obj({"title": nullable(s(maxLength=TITLE_MAX)), "model": nullable(MODEL),
                          "system": nullable(s())}, extra=False),
    "Session": obj({"id": s(), "title": nullable(s()), "model": nullable(s()), "system": nullable(s()),
                    "created_at": s(), "updated_at": s()}, ("id",)),
    "StoredMessage": obj({"id": s(), "session_id": s(), "seq": i(), "role": s(), "parts": arr({"type": "object"}),
                          "text": s(), "status": s(enum=["streaming", "complete", "interrupted", "error"])},
                         ("id", "role", "status")),
    "SessionChatResult": obj({"run_id": s(), "session_id": s(), "message_id": s(), "user_message_id": s(),
                              "tool_message_id": s(), "session": ref("Session"),
                              "user_message": nullable(ref("StoredMessage")),
                              "tool_message": nullable(ref("StoredMessage")),
                              "message": ref("StoredMessage")}, ("run_id", "session_id", "message_id", "message")),
    # --- admin
    "ApiKeyCreate": obj({
        "name": s(minLength=1, maxLength=200, pattern=r"\S"),
        "models": arr(s(minLength=1, maxLength=200), maxItems=100, description="Allowed models; empty: all"),
        "rpm": nullable(i(minimum=1, maximum=1_000_000_000)),
        "tpm": nullable(i(minimum=1, maximum=1_000_000_000)),
        "max_concurrent_streams": nullable(i(minimum=1, maximum=1_000_000)),
    }, ("name",), extra=False),
    "ApiKey": obj({"id": s(), "name": s(), "prefix": s(description="The key's first characters, for display"),
                   "models": arr(s()), "rpm": nullable(i()), "tpm": nullable(i()),
                   "max_concurrent_streams": nullable(i()), "created_at": s(), "revoked_at": nullable(s())},
                  ("id", "name", "prefix", "models", "created_at", "revoked_at")),
    "ApiKeyCreated": {"allOf": [ref("ApiKey"), obj({"key": s(description="The key itself, shown only here")},
                                                    ("key",))]},
}

BEARER = [{"bearer": []}, {"apiKeyHeader": []}]
ADMIN = [{"adminBearer": []}]
PUBLIC: list[J] = []

openai_err = errors("OpenAIError", *GEN_ERRORS)
anthropic_err = errors("AnthropicError", *GEN_ERRORS)
