"""Training a tuned lens: KL(final || lens) at every layer, from one forward pass per batch.

The model is frozen and runs under ``no_grad``; its residual stream is read with hooks
(:func:`logitlens.evaluation.residual_stream`), and every translator is trained at once
through the lens's own :meth:`TunedLens.project`, so training and inference share code.
Layers are unembedded a few at a time and their gradients accumulated, so the full
``[layers, tokens, vocab]`` tensor never exists.

Runs are deterministic for a seed: batch ``k`` is a pure function of the seed and
``k`` (:func:`logitlens.corpus.batch_order`), and a checkpoint holds the translators,
the optimizer state and the step, so a resumed run ends bit-identical to an
uninterrupted one.

Example:
    >>> lens = train_tuned_lens(model, "lens.safetensors", TrainingConfig(tokens=16384))
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import InputError, LensFileError
from ..lenses import EMBED, TunedLens, Unembedding
from ..lenses.files import check_lens_output, read_safetensors, write_safetensors
from ..metrics import kl_divergence
from ..residuals import chunk_plan, residual_stream
from .config import DTYPE_NAMES, TrainingConfig
from .corpus import batch_order, load_documents, split_documents, tokenize_documents

if TYPE_CHECKING:
    from ..loading import LensModel

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}


@dataclass
class StepReport:
    """What a progress callback sees after each optimizer step."""

    step: int
    steps: int
    loss: float
    tokens_per_second: float


def checkpoint_path_for(output: str | Path) -> Path:
    output = Path(output).expanduser()
    return output.with_name(output.name + ".checkpoint")


def _optimizer(lens: TunedLens, config: TrainingConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(lens.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def _save_checkpoint(
    path: Path,
    lens: TunedLens,
    optimizer: torch.optim.Optimizer,
    step: int,
    config: TrainingConfig,
    losses: list[float],
    force: bool = False,
) -> None:
    state = optimizer.state_dict()
    tensors = {"weight": lens.weight.detach(), "bias": lens.bias.detach()}
    for index, slots in state["state"].items():
        for key, value in slots.items():
            tensors[f"optimizer.{index}.{key}"] = value.detach().reshape(-1)
    metadata = {
        "step": step,
        "config": asdict(config),
        "param_groups": state["param_groups"],
        "losses": losses,
        "fingerprint": lens.fingerprint,
    }
    write_safetensors(
        path,
        {k: v.cpu().contiguous() for k, v in tensors.items()},
        {"checkpoint": json.dumps(metadata)},
        force=force,
    )


def _load_checkpoint(
    path: Path, lens: TunedLens, optimizer: torch.optim.Optimizer, config: TrainingConfig
) -> tuple[int, list[float]]:
    """Restore translators and optimizer from ``path``; return (next step, losses)."""
    tensors, header = read_safetensors(path, "training checkpoint")
    try:
        metadata = json.loads(header["checkpoint"])
    except (KeyError, ValueError):
        raise LensFileError(f"{path} is not a logitlens training checkpoint.") from None
    saved = {k: v for k, v in metadata["config"].items() if k not in ("checkpoint_every",)}
    wanted = {k: v for k, v in asdict(config).items() if k not in ("checkpoint_every",)}
    if saved != wanted or metadata["fingerprint"] != lens.fingerprint:
        changed = sorted(k for k in wanted if saved.get(k) != wanted[k])
        raise InputError(
            f"The checkpoint {path} is from a different run (differs in: "
            f"{', '.join(changed) or 'model'}). Resume with the same options, or delete "
            "it (CLI: --no-resume) to start over."
        )
    with torch.no_grad():
        lens.weight.copy_(tensors["weight"])
        lens.bias.copy_(tensors["bias"])
    state: dict[str, Any] = {"state": {}, "param_groups": metadata["param_groups"]}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            parameter = lens.parameters()[int(index)]
            shaped = value.reshape(() if key == "step" else parameter.shape)
            state["state"].setdefault(int(index), {})[key] = shaped
    optimizer.load_state_dict(state)
    return int(metadata["step"]), list(metadata["losses"])


def check_writable_output(output: Path, force: bool = False) -> None:
    """Fail now, not after training, if the lens or its checkpoint cannot be written,
    or would replace a file logitlens did not write (unless ``force``)."""
    check_lens_output(output, force=force)
    check_lens_output(checkpoint_path_for(output), force=force, checkpoint=True)


def _prepare_model(model: LensModel, config: TrainingConfig) -> None:
    device = None if config.device == "auto" else config.device  # placed when loaded
    if device is not None or config.dtype is not None:
        model.module.to(device=device, dtype=DTYPES[config.dtype] if config.dtype else None)


def lens_loss(
    lens: TunedLens,
    unembedding: Unembedding,
    residuals: torch.Tensor,
    chunk_rows: int,
    backward: bool = True,
) -> float:
    """Sum over trained layers of mean KL(final || lens); gradients accumulated per chunk.

    ``residuals`` is ``[n_layers + 1, batch, seq, d]`` from :func:`residual_stream`.
    Returns the mean KL per trained layer (nats).
    """
    slots, batch, positions, d_model = residuals.shape
    rows = batch * positions
    flat = residuals.reshape(slots, rows, d_model)
    reference = unembedding.model_logprobs(flat[-1:])
    trained = [EMBED, *range(slots - 2)]  # the last layer's translator stays the identity
    total = 0.0
    for layer_part, row_part in chunk_plan(len(trained), rows, chunk_rows):
        logprobs = lens.project(unembedding, flat[layer_part, row_part], trained[layer_part])
        logprobs = logprobs.float().log_softmax(-1)
        # Sum over chunks of (KL summed over rows / rows) = mean KL per layer, summed.
        kl = kl_divergence(reference[:, row_part], logprobs).sum() / rows
        if backward:
            kl.backward()
        total += kl.item()
    return total / len(trained)


def train_tuned_lens(
    model: LensModel,
    output: str | Path,
    config: TrainingConfig | None = None,
    *,
    documents: Sequence[str] | None = None,
    resume: bool = True,
    progress: bool = True,
    on_step: Callable[[StepReport], None] | None = None,
    force: bool = False,
) -> TunedLens:
    """Train a tuned lens for ``model`` and save it to ``output`` (safetensors).

    Args:
        documents: training text; default: ``config.corpus`` (``"bible"``, a file or a
            directory). Its held-out split (:func:`logitlens.corpus.split_documents`) is
            never trained on.
        resume: continue from ``<output>.checkpoint`` if an earlier run left one.
        on_step: called after every step (a Ctrl-C raised in it is handled like one
            from the keyboard: a checkpoint is written first).
        force: replace an existing ``output`` even if logitlens did not write it.

    Raises:
        InputError: empty corpus, a corpus smaller than one batch, a zero budget, an
            ``output`` that is not a ``.safetensors`` name or is a file logitlens did
            not write.
    """
    config = config or TrainingConfig()
    config.validate()
    output = Path(output).expanduser()
    check_writable_output(output, force)
    texts = load_documents(
        config.corpus if documents is None else documents,
        model=model,
        tokens=config.tokens,
        seed=config.seed,
    )
    train_texts, _ = split_documents(texts)
    sequences = tokenize_documents(model.tokenizer, train_texts, config.seq_len)
    if len(sequences) < config.batch_size:
        have = len(sequences) * config.seq_len
        raise InputError(
            f"The training text packs into {len(sequences)} sequence(s) of {config.seq_len} "
            f"tokens (~{have} tokens), less than one batch of {config.batch_size}. Give "
            "more text, or lower --batch-size / --seq-len."
        )
    _prepare_model(model, config)
    torch.manual_seed(config.seed)
    lens = TunedLens.identity(model)
    for tensor in lens.parameters():
        tensor.requires_grad_(True)
    optimizer = _optimizer(lens, config)
    checkpoint = checkpoint_path_for(output)
    start, losses = 0, []
    if resume and checkpoint.is_file():
        start, losses = _load_checkpoint(checkpoint, lens, optimizer, config)
    unembedding = Unembedding(model.module, model.architecture, model.config)
    device = next(model.module.parameters()).device

    from tqdm.auto import tqdm

    bar = tqdm(
        total=config.steps * config.tokens_per_step,
        initial=start * config.tokens_per_step,
        unit="tok",
        unit_scale=True,
        desc="tuned lens",
        disable=not progress,
    )
    step = start
    began = time.perf_counter()
    try:
        for step in range(start, config.steps):
            index = batch_order(len(sequences), config.batch_size, step, config.seed)
            residuals = residual_stream(model, sequences[index].to(device))
            for group in optimizer.param_groups:
                group["lr"] = config.learning_rate(step)
            loss = lens_loss(lens, unembedding, residuals, config.chunk_rows)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss)
            speed = (step + 1 - start) * config.tokens_per_step / (time.perf_counter() - began)
            bar.update(config.tokens_per_step)
            bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{speed:.0f}")
            if (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
                _save_checkpoint(checkpoint, lens, optimizer, step + 1, config, losses, force)
            if on_step is not None:
                on_step(StepReport(step + 1, config.steps, loss, speed))
    except KeyboardInterrupt:
        done = len(losses)
        _save_checkpoint(checkpoint, lens, optimizer, done, config, losses, force)
        raise
    finally:
        bar.close()  # ends the bar's line, so an error message starts a line of its own
    for tensor in lens.parameters():
        tensor.requires_grad_(False)
    lens.info = {
        "corpus": config.corpus if documents is None else "given texts",
        "config": asdict(config),
        "steps": config.steps,
        "tokens": config.steps * config.tokens_per_step,
        "final_loss": losses[-1] if losses else None,
        "losses": losses,
    }
    lens.path = str(lens.save(output, force=force))
    checkpoint.unlink(missing_ok=True)
    return lens
