"""AWS Bedrock ConverseStream: event-stream frames built with the documented
prelude/CRC layout (``tests/providers/eventstream.py``), decoded by botocore's
own ``EventStreamBuffer`` in the adapter; SigV4 checked by re-signing what the
fake upstream received."""

from __future__ import annotations

import json

import openai
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer

from sluiceway.core import (
    BadRequest,
    ChatRequest,
    ImagePart,
    Message,
    RateLimited,
    ReasoningEnd,
    ReasoningPart,
    TextPart,
    Tool,
    ToolCall,
    ToolCallPart,
    UpstreamError,
    UpstreamUnavailable,
)
from sluiceway.providers.bedrock import BedrockProvider, BedrockSettings
from sluiceway.providers.bedrock_wire import ConverseAdapter, decode_messages, request_body

from .providers.eventstream import EVENTSTREAM as EVENTSTREAM_TYPE
from .providers.eventstream import event, exception, frame
from .providers.gateway import sdk_client
from .providers.pure import types
from .upstream import Script

AKID, SECRET, TOKEN, REGION = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "sess-token-xyz", "us-west-2"
EVENTSTREAM = {"content-type": EVENTSTREAM_TYPE}


def message_start() -> tuple[str, dict]:
    return "messageStart", {"role": "assistant"}


def text_delta(i: int, text: str) -> tuple[str, dict]:
    return "contentBlockDelta", {"contentBlockIndex": i, "delta": {"text": text}}


def block_stop(i: int) -> tuple[str, dict]:
    return "contentBlockStop", {"contentBlockIndex": i}


def message_stop(reason: str) -> tuple[str, dict]:
    return "messageStop", {"stopReason": reason}


def metadata(inp: int, out: int, cache_read: int = 0, cache_write: int = 0) -> tuple[str, dict]:
    usage = {"inputTokens": inp, "outputTokens": out, "totalTokens": inp + out}
    if cache_read or cache_write:
        usage |= {"cacheReadInputTokens": cache_read, "cacheWriteInputTokens": cache_write}
    return "metadata", {"usage": usage, "metrics": {"latencyMs": 321}}


def text_events(pieces: list[str], reason: str = "end_turn", **usage) -> list[tuple[str, dict]]:
    return [message_start(), *[text_delta(0, p) for p in pieces], block_stop(0), message_stop(reason),
            metadata(**(usage or {"inp": 12, "out": 7}))]


REASONING_TOOL_EVENTS = [
    message_start(),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Need the "}}}),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "weather."}}}),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "ErcBsig"}}}),
    block_stop(0),
    text_delta(1, "Checking."),
    block_stop(1),
    ("contentBlockStart", {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tooluse_A1",
                                                                         "name": "get_weather"}}}),
    ("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": '{"city": '}}}),
    ("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": '"Oslo"}'}}}),
    block_stop(2),
    message_stop("tool_use"),
    metadata(30, 40, cache_read=100, cache_write=8),
]


def wire(events: list[tuple[str, dict]]) -> list[bytes]:
    return [event(k, p) for k, p in events]


def decode(data: bytes, *, chunk: int | None = None, end: bool = True) -> list:
    adapter, buf, out = ConverseAdapter(model="m"), EventStreamBuffer(), []
    pieces = [data] if chunk is None else [data[i:i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces:
        buf.add_data(piece)
        decode_messages(buf, adapter, out)
    if end:
        adapter.end(out)
    return out


# ----------------------------------------------------------- state machine

def test_text_stream_finishes_on_metadata_with_cache_usage():
    out = decode(b"".join(wire(text_events(["Hel", "lo"], inp=10, out=4, cache_read=30, cache_write=5))))
    assert types(out) == ["start", "text-start", "text-delta", "text-delta", "text-end", "finish"]
    fin = out[-1]
    assert fin.reason == "stop" and fin.raw_reason == "end_turn"
    assert (fin.usage.input, fin.usage.cached_input, fin.usage.output, fin.usage.estimated) == (45, 30, 4, False)


def test_frames_split_one_byte_per_read_decode_the_same():
    data = b"".join(wire(REASONING_TOOL_EVENTS))
    assert types(decode(data, chunk=1)) == types(decode(data))


def test_signed_reasoning_text_then_tool_use():
    out = decode(b"".join(wire(REASONING_TOOL_EVENTS)))
    assert types(out) == ["start", "reasoning-start", "reasoning-delta", "reasoning-delta", "reasoning-end",
                          "text-start", "text-delta", "text-end", "tool-input-start", "tool-input-delta",
                          "tool-input-delta", "tool-input-end", "tool-call", "finish"]
    assert next(e for e in out if isinstance(e, ReasoningEnd)).signature == "ErcBsig"
    call = next(e for e in out if isinstance(e, ToolCall))
    assert (call.call_id, call.name, json.loads(call.arguments)) == ("tooluse_A1", "get_weather", {"city": "Oslo"})
    assert out[-1].reason == "tool_calls" and out[-1].usage.input == 138


def test_redacted_reasoning_is_kept_opaque():
    out = decode(b"".join(wire([message_start(), ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {
        "reasoningContent": {"redactedContent": "c2VjcmV0"}}}), block_stop(0), *text_events(["ok"])[1:]])))
    ends = [e for e in out if isinstance(e, ReasoningEnd)]
    assert len(ends) == 1 and ends[0].redacted == "c2VjcmV0"


@pytest.mark.parametrize(("raw", "reason"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("guardrail_intervened", "content_filter"), ("content_filtered", "content_filter"),
    ("model_context_window_exceeded", "length"), ("malformed_tool_use", "error"), ("brand_new", "other")])
def test_stop_reason_mapping(raw, reason):
    assert decode(b"".join(wire(text_events(["x"], raw))))[-1].reason == reason


def test_message_stop_without_metadata_finishes_at_eof_with_estimated_usage():
    out = decode(b"".join(wire(text_events(["abcdefgh"])[:-1])))
    assert out[-1].type == "finish" and out[-1].usage.estimated and out[-1].usage.output == 2


@pytest.mark.parametrize(("kind", "cls"), [
    ("throttlingException", RateLimited), ("serviceUnavailableException", UpstreamUnavailable),
    ("modelStreamErrorException", UpstreamError), ("internalServerException", UpstreamError),
    ("validationException", BadRequest)])
def test_exception_events_become_typed_errors(kind, cls):
    with pytest.raises(cls) as info:
        decode(b"".join(wire(text_events(["x"])[:2])) + exception(kind, "Too many tokens"), end=False)
    assert kind in info.value.message and "Too many tokens" in info.value.message


def test_error_frames_carry_code_and_message_in_headers():
    err = frame({":message-type": "error", ":error-code": "InternalFailure", ":error-message": "try later"}, b"")
    with pytest.raises(UpstreamError, match="InternalFailure: try later"):
        decode(b"".join(wire(text_events(["x"])[:2])) + err, end=False)


def test_corrupt_crc_is_an_upstream_error():
    data = bytearray(b"".join(wire(text_events(["x"]))))
    data[20] ^= 0xFF
    with pytest.raises(UpstreamError, match="malformed"):
        decode(bytes(data))


# ------------------------------------------------------------- request side

def test_request_conversion():
    req = ChatRequest(model="anthropic.claude-3-7-sonnet", messages=[
        Message.of("system", "Be brief."),
        Message("user", [TextPart("look"), ImagePart("data:image/png;base64,iVBORw0KGgo=")]),
        Message.of("user", "please"),
        Message("assistant", [TextPart("Checking."), ReasoningPart("hmm", signature="sig"), ReasoningPart("unsigned")],
                tool_calls=[ToolCallPart("tooluse_1", "get_weather", '{"city":"Oslo"}')]),
        Message("tool", [TextPart("12C")], tool_call_id="tooluse_1"),
        Message("tool", [TextPart("boom")], tool_call_id="tooluse_2", is_error=True),
    ], tools=[Tool("get_weather", "Weather", {"type": "object"})], tool_choice="required",
        max_tokens=300, temperature=0.3, top_p=0.9, stop=["END"])
    body = request_body(req)
    assert body["system"] == [{"text": "Be brief."}]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][0]["content"] == [{"text": "look"}, {"image": {"format": "png", "source": {
        "bytes": "iVBORw0KGgo="}}}, {"text": "please"}]
    assert body["messages"][1]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "sig"}}},
        {"text": "Checking."},
        {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Oslo"}}}]
    assert body["messages"][2]["content"] == [
        {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "12C"}]}},
        {"toolResult": {"toolUseId": "tooluse_2", "content": [{"text": "boom"}], "status": "error"}}]
    assert body["inferenceConfig"] == {"maxTokens": 300, "temperature": 0.3, "topP": 0.9, "stopSequences": ["END"]}
    assert body["toolConfig"] == {"tools": [{"toolSpec": {"name": "get_weather", "description": "Weather",
                                                          "inputSchema": {"json": {"type": "object"}}}}],
                                  "toolChoice": {"any": {}}}


def test_reasoning_effort_is_claude_thinking_and_http_images_are_refused():
    body = request_body(ChatRequest(model="us.anthropic.claude-sonnet-4", messages=[Message.of("user", "x")],
                                    reasoning_effort="low", temperature=0.1))
    assert body["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 2048}}
    assert body["inferenceConfig"] == {"maxTokens": 4096 + 2048}
    with pytest.raises(BadRequest, match="data URLs"):
        request_body(ChatRequest(model="m", messages=[Message("user", [ImagePart("https://x.test/a.png")])]))


# ------------------------------------------------------------ over real HTTP

@pytest.fixture(scope="module")
def client(upstream):
    with sdk_client(upstream, {"br": {
            "kind": "bedrock", "region": REGION, "endpoint_url": upstream.url, "access_key_id": AKID,
            "secret_access_key": SECRET, "session_token": TOKEN, "max_tokens": 512}}) as c:
        yield c


def resign(upstream, rec) -> str:
    """Recompute the SigV4 signature of the request the fake upstream received."""
    got = {k.lower(): v for k, v in rec.headers.items()}
    aws = AWSRequest(method="POST", url=upstream.url + rec.path, data=rec.raw,
                     headers={"content-type": got["content-type"], "accept": got["accept"]})
    aws.context["timestamp"] = got["x-amz-date"]
    signer = SigV4Auth(Credentials(AKID, SECRET, TOKEN), "bedrock", REGION)
    signer._modify_request_before_signing(aws)
    return signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws)


def test_stream_text_usage_and_sigv4_signed_request(upstream, client):
    pieces = ["Hel", "lo ", "Bedrock ", "日本語 🙂"]
    upstream.add("br-claude:0", Script(wire(text_events(pieces, inp=10, out=6, cache_read=20)), headers=EVENTSTREAM))
    chunks = list(client.chat.completions.create(
        model="br/br-claude:0", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "".join(pieces)
    u = chunks[-1].usage
    assert (u.prompt_tokens, u.completion_tokens, u.prompt_tokens_details.cached_tokens) == (30, 6, 20)
    rec = upstream.last("br-claude%3A0")  # the model id is percent-encoded in the path
    assert rec.path == "/model/br-claude%3A0/converse-stream"
    auth = rec.headers["Authorization"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={AKID}/") and f"/{REGION}/bedrock/aws4_request" in auth
    assert rec.headers["X-Amz-Security-Token"] == TOKEN and SECRET not in json.dumps(rec.headers)
    assert auth.endswith("Signature=" + resign(upstream, rec))
    assert rec.body == {"messages": [{"role": "user", "content": [{"text": "hi"}]}], "system": [{"text": "sys"}],
                        "inferenceConfig": {"maxTokens": 512}}


def test_non_stream_reasoning_and_tool_call(upstream, client):
    upstream.add("br-think", Script(wire(REASONING_TOOL_EVENTS), headers=EVENTSTREAM))
    full = client.chat.completions.create(
        model="br/br-think", messages=[{"role": "user", "content": "weather?"}],
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}])
    msg = full.choices[0].message
    assert msg.model_extra["reasoning_content"] == "Need the weather." and msg.content == "Checking."
    assert [(t.id, t.function.name, json.loads(t.function.arguments)) for t in msg.tool_calls] == [
        ("tooluse_A1", "get_weather", {"city": "Oslo"})]
    assert full.choices[0].finish_reason == "tool_calls"
    assert (full.usage.prompt_tokens, full.usage.completion_tokens) == (138, 40)
    assert upstream.last("br-think").body["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather"


def test_throttling_before_first_token_is_429(upstream, client):
    upstream.add("br-throttled", Script([event(*message_start()), exception(
        "throttlingException", "Too many requests, please wait before trying again.")], headers=EVENTSTREAM))
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="br/br-throttled", messages=[{"role": "user", "content": "x"}])
    assert "Too many requests" in info.value.message


def test_http_image_url_is_a_clear_400(upstream, client):
    with pytest.raises(openai.BadRequestError, match="data URLs"):
        client.chat.completions.create(model="br/br-never-sent", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])
    assert not upstream.for_model("br-never-sent")


async def test_credentials_come_from_the_aws_chain(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "envsecret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    p = BedrockProvider("br", BedrockSettings(region=REGION))
    creds = await p.credentials()
    assert (creds.access_key, creds.secret_key, creds.token) == ("AKIDFROMENV", "envsecret", None)
    headers = await p.signed("POST", "https://bedrock-runtime.us-west-2.amazonaws.com/model/m/converse-stream", b"{}")
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDFROMENV/")
    await p.aclose()


async def test_list_models_from_signed_control_plane(upstream):
    upstream.add("foundation-models", Script([json.dumps({"modelSummaries": [
        {"modelId": "anthropic.claude-3-haiku-20240307-v1:0", "providerName": "Anthropic"},
        {"modelId": "amazon.nova-lite-v1:0", "providerName": "Amazon"}]})],
        headers={"content-type": "application/json"}))
    p = BedrockProvider("br", BedrockSettings(region=REGION, control_endpoint_url=upstream.url,
                                              access_key_id=AKID, secret_access_key=SECRET))
    try:
        models = await p.list_models()
    finally:
        await p.aclose()
    assert [m.id for m in models] == ["anthropic.claude-3-haiku-20240307-v1:0", "amazon.nova-lite-v1:0"]
    rec = upstream.last("foundation-models")
    assert rec.path == "/foundation-models?byOutputModality=TEXT"
    assert f"/{REGION}/bedrock/aws4_request" in rec.headers["Authorization"]
