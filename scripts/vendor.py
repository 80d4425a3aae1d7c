#!/usr/bin/env python3
"""Refresh (or, with --check, verify) the Socket.IO client that ships inside the package.

The pages import `/vendor/socket.io.esm.min.js`; the file lives in
telemed/web/static/vendor/ with its LICENSE, so an installed wheel serves every page with
no Node.js. `vendor.json` pins it: the npm package's version and integrity exactly as
package-lock.json has them (`npm ci` checks the downloaded tarball against that integrity)
and the SHA-256 of each file copied. Run after changing socket.io-client in package.json:

    npm ci && python3 scripts/vendor.py          # copy from node_modules, write vendor.json
    python3 scripts/vendor.py --check            # exit 1 when anything disagrees
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "socket.io-client"
FILES = {  # name served under /vendor/ -> path inside the npm package
    "socket.io.esm.min.js": "dist/socket.io.esm.min.js",
    "socket.io.esm.min.js.map": "dist/socket.io.esm.min.js.map",
    "LICENSE": "LICENSE",
}
VENDOR = ROOT / "telemed" / "web" / "static" / "vendor"
MANIFEST = VENDOR / "vendor.json"
INSTALLED = ROOT / "node_modules" / PACKAGE


def locked() -> dict[str, str]:
    """socket.io-client's version and integrity in package-lock.json."""
    lock = json.loads((ROOT / "package-lock.json").read_text())
    entry = lock["packages"][f"node_modules/{PACKAGE}"]
    return {"package": PACKAGE, "version": entry["version"], "integrity": entry["integrity"]}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refresh() -> None:
    pin = locked()
    installed = json.loads((INSTALLED / "package.json").read_text())["version"]
    if installed != pin["version"]:
        sys.exit(f"node_modules has {PACKAGE} {installed}, the lock {pin['version']}: npm ci")
    VENDOR.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, inside in FILES.items():
        shutil.copyfile(INSTALLED / inside, VENDOR / name)
        files[name] = sha256(VENDOR / name)
    MANIFEST.write_text(json.dumps({**pin, "files": files}, indent=2) + "\n")
    print(f"vendored {PACKAGE} {pin['version']} into {VENDOR.relative_to(ROOT)}")


def problems() -> list[str]:
    """Everything that disagrees between vendor.json, package-lock.json, the files and (when
    installed) node_modules."""
    found = []
    manifest = json.loads(MANIFEST.read_text())
    pin = locked()
    for key in ("package", "version", "integrity"):
        if manifest.get(key) != pin[key]:
            found.append(
                f"vendor.json {key} {manifest.get(key)!r} is not package-lock's {pin[key]!r}"
            )
    if set(manifest.get("files", {})) != set(FILES):
        found.append(
            f"vendor.json lists {sorted(manifest.get('files', {}))}, expected {sorted(FILES)}"
        )
    for name, digest in manifest.get("files", {}).items():
        path = VENDOR / name
        if not path.is_file() or sha256(path) != digest:
            found.append(f"{path.relative_to(ROOT)} does not match its SHA-256 in vendor.json")
        elif INSTALLED.is_dir() and name in FILES and sha256(INSTALLED / FILES[name]) != digest:
            found.append(f"{name} differs from node_modules/{PACKAGE}/{FILES[name]}")
    return found


def main() -> None:
    if sys.argv[1:] == ["--check"]:
        found = problems()
        for problem in found:
            print(problem, file=sys.stderr)
        sys.exit(1 if found else 0)
    if sys.argv[1:]:
        sys.exit(__doc__)
    refresh()


if __name__ == "__main__":
    main()
