#!/usr/bin/env python3
"""Vendor the web UI's browser libraries into ``sluiceway/web/vendor/`` from
``sluiceway/web/package-lock.json``, or check that the vendored files still match it.

    python scripts/vendor_web.py          # fetch the locked tarballs (npm pack), verify, extract
    python scripts/vendor_web.py --check  # offline: vendored files == manifest == lockfile

Update: bump the version in package.json, ``npm install --prefix sluiceway/web``
(rewrites the lockfile), run this script, commit ``sluiceway/web/vendor/``.

Why committed files rather than a build-time npm step: a wheel or sdist must be
buildable (and pip-installable from the sdist) on a machine with no Node and no
network. The integrity check happens here instead: each tarball's sha512 must
equal the lockfile's ``integrity`` before a byte of it is used, and
``vendor/MANIFEST.json`` records the lockfile entry and each file's sha256 so
``--check`` (a test) catches a hand-edited file or a lockfile bump without a
re-vendor.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

WEB = Path(__file__).resolve().parent.parent / "sluiceway" / "web"
VENDOR = WEB / "vendor"
LOCK = WEB / "package-lock.json"

# served name -> (npm package, file inside the package, licence files kept alongside)
FILES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "marked.js": ("marked", "lib/marked.esm.js", ("LICENSE",)),
    "purify.js": ("dompurify", "dist/purify.es.mjs", ("LICENSE", "LICENSE-MPL")),
    "highlight.js": ("@highlightjs/cdn-assets", "es/highlight.min.js", ("LICENSE",)),
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def locked(package: str) -> dict:
    entry = json.loads(LOCK.read_text())["packages"].get(f"node_modules/{package}")
    if not entry:
        raise SystemExit(f"vendor: {package} is not in {LOCK}")
    return entry


def check_integrity(tarball: bytes, integrity: str) -> None:
    algo, _, want = integrity.partition("-")
    got = base64.b64encode(hashlib.new(algo, tarball).digest()).decode()
    if got != want:
        raise SystemExit(f"vendor: tarball {algo} {got} does not match the lockfile's {want}")


def vendor() -> None:
    VENDOR.mkdir(exist_ok=True)
    manifest: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (package, inner, licences) in FILES.items():
            entry = locked(package)
            spec = f"{package}@{entry['version']}"
            out = subprocess.run(["npm", "pack", spec, "--json", "--pack-destination", tmp, "--prefer-offline"],
                                 check=True, capture_output=True, text=True).stdout
            tarball = (Path(tmp) / json.loads(out)[0]["filename"]).read_bytes()
            check_integrity(tarball, entry["integrity"])
            with tarfile.open(fileobj=io.BytesIO(tarball)) as tf:
                data = tf.extractfile(f"package/{inner}").read()  # type: ignore[union-attr]
                (VENDOR / name).write_bytes(data)
                licence_names = []
                for lic in licences:
                    member = next(m for m in tf.getnames() if m.lower() == f"package/{lic}".lower())
                    target = f"{Path(name).stem}.{Path(member).name}"
                    (VENDOR / target).write_bytes(tf.extractfile(member).read())  # type: ignore[union-attr]
                    licence_names.append(target)
            manifest[name] = {"package": package, "version": entry["version"], "integrity": entry["integrity"],
                              "file": inner, "sha256": sha256(data), "licences": licence_names}
            print(f"vendor: {name} <- {spec}/{inner} ({len(data)} bytes)")
    (VENDOR / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")


def problems() -> list[str]:
    """Why the vendored files do not match the lockfile (empty when they do)."""
    try:
        manifest = json.loads((VENDOR / "MANIFEST.json").read_text())
    except FileNotFoundError:
        return ["sluiceway/web/vendor/MANIFEST.json is missing"]
    out = []
    for name, (package, inner, _) in FILES.items():
        rec = manifest.get(name)
        if rec is None:
            out.append(f"{name}: not in the manifest")
            continue
        entry = locked(package)
        if (rec["package"], rec["version"], rec["integrity"], rec["file"]) != \
                (package, entry["version"], entry["integrity"], inner):
            out.append(f"{name}: manifest says {rec['package']}@{rec['version']}, lockfile {entry['version']}")
        path = VENDOR / name
        if not path.is_file() or sha256(path.read_bytes()) != rec["sha256"]:
            out.append(f"{name}: missing or changed since it was vendored")
        for lic in rec.get("licences", []):
            if not (VENDOR / lic).is_file():
                out.append(f"{name}: licence file {lic} missing")
        # npm ci verified node_modules against the same lockfile: when present, it must agree too
        installed = WEB / "node_modules" / package / inner
        if installed.is_file() and sha256(installed.read_bytes()) != rec["sha256"]:
            out.append(f"{name}: differs from node_modules/{package}/{inner}")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="verify only (offline); exit 1 on any mismatch")
    if not p.parse_args().check:
        vendor()
    bad = problems()
    for line in bad:
        print(f"vendor: {line}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
