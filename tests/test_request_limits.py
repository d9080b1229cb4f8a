"""Valid JSON that nothing downstream can carry (deep nesting, integers beyond 64 bits, out-of-range numbers)
never gets a 5xx: a field the protocol reads is a 400 in its own shape (deep nesting anywhere always is),
streamed or not; a field the protocol does not have is ignored."""

from __future__ import annotations

import httpx
import pytest

from .upstream import chat_text_stream


def _deep(n: int) -> str:
    return "[" * n + "1" + "]" * n


ENDPOINTS = {
    "/v1/chat/completions": ('{"model":"up/lim","messages":[{"role":"user","content":"hi"}]%s}', "openai"),
    "/v1/responses": ('{"model":"up/lim","input":"hi"%s}', "openai"),
    "/v1/messages": ('{"model":"up/lim","max_tokens":5,"messages":[{"role":"user","content":"hi"}]%s}', "anthropic"),
    "/chat": ('{"model":"up/lim","message":"hi"%s}', "openai"),
    "/api/chat": ('{"model":"up/lim","messages":[{"id":"1","role":"user","parts":[{"type":"text","text":"hi"}]}]%s}',
                  "any"),
    "/v1/stream": ('{"model":"up/lim","messages":[{"role":"user","content":"hi"}]%s}', "openai"),
}
EXTRAS = [',"max_tokens":1e30', ',"seed":18446744073709551616', ',"seed":-19223372036854775809',
          f',"metadata":{{"x":{_deep(300)}}}', f',"user":{_deep(1000)}', f',"temperature":{_deep(260)}',
          ',"max_output_tokens":99999999999999999999']


@pytest.mark.parametrize("path", list(ENDPOINTS))
@pytest.mark.parametrize("stream", ["", ',"stream":true'])
def test_unrepresentable_json_is_a_400_in_protocol_shape(server, upstream, path, stream):
    upstream.add("lim", chat_text_stream(["never"]))
    template, shape = ENDPOINTS[path]
    for extra in EXTRAS:
        if "max_output_tokens" in extra and path != "/v1/responses":
            continue  # a Responses field; the others ignore it
        r = httpx.post(f"{server.url}{path}", content=(template % (extra + stream)).encode(),
                       headers={"content-type": "application/json"}, timeout=20)
        assert r.status_code in (200, 400), (path, extra[:30], r.status_code, r.text[:200])
        if "[[[" in extra:
            assert r.status_code == 400
        if r.status_code == 200:
            continue
        body = r.json()
        if shape == "anthropic":
            assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        elif shape == "openai":
            assert body["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("path", ["/v1/responses", "/v1/messages", "/v1/chat/completions"])
def test_top_p_out_of_range_is_refused_everywhere(server, path):
    template, _ = ENDPOINTS[path]
    r = httpx.post(f"{server.url}{path}", content=(template % ',"top_p":9223372036854775807').encode(),
                   headers={"content-type": "application/json"}, timeout=20)
    assert r.status_code == 400 and "top_p" in r.text


@pytest.mark.parametrize(("path", "field"), [("/v1/chat/completions", "max_tokens"), ("/v1/chat/completions", "seed"),
                                             ("/v1/responses", "max_output_tokens"), ("/v1/messages", "max_tokens"),
                                             ("/chat", "max_tokens"), ("/v1/stream", "seed")])
def test_a_read_integer_beyond_64_bits_is_refused_before_the_upstream(server, upstream, path, field):
    upstream.add("lim", chat_text_stream(["never"]))
    before = len(upstream.for_model("lim"))
    template, _ = ENDPOINTS[path]
    if path == "/chat":  # session chat takes sampling parameters in "params"
        body = f'{{"model":"up/lim","message":"hi","params":{{"{field}":18446744073709551616}}}}'
    else:
        body = template % f',"{field}":18446744073709551616'
    r = httpx.post(f"{server.url}{path}", content=body.encode(), headers={"content-type": "application/json"},
                   timeout=20)
    assert r.status_code == 400 and field in r.text, r.text[:300]
    assert len(upstream.for_model("lim")) == before
