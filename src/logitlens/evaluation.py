"""How well lenses predict the model's output and the text, layer by layer.

For each lens and layer, over every position of held-out text:

- ``kl``: KL(final-layer distribution || lens distribution), in nats;
- ``cross_entropy``: against the actual next token, in nats;
- ``perplexity``: ``exp(cross_entropy)``.

The residual stream comes from one plain-PyTorch forward pass per batch with hooks
on the decoder layers (the same reading the tuned-lens training uses), and every
lens is applied through its own :meth:`Lens.project`, so numbers here are the
numbers ``analyze`` would give.

Example:
    >>> evaluation = evaluate_lenses(model, ["raw", "logit", tuned], heldout_documents)
    >>> evaluation.to_dataframe()
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import InputError
from .lenses import EMBED, Lens, Unembedding, get_lens
from .metrics import kl_divergence
from .residuals import BULK_CHUNK_ROWS, chunk_plan, residual_stream
from .training.corpus import tokenize_documents

DEFAULT_CHUNK_ROWS = BULK_CHUNK_ROWS
"""Layer x position rows unembedded at once (:data:`logitlens.residuals.BULK_CHUNK_ROWS`)."""


@dataclass
class LensEvaluation:
    """Per-lens, per-layer KL, cross-entropy and perplexity on held-out text.

    ``kl[lens][i]`` and ``cross_entropy[lens][i]`` describe ``layers[i]`` (``EMBED`` = -1).
    """

    model_name: str
    layers: list[int]
    lenses: list[str]
    kl: dict[str, list[float]]
    cross_entropy: dict[str, list[float]]
    tokens: int
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    def perplexity(self, lens: str) -> list[float]:
        return [float(torch.tensor(ce).exp()) for ce in self.cross_entropy[lens]]

    def layer_labels(self) -> list[str]:
        return ["embed" if layer == EMBED else str(layer) for layer in self.layers]

    def to_dataframe(self) -> Any:
        """Long format: one row per (lens, layer) with kl, cross_entropy, perplexity."""
        import pandas as pd

        rows = [
            {
                "lens": lens,
                "layer": label,
                "kl": self.kl[lens][i],
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
            "cross_entropy": self.cross_entropy,
            "perplexity": {lens: self.perplexity(lens) for lens in self.lenses},
            "tokens": self.tokens,
            "seconds": self.seconds,
            "info": self.info,
        }


def evaluate_lenses(
    model: Any,
    lenses: Sequence[str | Lens],
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
        lenses: names (``"raw"``, ``"logit"``) or Lens objects, e.g. a TunedLens.
        documents: held-out texts, or token ids ``[n_sequences, seq_len]`` already packed.
        max_tokens: stop after this many tokens (``None``: all of them).
        include_embed: also evaluate the embedding output (layer ``EMBED``).

    The last position of each sequence has no next token and is left out of both means.
    """
    import time

    from tqdm.auto import tqdm

    lens_objects = [get_lens(lens) for lens in lenses]
    for lens in lens_objects:
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
    kl_sums = {lens.name: torch.zeros(len(layers), dtype=torch.float64) for lens in lens_objects}
    ce_sums = {lens.name: torch.zeros(len(layers), dtype=torch.float64) for lens in lens_objects}
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
        next_ids = input_ids[:, 1:].reshape(1, rows, 1).to(hidden.device)
        with torch.no_grad():
            for lens in lens_objects:
                for layer_part, row_part in chunk_plan(len(layers), rows, chunk_rows):
                    part = hidden[layer_part, row_part]
                    logprobs = lens.project(unembedding, part, layers[layer_part])
                    logprobs = logprobs.float().log_softmax(-1)
                    kl = kl_divergence(reference[:, row_part], logprobs).sum(-1)
                    chosen = next_ids[:, row_part].expand(len(logprobs), -1, -1)
                    ce = -logprobs.gather(-1, chosen).sum((-1, -2))
                    kl_sums[lens.name][layer_part] += kl.double().cpu()
                    ce_sums[lens.name][layer_part] += ce.double().cpu()
        count += rows
    names = [lens.name for lens in lens_objects]
    return LensEvaluation(
        model_name=model.name,
        layers=layers,
        lenses=names,
        kl={name: (kl_sums[name] / count).tolist() for name in names},
        cross_entropy={name: (ce_sums[name] / count).tolist() for name in names},
        tokens=count,
        seconds=time.perf_counter() - start,
    )
