"""Redaction by value: every configured secret, wherever it appears.

Redacting by field name misses credentials that sit in a query parameter
called ``code``, a header called ``x-upstream-pass`` or the userinfo of a
``base_url``. So the gateway registers the *values* of every configured
secret here (``secret_values`` finds them in a provider's settings), and
``scrub`` replaces them in traces, error messages, log lines and what is
stored. It runs on rare paths (errors, logs, trace saves), never per chunk.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from pydantic import BaseModel, SecretStr

REDACTED = "[redacted]"
MIN_LENGTH = 6  # shorter values are too likely to occur by chance
# header names whose values are protocol settings, not credentials
_PLAIN_HEADERS = re.compile(r"^(content-type|accept|user-agent|anthropic-(version|beta)|openai-beta|api-version|"
                            r"x-stainless-.*)$", re.I)


class Scrubber:
    def __init__(self) -> None:
        self._values: set[str] = set()
        self._re: re.Pattern[str] | None = None

    def add(self, values: Iterable[str]) -> None:
        new = set()
        for v in values:
            if not isinstance(v, str) or len(v) < MIN_LENGTH:
                continue
            new.update({v, quote(v, safe=""), unquote(v)})
        new = {v for v in new if len(v) >= MIN_LENGTH} - self._values
        if new:
            self._values |= new
            # longest first, so a secret that contains another is replaced whole
            self._re = re.compile("|".join(re.escape(v) for v in sorted(self._values, key=len, reverse=True)))

    def clear(self) -> None:
        self._values.clear()
        self._re = None

    def scrub(self, text: str) -> str:
        return self._re.sub(REDACTED, text) if self._re is not None and text else text

    def scrub_obj(self, obj: Any) -> Any:
        """Strings inside JSON-like data (dict keys too), scrubbed."""
        if self._re is None:
            return obj
        if isinstance(obj, str):
            return self.scrub(obj)
        if isinstance(obj, dict):
            return {self.scrub(k) if isinstance(k, str) else k: self.scrub_obj(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self.scrub_obj(v) for v in obj]
        return obj


SECRETS = Scrubber()
scrub = SECRETS.scrub
scrub_obj = SECRETS.scrub_obj


def secret_values(settings: BaseModel) -> list[str]:
    """Every value in a provider's settings that may be a credential: secret
    fields, values of header/query/parameter maps, passwords in URLs."""
    out: list[str] = []

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, SecretStr):
            out.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name), name)
        elif isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, str) and not _PLAIN_HEADERS.match(str(k)):
                    out.append(v)
                    if v.lower().startswith(("bearer ", "basic ")):
                        out.append(v.split(" ", 1)[1])
                else:
                    walk(v, str(k))
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and "://" in value and "@" in value:
            parts = urlsplit(value)
            if parts.password:
                userinfo = f"{parts.username}:{parts.password}"
                out.extend([parts.password, userinfo, base64.b64encode(unquote(userinfo).encode()).decode()])

    walk(settings)
    return out


_installed = False


def install_log_scrubber() -> None:
    """Scrub every log record as it is made, whichever logger or handler it
    goes to (a filter on one logger would miss records of its children)."""
    global _installed
    if _installed:
        return
    _installed = True
    make = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        if SECRETS._re is not None:
            msg = record.getMessage()
            clean = scrub(msg)
            if clean != msg:
                record.msg, record.args = clean, None
            if record.exc_info and record.exc_info[0] is not None:  # tracebacks quote messages too
                record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(factory)
