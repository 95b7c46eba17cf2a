"""Start a runtime: the code behind ``./backend.ai runtime run`` and ``python -m
ai.backend.runtime`` (the latter for images without click)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ai.backend.common.framing import DEFAULT_MAX_FRAME

from .loader import HandlerLoadError, load_handler
from .server import RuntimeServer, run

EXIT_BAD_HANDLER = 3


def start(
    *,
    handler: str,
    socket_path: Path,
    pythonpath: Sequence[str] = (),
    concurrency: int = 1,
    max_frame: int = DEFAULT_MAX_FRAME,
    log_level: str = "INFO",
    exit_when_stuck: float | None = None,
) -> int:
    """Load the handler and serve until SIGTERM / SIGINT; returns the exit status."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    try:
        loaded = load_handler(handler, pythonpath)
    except HandlerLoadError as e:
        print(f"runtime: {e}", file=sys.stderr)
        return EXIT_BAD_HANDLER
    run(
        RuntimeServer(
            loaded,
            socket_path=socket_path,
            concurrency=concurrency,
            max_frame=max_frame,
            exit_when_stuck=exit_when_stuck,
        )
    )
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ai.backend.runtime", description="Serve a handler on a Unix socket."
    )
    parser.add_argument("--handler", required=True, help="package.module:attribute")
    parser.add_argument("--socket", required=True, type=Path, help="Unix socket path")
    parser.add_argument("--pythonpath", action="append", default=[], help="repeatable")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--max-frame", type=int, default=DEFAULT_MAX_FRAME, help="bytes")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--exit-when-stuck",
        type=float,
        default=None,
        metavar="SECONDS",
        help="exit (status 4) when a sync handler still runs this long after its call was"
        " cancelled, so that a supervisor restarts the runtime",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.concurrency < 1:
        print("runtime: --concurrency must be at least 1", file=sys.stderr)
        return 2
    return start(
        handler=args.handler,
        socket_path=args.socket,
        pythonpath=args.pythonpath,
        concurrency=args.concurrency,
        max_frame=args.max_frame,
        log_level=args.log_level,
        exit_when_stuck=args.exit_when_stuck,
    )
