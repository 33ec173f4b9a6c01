"""A Griffe extension for the documentation site (``mkdocs.yml`` loads it).

Our docstrings follow the Google style and call their doctest section ``Example:``; Griffe reads
only ``Examples:`` as an examples section and shows any other title as an admonition, where the
``>>>`` lines run together as nested quotes. This extension reads ``Example:`` as ``Examples:``,
so that the API reference shows each example as a code block with its output.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^([ \t]*)Example:[ \t]*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Read a docstring's ``Example:`` section as Griffe's ``Examples:``."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is not None and "Example:" in docstring.value:
            docstring.value = _EXAMPLE.sub(r"\1Examples:", docstring.value)


class InheritedDocstrings(griffe.Extension):
    """Give a method that overrides a documented one without a docstring of its own (``loss``,
    ``predict_logits`` of each method; ruff's D102 is waived there for that reason) its base's
    docstring, so that its API entry is not empty."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for cls in _classes(pkg):
            try:
                bases = cls.mro()
            except Exception:  # an unresolvable base (outside the package): nothing to inherit
                continue
            for name, member in cls.members.items():
                if member.is_alias or not member.is_function or member.docstring is not None:
                    continue
                for base in bases:
                    inherited = base.members.get(name)
                    if inherited is not None and not inherited.is_alias and inherited.docstring:
                        doc = inherited.docstring
                        member.docstring = griffe.Docstring(
                            doc.value,
                            parent=member,
                            parser=doc.parser,
                            parser_options=doc.parser_options,
                        )
                        break


def _classes(module: griffe.Module) -> list[griffe.Class]:
    """Every class defined in ``module`` and its submodules (aliases left out)."""
    found: list[griffe.Class] = []
    for member in module.members.values():
        if member.is_alias:
            continue
        if member.is_module:
            found += _classes(member)  # type: ignore[arg-type]
        elif member.is_class:
            found.append(member)  # type: ignore[arg-type]
    return found
