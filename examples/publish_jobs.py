"""Publish jobs straight onto an actor's stream and wait for their ends (the gateway's jobs API
comes later). From the repository root, with Redis at ``BACKEND_REDIS__URL`` (default
redis://127.0.0.1:6379/0) and the key prefix ``BACKEND_REDIS__PREFIX`` (default ``bai:``):

    ./py examples/publish_jobs.py doubler 5          # {"value": 0} … {"value": 4} to doubler
    ./py examples/publish_jobs.py doubler 5 --no-wait   # publish only; the results come later
    ./py examples/publish_jobs.py --results          # every job's end so far

Each job's payload is ``{"value": i}``; its end is read from the job events stream
(``bai:events``), so a job that ends twice would show twice.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from typing import Any

import orjson
import redis

from ai.backend.common.dto.envelope import Envelope, Route

TERMINAL = ("succeeded", "failed", "cancelled")


def ends(client: redis.Redis, prefix: str) -> list[dict[str, Any]]:
    entries: Any = client.xrange(f"{prefix}events")
    events = [orjson.loads(fields[b"ev"]) for _id, fields in entries]
    return [e for e in events if e["kind"] in TERMINAL]


def describe(end: dict[str, Any]) -> str:
    """``succeeded {"value":2}`` / ``failed {…error…}``."""
    detail = end.get("result") if end["kind"] == "succeeded" else end.get("error")
    return f"{end['kind']} {orjson.dumps(detail).decode()}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("actor", nargs="?")
    parser.add_argument("count", nargs="?", type=int, default=1)
    parser.add_argument("--no-wait", action="store_true", help="publish and return")
    parser.add_argument("--results", action="store_true", help="print every job's end so far")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    client = redis.Redis.from_url(os.environ.get("BACKEND_REDIS__URL", "redis://127.0.0.1:6379/0"))
    prefix = os.environ.get("BACKEND_REDIS__PREFIX", "bai:")
    if args.results or args.actor is None:
        for finished in ends(client, prefix):
            print(f"job {finished['job_id']}: {describe(finished)}")
        return 0
    jobs = {}
    for i in range(args.count):
        job_id = uuid.uuid4().hex
        envelope = Envelope(job_id=job_id, route=Route(actors=[args.actor]), payload={"value": i})
        client.xadd(f"{prefix}actor:{args.actor}", {"e": envelope.to_json_bytes()})
        jobs[job_id] = i
    print(f"published {args.count} job(s) to {args.actor}")
    if args.no_wait:
        return 0
    deadline = time.monotonic() + args.timeout
    seen: dict[str, dict[str, Any]] = {}
    while len(seen) < len(jobs) and time.monotonic() < deadline:
        seen = {e["job_id"]: e for e in ends(client, prefix) if e["job_id"] in jobs}
        time.sleep(0.1)
    for job_id, i in jobs.items():
        outcome = describe(seen[job_id]) if job_id in seen else "still running"
        print(f'job {i} ({{"value": {i}}}): {outcome}')
    return 0 if len(seen) == len(jobs) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
