"""Reading the residual stream: a decoder layer's output, the embedding, chunking.

One place for what analysis (inside an nnsight trace), evaluation and training (plain
PyTorch hooks) all need: unwrapping a layer's output, reading every layer's residual,
and the chunk plan that bounds the memory of unembedding many rows at once.

torch is imported inside the functions that use it, so the chunk sizes (the defaults of
training options shown by ``--help``) can be read without loading torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .architectures import resolve
from .options import EMBED

if TYPE_CHECKING:
    import torch

    from .loading import LensModel


def layer_output(output: Any) -> Any:
    """The hidden states of a decoder layer's output.

    With transformers 5 most layers return a tensor; falcon and bloom still return a
    tuple whose first item is the hidden states. Works on tensors and nnsight proxies.
    """
    return output[0] if isinstance(output, tuple) else output


def residual_stream(model: LensModel, input_ids: torch.Tensor) -> torch.Tensor:
    """Residuals ``[n_layers + 1, batch, seq, d]``: ``EMBED`` first, then each layer's output.

    Runs the plain module under ``no_grad``, with hooks, and stops after the last
    decoder layer (the model's own head is not needed: the final distribution is the
    logit lens at the last layer).
    """
    import torch

    layers = resolve(model.module, model.architecture.layers)
    captured: list[torch.Tensor] = []

    class _Done(Exception):
        pass

    def before_first(module: Any, args: tuple, kwargs: dict) -> None:
        captured.append(args[0] if args else kwargs["hidden_states"])

    def after(module: Any, args: tuple, output: Any) -> None:
        captured.append(layer_output(output))
        if len(captured) == len(layers) + 1:
            raise _Done

    handles = [layers[0].register_forward_pre_hook(before_first, with_kwargs=True)]
    handles += [layer.register_forward_hook(after) for layer in layers]
    device = next(model.module.parameters()).device
    try:
        with torch.no_grad():
            model.module(input_ids=input_ids.to(device))
    except _Done:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack(captured)


CHUNK_ROWS = 256
"""The fewest rows (layer x position pairs) ``analyze`` unembeds at once: each row is one
vocab-sized fp32 vector. Analyses run inside a trace, often on a shared NDIF server:
memory first (a 256-row block is 128 MiB at Llama 3's 128k vocabulary, 256 MiB at
Gemma 3's 262k)."""

CHUNK_BYTES = 128 * 2**20
"""fp32 logits ``analyze`` may hold in one unembedding block when more than
:data:`CHUNK_ROWS` rows fit (small vocabularies): 682 rows on the bundled SmolLM2 (49k),
so a batch of 16 prompts x 30 layers, or 12 positions x 30 layers, is one block. Every
block streams the whole unembedding matrix again, and on two CPU threads a 252 + 108-row
pair took 9% more time than one 360-row block (docs/reference/performance.md); the
numbers are the same bit for bit whatever the block size."""

BULK_CHUNK_ROWS = 8 * CHUNK_ROWS
"""Rows per block for passes over whole texts (lens evaluation, tuned-lens training):
thousands of rows, where throughput counts. On the bundled model's unembedding, 4 x 1024
rows take 0.75x the time in blocks of 2048 rows as in blocks of 256, and 0.72x in blocks
of 4096 (CPU, median of 5), so 2048 takes nearly all the gain at half the memory."""


def analysis_chunk_rows(vocab_size: int) -> int:
    """Rows per unembedding block for an analysis: as many fp32 rows as fit in
    :data:`CHUNK_BYTES`, and at least :data:`CHUNK_ROWS`."""
    return max(CHUNK_ROWS, CHUNK_BYTES // (4 * max(1, vocab_size)))


def chunk_plan(n_layers: int, rows: int, chunk_rows: int) -> list[tuple[slice, slice]]:
    """(layer slice, row slice) pairs covering ``[n_layers, rows]``, ~``chunk_rows`` each.

    Several whole layers share a chunk when a layer has few rows (one batched matmul,
    the fast case); a layer with more rows than ``chunk_rows`` is split by rows, so
    peak memory stays near ``chunk_rows x vocab`` however long the prompt.
    """
    if rows >= chunk_rows:  # rows outermost, so the final-layer reference is made once each
        return [
            (slice(layer, layer + 1), slice(start, min(start + chunk_rows, rows)))
            for start in range(0, rows, chunk_rows)
            for layer in range(n_layers)
        ]
    per_chunk = chunk_rows // rows
    return [
        (slice(first, min(first + per_chunk, n_layers)), slice(0, rows))
        for first in range(0, n_layers, per_chunk)
    ]


def at_positions(
    states: torch.Tensor, gather_index: torch.Tensor, built: dict | None = None
) -> torch.Tensor:
    """``states`` ``[batch, seq, d]`` at ``gather_index`` ``[batch, columns]``.

    Returns ``[batch, columns, d]``.

    Negative indices count from the end (``-1``: the newest token of a generation step).
    The rows are copied out (one ``index_select`` of whole rows: a third of the time of
    an element-wise gather on a batch of 16), so a module that later changes its output
    in place (Falcon's MLP) cannot change what was read. ``[batch * seq, d]`` rows (OPT
    runs its MLP on flattened rows) are read as they are. ``built``, one dict shared by
    the reads of one forward pass, keeps the row index per length and device, so
    reading every layer builds it once.
    """
    import torch

    batch, columns = gather_index.shape
    width = states.shape[-1]
    flat = states.reshape(-1, width)  # [batch * seq, d]
    key = (flat.shape[0], states.device)
    rows = None if built is None else built.get(key)
    if rows is None:
        seq = flat.shape[0] // batch
        index = gather_index.to(states.device)
        offsets = torch.arange(batch, device=states.device).unsqueeze(1) * seq
        rows = (index % seq + offsets).reshape(-1)
        if built is not None:
            built[key] = rows
    return flat.index_select(0, rows).reshape(batch, columns, width)


def read_residuals(
    root: Any,
    architecture: Any,
    layers: Sequence[int],
    gather_index: torch.Tensor,
    final_layer: int | None = None,
    mid: str | None = None,
) -> dict[str, torch.Tensor]:
    """Inside a trace: the residuals of ``layers`` at some positions, stacked.

    ``root`` is the model's nnsight envoy; ``layers`` are sorted, ``EMBED`` (-1) for the
    embedding output; ``gather_index`` ``[batch, columns]`` picks positions in the padded
    input (negative from the end: ``-1`` is the newest token of a generation step).
    Returns ``stacked`` ``[len(layers), batch * columns, d]`` and, when
    ``final_layer`` is given, ``final`` ``[1, batch * columns, d]``: that layer's
    residual, the reference for KL and final rank. Layers are read in forward order,
    as nnsight requires. With ``mid`` (a layer's ``Sublayers.resid_mid`` path) the
    layers are read between attention and MLP instead (``final`` stays the output).
    """
    import torch

    layer_modules = resolve(root, architecture.layers)
    built: dict = {}
    hidden: dict[int, torch.Tensor] = {}
    if EMBED in layers:
        hidden[EMBED] = at_positions(layer_modules[0].input, gather_index, built)
    kept = set(layers)
    wanted = sorted(kept.union(() if final_layer is None else (final_layer,)) - {EMBED})
    # Everything a read needs is looked up before the first one: the model waits at
    # each read, so the less Python between reads the better.
    visits = [(layer, layer_modules[layer], layer in kept) for layer in wanted]
    final = None
    for layer, module, keep in visits:
        if keep:
            states = resolve(module, mid).input if mid else layer_output(module.output)
            hidden[layer] = at_positions(states, gather_index, built)
        if layer == final_layer:
            final = (
                hidden[layer]
                if keep and not mid
                else at_positions(layer_output(module.output), gather_index, built)
            )
    device = (hidden[max(hidden)] if final is None else final).device  # the last layer read
    rows = gather_index.shape[0] * gather_index.shape[1]
    stacked = torch.stack([hidden[layer].to(device) for layer in layers])
    residuals = {"stacked": stacked.reshape(len(layers), rows, -1)}
    if final is not None:
        residuals["final"] = final.reshape(1, rows, -1)
    return residuals
