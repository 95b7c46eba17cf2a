"""Where the tests' PostgreSQL and Redis are (``POSTGRES_HOST/PORT/USER``, ``REDIS_HOST/PORT``,
defaulting to the loopback services of a developer machine), and unique names for isolation."""

from __future__ import annotations

import os
import uuid


def unique_name(prefix: str) -> str:
    """``prefix`` + 12 random hex digits: a database name or key prefix no other test uses."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def redis_url(db: int = 0) -> str:
    host = os.environ.get("REDIS_HOST", "127.0.0.1")
    port = os.environ.get("REDIS_PORT", "6379")
    return f"redis://{host}:{port}/{db}"


def postgres_url(database: str) -> str:
    host = os.environ.get("POSTGRES_HOST", "127.0.0.1")
    port = os.environ.get("POSTGRES_PORT", "5432")
    user = os.environ.get("POSTGRES_USER", "postgres")
    return f"postgresql+asyncpg://{user}@{host}:{port}/{database}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
