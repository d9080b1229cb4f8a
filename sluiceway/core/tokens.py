"""Token estimates for upstreams that report no usage.

Exact tokenisers need vocabulary files per model (and tiktoken downloads
them at run time, which a gateway without network cannot do), so the
estimate is the common ~4 characters per token rule; usage built from it is
always marked ``estimated``.
"""

from __future__ import annotations

from .request import ChatRequest, TextPart


def estimate_tokens(chars: int) -> int:
    return 0 if chars <= 0 else max(1, round(chars / 4))


def prompt_chars(req: ChatRequest) -> int:
    n = 0
    for m in req.messages:
        for p in m.content:
            if isinstance(p, TextPart):
                n += len(p.text)
        for c in m.tool_calls:
            n += len(c.name) + len(c.arguments)
        n += 4  # role and separators
    for t in req.tools:
        n += len(t.name) + len(t.description or "") + len(str(t.parameters))
    return n
