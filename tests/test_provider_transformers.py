"""Hugging Face transformers provider. The pure parts (message conversion,
the cancel stopping criterion, request checks) run everywhere; generation
with a tiny random model built offline runs only when the optional extra
(``sluiceway[transformers]``: torch + transformers) is installed."""

from __future__ import annotations

import importlib.util
import time

import numpy as np
import openai
import pytest

from sluiceway.core import (
    BadRequest,
    ChatRequest,
    Deadlines,
    ImagePart,
    Message,
    NotFound,
    TextPart,
    Tool,
    ToolCallPart,
    UpstreamError,
)
from sluiceway.providers.transformers import (
    CancelFlag,
    TransformersProvider,
    TransformersSettings,
    messages_to_chat,
)
from sluiceway.server.app import create_app

from .conftest import ServerThread, make_config

HAVE_HF = all(importlib.util.find_spec(m) is not None for m in ("transformers", "torch", "tokenizers"))
needs_hf = pytest.mark.skipif(not HAVE_HF, reason="optional extra not installed: "
                                                   "pip install 'sluiceway[transformers]' (torch + transformers)")


# ------------------------------------------------------------- pure parts

def test_messages_to_chat_parses_tool_arguments_and_keeps_tool_ids():
    req = ChatRequest(model="m", messages=[
        Message.of("system", "be kind"), Message.of("user", "weather?"),
        Message("assistant", [], tool_calls=[ToolCallPart("c1", "get_weather", '{"city":"Oslo"}')]),
        Message("tool", [TextPart("21C")], tool_call_id="c1", name="get_weather")])
    assert messages_to_chat(req) == [
        {"role": "system", "content": "be kind"}, {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "id": "c1", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
        {"role": "tool", "content": "21C", "tool_call_id": "c1", "name": "get_weather"}]


def test_messages_to_chat_refuses_images():
    with pytest.raises(BadRequest):
        messages_to_chat(ChatRequest(model="m", messages=[Message("user", [ImagePart("data:image/png;base64,AA")])]))


def test_cancel_flag_stops_every_sequence_once_set_and_records_length():
    flag = CancelFlag()
    ids = np.array([[5, 6, 7], [8, 9, 10]])
    assert flag(ids, None).tolist() == [False, False]
    assert flag.length == 3
    flag.set()
    assert flag(np.array([[5, 6, 7, 1], [8, 9, 10, 2]]), None).tolist() == [True, True]
    assert flag.length == 4 and flag.is_set()


async def test_requests_are_checked_before_any_loading(tmp_path):
    p = TransformersProvider("hf", TransformersSettings(model_path=str(tmp_path / "tiny")))
    d = Deadlines()
    try:
        with pytest.raises(NotFound):
            await anext(p.stream(ChatRequest(model="other", messages=[Message.of("user", "x")]), deadline=d))
        with pytest.raises(BadRequest):
            await anext(p.stream(ChatRequest(model="tiny", messages=[Message.of("user", "x")],
                                             tools=[Tool("f")], tool_choice="required"), deadline=d))
        with pytest.raises(UpstreamError, match="does not exist"):
            await anext(p.stream(ChatRequest(model="tiny", messages=[Message.of("user", "x")]), deadline=d))
    finally:
        await p.aclose()


@pytest.mark.skipif(HAVE_HF, reason="transformers is installed")
async def test_missing_extra_is_a_clear_error(tmp_path):
    (tmp_path / "tiny").mkdir()
    p = TransformersProvider("hf", TransformersSettings(model_path=str(tmp_path / "tiny")))
    try:
        with pytest.raises(UpstreamError, match=r"sluiceway\[transformers\]"):
            await anext(p.stream(ChatRequest(model="tiny", messages=[Message.of("user", "x")]), deadline=Deadlines()))
    finally:
        await p.aclose()


# ------------------------------------------------- real generation (extra)

WORDS = ["hello", "world", "the", "a", "cat", "dog", "sat", "on", "mat", "sun", "is", "up", "user", "assistant"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A 1-layer random Llama and a word-level tokenizer, built offline and
    saved to a local directory; it never emits EOS, so it runs to the limit."""
    if not HAVE_HF:
        pytest.skip("optional extra not installed: pip install 'sluiceway[transformers]' (torch + transformers)")
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "<s>", "</s>"]
    vocab = {t: i for i, t in enumerate(specials + WORDS)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                  eos_token="</s>")
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}"
                         "{% if add_generation_prompt %}assistant{% endif %}")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096,
                      bos_token_id=2, eos_token_id=None, pad_token_id=1)
    model = LlamaForCausalLM(cfg)
    model.generation_config.eos_token_id = None
    path = tmp_path_factory.mktemp("hf") / "tiny"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@needs_hf
def test_streams_through_chat_completions_with_exact_usage(upstream, tiny_model):
    cfg = make_config(upstream, providers={"hf": {"kind": "transformers", "model_path": str(tiny_model)}})
    srv = ServerThread(create_app(cfg)).start()
    try:
        c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0, timeout=60)
        chunks = list(c.chat.completions.create(model="hf/tiny", messages=[{"role": "user", "content": "hello"}],
                                                max_tokens=8, stream=True, stream_options={"include_usage": True}))
        assert [x.choices[0].finish_reason for x in chunks if x.choices and x.choices[0].finish_reason] == ["length"]
        assert chunks[-1].usage.completion_tokens == 8 and chunks[-1].usage.prompt_tokens > 0
    finally:
        srv.stop()


@needs_hf
async def test_closing_the_stream_stops_generation_within_1s(tiny_model):
    p = TransformersProvider("hf", TransformersSettings(model_path=str(tiny_model)))
    gen = p.stream(ChatRequest(model="tiny", messages=[Message.of("user", "hello")], max_tokens=100_000),
                   deadline=Deadlines())
    try:
        while not any(e.type == "text-delta" for e in await anext(gen)):
            pass
        t0 = time.monotonic()
        await gen.aclose()  # returns once the generation thread has stopped
        assert time.monotonic() - t0 < 1.0
    finally:
        await p.aclose()
