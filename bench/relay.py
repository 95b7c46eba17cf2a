"""The floor of bench/pipeline.py: a minimal hand-written Redis Streams relay.

Reads its inbox with XREADGROUP, decodes each envelope, points it at the next stream and writes
it there, acknowledging in the same pipeline; the last relay writes a ``succeeded`` event. No
runtime, no validation, no retries: what a hop costs at the least.

    python bench/relay.py --prefix P --inbox a --outbox b        (a relay)
    python bench/relay.py --prefix P --inbox c --events          (the last hop)
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError


async def relay(args: argparse.Namespace) -> None:
    redis = Redis.from_url(args.redis, decode_responses=False)
    inbox = f"{args.prefix}actor:{args.inbox}"
    try:
        await redis.xgroup_create(inbox, args.inbox, id="0", mkstream=True)
    except ResponseError:
        pass
    await redis.xgroup_createconsumer(inbox, args.inbox, "relay")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    while not stop.is_set():
        response: Any = await redis.xreadgroup(
            args.inbox, "relay", {inbox: ">"}, count=256, block=500
        )
        for _stream, entries in response or ():
            async with redis.pipeline(transaction=True) as pipe:
                for entry_id, fields in entries:
                    envelope = orjson.loads(fields[b"e"])
                    if args.events:
                        event = {"job_id": envelope["job_id"], "kind": "succeeded"}
                        pipe.xadd(f"{args.prefix}events", {b"ev": orjson.dumps(event)})
                    else:
                        envelope["route"]["current"] += 1
                        pipe.xadd(
                            f"{args.prefix}actor:{args.outbox}", {b"e": orjson.dumps(envelope)}
                        )
                    pipe.xack(inbox, args.inbox, entry_id)
                await pipe.execute()
    await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--inbox", required=True)
    parser.add_argument("--outbox")
    parser.add_argument("--events", action="store_true")
    asyncio.run(relay(parser.parse_args()))


if __name__ == "__main__":
    main()
