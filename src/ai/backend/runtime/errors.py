"""Turn a handler's exception into the error fields of a ``result`` frame (DESIGN.md §4.3)."""

from __future__ import annotations

import sys
import traceback
from typing import Any

OOM_RETRY_AFTER = 30
CUDA_OOM_RETRY_AFTER = 60


def _is_cuda_oom(exc: BaseException) -> bool:
    kind = type(exc)
    if kind.__name__ == "OutOfMemoryError" and kind.__module__.startswith("torch"):
        return True
    return "CUDA out of memory" in str(exc)


def _empty_cuda_cache() -> None:
    torch = sys.modules.get("torch")  # only if the handler imported it: no CUDA memory otherwise
    if torch is None:
        return
    try:
        torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort; the error report matters more
        pass


def error_fields(exc: BaseException) -> dict[str, Any]:
    """``error``, ``message``, ``exc_type``, ``exc_mro``, ``traceback``, ``severity`` and, for
    recoverable errors, ``retry_after`` (seconds)."""
    kind = type(exc)
    fields: dict[str, Any] = {
        "message": str(exc) or kind.__name__,
        "exc_type": kind.__name__,
        # the sidecar matches retry.non_retryable along the class's MRO by name
        "exc_mro": [cls.__name__ for cls in kind.__mro__ if cls not in (object, BaseException)],
        "traceback": "".join(traceback.format_exception(exc)),
    }
    if isinstance(exc, MemoryError):
        fields.update(error="oom_error", severity="recoverable", retry_after=OOM_RETRY_AFTER)
    elif _is_cuda_oom(exc):
        _empty_cuda_cache()
        fields.update(
            error="cuda_oom_error", severity="recoverable", retry_after=CUDA_OOM_RETRY_AFTER
        )
    else:
        fields.update(error="processing_error", severity="fatal")
    return fields


def failed_result(call_id: Any, code: str, message: str) -> dict[str, Any]:
    """A ``result`` frame for a call that failed outside its handler (not retried)."""
    return {
        "type": "result",
        "id": call_id,
        "status": "error",
        "error": code,
        "message": message,
        "severity": "fatal",
    }
