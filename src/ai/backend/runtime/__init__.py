"""In-replica server that loads a user handler and speaks the frame protocol (DESIGN.md §4.3).

Depends only on the standard library (plus optional orjson / uvloop) so that it can run inside
any model image. What handler authors import from here: :class:`App` (KServe-style model
registry), :class:`Context` (the optional second parameter of a handler), and the KServe v2
types of model handlers (:class:`InferRequest`, :class:`InferResponse`, ...).
"""

from .app import App, ModelInfo
from .context import Context
from .inference import (
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    InvalidInferRequest,
    RequestedOutput,
)

__all__ = [
    "App",
    "Context",
    "InferInput",
    "InferOutput",
    "InferRequest",
    "InferResponse",
    "InvalidInferRequest",
    "ModelInfo",
    "RequestedOutput",
]
