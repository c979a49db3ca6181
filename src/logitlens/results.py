"""The result of a lens analysis: small arrays with named dimensions.

A :class:`LensResult` holds only reductions (top-k, target statistics, entropy,
KL, rank of the final prediction, ...), never full logits. Its arrays are the
arrays of the metrics in :data:`logitlens.metrics.REGISTRY`, one field each, NumPy
with the dimensions listed in ``LensResult.DIMS``; positions a prompt does not have
(when prompts of different lengths share a result) hold ``-1`` / ``NaN``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from . import jsontext
from .errors import InputError
from .lenses import EMBED
from .metrics import ARRAYS, hint
from .views import InlineView

_PER_PROMPT_LISTS = (
    "prompts",
    "tokens",
    "token_ids",
    "target_ids",
    "target_tokens",
    "alternative_ids",
    "alternative_tokens",
)


def _metric_array_fields(cls: type) -> type:
    """Add one ``np.ndarray | None`` field per metric array (before ``@dataclass``)."""
    for name in ARRAYS:
        cls.__annotations__[name] = "np.ndarray | None"
        setattr(cls, name, None)
    return cls


@dataclass
class TopToken:
    """One row of a top-k table."""

    token: str
    token_id: int
    prob: float


@dataclass
class TargetSummary:
    """When a target token emerges across layers, at one prompt and position."""

    prompt: str
    target: str
    target_id: int
    threshold: float
    first_layer_above: int | None
    first_layer_top1: int | None
    max_prob: float
    max_prob_layer: int
    final_prob: float


@dataclass
@_metric_array_fields
class LensResult(InlineView):
    """Reductions of one lens over prompts x layers x positions.

    ``layers`` holds decoder-layer indices (the output of ``layers[i]``), with
    ``EMBED`` (-1) for the embedding output. ``positions[p, j]`` is the token index
    within prompt ``p`` that column ``j`` describes (-1 where prompt ``p`` has no
    such column). ``alternative_ids[p][t]`` is the alternative of target ``t`` (for
    ``logit_diff``). Besides the fields below, every array of
    :data:`logitlens.metrics.ARRAYS` (``top_ids``, ``target_prob``, ``entropy``, ...)
    is a field, ``None`` unless computed.
    """

    DIMS: ClassVar[dict[str, tuple[str, ...]]] = {
        "positions": ("prompt", "position"),
        **{name: array.dims for name, array in ARRAYS.items()},
    }

    model_name: str
    lens: str
    prompts: list[str]
    tokens: list[list[str]]
    token_ids: list[list[int]]
    layers: list[int]
    positions: np.ndarray
    k: int = 0
    target_ids: list[list[int]] = field(default_factory=list)
    target_tokens: list[list[str]] = field(default_factory=list)
    alternative_ids: list[list[int]] = field(default_factory=list)
    alternative_tokens: list[list[str]] = field(default_factory=list)
    vocab: dict[int, str] = field(default_factory=dict)
    """Decoded text of every token id that appears in the arrays."""
    site: str = "post"
    """Where layers were read: ``"post"`` (layer output) or ``"mid"`` (after attention)."""
    attribution: Any = None
    """The direct logit attribution computed in the same trace (``analyze(...,
    attribution=True)``), a :class:`~logitlens.attribution.Attribution`; not part of
    :meth:`to_dict` (save it with its own ``to_dict``), nor kept by ``subset``/``concat``."""

    # ----- lookups -------------------------------------------------------------

    @property
    def layer_labels(self) -> list[str]:
        return ["embed" if layer == EMBED else str(layer) for layer in self.layers]

    def require(self, name: str) -> np.ndarray:
        """The array ``name``, or an error saying which option computes it."""
        if name not in ARRAYS:
            raise InputError(f"This result has no {name!r}; choose one of {sorted(ARRAYS)}.")
        value = getattr(self, name)
        if value is None:
            raise InputError(f"This result has no {name!r}. Compute it with {hint(name)}.")
        return value

    def column(self, prompt: int = 0, position: int = -1) -> int:
        """The position column holding token ``position`` of ``prompt`` (negative ok)."""
        self._check_prompt(prompt)
        length = len(self.token_ids[prompt])
        wanted = position + length if position < 0 else position
        matches = np.flatnonzero(self.positions[prompt] == wanted)
        if not 0 <= wanted < length or matches.size == 0:
            available = [int(p) for p in self.positions[prompt] if p >= 0]
            raise InputError(
                f"Position {position} of prompt {prompt} was not analysed; this result "
                f"has positions {available}. Re-run with positions='all' or a list."
            )
        return int(matches[0])

    def layer_index(self, layer: int | str) -> int:
        """Row of ``layer`` (a layer number or ``"embed"``) in the layer dimension."""
        key = EMBED if layer == "embed" else int(layer)
        if key not in self.layers:
            raise InputError(f"Layer {layer} is not in this result (layers: {self.layers}).")
        return self.layers.index(key)

    def _check_prompt(self, prompt: int) -> None:
        if not 0 <= prompt < len(self.prompts):
            raise InputError(
                f"Prompt index {prompt} out of range: this result has {len(self.prompts)}."
            )

    def token_text(self, token_id: int) -> str:
        return self.vocab.get(int(token_id), f"<{int(token_id)}>")

    # ----- questions users ask ----------------------------------------------------

    def trajectory(
        self, metric: str = "target_prob", prompt: int = 0, position: int = -1, target: int = 0
    ) -> np.ndarray:
        """One metric across layers ``[layer]`` at one prompt and position."""
        values = self.require(metric)
        column = self.column(prompt, position)
        row = values[prompt, :, column]
        return row[:, target] if row.ndim == 2 else row

    def first_layer_above(
        self, threshold: float, prompt: int = 0, position: int = -1, target: int = 0
    ) -> int | None:
        """First layer whose target probability exceeds ``threshold``; ``None`` if none."""
        probs = self.trajectory("target_prob", prompt, position, target)
        hits = np.flatnonzero(probs > threshold)
        return self.layers[int(hits[0])] if hits.size else None

    def first_layer_top1(self, prompt: int = 0, position: int = -1, target: int = 0) -> int | None:
        """First layer where the target is the lens's top-1 token; ``None`` if never."""
        ranks = self.trajectory("target_rank", prompt, position, target)
        hits = np.flatnonzero(ranks == 1)
        return self.layers[int(hits[0])] if hits.size else None

    def target_summary(
        self, threshold: float = 0.1, prompt: int = 0, position: int = -1, target: int = 0
    ) -> TargetSummary:
        """First layer above ``threshold``, first top-1 layer, peak and final probability."""
        probs = self.trajectory("target_prob", prompt, position, target)
        best = int(np.nanargmax(probs))
        return TargetSummary(
            prompt=self.prompts[prompt],
            target=self.target_tokens[prompt][target],
            target_id=self.target_ids[prompt][target],
            threshold=threshold,
            first_layer_above=self.first_layer_above(threshold, prompt, position, target),
            first_layer_top1=self.first_layer_top1(prompt, position, target),
            max_prob=float(probs[best]),
            max_prob_layer=self.layers[best],
            final_prob=float(probs[-1]),
        )

    def top_tokens(
        self, prompt: int = 0, layer: int | str = -1, position: int = -1
    ) -> list[TopToken]:
        """The top-k table of one layer at one position (``layer=-1``: the last one)."""
        ids, probs = self.require("top_ids"), self.require("top_probs")
        row = len(self.layers) - 1 if layer == -1 else self.layer_index(layer)
        column = self.column(prompt, position)
        return [
            TopToken(self.token_text(i), int(i), float(p))
            for i, p in zip(ids[prompt, row, column], probs[prompt, row, column], strict=True)
        ]

    def topk_table(self, prompt: int = 0, position: int = -1) -> dict[str, list[TopToken]]:
        """Top-k tokens per layer at one position: ``{layer_label: [TopToken, ...]}``."""
        return {
            label: self.top_tokens(prompt, layer if layer != EMBED else "embed", position)
            for label, layer in zip(self.layer_labels, self.layers, strict=True)
        }

    # ----- slicing and joining -------------------------------------------------------

    def subset(self, prompts: list[int]) -> LensResult:
        """The same result restricted to some prompts (in the given order)."""
        for prompt in prompts:
            self._check_prompt(prompt)
        kwargs: dict[str, Any] = {}
        for item in fields(self):
            if item.name == "attribution":
                continue
            value = getattr(self, item.name)
            if isinstance(value, np.ndarray):
                value = value[prompts]
            elif item.name in _PER_PROMPT_LISTS and value:
                value = [value[p] for p in prompts]
            kwargs[item.name] = value
        return LensResult(**kwargs)

    @classmethod
    def concat(cls, results: list[LensResult]) -> LensResult:
        """Join results of the same model, lens, layers and metrics along prompts."""
        if not results:
            raise InputError("Nothing to concatenate: give at least one result.")
        first = results[0]
        for other in results[1:]:
            if (other.model_name, other.lens, other.layers, other.k) != (
                first.model_name,
                first.lens,
                first.layers,
                first.k,
            ):
                raise InputError("Results differ in model, lens, layers or k and cannot be joined.")
        columns = max(r.positions.shape[1] for r in results)
        kwargs: dict[str, Any] = {}
        for item in fields(cls):
            values = [getattr(r, item.name) for r in results]
            if item.name in cls.DIMS:
                if any(v is None for v in values):
                    kwargs[item.name] = None
                    continue
                axis = cls.DIMS[item.name].index("position")
                kwargs[item.name] = np.concatenate([_pad_axis(v, axis, columns) for v in values])
            elif item.name in _PER_PROMPT_LISTS:
                kwargs[item.name] = [row for value in values for row in value]
            elif item.name == "vocab":
                kwargs[item.name] = {key: text for value in values for key, text in value.items()}
            elif item.name == "attribution":
                continue
            else:
                kwargs[item.name] = values[0]
        return cls(**kwargs)

    # ----- export -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: arrays as nested lists (NaN as null), plus ``dims``."""
        out: dict[str, Any] = {}
        for item in fields(self):
            if item.name == "attribution":
                continue
            value = getattr(self, item.name)
            if isinstance(value, np.ndarray):
                value = _nan_to_none(value.tolist())
            elif item.name == "vocab":
                value = {str(key): text for key, text in value.items()}
            out[item.name] = value
        out["dims"] = {name: list(dims) for name, dims in self.DIMS.items()}
        return out

    def to_json(self, path: str | Path | None = None, *, force: bool = False) -> str:
        """Serialise to JSON text; also write it to ``path`` when given.

        An existing file that is not a result logitlens wrote is never replaced unless
        ``force``.
        """
        text = jsontext.dumps(self.to_dict(), ensure_ascii=False)
        if path is not None:
            from .paths import check_output_path
            from .storage import refuse_foreign, write_atomic

            path = check_output_path(path, None)
            refuse_foreign(path, _is_result_file, "result file", force=force)
            write_atomic(path, text)
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LensResult:
        """Rebuild a result written by :meth:`to_dict`."""
        try:
            return cls._from_dict(data)
        except InputError:
            raise
        except Exception as error:
            raise InputError(
                f"This is not a logitlens result ({type(error).__name__}: {error}); "
                "pass what LensResult.to_dict() or to_json() wrote."
            ) from None

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> LensResult:
        kwargs: dict[str, Any] = {}
        for item in fields(cls):
            if item.name not in data:
                continue
            value = data[item.name]
            if item.name in cls.DIMS and value is not None:
                floating = item.name in ARRAYS and ARRAYS[item.name].floating
                value = np.array(_none_to_nan(value), dtype=np.float64 if floating else np.int64)
            elif item.name == "vocab":
                value = {int(key): text for key, text in value.items()}
            kwargs[item.name] = value
        result = cls(**kwargs)
        problem = result._inconsistency()
        if problem:
            raise InputError(
                f"This logitlens result is damaged or was edited: {problem}. Re-run the "
                "analysis, or load what LensResult.to_json() wrote."
            )
        return result

    def _inconsistency(self) -> str | None:
        """What disagrees among the fields (types, lengths, array shapes), if anything."""
        if not (isinstance(self.model_name, str) and isinstance(self.lens, str)):
            return "model_name and lens must be text"
        if not _rows_of(self.prompts, str) or any(isinstance(p, list) for p in self.prompts):
            return "prompts must be a non-empty list of text"
        n = len(self.prompts)
        for name, kind in (("tokens", str), ("token_ids", int)):
            rows = getattr(self, name)
            if (
                not isinstance(rows, list)
                or len(rows) != n
                or not all(_rows_of(row, kind) for row in rows)
            ):
                return f"{name} must hold one list of {kind.__name__} per prompt ({n})"
        lengths = [len(row) for row in self.token_ids]
        if [len(row) for row in self.tokens] != lengths:
            return "tokens and token_ids differ in length"
        if not _rows_of(self.layers, int) or len(set(self.layers)) != len(self.layers):
            return "layers must be distinct layer numbers"
        if min(self.layers) < EMBED:
            return f"layer {min(self.layers)} does not exist"
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 0:
            return f"k must be a count, not {self.k!r:.40}"
        positions = self.positions
        if not isinstance(positions, np.ndarray) or positions.ndim != 2 or len(positions) != n:
            return "positions must be one row of token indices per prompt"
        for row, length in zip(positions, lengths, strict=True):
            if ((row < -1) | (row >= length)).any():
                return f"a position is outside its prompt ({length} tokens)"
        n_targets = 0
        for name, kind in (("target_ids", int), ("target_tokens", str)):
            rows = getattr(self, name)
            if rows and (len(rows) != n or not all(_rows_of(row, kind) for row in rows)):
                return f"{name} must hold one list per prompt"
            n_targets = max([n_targets, *(len(row) for row in rows)])
        for name in ("target_tokens", "alternative_ids", "alternative_tokens"):
            rows = getattr(self, name)
            if rows and [len(row) for row in rows] != [len(row) for row in self.target_ids]:
                return f"{name} must be shaped like target_ids"
        if not isinstance(self.vocab, dict) or not all(
            isinstance(key, int) and isinstance(text, str) for key, text in self.vocab.items()
        ):
            return "vocab must map token ids to text"
        sizes = {
            "prompt": n,
            "layer": len(self.layers),
            "position": positions.shape[1],
            "k": self.k,
            "target": n_targets,
        }
        for name, dims in self.DIMS.items():
            value = getattr(self, name)
            if value is None or name == "positions":
                continue
            expected = tuple(sizes[dim] for dim in dims)
            if not isinstance(value, np.ndarray) or value.shape != expected:
                shape = value.shape if isinstance(value, np.ndarray) else type(value).__name__
                return f"{name} has shape {shape}, expected {expected} {dims}"
        return None

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> LensResult:
        """Read a result from JSON text or a ``.json`` file.

        Raises:
            InputError: a missing file or a directory, JSON that is truncated or not
                JSON, or a result whose fields disagree (edited or damaged).
        """
        from .paths import read_text_file

        text = str(text_or_path)
        where = "The text"
        if not text.lstrip().startswith("{"):
            where = str(Path(text_or_path).expanduser())
            text = read_text_file(text_or_path)
        try:
            data = json.loads(text)
        except ValueError as error:
            raise InputError(
                f"{where} is not valid JSON ({error}): it is truncated or damaged. Write it "
                "again with LensResult.to_json(path)."
            ) from None
        return cls.from_dict(data)

    def to_dataframe(self) -> Any:
        """Long table, one row per prompt x layer x analysed position (x target).

        Columns: prompt_index, prompt, layer, position, input_token, then whatever
        was computed: top1, top1_prob, topk (list of tokens), the per-position metrics
        (entropy, kl, final_rank, ...), and per target: target (and alternative),
        target_prob, target_logit, target_rank, logit_diff, ...
        """
        import pandas as pd

        present = [name for name in ARRAYS if getattr(self, name) is not None]
        per_cell = [n for n in present if self.DIMS[n] == ("prompt", "layer", "position")]
        per_target = [n for n in present if self.DIMS[n][-1] == "target"]
        rows = []
        n_targets = max((len(t) for t in self.target_ids), default=0) or 1
        for p, prompt in enumerate(self.prompts):
            for li, label in enumerate(self.layer_labels):
                for column, position in enumerate(self.positions[p]):
                    if position < 0:
                        continue
                    base = {
                        "prompt_index": p,
                        "prompt": prompt,
                        "layer": label,
                        "position": int(position),
                        "input_token": self.tokens[p][position],
                    }
                    if self.top_ids is not None and self.top_probs is not None:
                        ids = self.top_ids[p, li, column]
                        base["top1"] = self.token_text(ids[0])
                        base["top1_prob"] = float(self.top_probs[p, li, column, 0])
                        base["topk"] = [self.token_text(i) for i in ids]
                    for name in per_cell:
                        base[name] = getattr(self, name)[p, li, column].item()
                    for t in range(n_targets if per_target else 1):
                        row = dict(base)
                        if per_target:
                            row["target"] = self.target_tokens[p][t]
                            if self.alternative_tokens:
                                row["alternative"] = self.alternative_tokens[p][t]
                        for name in per_target:
                            row[name] = getattr(self, name)[p, li, column, t].item()
                        rows.append(row)
        return pd.DataFrame(rows)


def _rows_of(values: Any, kind: type) -> bool:
    """Whether ``values`` is a list of ``kind`` (``int``: never a bool)."""
    return isinstance(values, list) and all(
        isinstance(value, kind) and not isinstance(value, bool) for value in values
    )


def _pad_axis(values: np.ndarray, axis: int, size: int) -> np.ndarray:
    missing = size - values.shape[axis]
    if missing == 0:
        return values
    widths = [(0, 0)] * values.ndim
    widths[axis] = (0, missing)
    fill = np.nan if np.issubdtype(values.dtype, np.floating) else -1
    return np.pad(values, widths, constant_values=fill)


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, list):
        return [_nan_to_none(item) for item in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _none_to_nan(value: Any) -> Any:
    if isinstance(value, list):
        return [_none_to_nan(item) for item in value]
    return math.nan if value is None else value


def _is_result_file(path: Path) -> bool:
    """Is ``path`` a JSON result that :meth:`LensResult.to_json` wrote?"""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "dims" in data and "prompts" in data
