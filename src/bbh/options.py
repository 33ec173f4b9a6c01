"""Option parsing shared by every component: string enums with errors that list what is allowed,
and the base of the nested option objects (``GeneratorOptions``, ``KLOptions``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from enum import Enum
from typing import Any, ClassVar, TypeVar

#: the value of an option chosen from the net and the other options (BbH's generator and KL
#: options: ``bbh_options.resolve_auto``)
AUTO = "auto"

E = TypeVar("E", bound=Enum)
N = TypeVar("N", bound="NestedOptions")


def parse_enum(cls: type[E], value: object, name: str) -> E:
    """``cls(value)``, or a ``ValueError`` naming the option ``name`` and its allowed values."""
    try:
        return cls(value)
    except ValueError:
        allowed = [m.value for m in cls]
        raise ValueError(f"unknown {name} {value!r}; allowed: {allowed}") from None


class NestedOptions:
    """The base of a component's options as one frozen dataclass (the component's ``name``
    first), checked in its ``__post_init__``, with the flat names that run configs and records
    write its fields under (``FLAT_NAMES``)."""

    #: ``{field: the flat name configs and records use}``
    FLAT_NAMES: ClassVar[dict[str, str]] = {}
    #: what the options are of, for errors (``generator``, ``kl``)
    LABEL: ClassVar[str] = ""

    @classmethod
    def of(cls: type[N], value: Any) -> N:
        """``value`` as options: itself, a name (the ``name`` field) or a mapping of the fields
        (a config's table).

        Args:
            value: Options, a name or a mapping.

        Returns:
            The options.

        Raises:
            ValueError: An unknown name, field or value.
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
            unknown = sorted(set(value) - fields)
            if unknown:
                raise ValueError(
                    f"unknown {cls.LABEL} option(s) {unknown}; allowed: {sorted(fields)}"
                )
            return cls(**value)
        return cls(name=value)  # type: ignore[call-arg]

    @classmethod
    def from_flat(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """The fields among ``options`` written under their flat names (``FLAT_NAMES``).

        Args:
            options: A method's options, flat.

        Returns:
            The value of each field whose flat name ``options`` holds, by field name.
        """
        return {f: options[flat] for f, flat in cls.FLAT_NAMES.items() if flat in options}

    def flat(self) -> dict[str, Any]:
        """The options under their flat names, enums as their values (as records write them).

        Returns:
            Every field's value, by its flat name.
        """
        out = {}
        for field, flat in self.FLAT_NAMES.items():
            value = getattr(self, field)
            out[flat] = value.value if isinstance(value, Enum) else value
        return out

    def replace(self: N, **fields: Any) -> N:
        """A copy with ``fields`` changed (checked again).

        Args:
            **fields: Fields to change.

        Returns:
            The new options.
        """
        return dataclasses.replace(self, **fields)  # type: ignore[type-var]
