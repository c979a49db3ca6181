"""Direct logit attribution: which layer's attention or MLP, which head, writes a token.

The final residual stream is a sum of parts: the embedding (the stream entering layer
0), and each layer's attention and MLP outputs (what each adds, after any post-norm).
Each attention output splits further into heads through its output projection,
``o_proj(x) = sum_h W_O[:, h] @ x[h] + b_O``. Projecting every part onto a token's
unembedding direction, through the final norm *linearised at the final residual's own
scale* (and centring, for LayerNorm), gives the parts' shares of the model's own logit.

The identity (tested on a tiny model of every family, within 1e-4 in fp32)::

    embed + sum_layers (attention + mlp) + constant == logit
    sum_heads heads[layer] + head_bias[layer] == attention[layer]

where ``logit`` is the model's own final logit before any soft-cap (Gemma 2/3 then
apply ``cap * tanh(logit / cap)``), and ``constant`` is what no part owns: the final
norm's bias and the unembedding bias projected on the token. Linearising is exact here,
not an approximation: a norm at a fixed scale is linear, and the scale is the one the
model itself applied to this residual. Target minus alternative is the same identity on
the difference of two unembedding rows.

Where a layer normalises its attention output before adding it (Gemma 2/3, OLMo 2:
``post_attention_layernorm``), the per-head parts go through that norm linearised at
its own scale (the scale of the whole attention output): the heads then sum exactly to
the layer's attention part, but a head's part is its share *given the other heads*, not
what it would add alone.

Families whose residual stream is not a sum of parts (post-LN OPT, BLOOM with
``apply_residual_connection_post_layernorm``) are refused with a clear error. Every run
checks the decomposition: if the parts do not rebuild the final residual (an adapter
entry pointing at the wrong module), it says so instead of returning wrong numbers.

All of it runs inside the lens's nnsight trace (:func:`read_parts` then
:func:`project_parts`), on the positions asked for only: a remote NDIF run sends back
``[layer, component (, head), position, target]`` floats, kilobytes. The entry point,
:func:`logitlens.attribute` (``analysis.attribute``), is ``analyze`` with the
attribution on; this module holds the parts it computes with, so ``analysis`` imports
it and not the other way round.

Example:
    >>> result = logitlens.attribute(model, "Why do electricians ... know the",
    ...                    target=" current", alternative=" electricity", heads=True)
    >>> result.to_dataframe()
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from .architectures import Architecture, resolve
from .errors import InputError, UnsupportedArchitectureError
from .loading import LensModel
from .options import EMBED
from .residuals import at_positions, layer_output
from .sublayers import sublayers_of
from .targets import ResolvedTarget

COMPONENTS = ("attention", "mlp")
"""The ``component`` dimension of :attr:`Parts.components`."""

RECONSTRUCTION_TOLERANCE = 1e-3
"""Largest relative error allowed between the final residual and the sum of its parts."""


@dataclass(frozen=True)
class InsidePlan:
    """What one trace reads and reduces (plain values: it travels to NDIF).

    ``centre_final`` / ``centre_post``: the final / post-attention norm centres its
    input (LayerNorm, not RMSNorm). ``heads_transposed``: the output projection stores
    its weight ``[in, out]`` (GPT-2's ``Conv1D``).
    """

    architecture: Architecture
    n_layers: int
    n_heads: int
    heads: bool
    centre_final: bool
    centre_post: bool
    heads_transposed: bool
    head_bias: bool
    unembed_bias: bool
    pre_unembed: tuple[tuple[str, bool], ...]


@dataclass
class Parts:
    """One direction's share of every part, ``[prompt, ..., position, target]`` floats.

    Dimensions (names in :attr:`Attribution.dims`): ``embed`` ``[prompt, position,
    target]``; ``components`` ``[prompt, layer, component, position, target]`` with
    ``component`` in :data:`COMPONENTS`; ``heads`` ``[prompt, layer, head, position,
    target]`` and ``head_bias`` ``[prompt, layer, position, target]`` (when heads were
    asked for); ``constant`` and ``logit`` ``[prompt, position, target]``.
    Padding positions (prompts shorter than the longest) are NaN.
    """

    embed: np.ndarray
    components: np.ndarray
    constant: np.ndarray
    logit: np.ndarray
    heads: np.ndarray | None = None
    head_bias: np.ndarray | None = None

    @property
    def attention(self) -> np.ndarray:
        """``[prompt, layer, position, target]``: each layer's attention part."""
        return self.components[:, :, 0]

    @property
    def mlp(self) -> np.ndarray:
        """``[prompt, layer, position, target]``: each layer's MLP part."""
        return self.components[:, :, 1]

    def total(self) -> np.ndarray:
        """``[prompt, position, target]``: the sum of all parts (equals :attr:`logit`)."""
        return self.embed + self.components.sum(axis=(1, 2)) + self.constant


@dataclass
class Attribution:
    """Direct logit attribution of some prompts, from :func:`logitlens.attribute`.

    ``target`` holds every part's share of the target token's logit; ``difference``
    (when alternatives were given) its share of target minus alternative.
    ``positions`` ``[prompt, column]`` are token indices (-1: padding column).
    """

    model_name: str
    prompts: list[str]
    tokens: list[list[str]]
    positions: np.ndarray
    n_layers: int
    n_heads: int
    target_ids: list[list[int]]
    target_tokens: list[list[str]]
    target: Parts
    alternative_ids: list[list[int]] = field(default_factory=list)
    alternative_tokens: list[list[str]] = field(default_factory=list)
    difference: Parts | None = None

    dims: ClassVar[dict[str, tuple[str, ...]]] = {
        "embed": ("prompt", "position", "target"),
        "components": ("prompt", "layer", "component", "position", "target"),
        "heads": ("prompt", "layer", "head", "position", "target"),
        "head_bias": ("prompt", "layer", "position", "target"),
        "constant": ("prompt", "position", "target"),
        "logit": ("prompt", "position", "target"),
    }
    """The named dimensions of each array of :class:`Parts`."""

    def measure(self, name: str = "target") -> Parts:
        """The parts of ``"target"`` or ``"difference"`` (target minus alternative)."""
        if name == "target":
            return self.target
        if name == "difference" and self.difference is not None:
            return self.difference
        raise InputError(
            f"No {name!r} attribution here: choose 'target'"
            + (" or 'difference'." if self.difference is not None else " (no alternative given).")
        )

    def column(self, prompt: int = 0, position: int = -1) -> int:
        """The column holding token ``position`` of ``prompt`` (negative from the end)."""
        length = len(self.tokens[prompt])
        wanted = position + length if position < 0 else position
        found = np.flatnonzero(self.positions[prompt] == wanted)
        if found.size == 0:
            analysed = [int(p) for p in self.positions[prompt] if p >= 0]
            raise InputError(
                f"Position {position} of prompt {prompt} was not attributed; this result has "
                f"positions {analysed}. Re-run with positions='all' or a list."
            )
        return int(found[0])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: labels, and every array as nested lists (NaN: None)."""

        def plain(values: np.ndarray | None) -> Any:
            if values is None:
                return None
            return np.where(np.isnan(values), None, values.astype(object)).tolist()

        def parts_dict(parts: Parts) -> dict[str, Any]:
            return {
                name: plain(getattr(parts, name))
                for name in ("embed", "components", "heads", "head_bias", "constant", "logit")
            }

        return {
            "model_name": self.model_name,
            "prompts": self.prompts,
            "tokens": self.tokens,
            "positions": self.positions.tolist(),
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "target_ids": self.target_ids,
            "target_tokens": self.target_tokens,
            "alternative_ids": self.alternative_ids,
            "alternative_tokens": self.alternative_tokens,
            "components": list(COMPONENTS),
            "dims": {name: list(dims) for name, dims in self.dims.items()},
            "target": parts_dict(self.target),
            "difference": None if self.difference is None else parts_dict(self.difference),
        }

    def to_dataframe(self) -> Any:
        """One row per (measure, prompt, position, target, part): a long pandas DataFrame.

        Columns: ``measure`` (``"target"`` or ``"difference"``), ``prompt``, ``position``,
        ``token`` (at that position), ``target``, ``alternative``, ``part`` (``embed``,
        ``attention``, ``mlp``, ``head``, ``head_bias``, ``constant``), ``layer`` (-1
        for embed and constant), ``head`` (-1 unless a head), ``value``.
        """
        import pandas as pd

        rows = []
        measures = [("target", self.target)]
        if self.difference is not None:
            measures.append(("difference", self.difference))
        for measure, parts in measures:
            for p, column, t, base in self._cells(measure):
                for part, layer, head, values in self._part_arrays(parts):
                    value = float(values[(p, *layer_head(layer, head), column, t)])
                    rows.append(
                        {**base, "part": part, "layer": layer, "head": head, "value": value}
                    )
        return pd.DataFrame(rows)

    def _cells(self, measure: str) -> list[tuple[int, int, int, dict[str, Any]]]:
        """(prompt, column, target, row labels) of every analysed cell."""
        cells = []
        for p, prompt_positions in enumerate(self.positions):
            for column, position in enumerate(prompt_positions):
                if position < 0:
                    continue
                for t, target in enumerate(self.target_tokens[p]):
                    alternative = self.alternative_tokens[p][t] if self.alternative_tokens else None
                    labels = {
                        "measure": measure,
                        "prompt": p,
                        "position": int(position),
                        "token": self.tokens[p][position],
                        "target": target,
                        "alternative": alternative,
                    }
                    cells.append((p, column, t, labels))
        return cells

    def _part_arrays(self, parts: Parts) -> list[tuple[str, int, int, np.ndarray]]:
        """(part, layer, head, array) for every part; ``layer``/``head`` -1 where none."""
        found: list[tuple[str, int, int, np.ndarray]] = [("embed", -1, -1, parts.embed)]
        for layer in range(self.n_layers):
            found += [
                (name, layer, -1, parts.components[:, :, c]) for c, name in enumerate(COMPONENTS)
            ]
            if parts.heads is not None and parts.head_bias is not None:
                found += [("head", layer, head, parts.heads) for head in range(self.n_heads)]
                found.append(("head_bias", layer, -1, parts.head_bias))
        found.append(("constant", -1, -1, parts.constant))
        return found


def layer_head(layer: int, head: int) -> tuple[int, ...]:
    """The index prefix of a part's array after ``prompt``: (), (layer,) or (layer, head)."""
    return tuple(index for index in (layer, head) if index >= 0)


def _centres(norm: Any) -> bool:
    # LayerNorm subtracts the mean; RMSNorm (every family's "...RMSNorm") does not.
    return norm is not None and "RMS" not in type(norm).__name__


def make_plan(model: LensModel, heads: bool) -> InsidePlan:
    """The plan for ``model``, read from its (local or meta) module, before the trace."""
    architecture = model.architecture
    sublayers = sublayers_of(model)
    module = model.module
    n_heads = resolve(model.config, sublayers.heads)
    if not isinstance(n_heads, int) or n_heads < 1:
        raise UnsupportedArchitectureError(
            f"The {architecture.name} adapter reads the number of heads from config field "
            f"{sublayers.heads!r}, which holds {n_heads!r}: fix Sublayers(heads=...)."
        )
    first_layer = resolve(module, architecture.layers)[0]
    projection = resolve(first_layer, sublayers.heads_in)
    unembed = resolve(module, architecture.unembed)
    pre_unembed = tuple(
        (path, getattr(found, "bias", None) is not None)
        for path in architecture.pre_unembed
        if (found := resolve(module, path)) is not None
    )
    return InsidePlan(
        architecture=architecture,
        n_layers=model.n_layers,
        n_heads=n_heads,
        heads=heads,
        centre_final=_centres(resolve(module, architecture.final_norm)),
        centre_post=_centres(
            resolve(first_layer, sublayers.post_attention_norm)
            if sublayers.post_attention_norm
            else None
        ),
        heads_transposed=type(projection).__name__ == "Conv1D",
        head_bias=getattr(projection, "bias", None) is not None,
        unembed_bias=getattr(unembed, "bias", None) is not None,
        pre_unembed=pre_unembed,
    )


def linearise_norm(
    norm: Any, inputs: torch.Tensor, outputs: torch.Tensor, centre: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A norm at the scale it applied: ``outputs == scale * gain * C(inputs) + offset``.

    ``norm`` is the module (or its envoy); ``inputs`` and ``outputs`` ``[rows, d]`` are
    what it read and returned. ``C`` centres when ``centre``. Returns ``gain`` ``[d]``,
    ``offset`` ``[d]`` and ``scale`` ``[rows]`` (fp32). Gain and offset come from two
    probe rows ``+-v`` (``v`` alternating +-1: mean 0, mean square 1), so the module's
    own arithmetic is used (Gemma's ``1 + weight``, any epsilon); ``scale`` is the
    least-squares fit of the real output, exact since the vectors are parallel.
    """
    width = inputs.shape[-1]
    probe = torch.ones(width, dtype=inputs.dtype, device=inputs.device)
    probe[1::2] = -1
    probed = norm(torch.stack([probe, -probe])).float()
    gain = (probed[0] - probed[1]) / 2 * probe.float()
    offset = (probed[0] + probed[1]) / 2
    values = inputs.float()
    if centre:
        values = values - values.mean(-1, keepdim=True)
    shaped = gain * values
    numerator = ((outputs.float() - offset) * shaped).sum(-1)
    denominator = (shaped * shaped).sum(-1)
    scale = torch.where(denominator > 0, numerator / denominator.clamp_min(1e-30), 0.0)
    return gain, offset, scale


def _through(direction: torch.Tensor, gain: torch.Tensor, scale: torch.Tensor, centre: bool):
    """The direction ``[rows, targets, d]`` pulled back through a linearised norm."""
    pulled = direction * gain
    if centre:
        pulled = pulled - pulled.mean(-1, keepdim=True)
    return pulled * scale[:, None, None]


def read_parts(
    root: Any,
    plan: InsidePlan,
    gather_index: torch.Tensor,
    lens_layers: Sequence[int] = (),
    mid: str | None = None,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Inside a trace: every layer's parts at some positions, and the lens residuals.

    ``root`` is the model's nnsight envoy; ``gather_index`` ``[batch, columns]`` picks
    positions in the padded input. Reads, layer by layer in forward order, the output
    projection's input (heads), the attention part, ``resid_mid`` (with ``mid``), the MLP
    part and the layer output, so one trace serves the attribution and the lenses.
    Returns the parts (``[rows, d]`` tensors, ``rows = batch * columns``) and, as
    :func:`logitlens.residuals.read_residuals` does, ``stacked`` ``[len(lens_layers),
    rows, d]`` (``EMBED`` = -1 for the embedding) and ``final`` ``[1, rows, d]``.
    """
    architecture = plan.architecture
    sublayers = architecture.sublayers
    rows = gather_index.shape[0] * gather_index.shape[1]
    built: dict = {}

    def pick(states: Any) -> torch.Tensor:
        return at_positions(states, gather_index, built).reshape(rows, -1)

    layers = resolve(root, architecture.layers)
    embed = pick(layers[0].input)
    hidden = {EMBED: embed}
    wanted = set(lens_layers)
    heads_in, totals, attention, mlp = [], [], [], []
    for index in range(plan.n_layers):
        layer = layers[index]
        if plan.heads:
            projection = resolve(layer, sublayers.heads_in)
            heads_in.append(pick(projection.input))
            if sublayers.post_attention_norm:
                totals.append(pick(layer_output(projection.output)))
        attention.append(pick(layer_output(resolve(layer, sublayers.attention_out).output)))
        if mid and index in wanted:
            hidden[index] = pick(resolve(layer, mid).input)
        mlp.append(pick(layer_output(resolve(layer, sublayers.mlp_out).output)))
        if index == plan.n_layers - 1 or (index in wanted and not mid):
            output = pick(layer_output(layer.output))
            hidden.setdefault(index, output)
    final = output
    parts = {
        "embed": embed,
        "attention": attention,
        "mlp": mlp,
        "heads_in": heads_in,
        "totals": totals,
        "final": final,
    }
    residuals = {"final": final.reshape(1, rows, -1)}
    if lens_layers:
        stacked = torch.stack([hidden[layer].to(final.device) for layer in lens_layers])
        residuals["stacked"] = stacked.reshape(len(lens_layers), rows, -1)
    return parts, residuals


def project_parts(
    root: Any, plan: InsidePlan, parts: dict[str, Any], token_ids: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Inside a trace: the parts of :func:`read_parts` projected on some tokens.

    ``token_ids`` ``[batch, columns, n]``. Returns fp32 ``embed``, ``constant``, ``logit``
    ``[rows, n]``, ``attention``, ``mlp`` ``[layer, rows, n]``, ``heads`` ``[layer,
    rows, n, head]``, ``head_bias`` ``[layer, rows, n]`` and ``reconstruction``
    ``[rows]`` (relative error of the parts' sum against the final residual).
    """
    architecture = plan.architecture
    sublayers = architecture.sublayers
    layers = resolve(root, architecture.layers)
    embed, attention, mlp, final = parts["embed"], parts["attention"], parts["mlp"], parts["final"]
    heads_in, totals = parts["heads_in"], parts["totals"]
    rows = final.shape[0]
    device = final.device
    ids = token_ids.to(device).reshape(rows, -1)
    unembed = resolve(root, architecture.unembed)
    direction = unembed.weight[ids].float()  # [rows, n, d_unembed]
    constant = unembed.bias[ids].float() if plan.unembed_bias else direction.new_zeros(ids.shape)
    for path, has_bias in reversed(plan.pre_unembed):
        module = resolve(root, path)
        if has_bias:
            constant = constant + direction @ module.bias.float()
        direction = direction @ module.weight.float()

    final_norm = resolve(root, architecture.final_norm)
    normed = final if final_norm is None else final_norm(final)
    hidden = normed
    for path, _ in plan.pre_unembed:
        hidden = resolve(root, path)(hidden)
    logit = unembed(hidden).float().gather(-1, ids)
    if final_norm is None:
        weights = direction
    else:
        gain, offset, scale = linearise_norm(final_norm, final, normed, plan.centre_final)
        constant = constant + direction @ offset
        weights = _through(direction, gain, scale, plan.centre_final)

    attention_parts = torch.stack([part.to(device).float() for part in attention])
    mlp_parts = torch.stack([part.to(device).float() for part in mlp])
    rebuilt = embed.float() + attention_parts.sum(0) + mlp_parts.sum(0)
    reconstruction = (rebuilt - final.float()).norm(dim=-1) / final.float().norm(dim=-1).clamp_min(
        1e-30
    )
    out = {
        "embed": torch.einsum("rd,rnd->rn", embed.float(), weights),
        "attention": torch.einsum("lrd,rnd->lrn", attention_parts, weights),
        "mlp": torch.einsum("lrd,rnd->lrn", mlp_parts, weights),
        "constant": constant,
        "logit": logit,
        "reconstruction": reconstruction,
    }
    if plan.heads:
        heads, head_bias = [], []
        for index in range(plan.n_layers):
            layer = layers[index]
            projection = resolve(layer, sublayers.heads_in)
            layer_weights = weights
            bias_part = weights.new_zeros(ids.shape)
            if sublayers.post_attention_norm:
                gain, offset, scale = linearise_norm(
                    resolve(layer, sublayers.post_attention_norm),
                    totals[index].to(device),
                    attention[index].to(device),
                    plan.centre_post,
                )
                bias_part = weights @ offset
                layer_weights = _through(weights, gain, scale, plan.centre_post)
            matrix = projection.weight.to(device).float()  # [d, heads * head_dim]
            if plan.heads_transposed:
                matrix = matrix.T
            if plan.head_bias:
                bias_part = bias_part + layer_weights @ projection.bias.to(device).float()
            pulled = (layer_weights @ matrix).reshape(rows, ids.shape[1], plan.n_heads, -1)
            values = heads_in[index].to(device).float().reshape(rows, 1, plan.n_heads, -1)
            heads.append((pulled * values).sum(-1))
            head_bias.append(bias_part)
        out["heads"] = torch.stack(heads)
        out["head_bias"] = torch.stack(head_bias)
    return out


def projected_ids(
    targets: list[list[ResolvedTarget]], alternatives: list[list[ResolvedTarget]] | None
) -> np.ndarray:
    """``[prompt, n]`` token ids to project on: the targets, then their alternatives."""
    rows = [[t.token_id for t in row] for row in targets]
    if alternatives is not None:
        rows = [
            row + [a.token_id for a in alt] for row, alt in zip(rows, alternatives, strict=True)
        ]
    return np.array(rows, dtype=np.int64)


def build_attribution(
    model: LensModel,
    prompts: list[str],
    token_ids: list[list[int]],
    position_table: np.ndarray,
    plan: InsidePlan,
    targets: list[list[ResolvedTarget]],
    alternatives: list[list[ResolvedTarget]] | None,
    arrays: dict[str, np.ndarray],
) -> Attribution:
    """The :class:`Attribution` of a run, from the arrays :func:`store_parts` filled."""
    n_targets = len(targets[0])
    target = _parts(arrays, slice(0, n_targets))
    vocab = model.decode_each(i for ids in token_ids for i in ids)
    return Attribution(
        model_name=model.name,
        prompts=prompts,
        tokens=[[vocab[i] for i in ids] for ids in token_ids],
        positions=position_table,
        n_layers=plan.n_layers,
        n_heads=plan.n_heads,
        target_ids=[[t.token_id for t in row] for row in targets],
        target_tokens=[[t.token for t in row] for row in targets],
        target=target,
        alternative_ids=[[t.token_id for t in row] for row in alternatives or []],
        alternative_tokens=[[t.token for t in row] for row in alternatives or []],
        difference=(
            None
            if alternatives is None
            else _difference(target, _parts(arrays, slice(n_targets, None)))
        ),
    )


def _check_reconstruction(
    model: LensModel, errors: torch.Tensor, position_table: np.ndarray
) -> None:
    valid = torch.from_numpy(position_table >= 0).reshape(-1)
    worst = float(errors[valid].max()) if bool(valid.any()) else 0.0
    if not worst <= RECONSTRUCTION_TOLERANCE:
        raise UnsupportedArchitectureError(
            f"The {model.architecture.name} adapter's sub-layer paths do not rebuild the "
            f"residual stream (relative error {worst:.2g}): its attention_out / mlp_out "
            "entries miss what a layer adds. Fix Sublayers(...) in its register(...) call "
            "and check it with `logitlens doctor --model MODEL`."
        )


def store_parts(
    model: LensModel,
    arrays: dict[str, np.ndarray],
    saved: dict[str, torch.Tensor],
    batch: slice | list[int],
    n_prompts: int,
    position_table: np.ndarray,
) -> None:
    """Check one batch's reconstruction, then keep its tensors (:func:`project_parts`) in
    ``[prompt, ..., column, n]`` arrays (NaN at padding)."""
    saved = {name: value.float() for name, value in saved.items()}
    _check_reconstruction(model, saved["reconstruction"], position_table)
    n_batch, n_columns = position_table.shape
    valid = position_table >= 0
    for name, tensor in saved.items():
        if name == "reconstruction":
            continue
        values = tensor.numpy()
        if values.ndim == 2:  # [rows, n]
            values = values.reshape(n_batch, n_columns, -1)
            mask = valid[:, :, None]
        elif name == "heads":  # [layer, rows, n, head] -> [batch, layer, head, column, n]
            values = values.reshape(values.shape[0], n_batch, n_columns, -1, values.shape[-1])
            values = values.transpose(1, 0, 4, 2, 3)
            mask = valid[:, None, None, :, None]
        else:  # [layer, rows, n] -> [batch, layer, column, n]
            values = values.reshape(values.shape[0], n_batch, n_columns, -1).transpose(1, 0, 2, 3)
            mask = valid[:, None, :, None]
        if name not in arrays:
            arrays[name] = np.full((n_prompts, *values.shape[1:]), np.nan, dtype=np.float32)
        arrays[name][batch] = np.where(mask, values, np.nan)


def _parts(arrays: dict[str, np.ndarray], targets: slice) -> Parts:
    def take(name: str) -> np.ndarray | None:
        return None if name not in arrays else arrays[name][..., targets]

    return Parts(
        embed=take("embed"),
        components=np.stack([take("attention"), take("mlp")], axis=2),
        constant=take("constant"),
        logit=take("logit"),
        heads=take("heads"),
        head_bias=take("head_bias"),
    )


def _difference(target: Parts, alternative: Parts) -> Parts:
    def minus(first: np.ndarray | None, second: np.ndarray | None) -> np.ndarray | None:
        return None if first is None else first - second

    return Parts(
        embed=target.embed - alternative.embed,
        components=target.components - alternative.components,
        constant=target.constant - alternative.constant,
        logit=target.logit - alternative.logit,
        heads=minus(target.heads, alternative.heads),
        head_bias=minus(target.head_bias, alternative.head_bias),
    )
