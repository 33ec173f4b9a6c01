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
