"""Writing ``sluiceway.yaml`` and ``.env`` safely while the server runs.

Every write is atomic (temp file in the same directory, fsync, rename, then
fsync of the directory), so a reader or a crash sees the old file or the new
one, never half of one. Edits are serialised by an exclusive ``flock`` on a
side file (``.sluiceway.yaml.lock``), which also orders writers in other
processes (replicas sharing a config volume, the CLI). The YAML is
round-tripped with ruamel.yaml so comments and unrelated keys survive.
Files are created mode 0600: they hold references to secrets, and ``.env``
holds the secrets themselves.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")
_process_locks: dict[str, threading.Lock] = {}  # flock is per open file, so threads also need one
_guard = threading.Lock()


def _yaml() -> YAML:
    y = YAML()  # round-trip mode: comments, key order and quoting are kept
    y.preserve_quotes = True
    y.width = 4096  # never fold a long URL onto two lines
    y.indent(mapping=2, sequence=4, offset=2)
    return y


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Exclusive edit lock for ``path``, across threads and processes."""
    lock_path = path.with_name(f".{path.name}.lock")
    with _guard:
        tlock = _process_locks.setdefault(str(lock_path.resolve()), threading.Lock())
    with tlock:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the flock


def write_atomic(path: Path, data: str, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data``: temp file, fsync, rename, fsync the directory."""
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def edit_yaml(path: Path, change: Callable[[CommentedMap], Any]) -> Any:
    """Under the lock: load ``path`` (an empty document if absent), let
    ``change`` mutate it, write it back atomically. Returns what ``change`` returned."""
    y = _yaml()
    with locked(path):
        doc = y.load(path.read_text(encoding="utf-8")) if path.exists() else None
        if doc is None:
            doc = CommentedMap()
        if not isinstance(doc, CommentedMap):
            raise ValueError(f"{path}: the top level must be a mapping")
        result = change(doc)
        out = io.StringIO()
        y.dump(doc, out)
        write_atomic(path, out.getvalue())
        return result


def _env_quote(value: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_./:@+=,-]*", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def update_env(path: Path, set_: dict[str, str], remove: tuple[str, ...] = ()) -> bool:
    """Set and remove keys in a ``.env`` file, idempotently: a key already
    holding the value is left alone, other lines and comments are kept in
    place, and when nothing changes the file is not rewritten at all.
    Returns whether the file changed."""
    with locked(path):
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        lines = old.splitlines()
        pending = dict(set_)
        out: list[str] = []
        for line in lines:
            m = _ENV_LINE.match(line)
            key = m.group(1) if m else None
            if key is not None and key in remove:
                continue
            if key is not None and key in pending:
                value = pending.pop(key)
                out.append(f"{key}={_env_quote(value)}")
                continue
            out.append(line)
        out.extend(f"{k}={_env_quote(v)}" for k, v in pending.items())
        new = "\n".join(out) + ("\n" if out else "")
        if new == old:
            return False
        write_atomic(path, new)
        return True
