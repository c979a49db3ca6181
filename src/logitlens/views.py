"""Results that draw themselves inline in notebooks (Jupyter, VS Code, Colab).

A result class inherits :class:`InlineView`; its ``_repr_html_`` is the interactive page
of :mod:`logitlens.pictures.notebook`. That module imports the results to draw them, so
the results name it as a ``"module:function"`` string imported on first display (as the
lens registry names lens classes): no import cycle, and no plotting code loaded before a
notebook asks for it.
"""

from __future__ import annotations

import importlib

VIEWER = "logitlens.pictures.notebook:repr_html"
"""The function that turns a result into its notebook HTML (``None``: the plain repr)."""


class InlineView:
    """Mixin: the result shows as its interactive view when a notebook displays it."""

    def _repr_html_(self) -> str | None:
        module, _, function = VIEWER.partition(":")
        return getattr(importlib.import_module(module), function)(self)
