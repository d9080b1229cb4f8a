"""Token estimates for upstreams that report no usage.

Exact tokenisers need vocabulary files per model (and tiktoken downloads
them at run time, which a gateway without network cannot do), so this is a
per-script rule, and usage built from it is always marked ``estimated``.

Text is measured in *units*, a quarter of a token each (``token_units``), so
callers keep summing plain integers as they stream and convert once
(``estimate_tokens``). Per character:

- ASCII letters, digits, whitespace: 1 unit (English runs ~4 characters a token);
- ASCII punctuation and symbols: 3 units (code: brackets, operators, quotes
  and separators rarely merge into words, so code runs ~3 characters a token);
- CJK ideographs, kana, Hangul: 4 units (about one token each; the old flat
  4-characters rule counted 30 Chinese characters as 8 tokens instead of ~30);
- other non-ASCII (Cyrillic, Greek, Arabic, accented letters, emoji…): 3 units.

Over- rather than under-counting on purpose: these numbers feed TPM limits.
"""

from __future__ import annotations

import re
import string

from .request import ChatRequest, TextPart

_PUNCT = str.maketrans("", "", string.punctuation)
_CJK = re.compile("[\u3040-\u30ff\u3100-\u312f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
                  "\uff00-\uffef\U00020000-\U0003134f]")


def token_units(text: str) -> int:
    """Quarter-tokens in ``text`` (see the module docstring)."""
    if not text:
        return 0
    punct = len(text) - len(text.translate(_PUNCT))  # ASCII punctuation only
    if text.isascii():  # the common case: no scan beyond translate
        return len(text) + 2 * punct
    non_ascii = sum(1 for ch in text if ord(ch) > 127)
    return len(text) + 2 * punct + 2 * non_ascii + len(_CJK.findall(text))


def estimate_tokens(units: int) -> int:
    """Tokens for a sum of ``token_units``."""
    return 0 if units <= 0 else max(1, round(units / 4))


def estimate_text(text: str) -> int:
    return estimate_tokens(token_units(text))


def prompt_chars(req: ChatRequest) -> int:
    """The request's prompt in ``token_units`` (the name predates the units)."""
    n = 0
    for m in req.messages:
        for p in m.content:
            if isinstance(p, TextPart):
                n += token_units(p.text)
        for c in m.tool_calls:
            n += token_units(c.name) + token_units(c.arguments)
        n += 4  # role and separators
    for t in req.tools:
        n += token_units(t.name) + token_units(t.description or "") + token_units(str(t.parameters))
    return n
