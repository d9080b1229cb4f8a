"""Golden files for the protocol encoders: canonical event batches in, the exact
bytes out. Each file in tests/golden/ is named after what it pins. To accept a
deliberate change: ``UPDATE_GOLDEN=1 pytest tests/test_protocol_golden.py``,
then read the diff.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from sluiceway.core import (
    Abort,
    ChatRequest,
    Error,
    Event,
    Finish,
    Message,
    ReasoningDelta,
    ReasoningEnd,
    ReasoningStart,
    Start,
    StepFinish,
    TextDelta,
    TextEnd,
    TextStart,
    ToolCall,
    ToolInputDelta,
    ToolInputEnd,
    ToolInputStart,
    ToolResult,
    Usage,
)
from sluiceway.protocols import ai_sdk_ui, anthropic_messages, openai_responses, plain_sse

GOLDEN = Path(__file__).parent / "golden"
REQ = ChatRequest(model="gw-model", messages=[Message.of("user", "What is the weather in Oslo?")])
USAGE = Usage(input=58, output=40, cached_input=8, reasoning=22)


def counter_ids() -> Callable[[str], str]:
    n = itertools.count(1)
    return lambda prefix: f"{prefix}_{next(n)}"


def start(rid: str = "up-1") -> Start:
    return Start(rid, "upstream-model", 1700000000)


# ---------------------------------------------------------------- scenarios

REASONING_TEXT_TOOL: list[list[Event]] = [
    [start()],
    [ReasoningStart("r1"), ReasoningDelta("r1", "Need ")],
    [ReasoningDelta("r1", "weather."), ReasoningEnd("r1")],
    [TextStart("t2"), TextDelta("t2", "Checking "), TextDelta("t2", "Oslo…")],
    [TextEnd("t2"), ToolInputStart("call_A", "get_weather"), ToolInputDelta("call_A", '{"city":')],
    [ToolInputDelta("call_A", '"Oslo"}')],
    [ToolInputEnd("call_A"), ToolCall("call_A", "get_weather", '{"city":"Oslo"}'), Finish("tool_calls", USAGE)],
]

# A Chat Completions upstream interleaving two parallel calls and completing both at finish.
INTERLEAVED_TOOLS: list[list[Event]] = [
    [start()],
    [ToolInputStart("call_A", "get_weather"), ToolInputDelta("call_A", '{"city":"A')],
    [ToolInputStart("call_B", "get_time"), ToolInputDelta("call_B", '{"tz":"B')],
    [ToolInputDelta("call_A", '"}'), ToolInputDelta("call_B", '"}')],
    [ToolInputEnd("call_A"), ToolCall("call_A", "get_weather", '{"city":"A"}'),
     ToolInputEnd("call_B"), ToolCall("call_B", "get_time", '{"tz":"B"}'), Finish("tool_calls", USAGE)],
]

LENGTH: list[list[Event]] = [
    [start(), TextStart("t1"), TextDelta("t1", "cut sh")],
    [TextEnd("t1"), Finish("length", Usage(5, 16))],
]

MIDSTREAM_ERROR: list[list[Event]] = [
    [start(), TextStart("t1"), TextDelta("t1", "partial")],
    [Error("upstream_unavailable", "upstream went away", True, 503)],
]

SIGNED_THINKING: list[list[Event]] = [
    [start("msg_up1"), ReasoningStart("r1"), ReasoningDelta("r1", "User wants ")],
    [ReasoningDelta("r1", "Oslo weather."), ReasoningEnd("r1", signature="EqQBsig")],
    [ReasoningStart("r2"), ReasoningEnd("r2", redacted="opaque-redacted")],
    [TextStart("t3"), TextDelta("t3", "Sunny."), TextEnd("t3"), Finish("stop", Usage(20, 30, cached_input=5))],
]

TOOL_LOOP_STEPS: list[list[Event]] = [
    [start(), ToolInputStart("call_A", "get_weather"), ToolInputDelta("call_A", '{"city":"Oslo"}')],
    [ToolInputEnd("call_A"), ToolCall("call_A", "get_weather", '{"city":"Oslo"}'),
     ToolResult("call_A", "get_weather", '{"tempC":4}'), StepFinish("tool_calls", Usage(10, 5))],
    [TextStart("t1"), TextDelta("t1", "It is 4 °C\nin Oslo."), TextEnd("t1"),
     StepFinish("stop", Usage(20, 8)), Finish("stop", Usage(30, 13))],
]

BAD_TOOL_JSON: list[list[Event]] = [
    [start(), ToolInputStart("call_X", "f"), ToolInputDelta("call_X", "{oops")],
    [ToolInputEnd("call_X"), ToolCall("call_X", "f", "{oops"),
     ToolResult("call_X", "f", "bad input", is_error=True), Finish("tool_calls", Usage(1, 1))],
]

ABORTED: list[list[Event]] = [[start(), TextStart("t1"), TextDelta("t1", "half")], [Abort("client disconnected")]]

MULTILINE: list[list[Event]] = [
    [start(), TextStart("t1"), TextDelta("t1", "line one\nline two\r\n"), TextDelta("t1", "\nafter blank")],
    [TextEnd("t1"), Finish("stop", Usage(3, 4, estimated=True))],
]


def responses(body: dict | None = None):
    return lambda: openai_responses.Encoder(body or {"model": "gw-model", "stream": True}, REQ, ids=counter_ids())


def anthropic():
    return anthropic_messages.Encoder({}, REQ, ids=counter_ids())


def ui():
    return ai_sdk_ui.Encoder({}, REQ, ids=counter_ids())


CASES: dict[str, tuple[Callable[[], object], list[list[Event]]]] = {
    "responses_reasoning_text_tool_usage.sse": (responses(), REASONING_TEXT_TOOL),
    "responses_interleaved_parallel_tools_become_sequential_items.sse": (responses(), INTERLEAVED_TOOLS),
    "responses_length_is_incomplete_max_output_tokens.sse": (responses(), LENGTH),
    "responses_midstream_error_then_failed.sse": (responses(), MIDSTREAM_ERROR),
    "responses_echoes_request_fields.sse": (
        responses({"model": "gw-model", "instructions": "Be brief.", "store": False, "max_output_tokens": 50,
                   "reasoning": {"effort": "low", "summary": "auto"},
                   "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}]}), LENGTH),
    "anthropic_unsigned_reasoning_as_thinking_text_tool_use.sse": (anthropic, REASONING_TEXT_TOOL),
    "anthropic_signed_thinking_and_redacted_blocks.sse": (anthropic, SIGNED_THINKING),
    "anthropic_interleaved_parallel_tools_become_sequential_blocks.sse": (anthropic, INTERLEAVED_TOOLS),
    "anthropic_length_is_max_tokens.sse": (anthropic, LENGTH),
    "anthropic_midstream_overloaded_error_event.sse": (anthropic, MIDSTREAM_ERROR),
    "ui_reasoning_text_tool_finish_usage_metadata.sse": (ui, REASONING_TEXT_TOOL),
    "ui_tool_loop_steps_and_tool_output.sse": (ui, TOOL_LOOP_STEPS),
    "ui_invalid_tool_json_is_tool_input_error.sse": (ui, BAD_TOOL_JSON),
    "ui_midstream_error_then_finish_error_done.sse": (ui, MIDSTREAM_ERROR),
    "ui_abort.sse": (ui, ABORTED),
    "plain_text_multiline_deltas_one_data_line_per_line.sse": (lambda: plain_sse.Encoder(format="text"), MULTILINE),
    "plain_text_midstream_error_event.sse": (lambda: plain_sse.Encoder(format="text"), MIDSTREAM_ERROR),
    "plain_json_every_canonical_event.sse": (lambda: plain_sse.Encoder(format="json"), TOOL_LOOP_STEPS),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_encoder_output_matches_golden_file(name: str) -> None:
    make, batches = CASES[name]
    enc = make()
    out = b""
    for i, batch in enumerate(batches):
        assert not enc.done, f"encoder finished before batch {i}"
        out += enc.feed(batch)
    assert enc.done, "encoder never wrote a terminal frame"
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        path.write_bytes(out)
    assert path.exists(), f"missing golden file {path}; run with UPDATE_GOLDEN=1 and review it"
    assert out == path.read_bytes()


def test_every_golden_file_has_a_case() -> None:
    assert sorted(p.name for p in GOLDEN.glob("*.sse")) == sorted(CASES)
