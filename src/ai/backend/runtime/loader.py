"""Find the user's handler (``pkg.mod:attr``) and work out how to call it."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from .app import App


class HandlerKind(str, Enum):
    FUNCTION = "function"
    ASYNC_FUNCTION = "async_function"
    GENERATOR = "generator"
    ASYNC_GENERATOR = "async_generator"


class HandlerLoadError(Exception):
    """The handler reference cannot be imported or is not callable; the message says why."""


@dataclass(frozen=True)
class Invocable:
    """One callable with what the runtime needs to know to call it."""

    target: Callable[..., Any]
    kind: HandlerKind
    wants_context: bool
    input_type: type | None = None  # a dataclass the payload is turned into (models)


@dataclass(frozen=True)
class LoadedHandler:
    ref: str
    invocable: Invocable | None  # None when the reference is an App
    app: App | None

    @property
    def description(self) -> str:
        if self.app is not None:
            return "app"
        assert self.invocable is not None
        return self.invocable.kind.value


def classify(target: Callable[..., Any]) -> Invocable:
    """The kind of a callable and whether it takes ``ctx`` (a second positional parameter)."""
    # an instance of a handler class: its __call__ decides the kind
    function = target if inspect.isroutine(target) else type(target).__call__
    if inspect.isasyncgenfunction(function):
        kind = HandlerKind.ASYNC_GENERATOR
    elif inspect.iscoroutinefunction(function):
        kind = HandlerKind.ASYNC_FUNCTION
    elif inspect.isgeneratorfunction(function):
        kind = HandlerKind.GENERATOR
    else:
        kind = HandlerKind.FUNCTION
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return Invocable(target, kind, wants_context=False)
    positional = [
        p
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    has_varargs = any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values())
    wants_context = len(positional) >= 2 or (has_varargs and len(positional) < 2)
    input_type = None
    if positional:
        annotation = positional[0].annotation
        if isinstance(annotation, str):
            annotation = _resolve_annotation(target, annotation)
        if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
            input_type = annotation
    return Invocable(target, kind, wants_context, input_type)


def first_parameter_annotated(target: Callable[..., Any]) -> bool:
    """Whether the first positional parameter of ``target`` has a type annotation."""
    try:
        parameters = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return bool(positional) and positional[0].annotation is not inspect.Parameter.empty


def _resolve_annotation(target: Callable[..., Any], name: str) -> Any:
    module = sys.modules.get(getattr(target, "__module__", ""), None)
    return getattr(module, name, None) if module is not None else None


def load_handler(ref: str, pythonpath: Sequence[str] = ()) -> LoadedHandler:
    """Import ``module:attr`` (``attr`` may be dotted) with ``pythonpath`` prepended to
    ``sys.path``. A class is instantiated once (its ``__init__`` runs here); an :class:`App`
    serves its registered models."""
    module_name, sep, attr_path = ref.partition(":")
    if not sep or not module_name or not attr_path:
        raise HandlerLoadError(f"handler {ref!r} must look like 'package.module:attribute'")
    for entry in reversed(list(pythonpath)):
        path = str(Path(entry).resolve())
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise HandlerLoadError(f"cannot import {module_name!r}: {e}") from e
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise HandlerLoadError(f"{module_name!r} has no attribute {attr_path!r}") from None
    if isinstance(target, App):
        if not target.models:
            raise HandlerLoadError(f"app {ref!r} has no models registered")
        return LoadedHandler(ref, None, target)
    if inspect.isclass(target):
        try:
            target = target()
        except Exception as e:
            raise HandlerLoadError(f"creating {ref!r} failed: {type(e).__name__}: {e}") from e
    if not callable(target):
        raise HandlerLoadError(f"handler {ref!r} is not callable ({type(target).__name__})")
    return LoadedHandler(ref, classify(target), None)
