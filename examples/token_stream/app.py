"""Streaming tokens, as a language model does. A generator handler: every ``yield`` is sent at
once as a *partial* result (a ``partial`` job event on the SSE stream, a progress notification
with the token as its message in MCP); the generator's ``return`` value is the job's result::

    ./backend.ai actor apply -f examples/token_stream/token-streamer.yaml
    ./backend.ai job run stream_tokens --arg 'text=the quick brown fox' --follow

``--follow`` prints each token as it arrives; an MCP client sees each as the message of a
progress notification. Here the "model" splits the text into words and takes
``seconds_per_token`` for each (the time a real model spends on a token). An ``async def``
generator works the same way (its last ``yield`` is then the result).
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any


def generate(payload: dict[str, Any]) -> Generator[dict[str, Any], None, dict[str, Any]]:
    words = str(payload["text"]).split()
    seconds_per_token = float(payload.get("seconds_per_token", 0.05))
    for word in words:
        time.sleep(seconds_per_token)  # the model at work
        yield {"token": word}
    return {"text": " ".join(words), "tokens": len(words)}
