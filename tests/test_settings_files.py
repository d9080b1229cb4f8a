"""The settings writer on its own: parallel writers (threads and processes)
never lose an update or leave a half-written file, a writer killed in the
middle of a write leaves the old file intact and the lock free, and the
.env updater is idempotent and keeps what it does not own."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from pathlib import Path

import pytest
import yaml
from dotenv import dotenv_values
from ruamel.yaml.comments import CommentedMap

from sluiceway.engine.settings.files import edit_yaml, update_env

HEADER = "# written by hand\nembedded: false  # keep me\nproviders:\n  # first one\n  seed: {kind: openai}\n"


def _add(path: str, tag: str, n: int) -> None:
    for i in range(n):
        def change(doc: CommentedMap, key: str = f"{tag}-{i}") -> None:
            doc["providers"][key] = CommentedMap({"kind": "openai", "base_url": f"http://h/{key}", "pad": "x" * 100})
        edit_yaml(Path(path), change)


def _die_at(path: str, where: str) -> None:
    """Start a write and SIGKILL this process at ``where`` inside it."""
    import sluiceway.engine.settings.files as files

    def die(*a, **k):
        os.kill(os.getpid(), signal.SIGKILL)

    if where == "fsync":  # the temp file is written but not yet durable or renamed
        files.os.fsync = die  # type: ignore[assignment]
    else:  # about to rename the finished temp file over the config
        files.os.replace = die  # type: ignore[assignment]

    def change(doc: CommentedMap) -> None:
        doc["providers"]["doomed"] = CommentedMap({"kind": "openai", "pad": "y" * 100_000})
    edit_yaml(Path(path), change)


def test_parallel_writers_never_lose_or_tear_an_update(tmp_path):
    path = tmp_path / "sluiceway.yaml"
    path.write_text(HEADER)
    torn: list[str] = []
    stop = threading.Event()

    def reader() -> None:  # every read sees a whole document, never a torn one
        while not stop.is_set():
            try:
                doc = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
                assert doc["providers"]["seed"] == {"kind": "openai"}
            except Exception as e:
                torn.append(repr(e))
            stop.wait(0.002)

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_add, args=(str(path), f"p{k}", 10)) for k in range(3)]
    threads = [threading.Thread(target=_add, args=(str(path), f"t{k}", 10)) for k in range(3)]
    for w in procs:  # forked before any thread of ours exists
        w.start()
    watcher = threading.Thread(target=reader)
    watcher.start()
    for w in threads:
        w.start()
    for t in threads:
        t.join(60)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    stop.set()
    watcher.join()
    assert not torn, torn[:3]
    doc = yaml.safe_load(path.read_text())
    expected = {"seed"} | {f"{t}{k}-{i}" for t in "pt" for k in range(3) for i in range(10)}
    assert set(doc["providers"]) == expected  # every one of the 60 edits is there
    text = path.read_text()
    assert text.startswith("# written by hand\nembedded: false  # keep me\n") and "# first one" in text
    assert path.stat().st_mode & 0o777 == 0o600
    assert not list(tmp_path.glob(".sluiceway.yaml.*.tmp"))


@pytest.mark.parametrize("where", ["fsync", "rename"])
def test_a_writer_killed_mid_write_leaves_the_old_file_and_a_free_lock(tmp_path, where):
    path = tmp_path / "sluiceway.yaml"
    path.write_text(HEADER)
    before = path.read_bytes()
    p = multiprocessing.get_context("fork").Process(target=_die_at, args=(str(path), where))
    p.start()
    p.join(60)
    assert p.exitcode == -signal.SIGKILL
    assert path.read_bytes() == before  # the old file, whole
    # the dead writer's flock died with it: the next edit goes through at once
    done = threading.Event()

    def edit() -> None:
        edit_yaml(path, lambda doc: doc["providers"].__setitem__("after", CommentedMap({"kind": "openai"})))
        done.set()
    threading.Thread(target=edit, daemon=True).start()
    assert done.wait(10), "the lock was left held"
    assert set(yaml.safe_load(path.read_text())["providers"]) == {"seed", "after"}


def test_env_updates_are_idempotent_and_keep_other_lines(tmp_path):
    env = tmp_path / ".env"
    original = "# secrets for this box\nexport OTHER=1\n\n  SPACED = kept as is\nSLUICEWAY_A_API_KEY=old\n"
    env.write_text(original)
    assert update_env(env, {"SLUICEWAY_A_API_KEY": "new-key", "SLUICEWAY_B_API_KEY": 'has "quotes" and spaces'})
    first = env.read_text()
    assert first == ("# secrets for this box\nexport OTHER=1\n\n  SPACED = kept as is\nSLUICEWAY_A_API_KEY=new-key\n"
                     'SLUICEWAY_B_API_KEY="has \\"quotes\\" and spaces"\n')
    stamp = env.stat().st_mtime_ns
    assert not update_env(env, {"SLUICEWAY_A_API_KEY": "new-key", "SLUICEWAY_B_API_KEY": 'has "quotes" and spaces'})
    assert env.read_text() == first and env.stat().st_mtime_ns == stamp  # the same add twice: untouched
    assert dotenv_values(env)["SLUICEWAY_B_API_KEY"] == 'has "quotes" and spaces'
    assert update_env(env, {}, ("SLUICEWAY_A_API_KEY",))
    assert "SLUICEWAY_A_API_KEY" not in env.read_text() and "# secrets for this box" in env.read_text()
    assert env.stat().st_mode & 0o777 == 0o600
    fresh = tmp_path / "new.env"
    assert update_env(fresh, {"K": "v"}) and fresh.read_text() == "K=v\n"
