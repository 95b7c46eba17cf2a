"""Value types shared by every package: resource slots, sizes, durations."""

from .slots import KNOWN_SLOTS, ResourceSlot, SlotKind
from .units import BinarySize, Duration, format_duration, format_size, parse_duration, parse_size

__all__ = [
    "KNOWN_SLOTS",
    "BinarySize",
    "Duration",
    "ResourceSlot",
    "SlotKind",
    "format_duration",
    "format_size",
    "parse_duration",
    "parse_size",
]
