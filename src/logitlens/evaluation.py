"""How well lenses predict the model's output and the text, layer by layer.

For each lens and layer, over every position of held-out text:

- ``kl``: KL(final-layer distribution || lens distribution), in nats;
- ``top1_agreement``: how often the lens's top token is the model's own top token;
- ``cross_entropy``: against the actual next token, in nats;
- ``perplexity``: ``exp(cross_entropy)``.

The residual stream comes from one plain-PyTorch forward pass per batch with hooks
on the decoder layers (the same reading the tuned-lens training uses), and every
lens is applied through its own :meth:`Lens.project`, so numbers here are the
numbers ``analyze`` would give.

On prompts with known answers (the bundled study items: puns, literal sentences,
facts, two-hop questions), :func:`pass_at_k` scores how often the answer is among a
lens's top ``k`` tokens at the last position, per layer and category.
:func:`scoreboard` puts both side by side for any set of lenses (raw, logit, tuned,
Jacobian, imported); ``logitlens lens eval`` prints it, plots it and writes JSON.

Example:
    >>> evaluation = evaluate_lenses(model, ["raw", "logit", tuned], heldout_documents)
    >>> evaluation.to_dataframe()
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .errors import InputError
from .lenses import EMBED, Lens, Unembedding, get_lens
from .metrics import kl_divergence
from .options import check_index, plain
from .residuals import BULK_CHUNK_ROWS, chunk_plan, residual_stream
from .training.corpus import tokenize_documents
from .views import InlineView

if TYPE_CHECKING:
    from .loading import LensModel

DEFAULT_CHUNK_ROWS = BULK_CHUNK_ROWS
"""Layer x position rows unembedded at once (:data:`logitlens.residuals.BULK_CHUNK_ROWS`)."""


@dataclass
class LensEvaluation(InlineView):
    """Per-lens, per-layer KL, top-1 agreement, cross-entropy and perplexity on held-out text.

    ``kl[lens][i]`` and ``cross_entropy[lens][i]`` describe ``layers[i]`` (``EMBED`` = -1);
    ``top1_agreement[lens][i]`` is the fraction of positions where the lens's top token
    is the model's own.
    """

    model_name: str
    layers: list[int]
    lenses: list[str]
    kl: dict[str, list[float]]
    cross_entropy: dict[str, list[float]]
    tokens: int
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    top1_agreement: dict[str, list[float]] = field(default_factory=dict)

    def perplexity(self, lens: str) -> list[float]:
        return [float(torch.tensor(ce).exp()) for ce in self.cross_entropy[lens]]

    def layer_labels(self) -> list[str]:
        return ["embed" if layer == EMBED else str(layer) for layer in self.layers]

    def to_dataframe(self) -> Any:
        """Long format: one row per (lens, layer): kl, top1_agreement, cross_entropy,
        perplexity."""
        import pandas as pd

        rows = [
            {
                "lens": lens,
                "layer": label,
                "kl": self.kl[lens][i],
                "top1_agreement": self.top1_agreement[lens][i],
                "cross_entropy": self.cross_entropy[lens][i],
                "perplexity": self.perplexity(lens)[i],
            }
            for lens in self.lenses
            for i, label in enumerate(self.layer_labels())
        ]
        return pd.DataFrame(rows)

    def wide(self, metric: str = "kl") -> Any:
        """One row per layer, one column per lens, for ``metric``."""
        frame = self.to_dataframe()
        table = frame.pivot(index="layer", columns="lens", values=metric)
        return table.loc[self.layer_labels(), self.lenses]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "layers": self.layers,
            "lenses": self.lenses,
            "kl": self.kl,
            "top1_agreement": self.top1_agreement,
            "cross_entropy": self.cross_entropy,
            "perplexity": {lens: self.perplexity(lens) for lens in self.lenses},
            "tokens": self.tokens,
            "seconds": self.seconds,
            "info": self.info,
        }


def labelled_lenses(lenses: Sequence[str | Lens] | Mapping[str, str | Lens]) -> dict[str, Lens]:
    """Lens objects by label: a mapping's keys, else each lens's name (``tuned-2`` for a
    second lens of the same name)."""
    if isinstance(lenses, Mapping):
        return {label: get_lens(lens) for label, lens in lenses.items()}
    labelled: dict[str, Lens] = {}
    for lens in map(get_lens, lenses):
        label, number = lens.name, 1
        while label in labelled:
            number += 1
            label = f"{lens.name}-{number}"
        labelled[label] = lens
    return labelled


def evaluate_lenses(
    model: LensModel,
    lenses: Sequence[str | Lens] | Mapping[str, str | Lens],
    documents: Sequence[str] | torch.Tensor,
    *,
    seq_len: int = 128,
    batch_size: int = 4,
    max_tokens: int | None = 2048,
    include_embed: bool = True,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: bool = False,
) -> LensEvaluation:
    """KL to the final layer, next-token cross-entropy and perplexity, per lens and layer.

    Args:
        model: from :func:`logitlens.load_model` (local).
        lenses: names (``"raw"``, ``"logit"``) or Lens objects, e.g. a TunedLens; or a
            mapping ``label -> lens`` to name them in the result.
        documents: held-out texts, or token ids ``[n_sequences, seq_len]`` already packed.
        max_tokens: stop after this many tokens (``None``: all of them).
        include_embed: also evaluate the embedding output (layer ``EMBED``).

    The last position of each sequence has no next token and is left out of both means.
    """
    import time

    from tqdm.auto import tqdm

    lens_objects = labelled_lenses(lenses)
    for lens in lens_objects.values():
        lens.check_model(model)
    sequences = (
        documents
        if isinstance(documents, torch.Tensor)
        else tokenize_documents(model.tokenizer, documents, seq_len)
    )
    if max_tokens is not None:
        sequences = sequences[: max(1, max_tokens // sequences.shape[1])]
    if len(sequences) == 0:
        raise InputError(
            f"The evaluation text is shorter than one sequence of {seq_len} tokens; give "
            "more held-out text or a smaller seq_len."
        )
    layers = ([EMBED] if include_embed else []) + list(range(model.n_layers))
    unembedding = Unembedding(model.module, model.architecture, model.config)
    sums = {
        (label, metric): torch.zeros(len(layers), dtype=torch.float64)
        for label in lens_objects
        for metric in ("kl", "ce", "top1")
    }
    count = 0
    start = time.perf_counter()
    for first in tqdm(
        range(0, len(sequences), batch_size), desc="evaluating", unit="batch", disable=not progress
    ):
        input_ids = sequences[first : first + batch_size]
        residuals = residual_stream(model, input_ids)[:, :, :-1]  # last position: no next token
        _, batch, positions, d_model = residuals.shape
        rows = batch * positions
        hidden = residuals.reshape(-1, rows, d_model)[[layer + 1 for layer in layers]]
        reference = unembedding.model_logprobs(hidden[-1:])
        model_top = reference.argmax(-1)  # [1, rows]
        next_ids = input_ids[:, 1:].reshape(1, rows, 1).to(hidden.device)
        with torch.no_grad():
            for label, lens in lens_objects.items():
                for layer_part, row_part in chunk_plan(len(layers), rows, chunk_rows):
                    part = hidden[layer_part, row_part]
                    logprobs = lens.project(unembedding, part, layers[layer_part])
                    logprobs = logprobs.float().log_softmax(-1)
                    kl = kl_divergence(reference[:, row_part], logprobs).sum(-1)
                    chosen = next_ids[:, row_part].expand(len(logprobs), -1, -1)
                    ce = -logprobs.gather(-1, chosen).sum((-1, -2))
                    agree = (logprobs.argmax(-1) == model_top[:, row_part]).sum(-1)
                    sums[label, "kl"][layer_part] += kl.double().cpu()
                    sums[label, "ce"][layer_part] += ce.double().cpu()
                    sums[label, "top1"][layer_part] += agree.double().cpu()
        count += rows

    def means(metric: str) -> dict[str, list[float]]:
        return {label: (sums[label, metric] / count).tolist() for label in lens_objects}

    return LensEvaluation(
        model_name=model.name,
        layers=layers,
        lenses=list(lens_objects),
        kl=means("kl"),
        cross_entropy=means("ce"),
        tokens=count,
        seconds=time.perf_counter() - start,
        top1_agreement=means("top1"),
    )


@dataclass
class PassAtK:
    """How often a prompt's known answer is among a lens's top ``k`` tokens, per layer.

    ``values[lens][category][k][i]`` is the fraction of items of ``category`` (``"all"``
    for every item) whose target's first token ranks ``<= k`` at ``layers[i]``, at the
    prompt's last position.
    """

    model_name: str
    layers: list[int]
    lenses: list[str]
    ks: list[int]
    categories: dict[str, int]
    values: dict[str, dict[str, dict[int, list[float]]]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "layers": self.layers,
            "lenses": self.lenses,
            "ks": self.ks,
            "categories": self.categories,
            "values": {
                lens: {cat: {str(k): v for k, v in by_k.items()} for cat, by_k in by_cat.items()}
                for lens, by_cat in self.values.items()
            },
        }


def check_ks(ks: Sequence[int], vocab_size: int) -> list[int]:
    """The k values of pass@k, each at least 1 and below the vocabulary size.

    A target's rank is at most ``vocab_size``, so a k that large passes every item: a
    score of 1.0 that says nothing.
    """
    ks = [check_index(k, "k of pass@k") for k in plain(ks)]
    if not ks or not all(1 <= k < vocab_size for k in ks):
        raise InputError(
            f"pass@k needs every k between 1 and {vocab_size - 1:,} (below the vocabulary "
            f"size, where every item passes), got {ks}; e.g. 1,10."
        )
    return ks


def pass_at_k(
    model: LensModel,
    lenses: Sequence[str | Lens] | Mapping[str, str | Lens],
    items: Sequence[Any],
    *,
    ks: Sequence[int] = (1, 10),
    include_embed: bool = True,
    batch_size: int = 16,
    progress: bool = False,
) -> PassAtK:
    """pass@k per lens, layer and category on ``items`` (with ``prompt``, ``target`` and
    ``category``, e.g. :func:`logitlens.studies.dataset.load_items`).

    Multi-token targets are scored on their first token (see :mod:`logitlens.targets`).
    """
    import warnings

    import numpy as np

    from .analysis import analyze

    if not items:
        raise InputError("No items to score pass@k on; give a non-empty items file.")
    ks = check_ks(ks, model.vocab_size)
    lens_objects = labelled_lenses(lenses)
    categories = ["all", *dict.fromkeys(item.category for item in items)]
    members = {
        cat: np.array([cat == "all" or item.category == cat for item in items])
        for cat in categories
    }
    values: dict[str, dict[str, dict[int, list[float]]]] = {}
    layers: list[int] = []
    for label, lens in lens_objects.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # multi-token targets: first token, by design
            result = analyze(
                model,
                [item.prompt for item in items],
                lens=lens,
                targets=[item.target for item in items],
                metrics=["target", "target_rank"],
                include_embed=include_embed,
                batch_size=batch_size,
                progress=progress,
            )
        layers = result.layers
        ranks = result.target_rank[:, :, 0, 0]  # [item, layer]
        values[label] = {
            cat: {k: (ranks[members[cat]] <= k).mean(0).tolist() for k in ks} for cat in categories
        }
    return PassAtK(
        model_name=model.name,
        layers=layers,
        lenses=list(lens_objects),
        ks=list(ks),
        categories={cat: int(members[cat].sum()) for cat in categories},
        values=values,
    )


@dataclass
class Scoreboard(InlineView):
    """Every lens on the same footing: held-out text metrics and pass@k (if items given)."""

    evaluation: LensEvaluation
    pass_at_k: PassAtK | None = None

    def to_dict(self) -> dict[str, Any]:
        """The evaluation's fields, plus ``pass_at_k`` and the per-lens ``summary``."""
        return {
            **self.evaluation.to_dict(),
            "pass_at_k": self.pass_at_k.to_dict() if self.pass_at_k else None,
            "summary": self.summary(),
        }

    def summary(self) -> dict[str, dict[str, float]]:
        """Per lens, means over layers (EMBED and the last layer left out, where every
        lens is near-trivial or equal): KL, top-1 agreement, perplexity, pass@k (all)."""
        evaluation = self.evaluation
        middle = slice(1 if evaluation.layers[0] == EMBED else 0, -1)
        rows: dict[str, dict[str, float]] = {}
        for lens in evaluation.lenses:
            row = {
                "kl": _mean(evaluation.kl[lens][middle]),
                "top1_agreement": _mean(evaluation.top1_agreement[lens][middle]),
                "perplexity": _mean(evaluation.perplexity(lens)[middle]),
            }
            if self.pass_at_k is not None:
                for k in self.pass_at_k.ks:
                    row[f"pass@{k}"] = _mean(self.pass_at_k.values[lens]["all"][k][middle])
            rows[lens] = row
        return rows


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def scoreboard(
    model: LensModel,
    lenses: Sequence[str | Lens] | Mapping[str, str | Lens],
    documents: Sequence[str] | torch.Tensor,
    items: Sequence[Any] | None = None,
    *,
    ks: Sequence[int] = (1, 10),
    progress: bool = False,
    **evaluate_options: Any,
) -> Scoreboard:
    """:func:`evaluate_lenses` on ``documents`` and, with ``items``, :func:`pass_at_k`."""
    if items:
        ks = check_ks(ks, model.vocab_size)  # before the evaluation's minutes, not after
    lens_objects = labelled_lenses(lenses)
    evaluation = evaluate_lenses(
        model, lens_objects, documents, progress=progress, **evaluate_options
    )
    scored = (
        pass_at_k(
            model,
            lens_objects,
            items,
            ks=ks,
            include_embed=evaluation.layers[0] == EMBED,
            progress=progress,
        )
        if items
        else None
    )
    return Scoreboard(evaluation, scored)
