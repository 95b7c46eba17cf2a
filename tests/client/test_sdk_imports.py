"""The SDK imports only ``ai.backend.common`` of the platform (and third-party libraries),
never a service package: a fresh interpreter imports every module of ``ai.backend.client``
(its CLI, ``ai.backend.client.cli``, aside) and lists what came along."""

from __future__ import annotations

import json
import subprocess
import sys

import ai.backend.client  # noqa: F401  (what the child imports: Pants packs it with this)
from ai.backend.testutils.spawn import child_environment

SERVICES = ("manager", "agent", "gateway", "sidecar", "runtime", "cli")
CHILD = f"""
import importlib, json, pathlib, sys
import ai.backend.client as client
root = pathlib.Path(client.__file__).parent
modules = sorted(
    "ai.backend.client." + ".".join(path.relative_to(root).with_suffix("").parts)
    for path in root.rglob("*.py")
    if path.relative_to(root).parts[0] != "cli"
)
for module in modules:
    importlib.import_module(module.removesuffix(".__init__"))
services = {SERVICES!r}
loaded = sorted(m for m in sys.modules if m.startswith("ai.backend.") and m.count(".") >= 2)
print(json.dumps({{
    "modules": modules,
    "services": [m for m in loaded if m.split(".")[2] in services],
}}))
"""


def test_the_sdk_imports_no_service_package() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        env=child_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert {
        "ai.backend.client.session",
        "ai.backend.client.sync_session",
        "ai.backend.client.dev_stack",
        "ai.backend.client.func.actors",
        "ai.backend.client.func.jobs",
        "ai.backend.client.func.admin",
    } <= set(found["modules"])
    assert found["services"] == []
