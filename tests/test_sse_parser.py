"""The upstream SSE parser against the framing quirks of protocols.md §1 and §9."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from sluiceway.providers.sse import SSEParser


def feed_all(parts: list[bytes]) -> list[tuple[str, str]]:
    """Every event of a stream read in ``parts``, its data decoded (the parser hands out bytes)."""
    p = SSEParser()
    out = []
    for part in parts:
        out.extend(p.feed(part))
    out.extend(p.close())
    return [(event, data.decode()) for event, data in out]


def test_lf_crlf_and_lone_cr_line_ends_are_equivalent():
    for sep in (b"\n", b"\r\n", b"\r"):
        raw = b"data: a" + sep + sep + b"event: x" + sep + b"data: b" + sep + sep
        assert feed_all([raw]) == [("message", "a"), ("x", "b")]


def test_crlf_split_across_reads_is_one_line_end():
    assert feed_all([b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"]) == [("message", "a"), ("message", "b")]


def test_utf8_character_split_across_reads_is_reassembled():
    raw = "data: 日本🙂\n\n".encode()
    cut = raw.index("🙂".encode()) + 2  # inside the 4-byte emoji
    assert feed_all([raw[:cut], raw[cut:]]) == [("message", "日本🙂")]


def test_comments_multiline_data_bom_and_no_space():
    raw = b"\xef\xbb\xbf: keep-alive\n\ndata:x\ndata:  y\n\n: OPENROUTER PROCESSING\n\n"
    assert feed_all([raw]) == [("message", "x\n y")]


def test_id_retry_and_unknown_fields_are_not_data():
    raw = b"id: 7\nretry: 100\nfoo: bar\ndata: z\n\nretry: x\n\n"
    p = SSEParser()
    assert p.feed(raw) == [("message", b"z")]
    assert p.last_id == "7" and p.retry == 100


def test_stray_json_line_without_framing_is_surfaced():
    assert feed_all([b'{"error":{"message":"bad key"}}\n']) == [("message", '{"error":{"message":"bad key"}}')]
    assert feed_all([b'{"error":"no newline at eof"}']) == [("message", '{"error":"no newline at eof"}')]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
                        max_size=20), min_size=1, max_size=8), st.sampled_from(["\n", "\r\n", "\r"]), st.randoms())
def test_any_split_of_any_stream_parses_the_same(payloads, sep, rnd: random.Random):
    raw = "".join(f"data: {p}{sep}{sep}" for p in payloads).encode()
    cuts = sorted(rnd.sample(range(1, len(raw)), min(len(raw) - 1, 5))) if len(raw) > 1 else []
    parts = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    assert feed_all(parts) == [("message", p) for p in payloads]
