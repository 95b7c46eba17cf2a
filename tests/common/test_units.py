from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from ai.backend.common.types.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512m", 512 * 1024**2),
        ("2g", 2 * 1024**3),
        ("2G", 2 * 1024**3),
        ("512MiB", 512 * 1024**2),
        ("1.5k", 1536),
        ("100", 100),
        (4096, 4096),
        (" 1t ", 1024**4),
    ],
)
def test_sizes_parse_as_binary_units(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("12x", "invalid size '12x': expected bytes or a number with a k/m/g/t/p suffix"),
        ("-1m", "invalid size '-1m'"),
        ("0.3", "invalid size '0.3': not a whole number of bytes"),
        (-5, "size must not be negative, got -5"),
        (True, "got a boolean"),
    ],
)
def test_bad_sizes_are_rejected_with_the_value(text: str | int, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_size(text)
    assert message in str(info.value)


def test_sizes_format_to_the_shortest_exact_unit() -> None:
    assert format_size(512 * 1024**2) == "512m"
    assert format_size(1536) == "1536"
    assert format_size(3 * 1024**3) == "3g"
    assert format_size(0) == "0"
    assert parse_size(format_size(1536)) == 1536


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("500ms", timedelta(milliseconds=500)),
        ("2d", timedelta(days=2)),
        ("1.5s", timedelta(seconds=1.5)),
        (90, timedelta(seconds=90)),
        (2.5, timedelta(seconds=2.5)),
        ("45", timedelta(seconds=45)),
    ],
)
def test_durations_parse(text: str | int | float, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["30 seconds", "5x", "s", "1h-30m", "", "-5s"])
def test_bad_durations_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_negative_seconds_are_rejected() -> None:
    with pytest.raises(ValueError, match="duration must not be negative, got -1"):
        parse_duration(-1)


def test_durations_format_compactly_and_round_trip() -> None:
    assert format_duration(timedelta(minutes=90)) == "1h30m"
    assert format_duration(timedelta(milliseconds=1500)) == "1s500ms"
    assert format_duration(timedelta(0)) == "0s"
    for value in ["1d2h3m4s5ms", "30s", "5m"]:
        assert format_duration(parse_duration(value)) == value


def test_decimal_sizes_must_be_whole_bytes() -> None:
    assert parse_size(Decimal("1024")) == 1024
    with pytest.raises(ValueError, match="not a whole number of bytes"):
        parse_size(Decimal("0.5"))
