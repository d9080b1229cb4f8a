"""AWS event-stream framing for test wire streams (Bedrock ConverseStream):
the documented prelude (total length, headers length, CRC32), string
headers, the payload and the message CRC32. Decoding is botocore's job (in
the adapter); this only builds frames."""

from __future__ import annotations

import binascii
import json
import struct

EVENTSTREAM = "application/vnd.amazon.eventstream"


def _header(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    return bytes([len(n)]) + n + b"\x07" + struct.pack(">H", len(v)) + v  # type 7 = string


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    hb = b"".join(_header(k, v) for k, v in headers.items())
    prelude = struct.pack(">II", 16 + len(hb) + len(payload), len(hb))
    head = prelude + struct.pack(">I", binascii.crc32(prelude))
    body = head + hb + payload
    return body + struct.pack(">I", binascii.crc32(body))


def event(kind: str, payload: dict) -> bytes:
    # Bedrock pads payloads with a "p" field of varying length
    return frame({":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
                 json.dumps({**payload, "p": "abcdefghijklmnopqrstuvwxyzABCDEF"[: 5 + len(kind)]}).encode())


def exception(kind: str, message: str) -> bytes:
    return frame({":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"},
                 json.dumps({"message": message}).encode())


def split_frames(data: bytes) -> list[bytes]:
    """A recorded body back into its messages (each prelude starts with the total length)."""
    out, i = [], 0
    while i < len(data):
        (n,) = struct.unpack_from(">I", data, i)
        out.append(data[i:i + n])
        i += n
    return out
