"""Metrics: what a lens's logits are reduced to. One :class:`Metric` entry each.

Each entry says which arrays it produces (dims, kind, fill value), how they are
computed from a chunk of logits or log-probabilities ``[layers, rows, vocab]``, what
inputs it needs (targets, alternatives, the prompt's next tokens, the model's own
final distribution), how a picture colours it, and one line for the docs. Everything
else derives from :data:`REGISTRY`: the reduction loop in ``analysis``, the fields,
``DIMS``, JSON and DataFrame of ``LensResult``, the grid metrics of ``plots`` and the
report, and the CLI's choices.

The reductions are plain module-level functions: they run inside the nnsight trace, on
NDIF too, where they travel by value. torch is imported only inside the two that name
it, so the command line can list and check metrics without loading torch.

Adding a metric is one entry in ``REGISTRY`` plus its tests; see the README.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import InputError
from .options import metric_names

if TYPE_CHECKING:
    import torch

Reduction = Callable[["torch.Tensor", dict[str, Any]], dict[str, "torch.Tensor"]]
"""``reduce(scores [layers, rows, vocab], given) -> {array name: [layers, rows, ...]}``.

``given`` holds what the metric ``needs``, per chunk: ``targets``, ``alternatives``
``[layers, rows, n_targets]``, ``next_tokens`` ``[layers, rows, 1]`` (-1: none),
``final_logprobs`` ``[1, rows, vocab]`` and ``final_top`` ``[layers, rows, 1]`` (the
model's own distribution and top-1), and ``k``.
"""

INPUTS = ("targets", "alternatives", "next_tokens", "final")
"""What a metric may need besides the lens's scores."""


@dataclass(frozen=True)
class Array:
    """One array of a :class:`~logitlens.results.LensResult`."""

    name: str
    dims: tuple[str, ...]
    kind: str
    """``"float"`` (missing entries NaN) or ``"int"`` (missing entries -1)."""
    description: str

    @property
    def floating(self) -> bool:
        return self.kind == "float"

    @property
    def fill(self) -> float:
        return math.nan if self.floating else -1


@dataclass(frozen=True)
class Picture:
    """How a metric colours the logit-lens grid (``plots.plot_grid`` and the report).

    Arrays with a last dimension beyond position (top-k, targets) colour by its first
    entry: the top-1 token, the first target.
    """

    name: str
    """The grid's name for it (``--metric``)."""
    array: str
    metric: str
    """The ``analyze(metrics=...)`` entry that computes it."""
    label: str
    cmap: str
    """A matplotlib colour map."""
    scale: str = "linear"
    """``"unit"`` (0 to 1), ``"linear"`` (0 to max), ``"log"`` (1 to max), ``"diverging"``."""
    high_is_good: bool = False
    """Whether high values mean the lens already agrees (drawn dark in the report)."""

    @property
    def log(self) -> bool:
        return self.scale == "log"


@dataclass(frozen=True)
class Metric:
    """One metric: its arrays, its reductions, its inputs, its picture, one line of docs."""

    name: str
    description: str
    arrays: tuple[Array, ...]
    on_logits: Reduction | None = None
    """Reduction of fp32 logits (run before the softmax, which it may make unnecessary)."""
    on_logprobs: Reduction | None = None
    """Reduction of log-probabilities."""
    needs: frozenset[str] = frozenset()
    """Subset of :data:`INPUTS`."""
    picture: Picture | None = None
    how: str = ""
    """How to ask for it, for errors; default ``metrics including '<name>'``."""

    @property
    def hint(self) -> str:
        return self.how or f"metrics including '{self.name}' (CLI: --metrics {self.name})"


# ----- reductions (plain functions: they run inside the trace) ---------------------------


def entropy(logprobs: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of distributions given as log-probabilities ``[..., vocab]``."""
    return -(logprobs.exp() * logprobs).sum(-1)


def kl_divergence(reference_logprobs: torch.Tensor, logprobs: torch.Tensor) -> torch.Tensor:
    """KL(reference || lens) in nats; both ``[..., vocab]`` log-probabilities."""
    return (reference_logprobs.exp() * (reference_logprobs - logprobs)).sum(-1)


def token_rank(logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """1-based rank of ``token_ids`` ``[..., T]`` among ``logits`` ``[..., vocab]``.

    Rank 1 is the most likely token; ties are resolved in the token's favour.
    """
    import torch

    chosen = logits.gather(-1, token_ids)
    ranks = [_count_above(logits, chosen[..., t : t + 1]) for t in range(chosen.shape[-1])]
    return torch.stack(ranks, -1) + 1


_INT16_SAFE = 2**15 - 1


def _count_above(logits: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """How many entries of each row exceed ``threshold`` ``[..., 1]``, as int64.

    Summing booleans as int16 is several times faster on CPUs than the default int64
    accumulation; vocabulary pieces shorter than 2**15 cannot overflow it.
    """
    import torch

    above = (logits > threshold).view(torch.uint8)
    pieces = above.split(_INT16_SAFE, dim=-1)
    return sum(piece.sum(-1, dtype=torch.int16).long() for piece in pieces)


def reduce_topk(logprobs: torch.Tensor, given: dict[str, Any]) -> dict[str, torch.Tensor]:
    values, indices = logprobs.topk(given["k"], dim=-1)
    return {"top_ids": indices, "top_probs": values.exp()}


def reduce_target_logit(logits: torch.Tensor, given: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {"target_logit": logits.gather(-1, given["targets"])}


def reduce_target_prob(logprobs: torch.Tensor, given: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {"target_prob": logprobs.gather(-1, given["targets"]).exp()}


def reduce_target_rank(logprobs: torch.Tensor, given: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {"target_rank": token_rank(logprobs, given["targets"])}


def reduce_entropy(logprobs: torch.Tensor, given: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {"entropy": entropy(logprobs)}


def reduce_kl(logprobs: torch.Tensor, given: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {"kl": kl_divergence(given["final_logprobs"], logprobs)}


def reduce_final_rank(logprobs: torch.Tensor, given: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {"final_rank": token_rank(logprobs, given["final_top"])[..., 0]}


def reduce_logit_diff(logits: torch.Tensor, given: dict[str, Any]) -> dict[str, torch.Tensor]:
    target = logits.gather(-1, given["targets"])
    return {"logit_diff": target - logits.gather(-1, given["alternatives"])}


def reduce_next_token_ce(logprobs: torch.Tensor, given: dict[str, Any]) -> dict[str, torch.Tensor]:
    next_ids = given["next_tokens"]
    loss = -logprobs.gather(-1, next_ids.clamp(min=0))[..., 0]
    return {"next_token_ce": loss.masked_fill(next_ids[..., 0] < 0, math.nan)}


# ----- the registry -------------------------------------------------------------------------

_CELL = ("prompt", "layer", "position")
_PER_TARGET = (*_CELL, "target")
_NEEDS_TARGET = "targets=... (CLI: --target)"

REGISTRY: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric(
            "topk",
            "the k most probable tokens and their probabilities",
            (
                Array("top_ids", (*_CELL, "k"), "int", "token ids, most probable first"),
                Array("top_probs", (*_CELL, "k"), "float", "their probabilities"),
            ),
            on_logprobs=reduce_topk,
            picture=Picture(
                "prob",
                "top_probs",
                "topk",
                "probability of the top-1 token",
                "Blues",
                scale="unit",
                high_is_good=True,
            ),
            how="metrics including 'topk' (CLI: logitlens top, or --metrics topk)",
        ),
        Metric(
            "target",
            "probability and logit of the target token(s)",
            (
                Array("target_prob", _PER_TARGET, "float", "probability of each target"),
                Array("target_logit", _PER_TARGET, "float", "logit of each target"),
            ),
            on_logits=reduce_target_logit,
            on_logprobs=reduce_target_prob,
            needs=frozenset({"targets"}),
            how=_NEEDS_TARGET,
        ),
        Metric(
            "target_rank",
            "rank of the target token(s), 1 = top",
            (Array("target_rank", _PER_TARGET, "int", "1-based rank of each target"),),
            on_logprobs=reduce_target_rank,
            needs=frozenset({"targets"}),
            how="targets=... with metrics including 'target_rank' (CLI: --target)",
        ),
        Metric(
            "entropy",
            "entropy of the lens distribution, in nats",
            (Array("entropy", _CELL, "float", "entropy in nats"),),
            on_logprobs=reduce_entropy,
            picture=Picture("entropy", "entropy", "entropy", "entropy (nats)", "magma_r"),
        ),
        Metric(
            "kl",
            "KL(final-layer distribution || lens distribution), in nats",
            (Array("kl", _CELL, "float", "KL to the model's own distribution, nats"),),
            on_logprobs=reduce_kl,
            needs=frozenset({"final"}),
            picture=Picture("kl", "kl", "kl", "KL to the final layer (nats)", "magma_r"),
        ),
        Metric(
            "final_rank",
            "rank of the model's own top-1 prediction under the lens",
            (Array("final_rank", _CELL, "int", "1-based rank of the model's top-1 token"),),
            on_logprobs=reduce_final_rank,
            needs=frozenset({"final"}),
            picture=Picture(
                "final_rank",
                "final_rank",
                "final_rank",
                "rank of the model's final prediction",
                "viridis",
                scale="log",
            ),
        ),
        Metric(
            "logit_diff",
            "logit of each target minus that of its alternative (e.g. pun vs literal word)",
            (Array("logit_diff", _PER_TARGET, "float", "target logit - alternative logit"),),
            on_logits=reduce_logit_diff,
            needs=frozenset({"targets", "alternatives"}),
            picture=Picture(
                "logit_diff",
                "logit_diff",
                "logit_diff",
                "target minus alternative logit",
                "RdBu_r",
                scale="diverging",
                high_is_good=True,
            ),
            how="targets=... and alternatives=... (one alternative per target)",
        ),
        Metric(
            "next_token_ce",
            "cross-entropy of the prompt's actual next token, in nats (NaN at the last token)",
            (Array("next_token_ce", _CELL, "float", "-log p(next token), nats"),),
            on_logprobs=reduce_next_token_ce,
            needs=frozenset({"next_tokens"}),
            picture=Picture(
                "next_token_ce",
                "next_token_ce",
                "next_token_ce",
                "cross-entropy of the next token (nats)",
                "magma_r",
            ),
        ),
    )
}
"""Every metric ``analyze(metrics=...)`` accepts, by name, in display order."""

METRICS = tuple(REGISTRY)
"""Metric names accepted by ``analyze(metrics=...)``."""

MODEL_TOP_IDS = Array(
    "model_top_ids",
    ("prompt", "position"),
    "int",
    "the model's own top-1 token, read whenever a metric compares with it",
)

ARRAYS: dict[str, Array] = {
    **{array.name: array for metric in REGISTRY.values() for array in metric.arrays},
    MODEL_TOP_IDS.name: MODEL_TOP_IDS,
}
"""Every metric array of a result, by name."""

PICTURES: dict[str, Picture] = {
    metric.picture.name: metric.picture for metric in REGISTRY.values() if metric.picture
}
"""Metrics that can colour the logit-lens grid, by grid name."""


def picture(name: str) -> Picture:
    """The :data:`PICTURES` entry ``name`` (``--metric`` of ``grid``), or an error listing them."""
    if name not in PICTURES:
        raise InputError(f"Unknown grid metric {name!r}; choose from {list(PICTURES)}.")
    return PICTURES[name]


def producer(array: str) -> list[Metric]:
    """The metrics that produce ``array`` (several for ``model_top_ids``)."""
    if array == MODEL_TOP_IDS.name:
        return [metric for metric in REGISTRY.values() if "final" in metric.needs]
    return [metric for metric in REGISTRY.values() if any(a.name == array for a in metric.arrays)]


def hint(array: str) -> str:
    """How to compute ``array``, for an error message."""
    metrics = producer(array)
    if len(metrics) == 1:
        return metrics[0].hint
    return "metrics including " + " or ".join(f"'{metric.name}'" for metric in metrics)


def check_metrics(
    metrics: str | Sequence[str] | None, has_targets: bool, has_alternatives: bool
) -> frozenset[str]:
    """The metrics to compute: those asked for, plus what the given inputs imply.

    Targets add ``target`` (and, by default, ``target_rank``); alternatives add
    ``logit_diff``. An explicit list computes exactly what it names besides those.
    """
    names = metric_names(metrics)
    default = ["topk", "target_rank"] if has_targets else ["topk"]
    chosen = set(default if names is None else names)
    if has_targets:
        chosen.add("target")
    if has_alternatives:
        chosen.add("logit_diff")
    unknown = chosen - set(METRICS)
    if unknown:
        raise InputError(f"Unknown metric(s) {sorted(unknown)}; choose from {list(METRICS)}.")
    for name in sorted(chosen):
        needs = REGISTRY[name].needs
        if "targets" in needs and not has_targets:
            raise InputError(
                f"The {name!r} metric needs a target: pass targets=' word' (CLI: --target)."
            )
        if "alternatives" in needs and not has_alternatives:
            raise InputError(
                f"The {name!r} metric needs alternatives: pass alternatives=' word', shaped "
                "like targets, one per target (CLI: --alternative ' word')."
            )
    return frozenset(chosen)
