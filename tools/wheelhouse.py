"""Fill a local wheelhouse with plain pip, so that Pants/pex never needs an index and the
lockfiles name no download host (their URLs read file://${WHEELHOUSE}/<file>).

Usage (./pants runs it before every Pants command):
  python3.11 tools/wheelhouse.py WHEELHOUSE [--from-requirements]

* always: download exactly what every lockfile of [python.resolves] pins, if missing;
* --from-requirements (before `generate-lockfiles`): download, newest matching and with their
  dependencies, every requirements file; one pip run per file, since resolves are independent.
pip runs with the machine's own configuration (index-url, extra-index-url, find-links).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from pip._vendor.packaging.requirements import Requirement  # pip is there: we run it anyway
from pip._vendor.packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENT_FILES = [
    ROOT / "requirements.txt",
    *sorted(ROOT.glob("tools/*-requirements.txt")),
    *sorted(ROOT.glob("tests/*/clients/*-requirements.txt")),  # test-only client resolves
]
# what pex needs to bootstrap [python].pip_version = "23.1.2" (pex 2.1.137's pins)
PIP_BOOTSTRAP = ["pip==23.1.2", "setuptools==67.7.2", "wheel==0.40.0"]
# Pants 2.17 makes *universal* locks (--target-system linux and mac, any Python implementation,
# any 3.11.x patch level), so dependencies behind markers that are false here (appnope;
# sys_platform == "darwin", async-timeout; python_full_version < "3.11.3", ...) must be in the
# wheelhouse too: pip skips them.
PYVER = f"{sys.version_info[0]}.{sys.version_info[1]}"
MAC_PLATFORMS = [f"--platform=macosx_11_0_{a}" for a in ("arm64", "x86_64", "universal2")]
_BASE = {"os_name": "posix", "python_version": PYVER, "extra": ""}
_PATCH = [{"python_full_version": f"{PYVER}.{n}"} for n in (0, 99)]
_DARWIN = {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64"}
_LINUX = {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64"}
_CPY = {"implementation_name": "cpython", "platform_python_implementation": "CPython"}
_PYPY = {"implementation_name": "pypy", "platform_python_implementation": "PyPy"}
OTHER_ENVS = [
    {**_BASE, **v, **o, **i} for v in _PATCH for o in (_DARWIN, _LINUX) for i in (_CPY, _PYPY)
]


def pip_download(wheelhouse: Path, *args: str, check: bool = True) -> bool:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--only-binary=:all:",
        "-d",
        str(wheelhouse),
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)  # pip -q still prints WARNINGs
    if proc.returncode != 0 and check:
        sys.exit(f"[wheelhouse] failed: {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    return proc.returncode == 0


def dist_names(wheelhouse: Path) -> set[str]:
    return {canonicalize_name(p.name.split("-")[0]) for p in wheelhouse.glob("*.whl")}


def marker_only_requirements(wheelhouse: Path) -> list[str]:
    have, missing = dist_names(wheelhouse), set()
    for whl in wheelhouse.glob("*.whl"):
        with zipfile.ZipFile(whl) as zf:
            meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            lines = zf.read(meta).decode("utf-8", "replace").splitlines()
        for line in lines:
            if not line.startswith("Requires-Dist:"):
                continue
            req = Requirement(line.split(":", 1)[1].strip())
            if (
                req.marker
                and not req.marker.evaluate({"extra": ""})
                and any(req.marker.evaluate(env) for env in OTHER_ENVS)
                and canonicalize_name(req.name) not in have
            ):
                missing.add(f"{req.name}{req.specifier}")
    return sorted(missing)


def locked_pins(wheelhouse: Path) -> list[str]:
    resolves = tomllib.loads((ROOT / "pants.toml").read_text())["python"]["resolves"]
    have = {p.name for p in wheelhouse.iterdir()}
    missing = set()
    for lock in resolves.values():
        path = ROOT / lock
        if not path.exists():
            continue
        text = path.read_text()
        data = json.loads(text[text.index("\n{") + 1 :])  # skip the // header
        for resolve in data["locked_resolves"]:
            for req in resolve["locked_requirements"]:
                if not {a["url"].rsplit("/", 1)[-1] for a in req["artifacts"]} & have:
                    missing.add(f"{req['project_name']}=={req['version']}")
    return sorted(missing)


def main() -> None:
    wheelhouse = Path(sys.argv[1])
    wheelhouse.mkdir(parents=True, exist_ok=True)
    have = {p.name.split("-")[0] + "==" + p.name.split("-")[1] for p in wheelhouse.glob("*.whl")}
    todo = [r for r in PIP_BOOTSTRAP if r not in have]
    if "--from-requirements" in sys.argv:
        for req_file in REQUIREMENT_FILES:
            print(f"[wheelhouse] pip download -r {req_file.relative_to(ROOT)}", file=sys.stderr)
            pip_download(wheelhouse, "-r", str(req_file))
        while extra := marker_only_requirements(wheelhouse):
            print(f"[wheelhouse] marker-only deps: {' '.join(extra)}", file=sys.stderr)
            for req in extra:  # with its deps; a mac-only one (pyobjc-*) has no Linux wheel
                if not pip_download(wheelhouse, req, check=False):
                    pip_download(wheelhouse, f"--python-version={PYVER}", *MAC_PLATFORMS, req)
    todo += locked_pins(wheelhouse)
    for batch in one_version_each(todo):  # pip refuses two versions of a project in one call
        print(f"[wheelhouse] pip download --no-deps {' '.join(batch)}", file=sys.stderr)
        pip_download(wheelhouse, "--no-deps", *batch)


def one_version_each(pins: list[str]) -> list[list[str]]:
    """Split ``name==version`` pins into batches that name each project at most once (two
    resolves may lock different versions of one project)."""
    batches: list[dict[str, str]] = []
    for pin in pins:
        name = canonicalize_name(pin.split("==", 1)[0])
        batch = next((b for b in batches if name not in b), None)
        if batch is None:
            batch = {}
            batches.append(batch)
        batch[name] = pin
    return [list(b.values()) for b in batches]


if __name__ == "__main__":
    main()
