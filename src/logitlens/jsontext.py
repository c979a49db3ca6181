"""JSON text as logitlens writes it: always valid JSON, NaN and infinity as ``null``.

Python's ``json.dumps`` writes ``NaN`` and ``Infinity``, which are not JSON: ``jq``,
JavaScript and most parsers reject the whole document. Every JSON logitlens prints or
saves (``--json``, results, reports) goes through :func:`dumps`.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (NumPy's too) replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def dumps(value: Any, **options: Any) -> str:
    """``json.dumps`` of :func:`finite` ``(value)``, refusing anything non-finite left."""
    return json.dumps(finite(value), allow_nan=False, **options)
