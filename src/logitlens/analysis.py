"""One trace per batch: every requested layer, lens and metric, reduced in place.

``analyze`` runs the model once per batch of prompts. Inside the nnsight trace it
reads the residual stream of the requested layers (in forward order), keeps only
the requested positions, stacks the layers so the unembedding is one batched
matmul, and reduces the logits to top-k, target statistics, entropy, KL and ranks
chunk by chunk. Only those small tensors are saved, so a remote NDIF run moves
kilobytes, and the full ``[layers, positions, vocab]`` tensor never exists: peak
extra memory is a few ``[chunk_rows, vocab]`` blocks.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import nnsight
import numpy as np
import torch
from tqdm.auto import tqdm

from .errors import InputError
from .lenses import Lens, Unembedding, get_lens
from .loading import LensModel
from .metrics import METRICS, entropy, kl_divergence, token_rank
from .options import (
    Layers,
    Positions,
    check_count,
    check_index,
    check_layers_spec,
    check_prompts,
    metric_names,
    parse_layers,
    parse_positions,
    position_items,
)
from .remote import trace_backend
from .remote.weights import unembedding_root
from .residuals import chunk_plan, read_residuals
from .results import LensResult
from .targets import Target, resolve_targets

DEFAULT_CHUNK_ROWS = 256
"""Rows (layer x position pairs) unembedded at once, unless one layer needs more."""


@dataclass(frozen=True)
class ReductionPlan:
    """What to reduce: layers (sorted, ``EMBED`` first), metrics, k and chunk size."""

    layers: list[int]
    metrics: frozenset[str]
    k: int
    chunk_rows: int
    n_layers: int

    @property
    def need_final(self) -> bool:
        return bool(self.metrics & {"kl", "final_rank"})

    @property
    def final_layer(self) -> int | None:
        """The last layer, read as the reference when a metric compares with it."""
        return self.n_layers - 1 if self.need_final else None


def _tokenize(model: LensModel, prompts: list[str]) -> list[list[int]]:
    limit = model.context_length
    encoded = []
    for index, prompt in enumerate(prompts):
        ids = model.tokenizer(prompt, add_special_tokens=True)["input_ids"]
        if limit is not None and len(ids) > limit:
            raise InputError(
                f"Prompt {index} is {len(ids)} tokens, longer than the model's context of "
                f"{limit} tokens. Shorten it or split it into several prompts."
            )
        encoded.append(list(ids))
    return encoded


def _check_metrics(metrics: str | Sequence[str] | None, has_targets: bool) -> frozenset[str]:
    names = metric_names(metrics)
    chosen = set(names) if names is not None else {"topk"}
    if has_targets:
        chosen.add("target")
    unknown = chosen - set(METRICS)
    if unknown:
        raise InputError(f"Unknown metric(s) {sorted(unknown)}; choose from {list(METRICS)}.")
    if "target" in chosen and not has_targets:
        raise InputError("The 'target' metric needs a target: pass targets=' word'.")
    return frozenset(chosen)


def analyze(
    model: LensModel,
    prompts: str | Sequence[str],
    *,
    lens: str | Lens = "logit",
    layers: Layers = None,
    positions: Positions = "last",
    k: int = 10,
    targets: Target | Sequence[Target] | Sequence[Sequence[Target]] | None = None,
    metrics: str | Sequence[str] | None = None,
    include_embed: bool = False,
    tuned_path: str | None = None,
    batch_size: int = 16,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: bool | None = None,
    timeout: float | None = None,
) -> LensResult:
    """Run a lens over prompts and reduce it to the requested metrics.

    Args:
        model: from :func:`logitlens.load_model`.
        prompts: one prompt or several (batched with left padding; results equal
            running each alone).
        lens: ``"logit"``, ``"raw"``, ``"tuned"`` (with ``tuned_path``) or a Lens.
        layers: ``None`` for all, or indices / ``"a:b"`` / ``"0,5,-1"``.
        positions: ``"last"``, ``"all"``, or token indices (negative from the end).
        k: how many top tokens to keep per layer and position.
        targets: one target for all prompts, one per prompt, or lists per prompt
            (see :mod:`logitlens.targets` for the multi-token policy).
        metrics: subset of :data:`logitlens.metrics.METRICS`; default ``["topk"]``,
            plus ``"target"`` whenever targets are given.
        include_embed: also read the embedding output, as layer ``EMBED`` (-1).
        batch_size: prompts per forward pass.
        chunk_rows: layer x position rows unembedded at once (memory bound).
        progress: show a progress bar; default: when there is more than one batch.
        timeout: seconds one remote batch may take on NDIF (default: ``model.timeout``).

    Example:
        >>> result = analyze(model, "Why do electricians ... know the", targets=" current")
        >>> result.first_layer_above(0.1)
    """
    if not isinstance(model, LensModel):
        raise InputError(
            f"analyze() needs a model from logitlens.load_model(), not {model!r}: "
            f"model = logitlens.load_model({model!r}) first."
            if isinstance(model, str)
            else f"analyze() needs a model from logitlens.load_model(), not {type(model).__name__}."
        )
    prompts = check_prompts(prompts)
    check_layers_spec(layers)
    position_items(positions)
    k = check_index(k, "k")
    if k < 1:
        raise InputError(f"k must be between 1 and the vocabulary size, got {k}.")
    batch_size = check_count(batch_size, "batch_size")
    _check_metrics(metrics, targets is not None)
    lens = get_lens(lens, tuned_path)
    lens.check_model(model)
    n_layers = model.n_layers
    vocab_size = model.vocab_size
    if k > vocab_size:
        raise InputError(f"k must be between 1 and the vocabulary size ({vocab_size}), got {k}.")
    layer_list = parse_layers(layers, n_layers, include_embed)
    token_ids = _tokenize(model, prompts)
    resolved = resolve_targets(model.tokenizer, targets, len(prompts), vocab_size)
    plan = ReductionPlan(
        layers=layer_list,
        metrics=_check_metrics(metrics, bool(resolved[0])),
        k=k,
        chunk_rows=max(1, chunk_rows),
        n_layers=n_layers,
    )
    position_lists = [parse_positions(positions, len(ids)) for ids in token_ids]
    n_columns = max(len(p) for p in position_lists)
    position_table = np.full((len(prompts), n_columns), -1, dtype=np.int64)
    for p, chosen in enumerate(position_lists):
        position_table[p, : len(chosen)] = chosen

    arrays: dict[str, np.ndarray] = {}
    starts = range(0, len(prompts), batch_size)
    show = progress if progress is not None else len(starts) > 1
    for start in tqdm(starts, desc="logit lens", unit="batch", disable=not show):
        batch = slice(start, start + batch_size)
        saved = _run_batch(
            model, lens, plan, token_ids[batch], position_table[batch], resolved[batch], timeout
        )
        _store(arrays, saved, batch, len(prompts), position_table[batch])

    ids_seen = {i for ids in token_ids for i in ids}
    for name in ("top_ids", "model_top_ids"):
        if name in arrays:
            ids_seen.update(int(i) for i in np.unique(arrays[name]) if i >= 0)
    for row in resolved:
        ids_seen.update(t.token_id for t in row)
    ordered = sorted(ids_seen)
    # One batched call: decoding token by token costs more than the lens on short prompts.
    vocab = dict(zip(ordered, model.tokenizer.batch_decode([[i] for i in ordered]), strict=True))
    return LensResult(
        model_name=model.name,
        lens=lens.name,
        prompts=prompts,
        tokens=[[vocab[i] for i in ids] for ids in token_ids],
        token_ids=token_ids,
        layers=layer_list,
        positions=position_table,
        k=k if "topk" in plan.metrics else 0,
        target_ids=[[t.token_id for t in row] for row in resolved],
        target_tokens=[[t.token for t in row] for row in resolved],
        vocab=vocab,
        **arrays,
    )


def _run_batch(
    model: LensModel,
    lens: Lens,
    plan: ReductionPlan,
    token_ids: list[list[int]],
    position_table: np.ndarray,
    resolved: list[list[Any]],
    timeout: float | None = None,
) -> dict[str, torch.Tensor]:
    """One forward pass over a left-padded batch; returns the saved reductions."""
    lengths = [len(ids) for ids in token_ids]
    width = max(lengths)
    pad_id = model.tokenizer.pad_token_id or 0
    input_ids = torch.full((len(token_ids), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(token_ids), width), dtype=torch.long)
    for row, ids in enumerate(token_ids):
        input_ids[row, width - len(ids) :] = torch.tensor(ids)
        attention_mask[row, width - len(ids) :] = 1
    inputs: dict[str, torch.Tensor] = {"input_ids": input_ids, "attention_mask": attention_mask}
    if _accepts_position_ids(model):
        inputs["position_ids"] = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    # Index of each analysed position in the padded batch; padding columns read
    # token 0 of the row and are discarded afterwards.
    offsets = torch.tensor([width - n for n in lengths]).unsqueeze(1)
    table = torch.from_numpy(position_table)
    gather_index = torch.where(table >= 0, table + offsets, 0)
    target_ids = torch.tensor([[t.token_id for t in row] for row in resolved], dtype=torch.long)
    if target_ids.numel() == 0:
        target_ids = target_ids.reshape(len(token_ids), 0)

    nn_model = model.nn
    backend = trace_backend(model, timeout)
    if backend is not None and lens.carries_weights:
        # The lens stays here: NDIF sends back the residuals, reduced here on a local
        # copy of the final norm and unembedding (remote.weights).
        architecture = model.architecture
        with nn_model.trace(inputs, backend=backend) as tracer:
            residuals = nnsight.save(
                read_residuals(nn_model, architecture, plan.layers, gather_index, plan.final_layer)
            )
            tracer.stop()
        unembedding = Unembedding(unembedding_root(model), architecture, model.config)
        residuals = {name: value.float() for name, value in residuals.items()}
        saved = reduce_residuals(
            unembedding, lens, plan, residuals, tuple(gather_index.shape), target_ids
        )
        return {name: value.detach().cpu() for name, value in saved.items()}
    with nn_model.trace(inputs, remote=model.remote, backend=backend) as tracer:
        saved = nnsight.save(
            lens_reductions(
                nn_model, model.architecture, model.config, lens, plan, gather_index, target_ids
            )
        )
        tracer.stop()
    return {name: value.detach().cpu() for name, value in saved.items()}


def _accepts_position_ids(model: LensModel) -> bool:
    return "position_ids" in inspect.signature(model.module.forward).parameters


def lens_reductions(
    root: Any,
    architecture: Any,
    config: Any,
    lens: Lens,
    plan: ReductionPlan,
    gather_index: torch.Tensor,
    target_ids: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """The trace body: read layers, unembed in chunks, reduce. Runs where the model is.

    ``root`` is the nnsight envoy of the model; ``gather_index`` ``[batch, columns]``
    picks positions in the padded input; ``target_ids`` is ``[batch, targets]``.
    Returns tensors shaped ``[layer, batch, column, ...]`` (``[batch, column]`` for
    ``model_top_ids``).
    """
    residuals = read_residuals(root, architecture, plan.layers, gather_index, plan.final_layer)
    unembedding = Unembedding(root, architecture, config)
    return reduce_residuals(unembedding, lens, plan, residuals, gather_index.shape, target_ids)


def reduce_residuals(
    unembedding: Unembedding,
    lens: Lens,
    plan: ReductionPlan,
    residuals: dict[str, torch.Tensor],
    shape: tuple[int, int],
    target_ids: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Lens, unembedding and metrics, chunk by chunk, on residuals from :func:`read_residuals`.

    ``shape`` is ``(batch, columns)``. Runs inside the trace (the logit and raw lenses,
    on NDIF too), or here on saved residuals (lenses with weights on NDIF).
    """
    stacked = residuals["stacked"]
    device = stacked.device
    batch, columns = shape
    rows = batch * columns
    targets = target_ids.to(device).repeat_interleave(columns, dim=0)

    final_hidden = residuals["final"].to(device) if plan.need_final else None
    out: dict[str, torch.Tensor] = {}
    reference: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def final_distribution(row_part: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """Model's own log-probs ``[1, r, vocab]`` and top-1 ``[1, r, 1]`` for some rows."""
        key = (row_part.start, row_part.stop)
        if key not in reference:
            reference.clear()  # row chunks come in order: keep one at a time
            final_logprobs = unembedding.model_logprobs(final_hidden[:, row_part])
            top = final_logprobs.argmax(-1, keepdim=True)
            reference[key] = (final_logprobs, top)
            if "model_top_ids" not in out:
                out["model_top_ids"] = top.new_empty((rows,))
            out["model_top_ids"][row_part] = top.reshape(-1)
        return reference[key]

    def put(name: str, where: tuple[slice, slice], value: torch.Tensor) -> None:
        if name not in out:
            out[name] = value.new_empty((len(plan.layers), rows, *value.shape[2:]))
        out[name][where] = value

    for layer_part, row_part in chunk_plan(len(plan.layers), rows, plan.chunk_rows):
        chunk_layers = plan.layers[layer_part]
        where = (layer_part, row_part)
        logits = lens.project(unembedding, stacked[where], chunk_layers).float()
        n_chunk_layers = logits.shape[0]
        if "target" in plan.metrics:
            chosen = targets[row_part].expand(n_chunk_layers, -1, -1)
            put("target_logit", where, logits.gather(-1, chosen))
        # log_softmax is one fused pass (far faster than logsumexp on CPU); ranks and
        # top-k are the same on log-probabilities as on logits.
        logprobs = logits.log_softmax(-1)
        del logits
        if "topk" in plan.metrics:
            values, indices = logprobs.topk(plan.k, dim=-1)
            put("top_ids", where, indices)
            put("top_probs", where, values.exp())
        if "target" in plan.metrics:
            put("target_prob", where, logprobs.gather(-1, chosen).exp())
            put("target_rank", where, token_rank(logprobs, chosen))
        if "entropy" in plan.metrics:
            put("entropy", where, entropy(logprobs))
        if plan.need_final:
            final_logprobs, final_top = final_distribution(row_part)
            if "final_rank" in plan.metrics:
                chosen_final = final_top.expand(n_chunk_layers, -1, -1)
                put("final_rank", where, token_rank(logprobs, chosen_final)[..., 0])
            if "kl" in plan.metrics:
                put("kl", where, kl_divergence(final_logprobs, logprobs))

    return {
        name: value.reshape(
            *(() if name == "model_top_ids" else (len(plan.layers),)),
            batch,
            columns,
            *value.shape[(1 if name == "model_top_ids" else 2) :],
        )
        for name, value in out.items()
    }


def _store(
    arrays: dict[str, np.ndarray],
    saved: dict[str, torch.Tensor],
    batch: slice,
    n_prompts: int,
    position_table: np.ndarray,
) -> None:
    """Copy one batch's tensors into the result arrays ``[prompt, layer, column, ...]``."""
    valid = position_table >= 0
    for name, tensor in saved.items():
        values = tensor.numpy()
        if name != "model_top_ids":
            values = np.moveaxis(values, 0, 1)  # [batch, layer, column, ...]
        floating = np.issubdtype(values.dtype, np.floating)
        if name not in arrays:
            shape = (n_prompts, *values.shape[1:])
            arrays[name] = np.full(shape, np.nan if floating else -1, dtype=values.dtype)
        mask = valid if name == "model_top_ids" else valid[:, None, :]
        mask = mask.reshape(mask.shape + (1,) * (values.ndim - mask.ndim))
        arrays[name][batch] = np.where(mask, values, np.nan if floating else -1)
