"""The raw-exchange recorder redacts credentials and caps what it keeps."""

from __future__ import annotations

from sluiceway.core import WireTrace


def test_credentials_in_headers_and_query_are_redacted():
    w = WireTrace()
    w.on_request("POST", "https://x.example/v1/m:stream?alt=sse&key=AIzaSECRET",
                 {"x-goog-api-key": "AIzaSECRET", "Authorization": "Bearer sk-1", "content-type": "application/json"},
                 b'{"a":1}')
    w.on_response(200, {"set-cookie": "s=1", "content-type": "text/event-stream"})
    doc = w.to_json()
    assert "SECRET" not in str(doc) and "sk-1" not in str(doc)
    assert "alt=sse" in doc["request"]["url"]
    assert doc["request"]["headers"]["content-type"] == "application/json"
    assert doc["response"]["headers"] == {"set-cookie": "[redacted]", "content-type": "text/event-stream"}


def test_body_is_capped_and_binary_kept_as_base64():
    w = WireTrace(limit=10)
    w.on_data(b"0123456")
    w.on_data(b"789abc")
    body = w.to_json()["response"]
    assert body["body"] == "0123456789" and body["truncated"]
    b = WireTrace()
    b.on_data(b"\x00\x00\x00\xff")
    assert b.to_json()["response"]["body"] == {"base64": "AAAA/w=="}


def test_a_new_attempt_replaces_the_last():
    w = WireTrace()
    w.on_request("POST", "http://a/", {}, b"1")
    w.on_response(503, {})
    w.on_data(b"down")
    w.on_request("POST", "http://b/", {}, b"2")
    w.on_response(200, {})
    w.on_data(b"ok")
    doc = w.to_json()
    assert (doc["request"]["url"], doc["response"]["status"], doc["response"]["body"]) == ("http://b/", 200, "ok")
