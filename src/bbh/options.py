"""Option parsing shared by every component: string enums with errors that list what is allowed."""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

E = TypeVar("E", bound=Enum)


def parse_enum(cls: type[E], value: object, name: str) -> E:
    """``cls(value)``, or a ``ValueError`` naming the option ``name`` and its allowed values."""
    try:
        return cls(value)
    except ValueError:
        allowed = [m.value for m in cls]
        raise ValueError(f"unknown {name} {value!r}; allowed: {allowed}") from None
