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

import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import nnsight
import numpy as np
import torch
from tqdm.auto import tqdm

from .attribution import (
    Attribution,
    InsidePlan,
    build_attribution,
    make_plan,
    project_parts,
    projected_ids,
    read_parts,
    store_parts,
)
from .batching import plan_batches
from .errors import InputError
from .lenses import Lens, Unembedding, get_lens
from .loading import LensModel
from .metrics import REGISTRY, Metric, check_metrics
from .options import (
    Layers,
    Positions,
    check_count,
    check_index,
    check_layers_spec,
    check_prompts,
    parse_layers,
    parse_positions,
    position_items,
)
from .residuals import analysis_chunk_rows, chunk_plan, read_residuals
from .results import LensResult
from .sublayers import resid_mid_path
from .targets import Target, resolve_targets

ATTRIBUTION = "attribution_"
"""Prefix of the attribution's tensors among a trace's saved reductions."""


@dataclass(frozen=True)
class ReductionPlan:
    """What to reduce: layers (sorted, ``EMBED`` first), metrics, k and chunk size."""

    layers: list[int]
    metrics: frozenset[str]
    k: int
    chunk_rows: int
    n_layers: int
    mid: str | None = None
    """``Sublayers.resid_mid`` when layers are read between attention and MLP."""
    inside: InsidePlan | None = None
    """Set when the same trace also computes the direct logit attribution."""

    @property
    def chosen(self) -> list[Metric]:
        """The registry entries of ``metrics``, in registry order."""
        return [metric for name, metric in REGISTRY.items() if name in self.metrics]

    @property
    def needs(self) -> frozenset[str]:
        """The inputs the chosen metrics need (see :data:`logitlens.metrics.INPUTS`)."""
        return frozenset().union(*(metric.needs for metric in self.chosen))

    @property
    def need_final(self) -> bool:
        return "final" in self.needs

    @property
    def final_layer(self) -> int | None:
        """The last layer, read as the reference when a metric compares with it."""
        return self.n_layers - 1 if self.need_final else None


def tokenize_prompts(model: LensModel, prompts: list[str]) -> list[list[int]]:
    """Each prompt's token ids (with special tokens); one that outgrows the context is refused."""
    limit = model.context_length
    # One call for every prompt: the tokenizer's own per-call overhead, paid once.
    encoded = [list(ids) for ids in model.tokenizer(prompts, add_special_tokens=True)["input_ids"]]
    for index, ids in enumerate(encoded):
        if limit is not None and len(ids) > limit:
            raise InputError(
                f"Prompt {index} is {len(ids)} tokens, longer than the model's context of "
                f"{limit} tokens. Shorten it or split it into several prompts."
            )
    return encoded


def analyze(
    model: LensModel,
    prompts: str | Sequence[str],
    *,
    lens: str | Lens = "logit",
    layers: Layers = None,
    positions: Positions = "last",
    k: int = 10,
    targets: Target | Sequence[Target] | Sequence[Sequence[Target]] | None = None,
    alternatives: Target | Sequence[Target] | Sequence[Sequence[Target]] | None = None,
    metrics: str | Sequence[str] | None = None,
    include_embed: bool = False,
    site: str = "post",
    attribution: bool = False,
    heads: bool = False,
    tuned_path: str | None = None,
    batch_size: int = 16,
    chunk_rows: int | None = None,
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
        alternatives: shaped like ``targets``, one alternative per target (e.g. the
            literal word for a pun's word); adds ``logit_diff``, target minus alternative.
        metrics: subset of :data:`logitlens.metrics.METRICS`; default ``["topk"]``, plus
            ``"target"`` and ``"target_rank"`` when targets are given. ``"target"`` is
            added to any list whenever targets are given (``"logit_diff"`` whenever
            alternatives are).
        include_embed: also read the embedding output, as layer ``EMBED`` (-1).
        site: ``"post"`` reads each layer's output; ``"mid"`` the residual between its
            attention and MLP (logit and raw lenses; see :mod:`logitlens.sublayers`).
        attribution: in the same trace, split each target's logit (and target minus
            alternative) into embedding, attention and MLP parts: ``result.attribution``,
            an :class:`~logitlens.attribution.Attribution` (needs targets).
        heads: with ``attribution``, also split attention into heads.
        batch_size: prompts per forward pass.
        chunk_rows: layer x position rows unembedded at once (a memory bound; the
            numbers do not depend on it). Default: as many as fit in 128 MiB of fp32
            logits, at least 256 (:func:`logitlens.residuals.analysis_chunk_rows`).
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
    check_metrics(metrics, targets is not None, alternatives is not None)
    lens = get_lens(lens, tuned_path)
    lens.check_model(model)
    mid = resid_mid_path(model, site, lens.name)
    n_layers = model.n_layers
    vocab_size = model.vocab_size
    if k > vocab_size:
        raise InputError(f"k must be between 1 and the vocabulary size ({vocab_size}), got {k}.")
    layer_list = parse_layers(layers, n_layers, include_embed)
    token_ids = tokenize_prompts(model, prompts)
    resolved = resolve_targets(model.tokenizer, targets, len(prompts), vocab_size)
    alternative_rows = (
        None
        if alternatives is None
        else resolve_targets(
            model.tokenizer, alternatives, len(prompts), vocab_size, "alternatives"
        )
    )
    shapes = [len(row) for row in resolved]
    if alternative_rows is not None and shapes[0] and [len(r) for r in alternative_rows] != shapes:
        raise InputError(
            "alternatives must be shaped like targets: one alternative per target of each "
            "prompt, e.g. targets=' current', alternatives=' electricity'."
        )
    inside = None
    if attribution:
        if not resolved[0]:
            raise InputError(
                "attribution=True needs targets: the parts are shares of a target's logit, "
                "e.g. targets=' current'."
            )
        inside = make_plan(model, heads)
    plan = ReductionPlan(
        layers=layer_list,
        metrics=check_metrics(metrics, bool(resolved[0]), bool(alternative_rows)),
        k=k,
        chunk_rows=analysis_chunk_rows(vocab_size) if chunk_rows is None else max(1, chunk_rows),
        n_layers=n_layers,
        mid=mid,
        inside=inside,
    )
    position_lists = [parse_positions(positions, len(ids)) for ids in token_ids]
    n_columns = max(len(p) for p in position_lists)
    position_table = np.full((len(prompts), n_columns), -1, dtype=np.int64)
    for p, chosen in enumerate(position_lists):
        position_table[p, : len(chosen)] = chosen
    token_inputs = _token_inputs(plan, token_ids, position_table, resolved, alternative_rows)
    if inside is not None:
        ids = projected_ids(resolved, alternative_rows)
        token_inputs[ATTRIBUTION] = np.repeat(ids[:, None, :], n_columns, axis=1)

    arrays: dict[str, np.ndarray] = {}
    parts: dict[str, np.ndarray] = {}
    # Prompts of similar length share a batch (padding is computed like any token);
    # inside a batch they keep their order, so a single batch is the prompts as given.
    batches = [sorted(batch) for batch in plan_batches([len(i) for i in token_ids], batch_size)]
    show = progress if progress is not None else len(batches) > 1
    for batch in tqdm(batches, desc="logit lens", unit="batch") if show else batches:
        # No autograd bookkeeping on the thousands of small ops of a forward pass (the
        # same numbers; a few ms per batch, several % of a one-prompt analysis on a CPU).
        with torch.inference_mode():
            saved = _run_batch(
                model,
                lens,
                plan,
                [token_ids[i] for i in batch],
                position_table[batch],
                {name: values[batch] for name, values in token_inputs.items()},
                timeout,
            )
        if inside is not None:
            found = {name: saved.pop(name) for name in list(saved) if name.startswith(ATTRIBUTION)}
            found = {name[len(ATTRIBUTION) :]: value for name, value in found.items()}
            store_parts(model, parts, found, batch, len(prompts), position_table[batch])
        _store(arrays, saved, batch, len(prompts), position_table[batch])

    ids_seen = {i for ids in token_ids for i in ids}
    for name in ("top_ids", "model_top_ids"):
        if name in arrays:
            seen = np.unique(arrays[name])
            ids_seen.update(seen[seen >= 0].tolist())
    for row in [*resolved, *(alternative_rows or [])]:
        ids_seen.update(t.token_id for t in row)
    vocab = model.decode_each(ids_seen)
    return LensResult(
        model_name=model.name,
        lens=lens.name,
        site=site,
        prompts=prompts,
        tokens=[[vocab[i] for i in ids] for ids in token_ids],
        token_ids=token_ids,
        layers=layer_list,
        positions=position_table,
        k=k if "topk" in plan.metrics else 0,
        target_ids=[[t.token_id for t in row] for row in resolved],
        target_tokens=[[t.token for t in row] for row in resolved],
        alternative_ids=[[t.token_id for t in row] for row in alternative_rows or []],
        alternative_tokens=[[t.token for t in row] for row in alternative_rows or []],
        vocab=vocab,
        attribution=None
        if inside is None
        else build_attribution(
            model, prompts, token_ids, position_table, inside, resolved, alternative_rows, parts
        ),
        **arrays,
    )


def attribute(
    model: LensModel,
    prompts: str | Sequence[str],
    *,
    target: Target | Sequence[Target] | Sequence[Sequence[Target]],
    alternative: Target | Sequence[Target] | Sequence[Sequence[Target]] | None = None,
    heads: bool = False,
    positions: Positions = "last",
    batch_size: int = 16,
    progress: bool | None = None,
    timeout: float | None = None,
) -> Attribution:
    """Split the model's logit for ``target`` into embedding, attention, MLP (and heads).

    Args:
        model: from :func:`logitlens.load_model` (local, ``remote=True`` or ``"local"``).
        prompts: one prompt or several (batched with left padding; results equal
            running each alone).
        target: one target for all prompts, one per prompt, or lists per prompt
            (as in :func:`logitlens.analyze`).
        alternative: shaped like ``target``; adds :attr:`Attribution.difference`, each
            part's share of target minus alternative.
        heads: also split each attention part into its heads.
        positions: ``"last"``, ``"all"``, or token indices (negative from the end).
        batch_size: prompts per forward pass.
        timeout: seconds one remote batch may take on NDIF.

    The parts sum to the model's own logit (see the module docstring for the identity).

    Example:
        >>> attribute(model, "The capital of France is", target=" Paris").target.mlp
    """
    if not isinstance(model, LensModel):
        raise InputError(
            f"attribute() needs a model from logitlens.load_model(), not {type(model).__name__}."
        )
    if target is None:
        raise InputError("attribute() needs a target token, e.g. target=' Paris'.")
    # One trace per batch; the lens part is the cheapest there is: the last layer only.
    result = analyze(
        model,
        prompts,
        layers=[-1],
        positions=positions,
        targets=target,
        alternatives=alternative,
        metrics=["target"],
        attribution=True,
        heads=heads,
        batch_size=batch_size,
        progress=progress,
        timeout=timeout,
    )
    return result.attribution


def _run_batch(
    model: LensModel,
    lens: Lens,
    plan: ReductionPlan,
    token_ids: list[list[int]],
    position_table: np.ndarray,
    token_inputs: dict[str, np.ndarray],
    timeout: float | None = None,
) -> dict[str, torch.Tensor]:
    """One forward pass over a left-padded batch; returns the saved reductions."""
    inputs, gather_index = padded_inputs(model, token_ids, position_table)
    tokens = {name: torch.from_numpy(values) for name, values in token_inputs.items()}

    nn_model = model.nn
    if model.applies_here(lens):
        # The lens stays here: NDIF sends back the residuals, reduced here (reduce_here).
        # Plain values only in the trace body: what it names travels to NDIF.
        architecture, layers, final_layer = model.architecture, plan.layers, plan.final_layer
        mid, inside = plan.mid, plan.inside
        with model.trace(inputs, timeout) as tracer:
            if inside is None:
                residuals = read_residuals(
                    nn_model, architecture, layers, gather_index, final_layer, mid
                )
                parts = {}
            else:
                residuals, parts = read_with_parts(
                    nn_model, inside, layers, mid, gather_index, tokens
                )
            residuals, parts = nnsight.save(residuals), nnsight.save(parts)
            tracer.stop()
        shape = tuple(gather_index.shape)
        saved = reduce_here(model, lens, plan, residuals, shape, lens_tokens(tokens))
        return {name: value.detach().cpu() for name, value in {**saved, **parts}.items()}
    reductions = lens_reductions if plan.inside is None else lens_and_attribution_reductions
    with model.trace(inputs, timeout) as tracer:
        saved = nnsight.save(
            reductions(nn_model, model.architecture, model.config, lens, plan, gather_index, tokens)
        )
        tracer.stop()
    return {name: value.detach().cpu() for name, value in saved.items()}


def padded_inputs(
    model: LensModel, token_ids: list[list[int]], position_table: np.ndarray
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """A left-padded batch (ids, mask, position ids) and ``gather_index`` ``[batch, columns]``.

    ``gather_index`` is each analysed position (``position_table``, -1: none) in the
    padded batch; padding columns read token 0 of the row and are discarded afterwards.
    Built in NumPy (a few array ops, not two tensor ops per prompt).
    """
    lengths = np.array([len(ids) for ids in token_ids])
    width = int(lengths.max())
    offsets = width - lengths
    pad_id = model.tokenizer.pad_token_id or 0
    input_ids = np.full((len(token_ids), width), pad_id, dtype=np.int64)
    attention_mask = np.arange(width)[None, :] >= offsets[:, None]
    input_ids[attention_mask] = np.concatenate(token_ids)
    inputs: dict[str, torch.Tensor] = {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(attention_mask.astype(np.int64)),
    }
    if _accepts_position_ids(type(model.module)):
        positions = np.maximum(np.arange(width)[None, :] - offsets[:, None], 0)
        inputs["position_ids"] = torch.from_numpy(positions)
    gather_index = np.where(position_table >= 0, position_table + offsets[:, None], 0)
    return inputs, torch.from_numpy(gather_index)


@functools.cache
def _accepts_position_ids(model_class: type) -> bool:
    return "position_ids" in inspect.signature(model_class.forward).parameters


def lens_reductions(
    root: Any,
    architecture: Any,
    config: Any,
    lens: Lens,
    plan: ReductionPlan,
    gather_index: torch.Tensor,
    tokens: dict[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """The trace body: read layers, unembed in chunks, reduce. Runs where the model is.

    ``root`` is the nnsight envoy of the model; ``gather_index`` ``[batch, columns]``
    picks positions in the padded input; ``tokens`` holds the token ids the metrics
    need, each ``[batch, columns, n]`` (see :func:`reduce_residuals`).
    Returns tensors shaped ``[layer, batch, column, ...]`` (``[batch, column]`` for
    ``model_top_ids``).
    """
    residuals = read_residuals(
        root, architecture, plan.layers, gather_index, plan.final_layer, plan.mid
    )
    unembedding = Unembedding(root, architecture, config)
    return reduce_residuals(unembedding, lens, plan, residuals, gather_index.shape, tokens)


def reduce_here(
    model: LensModel,
    lens: Lens,
    plan: ReductionPlan,
    residuals: dict[str, torch.Tensor],
    shape: tuple[int, int],
    tokens: dict[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """:func:`reduce_residuals` here, on residuals a trace saved: the path of a lens with
    weights on NDIF (``LensModel.applies_here``), for ``analyze`` and ``generate_lens``."""
    unembedding = Unembedding(model.unembedding_root(), model.architecture, model.config)
    residuals = {name: value.float() for name, value in residuals.items()}
    return reduce_residuals(unembedding, lens, plan, residuals, shape, tokens)


def lens_and_attribution_reductions(
    root: Any,
    architecture: Any,
    config: Any,
    lens: Lens,
    plan: ReductionPlan,
    gather_index: torch.Tensor,
    tokens: dict[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """:func:`lens_reductions` plus the direct logit attribution, in the same trace.

    ``tokens[ATTRIBUTION]`` ``[batch, columns, n]`` holds the tokens to attribute; the
    attribution's tensors (:func:`logitlens.attribution.project_parts`) come back with
    names prefixed by ``ATTRIBUTION``.
    """
    residuals, parts = read_with_parts(
        root, plan.inside, plan.layers, plan.mid, gather_index, tokens
    )
    unembedding = Unembedding(root, architecture, config)
    shape = gather_index.shape
    saved = reduce_residuals(unembedding, lens, plan, residuals, shape, lens_tokens(tokens))
    return {**saved, **parts}


def lens_tokens(tokens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The token ids the lens metrics need (all but the attribution's)."""
    return {name: ids for name, ids in tokens.items() if name != ATTRIBUTION}


def read_with_parts(
    root: Any,
    inside: InsidePlan,
    layers: list[int],
    mid: str | None,
    gather_index: torch.Tensor,
    tokens: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """In the trace: the lens residuals, and the attribution (``ATTRIBUTION``-prefixed)."""
    parts, residuals = read_parts(root, inside, gather_index, layers, mid)
    projected = project_parts(root, inside, parts, tokens[ATTRIBUTION])
    return residuals, {ATTRIBUTION + name: value for name, value in projected.items()}


def reduce_residuals(
    unembedding: Unembedding,
    lens: Lens,
    plan: ReductionPlan,
    residuals: dict[str, torch.Tensor],
    shape: tuple[int, int],
    tokens: dict[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Lens, unembedding and metrics, chunk by chunk, on residuals from ``read_residuals``.

    ``residuals`` holds ``stacked`` ``[layers, batch * columns, d]`` and, when a metric
    compares with the model's own prediction, ``final`` ``[1, batch * columns, d]``.
    ``shape`` is ``(batch, columns)``. ``tokens`` holds, for the metrics that need
    them, ``targets`` and ``alternatives`` ``[batch, columns, n_targets]`` and
    ``next_tokens`` ``[batch, columns, 1]`` (-1: none). Runs inside the trace (the logit
    and raw lenses, on NDIF too), or here on saved residuals (lenses with weights on
    NDIF). Returns ``[layer, batch, column, ...]`` tensors and ``model_top_ids``
    ``[batch, column]``.
    """
    stacked = residuals["stacked"]
    device = stacked.device
    batch, columns = shape
    rows = batch * columns
    row_tokens = {name: ids.to(device).reshape(rows, -1) for name, ids in tokens.items()}
    final_hidden = residuals["final"].to(device) if plan.need_final else None
    chosen = plan.chosen
    on_logits = [metric.on_logits for metric in chosen if metric.on_logits is not None]
    on_logprobs = [metric.on_logprobs for metric in chosen if metric.on_logprobs is not None]
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

    chunks = chunk_plan(len(plan.layers), rows, plan.chunk_rows)
    whole = len(chunks) == 1  # one chunk is every layer and row: nothing to assemble

    def put(where: tuple[slice, slice], values: dict[str, torch.Tensor]) -> None:
        for name, value in values.items():
            if whole:
                out[name] = value
                continue
            if name not in out:
                out[name] = value.new_empty((len(plan.layers), rows, *value.shape[2:]))
            out[name][where] = value

    for layer_part, row_part in chunks:
        where = (layer_part, row_part)
        logits = lens.project(unembedding, stacked[where], plan.layers[layer_part]).float()
        n_chunk_layers = logits.shape[0]
        given: dict[str, Any] = {
            name: ids[row_part].expand(n_chunk_layers, -1, -1) for name, ids in row_tokens.items()
        }
        given["k"] = plan.k
        if plan.need_final:
            final_logprobs, final_top = final_distribution(row_part)
            given["final_logprobs"] = final_logprobs
            given["final_top"] = final_top.expand(n_chunk_layers, -1, -1)
        for reduce in on_logits:
            put(where, reduce(logits, given))
        if not on_logprobs:
            continue
        # log_softmax is one fused pass (far faster than logsumexp on CPU); ranks and
        # top-k are the same on log-probabilities as on logits.
        logprobs = logits.log_softmax(-1)
        del logits
        for reduce in on_logprobs:
            put(where, reduce(logprobs, given))

    return {
        name: value.reshape(
            *(() if name == "model_top_ids" else (len(plan.layers),)),
            batch,
            columns,
            *value.shape[(1 if name == "model_top_ids" else 2) :],
        )
        for name, value in out.items()
    }


def _token_inputs(
    plan: ReductionPlan,
    token_ids: list[list[int]],
    position_table: np.ndarray,
    targets: list[list[Any]],
    alternatives: list[list[Any]] | None,
) -> dict[str, np.ndarray]:
    """The token ids the chosen metrics need, each ``[prompt, column, n]``."""
    n_prompts, n_columns = position_table.shape
    inputs: dict[str, np.ndarray] = {}
    for name, rows in (("targets", targets), ("alternatives", alternatives)):
        if name in plan.needs and rows is not None:
            ids = np.array([[t.token_id for t in row] for row in rows], dtype=np.int64)
            ids = ids.reshape(n_prompts, -1)
            inputs[name] = np.repeat(ids[:, None, :], n_columns, axis=1)
    if "next_tokens" in plan.needs:
        following = np.full((n_prompts, n_columns, 1), -1, dtype=np.int64)
        for p, ids in enumerate(token_ids):
            for column, position in enumerate(position_table[p]):
                if 0 <= position < len(ids) - 1:
                    following[p, column, 0] = ids[position + 1]
        inputs["next_tokens"] = following
    return inputs


def _store(
    arrays: dict[str, np.ndarray],
    saved: dict[str, torch.Tensor],
    batch: list[int],
    n_prompts: int,
    position_table: np.ndarray,
) -> None:
    """Copy one batch's tensors into the result arrays ``[prompt, layer, column, ...]``.

    ``batch`` holds the batch's prompt indices, in the order of its rows. A batch of
    every prompt (one prompt, or a few) gives its arrays as they are.
    """
    valid = position_table >= 0
    complete = bool(valid.all())
    for name, tensor in saved.items():
        values = tensor.numpy()
        if name != "model_top_ids":
            values = values.swapaxes(0, 1)  # [batch, layer, column, ...]
        missing = np.nan if np.issubdtype(values.dtype, np.floating) else -1
        if not complete:
            mask = valid if name == "model_top_ids" else valid[:, None, :]
            mask = mask.reshape(mask.shape + (1,) * (values.ndim - mask.ndim))
            values = np.where(mask, values, missing)
        if name in arrays:
            arrays[name][batch] = values
        elif len(batch) == n_prompts:  # the only batch: its rows are the prompts in order
            arrays[name] = np.ascontiguousarray(values)
        else:
            arrays[name] = np.full((n_prompts, *values.shape[1:]), missing, dtype=values.dtype)
            arrays[name][batch] = values
