"""Fitting the Jacobian lens: ``J_l = E[d h_target / d h_l]`` from vector-Jacobian products.

The estimator is the reference one (Anthropic, "Verbalizable Representations Form a
Global Workspace in Language Models", 2026). Per prompt: one forward pass, then one
vector-Jacobian product per output dimension ``i`` of the target layer's residual,
with a one-hot cotangent on dimension ``i`` placed at *every* valid target position at
once, so the gradient at source position ``p`` is ``sum_{p' >= p} d h_T[p', i] / d h_l[p]``
(later positions only, by causality). Row ``i`` of ``J_l`` is that gradient's mean
over the valid source positions. Valid positions are ``skip_first <= p < seq_len - 1``:
the first ones are attention sinks, the last one has no next token.

Cost per prompt: ``d_model`` backward passes through the model (one per output
dimension), so ``d_model`` times a forward pass, whatever the slicing. On a CPU these
are matmul-bound (the matmuls run near the core's peak), so being faster at an equal
result means doing less work and less around the matmuls:

- the first ``skip_first`` positions run once, without a graph, into the model's
  key-value cache, and the rest runs on top of it: by causality the valid positions'
  gradients are unchanged, and every backward matmul is ``skip_first`` rows shorter
  (16 of 127 on 128-token texts); the last position is cut before the forward (it is
  neither a source nor a target and cannot change earlier positions);
- one forward per *batch of prompts*, not one per block of dimensions on a replicated
  prompt (the reference's forward of 8 copies);
- ``dims_per_pass`` cotangents go through one vmapped backward
  (``torch.autograd.grad(..., is_grads_batched=True)``, i.e. ``torch.func.vmap`` over
  vector-Jacobian products), with the activations saved once, not per copy;
- the graph starts at the embedding output, made a leaf, the weights are frozen while
  fitting, and each backward gives ``d h_T / d h_l`` for *every* layer ``l`` at once;
- attention runs eagerly during the fit: SDPA's CPU backward has no vmap rule and
  falls back to a loop over the cotangents.

Sharding: fit disjoint text slices on several machines and merge the files with
:func:`merge_jacobian_lenses` (a mean weighted by each fit's prompt count), which
equals one fit over all the texts. Fits checkpoint after every batch (atomic
writes), and a resumed fit ends bit-identical to an uninterrupted one: batches are
consecutive slices of the text, and the sum of per-prompt Jacobians is kept in float64.

Example:
    >>> lens = fit_jacobian_lens(model, texts, JacobianFitConfig(n_texts=100),
    ...                          output="model.jlens.safetensors")
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..architectures import resolve
from ..errors import InputError, LensFileError
from ..lenses import EMBED, JacobianLens, load_lens
from ..lenses.files import (
    describe_fingerprint,
    model_fingerprint,
    read_safetensors,
    write_safetensors,
)
from ..residuals import layer_output
from .corpus import tokenize_documents
from .tuned import DTYPES, check_writable_output, checkpoint_path_for

if TYPE_CHECKING:
    from ..loading import LensModel

SKIP_FIRST = 16
"""Leading positions left out of the average (attention sinks)."""

DIMS_PER_PASS = 64
"""Output dimensions per vmapped backward (8 to 64 cost the same on 2 CPU cores, measured;
larger blocks keep a GPU busy)."""


@dataclass(frozen=True)
class JacobianFitConfig:
    """Options of one Jacobian-lens fit.

    Attributes:
        n_texts: how many sequences of ``seq_len`` tokens to average over (the paper:
            1,000 of 128 tokens; ~100 give a usable lens).
        seq_len: tokens per sequence (texts are packed, EOS between documents).
        skip_first: leading positions left out as sources and targets.
        target_layer: the layer whose residual the Jacobians are taken of (-1: last).
        dims_per_pass: output dimensions per vmapped backward pass (memory grows with it).
        batch_size: sequences per forward pass.
        device, dtype: where and in what precision the model runs (the model is moved);
            Jacobians are accumulated in float64 and saved in float32.
        checkpoint_every: batches between checkpoints (and one on Ctrl-C).
    """

    n_texts: int = 100
    seq_len: int = 128
    skip_first: int = SKIP_FIRST
    target_layer: int = -1
    dims_per_pass: int = DIMS_PER_PASS
    batch_size: int = 4
    device: str | None = None
    dtype: str | None = None
    checkpoint_every: int = 1

    def validate(self, n_layers: int | None = None) -> None:
        if self.n_texts < 1 or self.batch_size < 1 or self.dims_per_pass < 1:
            raise InputError(
                "n_texts, batch_size and dims_per_pass must be at least 1 (got "
                f"{self.n_texts}, {self.batch_size}, {self.dims_per_pass})."
            )
        if self.skip_first < 0 or self.seq_len < self.skip_first + 2:
            raise InputError(
                f"seq_len ({self.seq_len}) must exceed skip_first ({self.skip_first}) by at "
                "least 2, so some position is both a source and a target; raise --seq-len "
                "or lower --skip-first."
            )
        if self.dtype is not None and self.dtype not in DTYPES:
            raise InputError(f"Unknown dtype {self.dtype!r}; choose from {list(DTYPES)}.")
        if n_layers is not None and not -n_layers <= self.target_layer < n_layers:
            raise InputError(
                f"Target layer {self.target_layer} is out of range: this model has "
                f"{n_layers} layers (0..{n_layers - 1}, or -1 for the last)."
            )


@dataclass
class FitReport:
    """What a progress callback sees after each batch."""

    prompts_done: int
    n_prompts: int
    seconds_per_prompt: float


def fitted_layers(n_layers: int, target_layer: int) -> list[int]:
    """Source layers of a fit: ``EMBED`` and every layer before the target."""
    return [EMBED, *range(target_layer % n_layers)]


class _Stop(Exception):
    """Raised by a hook once the target layer has run: later layers are not needed."""


@contextmanager
def _frozen(module: torch.nn.Module) -> Iterator[None]:
    """No weight takes part in the graph while fitting (restored afterwards)."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    for parameter in trainable:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in trainable:
            parameter.requires_grad_(True)


def _prefix_cache(module: torch.nn.Module, prefix_ids: torch.Tensor) -> dict[str, Any]:
    """The key-value cache of the skipped positions, computed without a graph.

    Sources and targets start at ``skip_first``, and by causality nothing there flows
    back into earlier positions' gradients that the estimator uses: running the prefix
    once without grad and the rest on top of its cache gives the same Jacobians, with
    every backward matmul ``skip_first`` rows shorter.
    """
    if prefix_ids.shape[1] == 0:
        return {"use_cache": False}
    with torch.no_grad():
        cache = module(input_ids=prefix_ids, use_cache=True).cache
    return {"cache": cache, "use_cache": True}


def prompt_jacobians(
    model: LensModel,
    input_ids: torch.Tensor,
    *,
    target_layer: int = -1,
    skip_first: int = SKIP_FIRST,
    dims_per_pass: int = DIMS_PER_PASS,
    rows: range | None = None,
) -> torch.Tensor:
    """Each prompt's Jacobian estimate: ``[batch, n_sources, len(rows), d]`` in float32
    (float64 for a float64 model).

    ``input_ids`` is ``[batch, seq_len]`` (equal lengths, no padding); sources are
    :func:`fitted_layers` (``EMBED``, then layers ``0 .. target - 1``). Row ``i`` of
    source ``l`` is the mean over valid source positions of the gradient of
    ``h_target[:, valid, i].sum()``, as in the module docstring. ``rows`` picks output
    dimensions (default: all ``d``), to split one fit's dimensions over machines.
    """
    module, n_layers = model.module, model.n_layers
    target = target_layer % n_layers
    layers = resolve(module, model.architecture.layers)
    device = next(module.parameters()).device
    ids = input_ids[:, :-1].to(device)  # the last position is no source nor target
    if ids.shape[1] <= skip_first:
        raise InputError(
            f"Sequences of {input_ids.shape[1]} tokens leave no valid position after "
            f"skip_first={skip_first}; use longer sequences."
        )
    captured: list[torch.Tensor] = []

    def leaf_input(_: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        # The embedding output becomes a leaf: the backward stops here.
        hidden = (args[0] if args else kwargs["hidden_states"]).detach().requires_grad_(True)
        captured.append(hidden)
        if args:
            return (hidden, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": hidden}

    def keep_output(_: Any, args: tuple, output: Any) -> None:
        captured.append(layer_output(output))
        if len(captured) == target + 2:
            raise _Stop

    attention = getattr(module.config, "_attn_implementation", None)
    if attention == "sdpa":  # its CPU backward has no vmap rule (a per-sample loop)
        module.set_attn_implementation("eager")
    try:
        with _frozen(module):
            cache = _prefix_cache(module, ids[:, :skip_first])
            handles = [layers[0].register_forward_pre_hook(leaf_input, with_kwargs=True)]
            handles += [layer.register_forward_hook(keep_output) for layer in layers[: target + 1]]
            try:
                with torch.enable_grad():
                    module(input_ids=ids[:, skip_first:], **cache)
            except _Stop:
                pass
            finally:
                for handle in handles:
                    handle.remove()
            return _backward_rows(captured[:-1], captured[-1], rows, dims_per_pass)
    finally:
        if attention == "sdpa":
            module.set_attn_implementation(attention)


def _backward_rows(
    sources: list[torch.Tensor], output: torch.Tensor, rows: range | None, dims_per_pass: int
) -> torch.Tensor:
    """Rows of every source's Jacobian from vmapped backward passes over blocks of dims.

    ``output`` and ``sources`` cover the valid positions only, so the cotangent is the
    one-hot at every position and the mean runs over all of them.
    """
    batch, positions, d_model = output.shape
    rows = range(d_model) if rows is None else rows
    dtype = torch.promote_types(output.dtype, torch.float32)  # float64 models stay float64
    jacobians = torch.empty(batch, len(sources), len(rows), d_model, dtype=dtype)
    passes = range(0, len(rows), dims_per_pass)
    for number, first in enumerate(passes):
        dims = torch.tensor(rows[first : first + dims_per_pass], device=output.device)
        one_hot = torch.nn.functional.one_hot(dims, d_model).to(output.dtype)
        cotangent = one_hot[:, None, None, :].expand(len(dims), batch, positions, d_model)
        grads = torch.autograd.grad(
            output,
            sources,
            grad_outputs=cotangent,
            is_grads_batched=True,
            retain_graph=number < len(passes) - 1,
        )
        for slot, grad in enumerate(grads):
            mean = grad.to(dtype).sum(2) / positions  # [dims, batch, d]
            jacobians[:, slot, first : first + len(dims)] = mean.transpose(0, 1).cpu()
    return jacobians


def pack_texts(model: LensModel, texts: Sequence[str] | torch.Tensor, seq_len: int) -> torch.Tensor:
    """Token ids ``[n, seq_len]``: texts packed with EOS between documents, or ids as given."""
    if isinstance(texts, torch.Tensor):
        return texts
    return tokenize_documents(model.tokenizer, texts, seq_len)


def _save_checkpoint(
    path: Path,
    jacobian_sum: torch.Tensor,
    done: int,
    config: JacobianFitConfig,
    fingerprint: dict[str, Any],
    force: bool = False,
) -> None:
    metadata = {"done": done, "config": asdict(config), "fingerprint": fingerprint}
    write_safetensors(
        path,
        {"jacobian_sum": jacobian_sum},
        {"jacobian_checkpoint": json.dumps(metadata)},
        force=force,
    )


def _load_checkpoint(
    path: Path, config: JacobianFitConfig, fingerprint: dict[str, Any]
) -> tuple[torch.Tensor, int]:
    tensors, header = read_safetensors(path, "Jacobian-lens checkpoint")
    try:
        metadata = json.loads(header["jacobian_checkpoint"])
        jacobian_sum = tensors["jacobian_sum"]
    except (KeyError, ValueError):
        raise LensFileError(f"{path} is not a logitlens Jacobian-lens checkpoint.") from None
    ignored = ("checkpoint_every",)
    saved = {k: v for k, v in metadata["config"].items() if k not in ignored}
    wanted = {k: v for k, v in asdict(config).items() if k not in ignored}
    if saved != wanted or metadata["fingerprint"] != fingerprint:
        changed = sorted(k for k in wanted if saved.get(k) != wanted[k])
        raise InputError(
            f"The checkpoint {path} is from a different fit (differs in: "
            f"{', '.join(changed) or 'model'}). Resume with the same options, or delete "
            "it (CLI: --no-resume) to start over."
        )
    return jacobian_sum, int(metadata["done"])


def fit_jacobian_lens(
    model: LensModel,
    texts: Sequence[str] | torch.Tensor,
    config: JacobianFitConfig | None = None,
    *,
    output: str | Path | None = None,
    resume: bool = True,
    progress: bool = True,
    on_batch: Callable[[FitReport], None] | None = None,
    info: dict[str, Any] | None = None,
    force: bool = False,
) -> JacobianLens:
    """Fit a Jacobian lens for ``model`` on ``texts`` and save it to ``output`` if given.

    Args:
        texts: documents (packed into ``config.seq_len``-token sequences, of which the
            first ``config.n_texts`` are used) or token ids ``[n, seq_len]``.
        output: ``.safetensors`` file; a checkpoint ``<output>.checkpoint`` is kept
            while fitting and resumed from when ``resume``.
        on_batch: called after every batch (a Ctrl-C raised in it is handled like one
            from the keyboard: a checkpoint is written first).
        info: extra facts saved with the lens (e.g. the corpus name).
        force: replace an existing ``output`` even if logitlens did not write it.

    Raises:
        InputError: bad options, too little text for one sequence, an ``output`` that is
            not a ``.safetensors`` name or is a file logitlens did not write.
    """
    config = config or JacobianFitConfig()
    config.validate(model.n_layers)
    if output is not None:
        output = Path(output).expanduser()
        check_writable_output(output, force)
    sequences = pack_texts(model, texts, config.seq_len)[: config.n_texts]
    if len(sequences) == 0:
        raise InputError(
            f"The text is shorter than one sequence of {config.seq_len} tokens; give more "
            "text or a smaller seq_len."
        )
    if config.device is not None or config.dtype is not None:
        dtype = DTYPES[config.dtype] if config.dtype else None
        model.module.to(device=config.device, dtype=dtype)
    fingerprint = model_fingerprint(model)
    sources = fitted_layers(model.n_layers, config.target_layer)
    d_model = fingerprint["d_model"]
    jacobian_sum = torch.zeros(len(sources), d_model, d_model, dtype=torch.float64)
    done = 0
    checkpoint = checkpoint_path_for(output) if output is not None else None
    if checkpoint is not None and resume and checkpoint.is_file():
        jacobian_sum, done = _load_checkpoint(checkpoint, config, fingerprint)

    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(sequences), initial=done, unit="prompt", desc="J-lens", disable=not progress
    )
    began, started_at = time.perf_counter(), done
    try:
        for batch_number, first in enumerate(range(done, len(sequences), config.batch_size)):
            batch = sequences[first : first + config.batch_size]
            per_prompt = prompt_jacobians(
                model,
                batch,
                target_layer=config.target_layer,
                skip_first=config.skip_first,
                dims_per_pass=config.dims_per_pass,
            )
            for jacobians in per_prompt:  # in prompt order, so resuming changes no bit
                jacobian_sum += jacobians.double()
            done = first + len(batch)
            seconds = (time.perf_counter() - began) / (done - started_at)
            bar.update(len(batch))
            bar.set_postfix(s_per_prompt=f"{seconds:.1f}")
            if checkpoint is not None and (batch_number + 1) % config.checkpoint_every == 0:
                _save_checkpoint(checkpoint, jacobian_sum, done, config, fingerprint, force)
            if on_batch is not None:
                on_batch(FitReport(done, len(sequences), seconds))
    except KeyboardInterrupt:
        if checkpoint is not None:
            _save_checkpoint(checkpoint, jacobian_sum, done, config, fingerprint, force)
        bar.close()
        raise
    bar.close()
    lens = JacobianLens.from_jacobians(
        dict(zip(sources, (jacobian_sum / done).float(), strict=True)),
        fingerprint,
        info={
            **(info or {}),
            "n_prompts": done,
            "fitted_layers": sources,
            "target_layer": config.target_layer % model.n_layers,
            "tokens": done * config.seq_len,
            "config": asdict(config),
        },
    )
    if output is not None:
        lens.path = str(lens.save(output, force=force))
        checkpoint.unlink(missing_ok=True)
    return lens


def merge_jacobian_lenses(lenses: Sequence[JacobianLens | str | Path]) -> JacobianLens:
    """One lens from fits on disjoint texts: the mean of their ``J`` weighted by prompt count.

    Raises:
        LensFileError: no lenses, a lens that is not a Jacobian lens, lenses that
            disagree on the model or the fitted layers, or one fit given twice (the same
            file, or a copy: its prompts would count twice).
    """
    loaded = [load_lens(str(lens)) if isinstance(lens, str | Path) else lens for lens in lenses]
    if not loaded:
        raise LensFileError("Nothing to merge: give at least one Jacobian-lens file.")
    first = loaded[0]
    seen: dict[str | None, JacobianLens] = {}
    for lens in loaded:
        twin = seen.setdefault(lens.content_hash(), lens)
        if twin is not lens:
            raise LensFileError(
                f"{lens.path or 'A lens'} is the same fit as {twin.path or 'another'} "
                "(identical weights): give each fit once, or its prompts count twice."
            )
    for lens in loaded:
        if not isinstance(lens, JacobianLens):
            raise LensFileError(
                f"{lens.path or 'A lens'} is a {lens.name} lens; only Jacobian lenses merge."
            )
        if lens.n_prompts < 1:
            raise LensFileError(
                f"{lens.path or 'A lens'} does not record how many prompts it averages "
                "(info n_prompts), so it cannot be weighted in a merge."
            )
        same_model = lens.fingerprint == first.fingerprint
        same_layers = lens.info.get("fitted_layers") == first.info.get("fitted_layers")
        if not same_model or not same_layers:
            raise LensFileError(
                f"{lens.path or 'A lens'} was fitted for {describe_fingerprint(lens.fingerprint)}"
                f" on layers {lens.info.get('fitted_layers')}, but {first.path or 'the first'} "
                f"for {describe_fingerprint(first.fingerprint)} on layers "
                f"{first.info.get('fitted_layers')}: merge fits of one model and layers only."
            )
    total = sum(lens.n_prompts for lens in loaded)
    weight = sum(lens.weight.double() * lens.n_prompts for lens in loaded) / total
    info = {
        **{k: v for k, v in first.info.items() if k not in ("n_prompts", "tokens")},
        "n_prompts": total,
        "tokens": sum(int(lens.info.get("tokens", 0)) for lens in loaded),
        "merged_from": [{"path": lens.path, "n_prompts": lens.n_prompts} for lens in loaded],
    }
    slots, d_model = weight.shape[:2]
    return JacobianLens(weight.float(), torch.zeros(slots, d_model), first.fingerprint, info)
