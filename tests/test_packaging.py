"""The built package is the same product as a checkout: the sdist and the wheel
built from it carry the UI's vendored browser libraries, and a pip-installed
sluiceway (fresh venv, run from outside the checkout) serves every /vendor file
the page imports, byte for byte what the lockfile pinned."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from .upstream import free_port

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "sluiceway" / "web"


def _vendor_module():
    spec = importlib.util.spec_from_file_location("vendor_web", ROOT / "scripts" / "vendor_web.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def page_vendor_imports() -> list[str]:
    """The /vendor/<name> files markdown.js imports (read from the page's own code)."""
    names = re.findall(r'vendor\("([^"]+)"\)', (WEB / "markdown.js").read_text())
    assert names, "markdown.js no longer imports vendor files the way this test reads them"
    return sorted(set(names))


def test_vendored_files_match_the_lockfile():
    assert _vendor_module().problems() == []
    manifest = json.loads((WEB / "vendor" / "MANIFEST.json").read_text())
    assert sorted(manifest) == page_vendor_imports()


def test_the_check_catches_a_changed_file(tmp_path, monkeypatch):
    mod = _vendor_module()
    copy = tmp_path / "vendor"
    shutil.copytree(WEB / "vendor", copy)
    (copy / "purify.js").write_bytes((copy / "purify.js").read_bytes() + b"\n// edited")
    monkeypatch.setattr(mod, "VENDOR", copy)
    assert mod.problems() == ["purify.js: missing or changed since it was vendored"]


def _build(cmd: str, src: Path, out: Path) -> Path:
    code = f"import setuptools.build_meta as b; print(b.{cmd}({str(out)!r}))"
    name = subprocess.run([sys.executable, "-c", code], cwd=src, check=True, capture_output=True,
                          text=True).stdout.strip().splitlines()[-1]
    return out / name


@pytest.mark.timeout(300)
def test_pip_installed_wheel_serves_the_full_ui(tmp_path):
    # A clean copy of the source (no node_modules, no venv): what an sdist build sees.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "node_modules", "test-artifacts", "build", "dist", "*.egg-info", "__pycache__",
        "tests", "bench", ".*cache"))
    dist = tmp_path / "dist"
    dist.mkdir()
    sdist = _build("build_sdist", src, dist)
    with tarfile.open(sdist) as tf:
        names = tf.getnames()
        assert not [n for n in names if "node_modules" in n]
        for name in page_vendor_imports():
            assert any(n.endswith(f"sluiceway/web/vendor/{name}") for n in names), name
        tf.extractall(tmp_path / "unpacked", filter="data")
    # The wheel is built from the sdist, as pip does for an sdist install.
    wheel = _build("build_wheel", tmp_path / "unpacked" / sdist.name.removesuffix(".tar.gz"), dist)
    with zipfile.ZipFile(wheel) as zf:
        assert {f"sluiceway/web/vendor/{n}" for n in page_vendor_imports()} <= set(zf.namelist())
        assert not [n for n in zf.namelist() if "node_modules" in n]

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    # Dependencies come from the main venv (nothing downloaded or compiled); the
    # fresh venv's own site-packages, with the installed wheel, comes first.
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    main_site = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(str(ROOT / ".venv")))
    Path(site, "zz_main_venv.pth").write_text(main_site + "\n")
    where = subprocess.run([str(py), "-c", "import sluiceway; print(sluiceway.__file__)"], cwd=tmp_path,
                           check=True, capture_output=True, text=True).stdout.strip()
    assert where.startswith(site), where  # the installed copy, not the checkout

    port = free_port()
    (tmp_path / "sluiceway.yaml").write_text(
        f"embedded: false\nstore:\n  url: sqlite+aiosqlite:///{tmp_path}/s.db\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICEWAY_")}
    proc = subprocess.Popen([str(venv / "bin" / "sluiceway"), "serve", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                page = urllib.request.urlopen(f"{base}/", timeout=5).read().decode()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert "<html" in page.lower()
        manifest = json.loads((WEB / "vendor" / "MANIFEST.json").read_text())
        for name in page_vendor_imports():
            with urllib.request.urlopen(f"{base}/vendor/{name}", timeout=5) as r:
                assert r.status == 200 and "javascript" in r.headers["content-type"]
                assert hashlib.sha256(r.read()).hexdigest() == manifest[name]["sha256"]
        markdown_js = urllib.request.urlopen(f"{base}/static/markdown.js", timeout=5).read().decode()
        assert "vendor(" in markdown_js
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0].decode()
    assert "web UI libraries missing" not in out


def test_startup_warns_when_the_ui_libraries_are_missing(tmp_path, monkeypatch, caplog):
    from sluiceway.server import web_routes

    web_routes.static()
    assert "web UI libraries missing" not in caplog.text
    monkeypatch.setattr(web_routes, "VENDOR_DIR", tmp_path)
    web_routes.static()
    assert "web UI libraries missing" in caplog.text and "marked.js, purify.js, highlight.js" in caplog.text
