"""Cut a live text stream into speakable pieces, as early as it can.

Two stages, both fed one delta at a time:

- ``CodeFilter`` drops fenced code blocks (never spoken) and holds back a
  trailing run of backticks that could still become a fence.
- ``SentenceChunker`` scans the remaining text character by character, with
  one character of lookahead, so the pieces it cuts do not depend on how the
  text was split into deltas. It cuts after sentence punctuation (ASCII
  ``.!?;`` when followed by whitespace; CJK ``。！？；…`` at once), never
  after an abbreviation, an initial, a list number or inside a decimal or a
  URL; it keeps pieces above ``min_chars`` (merging short ones) and below
  ``max_chars`` (cutting at a comma or a space). ``flush_due`` cuts early at
  the last word boundary when text has waited ``max_wait`` seconds without
  punctuation (``first_wait`` for the first piece), so the first audio starts
  early.

``speakable`` turns a piece into what a voice says: no URLs, no Markdown marks.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

CJK_STOPS = frozenset("。！？；…")
ASCII_STOPS = frozenset(".!?;")
CLOSERS = frozenset("\"')]}”’»」』）】")
SOFT = frozenset(",，、:：—")  # where an over-long piece may be cut
ABBREVIATIONS = frozenset((
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "eg", "ie",
    "inc", "ltd", "co", "corp", "no", "fig", "approx", "dept", "est", "jan", "feb", "mar", "apr",
    "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "mt", "ave", "u.s", "u.k", "a.m",
    "p.m", "cf", "al",
))


def is_cjk(c: str) -> bool:
    o = ord(c)
    return (0x3000 <= o <= 0x9FFF or 0xAC00 <= o <= 0xD7AF or 0xF900 <= o <= 0xFAFF
            or 0xFF00 <= o <= 0xFFEF or 0x20000 <= o <= 0x2FA1F)


def weight(s: str) -> int:
    """Length as speech time goes: a CJK character is a syllable, worth two Latin letters."""
    return sum(2 if is_cjk(c) else 1 for c in s if not c.isspace())


class CodeFilter:
    """Drops fenced code blocks from a text stream; the rest passes through."""

    __slots__ = ("in_code", "pending")

    def __init__(self) -> None:
        self.in_code = False
        self.pending = ""

    def feed(self, delta: str) -> str:
        self.pending += delta
        out: list[str] = []
        while True:
            idx = self.pending.find("```")
            if idx < 0:
                keep = len(self.pending) - len(self.pending.rstrip("`"))  # might be half a fence
                if not self.in_code:
                    out.append(self.pending[: len(self.pending) - keep])
                self.pending = self.pending[len(self.pending) - keep:]
                return "".join(out)
            if not self.in_code:
                out.append(self.pending[:idx])
                out.append("\n")  # a code block ends the sentence before it
            self.pending = self.pending[idx + 3:]
            self.in_code = not self.in_code

    def finish(self) -> str:
        rest, self.pending = ("" if self.in_code else self.pending), ""
        return rest


class SentenceChunker:
    def __init__(self, *, min_chars: int = 12, max_chars: int = 240, max_wait: float = 0.4,
                 first_wait: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.min_chars = min_chars
        self.max_chars = max_chars
        self.max_wait = max_wait
        # the first piece waits less: the listener hears the answer start sooner
        self.first_wait = max_wait if first_wait is None else min(first_wait, max_wait)
        self.started = False  # has a piece been cut yet?
        self.clock = clock
        self.code = CodeFilter()
        self.buf = ""  # text not yet cut into a piece
        self.pos = 0  # next index of buf to examine
        self.w = 0  # weight of buf[:pos]
        self.since: float | None = None  # when the oldest text in buf arrived

    # ------------------------------------------------------------ feeding
    def feed(self, delta: str) -> list[str]:
        text = self.code.feed(delta)
        if not text:
            return []
        if self.since is None and text.strip():
            self.since = self.clock()
        self.buf += text
        return self._scan(final=False)

    def finish(self) -> list[str]:
        self.buf += self.code.finish()
        out = self._scan(final=True)
        if self.buf.strip():
            out.append(self.buf.strip())
        self.buf, self.pos, self.w, self.since = "", 0, 0, None
        return out

    @property
    def deadline(self) -> float | None:
        """When ``flush_due`` will cut what is waiting (None: nothing waits)."""
        return None if self.since is None else self.since + self._wait()

    def _wait(self) -> float:
        return self.max_wait if self.started else self.first_wait

    def flush_due(self, now: float | None = None) -> list[str]:
        """Cut what has waited ``max_wait`` at its last word boundary."""
        now = self.clock() if now is None else now
        if self.since is None or now < self.since + self._wait():
            return []
        cut = self._last_break(len(self.buf))
        if cut <= 0 or weight(self.buf[:cut]) < min(self.min_chars, 4):
            self.since = now  # nothing to cut yet (one long word): wait another max_wait
            return []
        return self._cut(cut)

    # ------------------------------------------------------------ scanning
    def _scan(self, *, final: bool) -> list[str]:
        out: list[str] = []
        start = 0  # pieces are cut from the front of buf
        buf, n = self.buf, len(self.buf)
        i, w = self.pos, self.w  # w: weight of buf[start:i]
        while i < n:
            c = buf[i]
            end = -1
            if c in CJK_STOPS or c == "\n" or c in ASCII_STOPS:
                j = i + 1
                while j < n and buf[j] in CLOSERS:
                    j += 1
                if j >= n and not final:
                    break  # a closing quote or a space may follow: wait for the next delta
                if c in ASCII_STOPS:
                    if (j >= n or buf[j].isspace()) and not self._no_stop(buf, start, i):
                        end = j
                else:
                    end = j
            if end >= 0:
                we = w + weight(buf[i:end])
                if we >= self.min_chars or (final and end >= n):
                    piece = buf[start:end].strip()
                    if piece:
                        out.append(piece)
                    start, i, w = end, end, 0
                    continue
            cw = 0 if c.isspace() else 2 if is_cjk(c) else 1
            if w + cw > self.max_chars:
                cut = self._last_break_in(buf, start, i)
                out.append(buf[start:cut].strip())
                start, w = cut, weight(buf[cut:i])
            w += cw
            i += 1
        self.buf = buf[start:]
        self.pos, self.w = i - start, w
        if out or not self.buf.strip():
            self.since = self.clock() if self.buf.strip() else None
        out = [p for p in out if p]
        self.started = self.started or bool(out)
        return out

    def _no_stop(self, buf: str, start: int, i: int) -> bool:
        """A '.' that does not end a sentence: an abbreviation, an initial,
        a list number ("1. "), or an ellipsis still going on."""
        if buf[i] != ".":
            return False
        j = i
        while j > start and not buf[j - 1].isspace():
            j -= 1
        word = buf[j:i].lstrip("(\"'")
        if word.lower() in ABBREVIATIONS:
            return True
        if len(word) == 1 and word.isupper():
            return True  # "J. Smith"
        line_start = not buf[start:j].strip() or buf[j - 1] == "\n"
        return line_start and word.isdigit() and len(word) <= 3

    def _last_break_in(self, buf: str, start: int, end: int) -> int:
        """Cut an over-long piece after its last soft punctuation, else its
        last space, else between CJK characters, else hard at ``end``."""
        for pred in (lambda c: c in SOFT, str.isspace, is_cjk):
            for k in range(end - 1, start, -1):
                if pred(buf[k]):
                    return k + 1
        return end

    def _last_break(self, end: int) -> int:
        for k in range(end - 1, -1, -1):
            c = self.buf[k]
            if c.isspace() or c in SOFT or is_cjk(c):
                return k + 1
        return 0

    def _cut(self, cut: int) -> list[str]:
        piece = self.buf[:cut].strip()
        self.buf = self.buf[cut:]
        self.pos, self.w = 0, 0
        self.since = self.clock() if self.buf.strip() else None
        self.started = self.started or bool(piece)
        return [piece] if piece else []


URL = re.compile(r"(?:https?://|www\.)\S+", re.I)
MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
MD_MARKS = re.compile(r"(\*\*|__|\*|`|^#{1,6}\s*|^>\s*|^[-*+]\s+)", re.M)


def speakable(piece: str) -> str:
    """What a voice should say for a piece: link text without its target,
    no bare URLs, no Markdown marks."""
    s = MD_LINK.sub(r"\1", piece)
    s = URL.sub("", s)
    s = MD_MARKS.sub("", s)
    return " ".join(s.split())
