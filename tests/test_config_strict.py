"""Config typos are errors with the file, the line, the key path and a did-you-mean — never silently dropped."""

from __future__ import annotations

import pytest

from sluiceway.engine.config import ConfigError, load_config
from sluiceway.engine.gateway import Gateway


def _load(tmp_path, text: str):
    p = tmp_path / "sluiceway.yaml"
    p.write_text(text)
    return p, load_config(p)


@pytest.mark.parametrize(("text", "line", "expected"), [
    ("provders:\n  x: {kind: openai}\n", 1, "provders: unknown key (did you mean 'providers'?)"),
    ("server:\n  prot: 1\n", 2, "server.prot: unknown key (did you mean 'port'?)"),
    ("models:\n  fast:\n    strategy: round-robin\n    deployments: [up/m]\n", 3, "models.fast.strategy: Input should be"),
    ("models:\n  fast:\n    stratgy: weighted\n    deployments: [up/m]\n", 3,
     "models.fast.stratgy: unknown key (did you mean 'strategy'?)"),
    ("timeouts:\n  first_tokn: 3\n", 2, "timeouts.first_tokn: unknown key (did you mean 'first_token'?)"),
    ("resilience:\n  retires: 2\n", 2, "resilience.retires: unknown key (did you mean 'retries'?)"),
])
def test_unknown_or_invalid_keys_name_file_line_and_path(tmp_path, text, line, expected):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, text)
    assert f"sluiceway.yaml:{line}: {expected}" in str(e.value)


def test_a_provider_typo_is_an_error_not_a_key_sent_to_the_default_host(tmp_path):
    p, cfg = _load(tmp_path, "embedded: false\nproviders:\n  up:\n    kind: openai\n"
                             "    baseurl: http://127.0.0.1:9/v1\n    api_key: sk-secret\n")
    with pytest.raises(ConfigError) as e:
        Gateway(cfg)
    msg = str(e.value)
    assert f"{p}:5: providers.up.baseurl: unknown key (did you mean 'base_url'?)" in msg
    assert "sk-secret" not in msg


def test_a_bad_provider_value_names_its_path(tmp_path):
    _, cfg = _load(tmp_path, "embedded: false\nproviders:\n  loc:\n    kind: llamacpp\n    n_ctx: tiny\n")
    with pytest.raises(ConfigError, match=r"sluiceway.yaml:5: providers.loc.n_ctx: Input should be a valid integer"):
        Gateway(cfg)


def test_a_valid_config_still_loads(tmp_path):
    _, cfg = _load(tmp_path, "server: {port: 9001}\nmodels:\n  fast: [up/a, up/b]\n  smart:\n    strategy: weighted\n"
                             "    deployments:\n      - {provider: up, model: c, weight: 2}\n")
    assert cfg.server.port == 9001 and cfg.models["smart"].strategy == "weighted"
    assert [d.model for d in cfg.models["fast"].deployments] == ["a", "b"]
