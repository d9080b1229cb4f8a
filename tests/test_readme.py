"""The README's examples work as pasted: the main sluiceway.yaml loads with
none of its environment variables set (and with them), its aliases route, and
the documented environment-override examples do what the README says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sluiceway.engine.config import load_config
from sluiceway.engine.gateway import Gateway

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
ENV = ("SLUICEWAY_KEY", "OPENAI_API_KEY", "GROQ_API_KEY")


def main_example() -> str:
    after = README.split("Or put providers in `sluiceway.yaml`", 1)[1]
    return re.search(r"```yaml\n(.*?)```", after, re.S).group(1)


@pytest.mark.parametrize("keys_set", [False, True])
async def test_main_yaml_example_works_as_pasted(tmp_path, monkeypatch, keys_set):
    for name in ENV:
        if keys_set:
            monkeypatch.setenv(name, f"k-{name.lower()}")
        else:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sluiceway.yaml").write_text(main_example())
    cfg = load_config()
    assert cfg.server.api_keys == (["k-sluiceway_key"] if keys_set else [])  # empty = open, as the comment says
    assert set(cfg.providers) == {"openai", "groq", "vllm"} and set(cfg.models) == {"fast", "smart"}
    gw = Gateway(cfg)
    try:
        assert [d.label for d in gw.router.resolve("fast").deployments] == \
            ["groq/llama-3.1-8b-instant", "openai/gpt-4.1-mini"]
        assert gw.router.resolve("smart").deployments[0].label == "openai/gpt-4.1"
    finally:
        await gw.aclose()


def test_documented_environment_overrides(tmp_path, monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "sluiceway.yaml").write_text(main_example())
    examples = dict(re.findall(r"`(SLUICEWAY_[A-Z_]+__[A-Z_]+|SLUICEWAY_DEFAULT_MODEL|SLUICEWAY_EMBEDDED)="
                               r"'?([^`']*)'?`", README))
    assert {"SLUICEWAY_SERVER__PORT", "SLUICEWAY_SERVER__API_KEYS", "SLUICEWAY_DEFAULT_MODEL"} <= set(examples)
    for name, value in examples.items():
        monkeypatch.setenv(name, value.replace("…", "x"))
    cfg = load_config(tmp_path / "sluiceway.yaml")
    assert cfg.server.port == int(examples["SLUICEWAY_SERVER__PORT"])
    assert cfg.server.host == examples["SLUICEWAY_SERVER__HOST"]
    assert cfg.server.api_keys == ["k1", "k2"] and cfg.default_model == "fast" and cfg.embedded is False
    assert cfg.providers["groq"]["api_key"] == "x" and cfg.timeouts.idle == 30
