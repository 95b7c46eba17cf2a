"""Resource slots: exact decimal amounts of CPU, memory and (fractional) GPUs.

A :class:`ResourceSlot` is an immutable mapping from slot name to :class:`~decimal.Decimal`.
Missing slots count as zero, so ``{"cpu": 1}`` equals ``{"cpu": 1, "mem": 0}``. Ordering is the
*component-wise* partial order used by scheduling: ``a <= b`` means "``a`` fits in ``b``"; two
slots can be incomparable (neither fits in the other), so do not sort by it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from .units import parse_size

_ZERO = Decimal(0)


class SlotKind(StrEnum):
    COUNT = "count"  # a decimal amount, e.g. CPU cores
    BYTES = "bytes"  # a whole number of bytes, written as 512m / 2g
    DEVICE = "device"  # a whole number of devices
    SHARE = "share"  # a decimal fraction of devices (at most 1.0 of each device)


KNOWN_SLOTS: Mapping[str, SlotKind] = {
    "cpu": SlotKind.COUNT,
    "mem": SlotKind.BYTES,
    "cuda.device": SlotKind.DEVICE,
    "cuda.shares": SlotKind.SHARE,
}


def _to_decimal(name: str, value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected a number, got a boolean")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))  # 0.1 stays 0.1, not its binary approximation
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{name}: expected a number, got {value!r}") from None
    else:
        raise ValueError(f"{name}: expected a number, got {value!r}")
    if not number.is_finite():
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return number


def _parse_amount(name: str, value: Any) -> Decimal:
    kind = KNOWN_SLOTS.get(name)
    if kind is None:
        known = ", ".join(KNOWN_SLOTS)
        raise ValueError(f"unknown resource slot {name!r} (known: {known})")
    if kind is SlotKind.BYTES:
        try:
            number = Decimal(parse_size(value))
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
    else:
        number = _to_decimal(name, value)
    if number < 0:
        raise ValueError(f"{name}: must not be negative, got {value!r}")
    if kind is SlotKind.DEVICE and number != number.to_integral_value():
        raise ValueError(f"{name}: must be a whole number of devices, got {value!r}")
    return number


def _normalize(number: Decimal) -> str:
    text = format(number.normalize(), "f")
    return text


class ResourceSlot(Mapping[str, Decimal]):
    """An immutable, exact amount of resources. See the module docstring for the semantics."""

    __slots__ = ("_values",)

    _values: dict[str, Decimal]

    def __init__(self, values: Mapping[str, Decimal | int | str] | None = None) -> None:
        parsed: dict[str, Decimal] = {}
        for name, value in (values or {}).items():
            parsed[name] = value if isinstance(value, Decimal) else _to_decimal(name, value)
        object.__setattr__(self, "_values", parsed)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> ResourceSlot:
        """Read user input (``{"cpu": 1, "mem": "512m", "cuda.shares": 0.5}``), checking each
        slot name and value; raises ``ValueError`` naming the slot."""
        if not isinstance(data, Mapping):
            raise ValueError(f"expected a mapping of slot names to amounts, got {data!r}")
        return cls({str(name): _parse_amount(str(name), value) for name, value in data.items()})

    @classmethod
    def zero(cls) -> ResourceSlot:
        return cls()

    # Mapping protocol
    def __getitem__(self, name: str) -> Decimal:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def amount(self, name: str) -> Decimal:
        """The amount of ``name``; zero when absent."""
        return self._values.get(name, _ZERO)

    def _nonzero(self) -> dict[str, Decimal]:
        return {k: v for k, v in self._values.items() if v != 0}

    # arithmetic
    def __add__(self, other: ResourceSlot) -> ResourceSlot:
        if not isinstance(other, ResourceSlot):
            return NotImplemented
        names = self._values.keys() | other._values.keys()
        return ResourceSlot({n: self.amount(n) + other.amount(n) for n in names})

    def __sub__(self, other: ResourceSlot) -> ResourceSlot:
        if not isinstance(other, ResourceSlot):
            return NotImplemented
        names = self._values.keys() | other._values.keys()
        return ResourceSlot({n: self.amount(n) - other.amount(n) for n in names})

    def __mul__(self, factor: int | Decimal) -> ResourceSlot:
        if isinstance(factor, bool) or not isinstance(factor, int | Decimal):
            return NotImplemented
        return ResourceSlot({n: v * factor for n, v in self._values.items()})

    __rmul__ = __mul__

    def has_negative(self) -> bool:
        return any(v < 0 for v in self._values.values())

    def is_zero(self) -> bool:
        return not self._nonzero()

    # the component-wise partial order
    def fits_in(self, capacity: ResourceSlot) -> bool:
        """True when every amount here is at most the same amount of ``capacity``."""
        names = self._values.keys() | capacity._values.keys()
        return all(self.amount(n) <= capacity.amount(n) for n in names)

    def __le__(self, other: object) -> bool:
        if not isinstance(other, ResourceSlot):
            return NotImplemented
        return self.fits_in(other)

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, ResourceSlot):
            return NotImplemented
        return other.fits_in(self)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, ResourceSlot):
            return NotImplemented
        return self.fits_in(other) and self != other

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, ResourceSlot):
            return NotImplemented
        return other.fits_in(self) and self != other

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ResourceSlot):
            return NotImplemented
        return self._nonzero() == other._nonzero()

    def __hash__(self) -> int:
        return hash(frozenset(self._nonzero().items()))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("ResourceSlot is immutable")

    def __repr__(self) -> str:
        inner = ", ".join(f"{k!r}: {_normalize(v)}" for k, v in sorted(self._values.items()))
        return f"ResourceSlot({{{inner}}})"

    def to_json(self) -> dict[str, str]:
        """Exact string amounts, e.g. ``{"cpu": "1.5", "mem": "536870912"}``."""
        return {name: _normalize(value) for name, value in sorted(self._values.items())}

    # pydantic integration: a field annotated ``ResourceSlot`` parses user input and dumps JSON
    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def validate(value: Any) -> ResourceSlot:
            if isinstance(value, ResourceSlot):
                return value
            return cls.parse(value)

        return core_schema.no_info_plain_validator_function(
            validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda slot: slot.to_json(), when_used="json"
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "object",
            "additionalProperties": {"type": ["string", "number"]},
            "propertyNames": {"enum": list(KNOWN_SLOTS)},
        }
