"""A griffe extension for the API reference (mkdocs.yml, mkdocstrings ``extensions``).

logitlens docstrings head their doctest block ``Example:``; griffe's Google parser only
knows ``Examples:`` as a section (anything else becomes an admonition, whose ``>>>``
lines render as nested quotes). This reads ``Example:`` as ``Examples:``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

HEADING = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rename each docstring's ``Example:`` section heading to ``Examples:``."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = HEADING.sub(r"\1Examples:", obj.docstring.value)
