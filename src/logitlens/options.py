"""Checking what a user asks for, before any model loads (no torch imported here).

``analyze`` and the command line share these checks, so a bad layer, position, index,
prompt or metric list is one clear :class:`InputError` in milliseconds, not a traceback
after a minute of loading.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InputError

EMBED = -1
"""Layer index of the embedding output (also ``logitlens.lenses.EMBED``)."""

Positions = str | int | Sequence[int]
Layers = str | int | Sequence[int | str] | None


def plain(value: Any) -> Any:
    """A NumPy array or torch tensor as the Python list or number it holds; else ``value``.

    Indices and counts arrive as arrays from user code (``np.arange(5)``, ``np.int64(3)``,
    a 0-d array); every check below sees plain Python values instead.
    """
    if hasattr(value, "tolist") and hasattr(value, "ndim") and not isinstance(value, str):
        return value.tolist()
    return value


def check_index(value: Any, what: str) -> int:
    """``value`` as an int: Python and NumPy integers and integer text; floats refused."""
    value = plain(value)
    if isinstance(value, bool):
        raise InputError(f"Bad {what} {value!r}: expected an integer, not a boolean.")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise InputError(f"Bad {what} {value!r}: expected an integer such as 0, 5 or -1.")


def check_count(value: Any, what: str, minimum: int = 1) -> int:
    """An integer option that must be at least ``minimum`` (``k``, ``batch_size`` ...)."""
    number = check_index(value, what)
    if number < minimum:
        raise InputError(f"{what} must be at least {minimum}, got {number}.")
    return number


MAX_PICTURE_POSITIONS = 128
"""Positions one picture may draw. Drawing the grid costs about 0.5 s per column with
30 layers (SmolLM2, on a shared, busy 2-core machine: 64 columns 22 s, 128 columns 70 s
and 1.9 GB, 256 columns 120 s and 2.6 GB); 1,051 columns took 144 s and 6.4 GB. Longer
prompts are drawn over a window of positions (``--window``)."""


@dataclass(frozen=True)
class Limit:
    """The range an integer option may take, and why its maximum is where it is."""

    minimum: int
    maximum: int
    why: str = ""


LIMITS: dict[str, Limit] = {
    # The bootstrap's time grows linearly with n_boot, with no progress to show. The 346
    # bundled items on SmolLM2 (30 layers), on a busy, shared 2-core machine: 2.9 s at
    # 2,000 resamples, 14 s at 10,000; on a 2-layer model 11 s at 20,000, 112 s at 100,000.
    "n_boot": Limit(
        1,
        10_000,
        "each resample redraws every item, and the time grows with it; 2,000 gives stable "
        "95% intervals",
    ),
    "seed": Limit(0, 2**32 - 1),
    "window": Limit(
        1, MAX_PICTURE_POSITIONS, "a wider picture takes minutes and gigabytes to draw"
    ),
}
"""Integer options with a range, by name: the command line and the library both check
them here, before any work (``study summary --n-boot``, ``--seed``, ``grid --window``)."""


def check_limit(value: Any, name: str, what: str | None = None) -> int:
    """``value`` as an int within ``LIMITS[name]``, or one line naming the range and why."""
    what = what or name
    number = check_index(value, what)
    limit = LIMITS[name]
    if not limit.minimum <= number <= limit.maximum:
        why = f" ({limit.why})" if limit.why and number > limit.maximum else ""
        raise InputError(
            f"{what} must be between {limit.minimum} and {limit.maximum:,}, got {number:,}{why}."
        )
    return number


def check_threshold(value: Any) -> float:
    """A probability threshold in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"Bad threshold {value!r}: expected a probability such as 0.1.")
    if not 0 < float(value) <= 1:
        raise InputError(f"The threshold is a probability in (0, 1], got {value}; e.g. 0.1.")
    return float(value)


def check_layers_spec(layers: Layers) -> None:
    """Syntax of a layer selection, without knowing the model (ranges come later)."""
    layers = plain(layers)
    if layers is None or layers == "all":
        return
    for item in _layer_items(layers, n_layers=None):
        if item != "embed":
            check_index(item, "layer")


def _layer_items(layers: Layers, n_layers: int | None) -> list[int | str]:
    layers = plain(layers)
    if isinstance(layers, str):
        items: list[int | str] = []
        for part in (p.strip() for p in layers.split(",") if p.strip()):
            if ":" in part:
                start, _, stop = part.partition(":")
                try:
                    bounds = slice(int(start) if start else None, int(stop) if stop else None)
                except ValueError:
                    raise InputError(f"Bad layer range {part!r}; write it as 10:20.") from None
                if n_layers is not None:
                    items.extend(range(n_layers)[bounds])
            else:
                items.append(part if part == "embed" else check_index(part, "layer"))
        if not items and n_layers is None and ":" not in layers:
            raise InputError(f"Bad --layers {layers!r}: write e.g. 0,5,-1 or 10:20 or embed,0:5.")
        return items
    if isinstance(layers, (numbers.Integral, float)):
        return [check_index(layers, "layer")]
    if not isinstance(layers, Sequence):
        raise InputError(f"Bad layers {layers!r}: give None, an index, '10:20' or a list.")
    return [item if item == "embed" else check_index(item, "layer") for item in layers]


def parse_layers(layers: Layers, n_layers: int, include_embed: bool = False) -> list[int]:
    """Layer indices from ``None``/``"all"``, an int, ``"a:b"``, ``"0,5,-1"`` or a list.

    Negative numbers count from the end (-1 is the last layer); ``"embed"`` adds the
    embedding output, which is listed first.
    """
    layers, include_embed = plain(layers), plain(include_embed)
    if not isinstance(include_embed, bool):
        raise InputError(
            f"include_embed must be True or False, not {include_embed!r} (a string such as "
            "'no' would count as True)."
        )
    if layers is None or layers == "all":
        items: list[int | str] = list(range(n_layers))
    else:
        items = _layer_items(layers, n_layers)
    result: list[int] = [EMBED] if include_embed else []
    for item in items:
        if item == "embed":
            layer = EMBED
        else:
            layer = int(item)
            if not -n_layers <= layer < n_layers:
                raise InputError(
                    f"Layer {layer} is out of range: this model has {n_layers} layers "
                    f"(0..{n_layers - 1}, or -1 for the last)."
                )
            layer %= n_layers
        if layer not in result:
            result.append(layer)
    if not result:
        raise InputError("No layers selected; leave --layers out to use all of them.")
    return sorted(result)


def position_items(positions: Positions) -> list[int] | str:
    """``"last"``, ``"all"``, or the position indices asked for (checked, not yet ranged)."""
    positions = plain(positions)
    if isinstance(positions, str) and positions in ("last", "all"):
        return str(positions)
    if isinstance(positions, str):
        items = [check_index(p, "position") for p in positions.split(",") if p.strip()]
    elif isinstance(positions, (numbers.Integral, float)):
        items = [check_index(positions, "position")]
    elif isinstance(positions, Sequence):
        items = [check_index(p, "position") for p in positions]
    else:
        raise InputError(f"Bad positions {positions!r}: use 'last', 'all' or indices like 0,-1.")
    if not items:
        raise InputError("No positions selected: use 'last', 'all' or indices like 0,-1.")
    return items


def parse_positions(positions: Positions, length: int) -> list[int]:
    """Token indices within one prompt of ``length`` tokens (negative from the end)."""
    items = position_items(positions)
    if items == "last":
        return [length - 1]
    if items == "all":
        return list(range(length))
    for item in items:
        if not -length <= item < length:
            raise InputError(
                f"Position {item} is out of range for a prompt of {length} tokens "
                f"(0..{length - 1}, or negative from the end)."
            )
    return [item % length for item in items]


def window_positions(positions: Positions, lengths: Sequence[int], window: int) -> Positions:
    """``"all"`` positions of prompts longer than ``window`` tokens become the last ``window``
    (of the shortest prompt, at most): a picture of thousands of columns helps nobody."""
    if positions != "all" or max(lengths) <= window:
        return positions
    return list(range(-min(window, *lengths), 0))


def check_prompts(prompts: Any) -> list[str]:
    """One prompt or a list of them, each non-empty text that is valid UTF-8."""
    if prompts is None:
        raise InputError("No prompts given: pass a prompt such as 'The capital of France is'.")
    if isinstance(prompts, (str, bytes)):
        prompts = [prompts]
    elif not isinstance(prompts, Sequence):
        raise InputError(f"Prompts must be a string or a list of strings, not {prompts!r}.")
    prompts = list(prompts)
    if not prompts:
        raise InputError("No prompts given: pass at least one prompt.")
    for index, prompt in enumerate(prompts):
        if isinstance(prompt, bytes):
            raise InputError(
                f"Prompt {index} is bytes: decode it first, e.g. text.decode('utf-8')."
            )
        if not isinstance(prompt, str):
            raise InputError(
                f"Prompt {index} must be a string, not {type(prompt).__name__} {prompt!r}."
            )
        if not prompt.strip():
            raise InputError(
                f"Prompt {index} is empty; give some text, e.g. 'The capital of France is'."
            )
        check_text(prompt, f"Prompt {index}")
    return prompts


def check_text(text: str, what: str) -> str:
    """``text`` itself if it is valid Unicode; else one line naming ``what`` and the byte.

    Bytes that are not UTF-8 reach Python as lone surrogates (the arguments of a Latin-1
    terminal are decoded with ``surrogateescape``), which tokenizers reject with a
    TypeError. Every prompt, target and command-line argument goes through here.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        bad = ord(text[error.start])
        byte = f"byte 0x{bad - 0xDC00:02x}" if 0xDC80 <= bad <= 0xDCFF else f"U+{bad:04X}"
        shown = (
            "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else c for c in text)
            .encode("utf-8", "backslashreplace")
            .decode("utf-8")
        )
        raise InputError(
            f"{what} is not valid UTF-8 text ({byte} at character {error.start} of "
            f"'{shown[:80]}'): set the terminal to UTF-8 (e.g. LANG=C.UTF-8) or re-encode "
            "the input as UTF-8."
        ) from None
    return text


def metric_names(metrics: str | Sequence[str] | None) -> list[str] | None:
    """``"kl"``, ``"entropy,kl"`` or a list, as a list of names; ``None`` stays ``None``."""
    if metrics is None:
        return None
    if isinstance(metrics, str):
        names = [m.strip() for m in metrics.split(",") if m.strip()]
    elif isinstance(metrics, Sequence) and all(isinstance(m, str) for m in metrics):
        names = [m.strip() for m in metrics]
    else:
        raise InputError(f"Bad metrics {metrics!r}: give names like ['entropy', 'kl'].")
    if not names:
        raise InputError(
            "metrics=[] selects nothing: leave it out for the top-k tokens, or name some, "
            "e.g. ['topk', 'entropy']."
        )
    return names
