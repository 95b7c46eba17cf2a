"""Call the manager's REST API with a signed request, using only the common signer (the client
SDK comes later). From the repository root:

    export BACKEND_ACCESS_KEY=… BACKEND_SECRET_KEY=…     # from `./backend.ai mgr keypair create`
    ./py examples/manager_api.py apply examples/specs/doubler.gpu-share.yaml
    ./py examples/manager_api.py GET /v1/actors/doubler
    ./py examples/manager_api.py POST /v1/actors/doubler/scale '{"replicas": 3}'
    ./py examples/manager_api.py replicas doubler      # one line per replica

``apply FILE`` reads a YAML spec, resolves a relative ``pythonpath`` against the file's folder
(the manager stores absolute paths) and sends ``PUT /v1/actors/{name}``. ``BACKEND_ENDPOINT``
defaults to http://127.0.0.1:8081. Prints the status and the JSON answer; exits 1 on a 4xx/5xx.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from ai.backend.common.auth.hmac_signing import sign_request


def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
    endpoint = os.environ.get("BACKEND_ENDPOINT", "http://127.0.0.1:8081").rstrip("/")
    data = b"" if body is None else json.dumps(body).encode()
    headers = sign_request(
        access_key=os.environ["BACKEND_ACCESS_KEY"],
        secret_key=os.environ["BACKEND_SECRET_KEY"],
        method=method,
        path_with_query=path,
        host=urlsplit(endpoint).netloc,
        content_type="application/json",
        body=data,
    )
    request = urllib.request.Request(endpoint + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else None


def spec_from_file(path: Path) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(path.read_text())
    folder = path.resolve().parent
    spec["pythonpath"] = [str((folder / p).resolve()) for p in spec.get("pythonpath", [])]
    return spec


def print_replicas(name: str) -> int:
    status, actor = call("GET", f"/v1/actors/{name}")
    if status != 200:
        print(status, json.dumps(actor))
        return 1
    print(
        f"{name}: generation {actor['generation']}, {actor['running_replicas']} running,"
        f" queue depth {actor['queue_depth']}"
    )
    for r in actor["replicas"]:
        devices = ",".join(r["device_ids"]) or "-"
        print(
            f"  {r['id']:<22} {r['status']:<11} agent={r['agent_id']} devices={devices}"
            f" slots={json.dumps(r['slots'])}"
        )
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "replicas":
        return print_replicas(argv[1])
    if len(argv) == 2 and argv[0] == "apply":
        spec = spec_from_file(Path(argv[1]))
        status, answer = call("PUT", f"/v1/actors/{spec['name']}", spec)
    elif len(argv) in (2, 3):
        body = json.loads(argv[2]) if len(argv) == 3 else None
        status, answer = call(argv[0].upper(), argv[1], body)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print(status)
    print(json.dumps(answer, indent=2))
    return 0 if status < 400 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
