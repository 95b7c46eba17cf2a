"""Request-reply (DESIGN.md §4.1, §4.2): the final outcome of an envelope whose headers carry
``reply-to: <address>`` goes to the reply stream ``bai:reply:{address}`` (one per gateway
run) as a terminal job event, written in the same commit that acknowledges the envelope (at
least once).

Where the reply is written: an envelope that also says ``events: off`` (untracked request-reply
traffic, e.g. KServe inference) and ends without a fan-out is answered by the sidecar of the actor
where it ends, success or failure, instead of travelling on to the crew: that saves the crew's
hop (a stream read, a branch-ending script and its job keys) on every request. Fan-out children
and envelopes of tracked jobs go through the crew as usual.
"""

from __future__ import annotations

from typing import Any

from ai.backend.common import json as wire_json
from ai.backend.common.dto.envelope_wire import WireEnvelope
from ai.backend.common.transport.base import Reply
from ai.backend.common.transport.redis_streams import now_iso


def answered_here(envelope: WireEnvelope) -> str | None:
    """The gateway to answer when ``envelope`` ends at this actor, if this sidecar answers it
    (``reply-to`` and ``events: off``, not a fan-out child); else ``None``."""
    if envelope.branch or not envelope.events_off:
        return None
    return envelope.reply_to


def succeeded_reply(gateway_id: str, envelope: WireEnvelope, actor: str, result: Any) -> Reply:
    """The reply of an envelope whose route ended at ``actor`` with ``result``."""
    event = _head(envelope, actor, "succeeded")
    event["result"] = result
    return Reply(gateway_id, wire_json.dumps(event))


def failed_reply(
    gateway_id: str, envelope: WireEnvelope, actor: str, error: dict[str, Any]
) -> Reply:
    """The reply of an envelope that failed for good at ``actor``."""
    event = _head(envelope, actor, "failed")
    event["error"] = error
    return Reply(gateway_id, wire_json.dumps(event))


def _head(envelope: WireEnvelope, actor: str, kind: str) -> dict[str, Any]:
    return {
        "job_id": envelope.job_key,
        "envelope_id": envelope.id,
        "kind": kind,
        "actor": actor,
        "attempt": envelope.attempt,
        "at": now_iso(),
    }
