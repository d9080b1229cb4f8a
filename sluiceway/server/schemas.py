"""The OpenAPI 3.1 description of the HTTP API, served at ``GET /openapi.json``.

Hand-written rather than derived from the routes: the routes read JSON with
orjson and validate by hand (no per-request pydantic), so the document is
where the request shapes are spelled out for clients, and it is detailed
enough to drive a fuzzer (``tests/test_openapi_fuzz.py`` runs schemathesis
over it and allows no 5xx). Keep it in step with ``app.py``'s routes; the
test checks that every route is described.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

J = dict[str, Any]
JSON = "application/json"
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


def op(summary: str, tag: str, responses: J, *, request: J | None = None, params: list[J] | None = None,
       security: list[J] | None = None, op_id: str) -> J:
    out: J = {"summary": summary, "operationId": op_id, "tags": [tag], "responses": responses}
    if request is not None:
        out["requestBody"] = request
    if params:
        out["parameters"] = params
    if security is not None:
        out["security"] = security
    return out


def path_param(name: str, schema: J | None = None, description: str = "") -> J:
    return {"name": name, "in": "path", "required": True, "schema": schema or ID, "description": description}


def query(name: str, schema: J, description: str = "") -> J:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


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
                              obj({"role": {"const": "user"}, "content": s(minLength=1)}, ("content",))]},
        "session_id": nullable(ID), "model": nullable(MODEL), "system": nullable(s()),
        "params": ref("ChatParams"),
        "temperature": num(0, 2), "top_p": num(0, 1), "max_tokens": i(minimum=1, maximum=1_000_000), "seed": i(),
        "stop": arr(s(), maxItems=4), "reasoning_effort": s(enum=["none", "minimal", "low", "medium", "high"]),
    }, ("message",), extra=False),
    "SessionFields": obj({"title": nullable(s(maxLength=200)), "model": nullable(MODEL),
                          "system": nullable(s())}, extra=False),
    "Session": obj({"id": s(), "title": nullable(s()), "model": nullable(s()), "system": nullable(s()),
                    "created_at": s(), "updated_at": s()}, ("id",)),
    "StoredMessage": obj({"id": s(), "session_id": s(), "seq": i(), "role": s(), "parts": arr({"type": "object"}),
                          "text": s(), "status": s(enum=["streaming", "complete", "interrupted", "error"])},
                         ("id", "role", "status")),
    "SessionChatResult": obj({"run_id": s(), "session_id": s(), "message_id": s(), "user_message_id": s(),
                              "session": ref("Session"), "user_message": ref("StoredMessage"),
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


# --------------------------------------------------------------------- paths
def _paths() -> J:
    sid = path_param("session_id", description="Session id")
    run = path_param("run_id", description="Run id (the assistant message id)")
    return {
        "/healthz": {"get": op("Liveness", "ops", {"200": ok(obj({"status": {"const": "ok"}}))},
                               security=PUBLIC, op_id="healthz")},
        "/metrics": {"get": op("Prometheus metrics", "ops",
                               {"200": {"description": "Prometheus text format",
                                        "content": {"text/plain": {"schema": s()}}}},
                               security=PUBLIC, op_id="metrics")},
        "/openapi.json": {"get": op("This document", "ops", {"200": ok({"type": "object"})}, security=PUBLIC,
                                    op_id="openapi")},
        "/v1/models": {"get": op(
            "List models (only those the key may use)", "openai", {"200": ok(ref("ModelList")),
                                                                    **errors("OpenAIError", 401)},
            params=[query("refresh", s(enum=["true", "false"]), "Ask the providers again")], op_id="listModels")},
        "/v1/models/{model}": {"get": op(
            "One model", "openai", {"200": ok(ref("Model")), **errors("OpenAIError", 401, 404)},
            params=[path_param("model", s(minLength=1, maxLength=200), "Model id")], op_id="getModel")},
        "/v1/chat/completions": {"post": op(
            "OpenAI Chat Completions (streams when `stream` is true)", "openai",
            {"200": ok(ref("ChatCompletion"), stream=True), **openai_err},
            request=body(ref("ChatCompletionRequest")), op_id="chatCompletions")},
        "/v1/responses": {"post": op(
            "OpenAI Responses (streams when `stream` is true)", "openai",
            {"200": ok({"type": "object"}, stream=True), **openai_err},
            request=body(ref("ResponsesRequest")), op_id="responses")},
        "/v1/responses/{response_id}": {
            "get": op("A stored Response; with stream=true its events after starting_after, then the live tail",
                      "openai", {"200": ok({"type": "object"}, stream=True),
                                 **errors("OpenAIError", 400, 401, 404)},
                      params=[path_param("response_id", RESP_ID), query("stream", s(enum=["true", "false"])),
                              query("starting_after", i(minimum=0), "A sequence number")], op_id="getResponse"),
            "delete": op("Delete a stored Response (stopping it if it runs)", "openai",
                         {"200": ok(obj({"id": s(), "object": {"const": "response.deleted"}, "deleted": BOOL})),
                          **errors("OpenAIError", 401, 404)},
                         params=[path_param("response_id", RESP_ID)], op_id="deleteResponse")},
        "/v1/responses/{response_id}/cancel": {"post": op(
            "Cancel a background Response (saved cancelled with what it had streamed)", "openai",
            {"200": ok({"type": "object"}), **errors("OpenAIError", 400, 401, 404)},
            params=[path_param("response_id", RESP_ID)], op_id="cancelResponse")},
        "/v1/responses/{response_id}/input_items": {"get": op(
            "The input items a stored Response answered, as a paged list", "openai",
            {"200": ok(obj({"object": {"const": "list"}, "data": {"type": "array"}, "first_id": s(), "last_id": s(),
                            "has_more": BOOL})), **errors("OpenAIError", 400, 401, 404)},
            params=[path_param("response_id", RESP_ID), query("limit", i(minimum=1, maximum=100)),
                    query("order", s(enum=["asc", "desc"])), query("after", s(), "An item id")],
            op_id="listResponseInputItems")},
        "/v1/messages": {"post": op(
            "Anthropic Messages (streams when `stream` is true)", "anthropic",
            {"200": ok({"type": "object"}, stream=True), **anthropic_err},
            request=body(ref("MessagesRequest")), op_id="messages")},
        "/v1/messages/count_tokens": {"post": op(
            "Anthropic token count (estimated)", "anthropic",
            {"200": ok(obj({"input_tokens": i()}, ("input_tokens",))), **errors("AnthropicError", 400, 401, 403)},
            request=body(ref("CountTokensRequest")),
            op_id="countTokens")},
        "/api/chat": {"post": op(
            "AI SDK UI message stream (useChat)", "ui",
            {"200": ok(stream=True), **errors("UIError", *GEN_ERRORS)},
            request=body(ref("UIChatRequest")), op_id="uiChat")},
        "/api/chat/{chat_id}/stream": {"get": op(
            "Resume a chat's answer (the AI SDK's resumeStream): replay, then the live tail", "ui",
            {"200": ok(stream=True), "204": {"description": "Nothing to resume"},
             **errors("UIError", 401, 503)},
            params=[path_param("chat_id", s(minLength=1, maxLength=200), "The chat id (useChat's id)")],
            op_id="uiChatResume")},
        "/v1/stream": {"post": op(
            "Plain SSE: text deltas (format=text) or canonical JSON events (format=json)", "ui",
            {"200": ok(stream=True), **openai_err}, request=body(ref("ChatCompletionRequest")),
            params=[query("format", s(enum=["text", "json"]))], op_id="plainStream")},
        "/chat": {"post": op(
            "Session chat: store the turn, run the model, return the saved answer", "sessions",
            {"200": ok(ref("SessionChatResult")), **openai_err}, request=body(ref("SessionChatRequest")),
            op_id="chat")},
        "/chat/stream": {"post": op(
            "Session chat as a resumable SSE run (ids for Last-Event-ID)", "sessions",
            {"200": ok(stream=True), **openai_err}, request=body(ref("SessionChatRequest")), op_id="chatStream")},
        "/runs/{run_id}": {"get": op("A run's state", "runs", {"200": ok({"type": "object"}),
                                                              **errors("OpenAIError", 401, 404)},
                                     params=[run], op_id="runInfo")},
        "/runs/{run_id}/stream": {"get": op(
            "Reattach to a run's events after an event id", "runs",
            {"200": ok(stream=True), **errors("OpenAIError", 400, 401, 404)},
            params=[run, query("after", i(minimum=0), "Events after this id"),
                    {"name": "Last-Event-ID", "in": "header", "required": False,
                     "schema": s(pattern="^[0-9]{1,9}$")}], op_id="runStream")},
        "/runs/{run_id}/stop": {"post": op("Stop a run (its partial answer is kept)", "runs",
                                           {"200": ok({"type": "object"}), **errors("OpenAIError", 401, 404)},
                                           params=[run], op_id="runStop")},
        "/sessions": {
            "get": op("List sessions, newest first", "sessions",
                      {"200": ok(obj({"data": arr(ref("Session"))})), **errors("OpenAIError", 400, 401)},
                      params=[query("limit", i(minimum=0, maximum=500)), query("offset", i(minimum=0))],
                      op_id="listSessions"),
            "post": op("Create a session", "sessions",
                       {"201": ok(ref("Session")), **errors("OpenAIError", 400, 401)},
                       request=body(ref("SessionFields")), op_id="createSession")},
        "/sessions/{session_id}": {
            "get": op("A session", "sessions", {"200": ok(ref("Session")), **errors("OpenAIError", 401, 404)},
                      params=[sid], op_id="getSession"),
            "patch": op("Update a session", "sessions",
                        {"200": ok(ref("Session")), **errors("OpenAIError", 400, 401, 404)},
                        params=[sid], request=body(ref("SessionFields")), op_id="updateSession"),
            "delete": op("Delete a session and its messages", "sessions",
                         {"204": {"description": "Deleted"}, **errors("OpenAIError", 401, 404)},
                         params=[sid], op_id="deleteSession")},
        "/sessions/{session_id}/messages": {
            "get": op("A session's messages", "sessions", {"200": ok(obj({"data": arr(ref("StoredMessage"))})),
                                                           **errors("OpenAIError", 401, 404)},
                      params=[sid], op_id="sessionMessages"),
            "delete": op("Delete a session's messages from one on (to regenerate or edit and resend)", "sessions",
                         {"200": ok(obj({"session_id": s(), "deleted": arr(s())})),
                          **errors("OpenAIError", 400, 401, 404, 409)},
                         params=[sid, {**query("from", ID, "The first message to delete"), "required": True}],
                         op_id="truncateSession")},
        "/sessions/{session_id}/title": {"post": op(
            "Ask the model for a title and save it", "sessions",
            {"200": ok(ref("Session")), **errors("OpenAIError", 400, 401, 403, 404, 429, 502, 503, 504)},
            params=[sid], request=body(obj({"model": nullable(MODEL)}, extra=False), required=False),
            op_id="titleSession")},
        "/sessions/{session_id}/export": {"get": op(
            "Export a session as JSON or Markdown", "sessions",
            {"200": {"description": "The export", "content": {JSON: {"schema": {"type": "object"}},
                                                              "text/markdown": {"schema": s()}}},
             **errors("OpenAIError", 400, 401, 404)},
            params=[sid, query("format", s(enum=["json", "md", "markdown"]))], op_id="exportSession")},
        "/messages/{message_id}/trace": {"get": op(
            "The debug trace of an assistant message (secrets redacted)", "sessions",
            {"200": ok({"type": "object"}), **errors("OpenAIError", 401, 404)},
            params=[path_param("message_id")], op_id="messageTrace")},
        "/admin/keys": {
            "get": op("List virtual API keys (prefixes only)", "admin",
                      {"200": ok(obj({"object": {"const": "list"}, "data": arr(ref("ApiKey"))})),
                       **errors("OpenAIError", 401, 404)}, security=ADMIN, op_id="listKeys"),
            "post": op("Create a virtual API key; the key is in this response only", "admin",
                       {"201": ok(ref("ApiKeyCreated")), **errors("OpenAIError", 400, 401, 404)},
                       request=body(ref("ApiKeyCreate")), security=ADMIN, op_id="createKey")},
        "/admin/keys/{key_id}": {"delete": op(
            "Revoke a virtual API key", "admin", {"200": ok(ref("ApiKey")), **errors("OpenAIError", 401, 404)},
            params=[path_param("key_id")], security=ADMIN, op_id="revokeKey")},
        "/": {"get": op("The chat UI", "ui", {"200": {"description": "HTML",
                                                      "content": {"text/html": {"schema": s()}}}},
                        security=PUBLIC, op_id="index")},
        "/index.html": {"get": op("The chat UI", "ui", {"200": {"description": "HTML",
                                                                "content": {"text/html": {"schema": s()}}}},
                                  security=PUBLIC, op_id="indexHtml")},
        "/vendor/{name}": {"get": op("The UI's vendored JavaScript libraries", "ui",
                                     {"200": {"description": "A file"}, "404": {"description": "Not found"}},
                                     params=[path_param("name", s(minLength=1, maxLength=100))], security=PUBLIC,
                                     op_id="vendor")},
    }


def document() -> J:
    return {
        "openapi": "3.1.0",
        "info": {"title": "sluiceway", "version": "1",
                 "description": "LLM streaming gateway and chat server: OpenAI Chat Completions and Responses, "
                                "Anthropic Messages, the AI SDK UI stream, plain SSE and a stored session chat "
                                "API. Errors use each protocol's own shape; a limit hit is a 429 with "
                                "Retry-After."},
        "security": BEARER,
        "paths": _paths(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "A static key (server.api_keys) or a virtual key (sk-sw-…). "
                                          "Not needed when the server has no keys at all."},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "x-api-key",
                                 "description": "The same key, the Anthropic way"},
                "adminBearer": {"type": "http", "scheme": "bearer",
                                "description": "The admin key (server.admin_key or SLUICEWAY_ADMIN_KEY)"},
            },
        },
    }


_CACHED: bytes | None = None


async def openapi_json(request: Request) -> Response:
    global _CACHED
    if _CACHED is None:
        _CACHED = orjson.dumps(document())
    return Response(_CACHED, media_type=JSON)
