from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import BaseModel, ValidationError

from ai.backend.common.types.slots import ResourceSlot


def test_user_input_is_parsed_exactly() -> None:
    slot = ResourceSlot.parse({"cpu": 0.1, "mem": "512m", "cuda.shares": "0.25"})
    assert slot["cpu"] == Decimal("0.1")
    assert slot["mem"] == Decimal(512 * 1024**2)
    assert slot["cuda.shares"] == Decimal("0.25")
    assert slot.to_json() == {"cpu": "0.1", "cuda.shares": "0.25", "mem": "536870912"}


def test_decimal_addition_has_no_float_error() -> None:
    total = ResourceSlot.zero()
    for _ in range(10):
        total = total + ResourceSlot.parse({"cpu": 0.1})
    assert total == ResourceSlot.parse({"cpu": 1})
    assert total.to_json() == {"cpu": "1"}


def test_add_and_subtract_union_the_slot_names() -> None:
    a = ResourceSlot.parse({"cpu": 2, "mem": "1g"})
    b = ResourceSlot.parse({"cpu": "0.5", "cuda.device": 1})
    assert (a + b).to_json() == {"cpu": "2.5", "cuda.device": "1", "mem": "1073741824"}
    assert (a - b).to_json() == {"cpu": "1.5", "cuda.device": "-1", "mem": "1073741824"}
    assert (a - b).has_negative()
    assert not (a + b).has_negative()


def test_multiplication_by_replica_count() -> None:
    per_replica = ResourceSlot.parse({"cpu": "0.5", "cuda.shares": "0.25"})
    assert (per_replica * 4).to_json() == {"cpu": "2", "cuda.shares": "1"}
    assert (3 * per_replica).to_json() == {"cpu": "1.5", "cuda.shares": "0.75"}


def test_missing_slots_count_as_zero() -> None:
    assert ResourceSlot.parse({"cpu": 1}) == ResourceSlot.parse({"cpu": 1, "mem": 0})
    assert hash(ResourceSlot.parse({"cpu": 1})) == hash(ResourceSlot.parse({"cpu": 1, "mem": 0}))
    assert ResourceSlot.parse({"cpu": 1}).amount("cuda.device") == Decimal(0)
    assert ResourceSlot.zero().is_zero()


def test_fits_in_is_component_wise() -> None:
    capacity = ResourceSlot.parse({"cpu": 4, "mem": "8g", "cuda.device": 2})
    assert ResourceSlot.parse({"cpu": 4, "mem": "8g"}).fits_in(capacity)
    assert ResourceSlot.parse({"cpu": 1, "cuda.device": 2}) <= capacity
    assert not ResourceSlot.parse({"cpu": 1, "cuda.device": 3}).fits_in(capacity)
    assert not ResourceSlot.parse({"cuda.shares": "0.5"}).fits_in(capacity)


def test_comparisons_are_a_partial_order() -> None:
    small = ResourceSlot.parse({"cpu": 1})
    large = ResourceSlot.parse({"cpu": 2, "mem": "1g"})
    cpu_heavy = ResourceSlot.parse({"cpu": 8})
    assert small < large
    assert large > small
    assert large >= large and large <= large
    assert not large < large
    # neither fits in the other
    assert not (cpu_heavy <= large) and not (large <= cpu_heavy)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"gpu": 1}, "unknown resource slot 'gpu' (known: cpu, mem, cuda.device, cuda.shares)"),
        ({"cuda.device": 0.5}, "cuda.device: must be a whole number of devices, got 0.5"),
        ({"cpu": -1}, "cpu: must not be negative, got -1"),
        ({"cpu": "lots"}, "cpu: expected a number, got 'lots'"),
        ({"cpu": True}, "cpu: expected a number, got a boolean"),
        ({"mem": "12q"}, "mem: invalid size '12q'"),
        ({"cpu": "NaN"}, "cpu: expected a finite number"),
    ],
)
def test_bad_slots_name_the_slot(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as info:
        ResourceSlot.parse(data)
    assert message in str(info.value)


def test_slots_are_immutable() -> None:
    slot = ResourceSlot.parse({"cpu": 1})
    with pytest.raises(AttributeError, match="immutable"):
        slot._values = {}


class _HasSlots(BaseModel):
    slots: ResourceSlot


def test_pydantic_fields_parse_and_dump_json() -> None:
    model = _HasSlots.model_validate({"slots": {"cpu": 2, "mem": "1g"}})
    assert model.slots == ResourceSlot.parse({"cpu": 2, "mem": 1024**3})
    assert model.model_dump(mode="json") == {"slots": {"cpu": "2", "mem": "1073741824"}}
    assert _HasSlots.model_validate_json(model.model_dump_json()).slots == model.slots


def test_pydantic_field_errors_name_field_and_slot() -> None:
    with pytest.raises(ValidationError) as info:
        _HasSlots.model_validate({"slots": {"cuda.device": "1.5"}})
    error = info.value.errors()[0]
    assert error["loc"] == ("slots",)
    assert "cuda.device: must be a whole number of devices, got '1.5'" in error["msg"]
