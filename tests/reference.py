"""An independent plain-PyTorch logit lens, used to check logitlens's numbers.

Nothing here imports nnsight or logitlens: module paths come from the test-side tables
below, read off the ``transformers`` modelling code (v5), not from
``logitlens.architectures``.

Residual-stream convention: ``residuals(...)[i]`` is the output of decoder layer ``i``
(the residual stream after it); ``embed_residual(...)`` is the stream entering layer 0
(after any embedding scale/norm the model applies, e.g. Gemma's sqrt(d) or BLOOM's
``word_embeddings_layernorm``; for OPT with ``project_in`` it is the projected stream).
The final layer's output is captured by a hook, never via ``output_hidden_states``,
whose last entry HF has already passed through the final norm.

In transformers 5 most decoder layers return a bare tensor; Falcon and BLOOM decoder
layers still return a tuple ``(hidden_states, ...)``. The hooks accept both.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# config.model_type -> dotted path (from the *ForCausalLM) of the decoder-layer list
LAYER_PATHS: dict[str, str] = {
    "llama": "model.layers",
    "mistral": "model.layers",
    "mixtral": "model.layers",
    "qwen2": "model.layers",
    "qwen3": "model.layers",
    "qwen3_moe": "model.layers",
    "phi3": "model.layers",
    "olmo2": "model.layers",
    "phi": "model.layers",
    "gemma": "model.layers",
    "gemma2": "model.layers",
    "gemma3_text": "model.layers",
    "gemma3": "model.language_model.layers",
    "gpt2": "transformer.h",
    "gpt_neox": "gpt_neox.layers",
    "opt": "model.decoder.layers",
    "falcon": "transformer.h",
    "bloom": "transformer.h",
}

# config.model_type -> dotted path of the norm applied after the last layer
FINAL_NORM_PATHS: dict[str, str] = {
    "llama": "model.norm",
    "mistral": "model.norm",
    "mixtral": "model.norm",
    "qwen2": "model.norm",
    "qwen3": "model.norm",
    "qwen3_moe": "model.norm",
    "phi3": "model.norm",
    "olmo2": "model.norm",
    "phi": "model.final_layernorm",
    "gemma": "model.norm",
    "gemma2": "model.norm",
    "gemma3_text": "model.norm",
    "gemma3": "model.language_model.norm",
    "gpt2": "transformer.ln_f",
    "gpt_neox": "gpt_neox.final_layer_norm",
    # None when config.do_layer_norm_before is False (post-LN, e.g. OPT-350m)
    "opt": "model.decoder.final_layer_norm",
    "falcon": "transformer.ln_f",
    "bloom": "transformer.ln_f",
}

# config.model_type -> dotted path of a projection between final norm and lm_head
# (the module is None unless config.word_embed_proj_dim != config.hidden_size)
PROJECT_OUT_PATHS: dict[str, str] = {"opt": "model.decoder.project_out"}

# config.model_type -> config field holding the final logit soft-cap
SOFTCAP_FIELDS: dict[str, str] = {
    "gemma2": "final_logit_softcapping",
    "gemma3_text": "final_logit_softcapping",
}


def _get(root: Any, path: str) -> Any:
    node = root
    for part in path.split("."):
        node = getattr(node, part)  # a missing attribute is an error here, not None
    return node


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    layers = _get(model, LAYER_PATHS[model.config.model_type])
    assert isinstance(layers, nn.ModuleList), type(layers)
    return layers


def final_norm(model: nn.Module) -> nn.Module | None:
    """The final norm module; ``None`` for post-LN OPT."""
    return _get(model, FINAL_NORM_PATHS[model.config.model_type])


def project_out(model: nn.Module) -> nn.Module | None:
    path = PROJECT_OUT_PATHS.get(model.config.model_type)
    return None if path is None else _get(model, path)


def softcap(model: nn.Module) -> float | None:
    field = SOFTCAP_FIELDS.get(model.config.model_type)
    return None if field is None else getattr(model.config, field)


def _forward_kwargs(input_ids, attention_mask, position_ids) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"input_ids": input_ids, "use_cache": False}
    if attention_mask is not None:
        kwargs["attention_mask"] = attention_mask
    if position_ids is not None:
        kwargs["position_ids"] = position_ids
    return kwargs


def _hidden_of(output: Any) -> torch.Tensor:
    """A decoder layer's residual output: a tensor, or the first item of a tuple."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"unexpected decoder-layer output type {type(output)!r}")


def layer_output_types(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> list[type]:
    """The Python type each decoder layer returns (to document tuple vs tensor)."""
    seen: list[type] = []
    handles = [
        layer.register_forward_hook(lambda _m, _a, out: seen.append(type(out)))
        for layer in decoder_layers(model)
    ]
    try:
        with torch.no_grad():
            model(**_forward_kwargs(input_ids, attention_mask, None))
    finally:
        for handle in handles:
            handle.remove()
    return seen


def residuals(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Every decoder layer's output: a ``[n_layers, batch, seq, d]`` tensor."""
    layers = decoder_layers(model)
    captured: list[torch.Tensor | None] = [None] * len(layers)

    def make_hook(index: int):
        def hook(_module, _args, output):
            captured[index] = _hidden_of(output).detach().clone()

        return hook

    handles = [layer.register_forward_hook(make_hook(i)) for i, layer in enumerate(layers)]
    try:
        with torch.no_grad():
            model(**_forward_kwargs(input_ids, attention_mask, position_ids))
    finally:
        for handle in handles:
            handle.remove()
    missing = [i for i, h in enumerate(captured) if h is None]
    assert not missing, f"layers {missing} did not run"
    return torch.stack(captured)  # type: ignore[arg-type]


def embed_residual(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """The residual stream entering decoder layer 0: ``[batch, seq, d]``."""
    captured: list[torch.Tensor] = []

    def hook(_module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        captured.append(hidden.detach().clone())

    handle = decoder_layers(model)[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            model(**_forward_kwargs(input_ids, attention_mask, position_ids))
    finally:
        handle.remove()
    assert len(captured) == 1, len(captured)
    return captured[0]


def _unembed(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    projection = project_out(model)
    if projection is not None:
        hidden = projection(hidden)
    logits = model.get_output_embeddings()(hidden)
    cap = softcap(model)
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    return logits


@torch.no_grad()
def logit_lens_logits(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """Logit lens: final norm (if any) -> project_out (if any) -> lm_head -> softcap."""
    norm = final_norm(model)
    if norm is not None:
        hidden = norm(hidden)
    return _unembed(model, hidden)


@torch.no_grad()
def raw_lens_logits(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """As ``logit_lens_logits`` but without the final norm."""
    return _unembed(model, hidden)


# ----- inside the layer: sub-layer parts, resid_mid, direct logit attribution ---------

_LLAMA_PARTS = ("self_attn", "mlp", "self_attn.o_proj", "post_attention_layernorm", None)
_SANDWICH_PARTS = (
    "post_attention_layernorm",
    "post_feedforward_layernorm",
    "self_attn.o_proj",
    "pre_feedforward_layernorm",
    "post_attention_layernorm",
)
# config.model_type -> (module whose output is what attention adds, same for the MLP,
# output projection, module whose input is the residual between attention and MLP
# (None: parallel block), norm applied to the attention output before it is added)
SUBLAYER_PATHS: dict[str, tuple[str, str, str, str | None, str | None]] = {
    **{
        name: _LLAMA_PARTS
        for name in ("llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen3_moe", "phi3", "gemma")
    },
    "gemma2": _SANDWICH_PARTS,
    "gemma3_text": _SANDWICH_PARTS,
    "gemma3": _SANDWICH_PARTS,
    "olmo2": (*_SANDWICH_PARTS[:3], "mlp", "post_attention_layernorm"),
    "phi": ("self_attn", "mlp", "self_attn.dense", None, None),
    "gpt2": ("attn", "mlp", "attn.c_proj", "ln_2", None),
    "gpt_neox": ("attention", "mlp", "attention.dense", "post_attention_layernorm", None),
    "opt": ("self_attn", "fc2", "self_attn.out_proj", "final_layer_norm", None),
    "falcon": ("self_attention", "mlp", "self_attention.dense", "post_attention_layernorm", None),
    # BLOOM's attention and MLP modules add the residual themselves.
    "bloom": (
        "self_attention.dense",
        "mlp.dense_4h_to_h",
        "self_attention.dense",
        "post_attention_layernorm",
        None,
    ),
}

# config.model_type -> how its norms compute: "layer" (centre, scale, affine),
# "rms" (weight * x / rms), "rms1" (Gemma: (1 + weight) * x / rms)
NORM_KINDS: dict[str, str] = {
    **{name: "layer" for name in ("phi", "gpt2", "gpt_neox", "opt", "falcon", "bloom")},
    **{name: "rms1" for name in ("gemma", "gemma2", "gemma3_text", "gemma3")},
}


def _output_of(output: Any) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output[0]


def sublayer_parts(
    model: nn.Module, input_ids: torch.Tensor
) -> dict[str, torch.Tensor | list[torch.Tensor]]:
    """One unpadded forward with hooks, float64: ``embed`` ``[batch, seq, d]``; per layer
    ``inputs``, ``attention``, ``mlp``, ``heads_in``, ``heads_out`` (the output
    projection's input and output); ``final`` ``[batch, seq, d]``."""
    attention_path, mlp_path, projection_path, _, _ = SUBLAYER_PATHS[model.config.model_type]
    layers = decoder_layers(model)
    shape = (*input_ids.shape, -1)
    found: dict[str, list] = {
        key: [None] * len(layers)
        for key in ("inputs", "attention", "mlp", "heads_in", "heads_out", "outputs")
    }

    def keep(key: str, index: int, value: torch.Tensor) -> None:
        found[key][index] = value.detach().double().clone().reshape(shape)

    handles = []
    for index, layer in enumerate(layers):
        handles.append(
            layer.register_forward_pre_hook(
                lambda _m, a, k, i=index: keep("inputs", i, a[0] if a else k["hidden_states"]),
                with_kwargs=True,
            )
        )
        handles.append(
            layer.register_forward_hook(
                lambda _m, _a, o, i=index: keep("outputs", i, _hidden_of(o))
            )
        )
        handles.append(
            _get(layer, attention_path).register_forward_hook(
                lambda _m, _a, o, i=index: keep("attention", i, _output_of(o))
            )
        )
        handles.append(
            _get(layer, mlp_path).register_forward_hook(
                lambda _m, _a, o, i=index: keep("mlp", i, _output_of(o))
            )
        )

        def projection_hook(_module, args, output, index=index) -> None:
            keep("heads_in", index, args[0])
            keep("heads_out", index, output)

        handles.append(_get(layer, projection_path).register_forward_hook(projection_hook))
    try:
        with torch.no_grad():
            model(**_forward_kwargs(input_ids, None, None))
    finally:
        for handle in handles:
            handle.remove()
    return {**found, "embed": found["inputs"][0], "final": found["outputs"][-1]}


def _frozen_norm(model: nn.Module, norm: nn.Module, at: torch.Tensor):
    """A norm linearised at the scale it applies to ``at`` ``[..., d]``: (gain, bias,
    scale ``[...]``, centres), so that norm(x) == scale * gain * C(x) + bias at x = at."""
    kind = NORM_KINDS.get(model.config.model_type, "rms")
    eps = getattr(norm, "eps", None) or getattr(norm, "variance_epsilon", None) or 0.0
    weight = norm.weight.double()
    if kind == "layer":
        variance = at.var(-1, unbiased=False)
        bias = norm.bias.double() if norm.bias is not None else torch.zeros_like(weight)
        return weight, bias, 1 / torch.sqrt(variance + eps), True
    gain = 1 + weight if kind == "rms1" else weight
    return gain, torch.zeros_like(weight), 1 / torch.sqrt(at.pow(2).mean(-1) + eps), False


def _apply_frozen(frozen, part: torch.Tensor) -> torch.Tensor:
    gain, _, scale, centres = frozen
    if centres:
        part = part - part.mean(-1, keepdim=True)
    return gain * part * scale[..., None]


@torch.no_grad()
def direct_logit_attribution(
    model: nn.Module, input_ids: torch.Tensor, token_id: int
) -> dict[str, torch.Tensor]:
    """DLA of every position of one unpadded prompt ``[1, seq]`` on ``token_id``, float64.

    Returns ``embed``, ``constant``, ``logit`` ``[seq]`` (the model's own logit before
    any soft-cap), ``attention``, ``mlp``, ``head_bias`` ``[layers, seq]``, ``heads``
    ``[layers, heads, seq]``.
    """
    parts = sublayer_parts(model, input_ids)
    *_, post_norm_path = SUBLAYER_PATHS[model.config.model_type]
    layers = decoder_layers(model)
    final = parts["final"][0]
    direction = model.get_output_embeddings().weight[token_id].double()
    projection = project_out(model)
    if projection is not None:
        direction = direction @ projection.weight.double()
    constant = torch.zeros(final.shape[0], dtype=torch.float64)
    head_bias_of_lm = getattr(model.get_output_embeddings(), "bias", None)
    if head_bias_of_lm is not None:
        constant = constant + head_bias_of_lm[token_id].double()
    norm = final_norm(model)
    frozen = _frozen_norm(model, norm, final)
    constant = constant + direction @ frozen[1]

    def logit_of(part: torch.Tensor) -> torch.Tensor:
        return _apply_frozen(frozen, part) @ direction

    out: dict[str, Any] = {
        "embed": logit_of(parts["embed"][0]),
        "attention": torch.stack([logit_of(p[0]) for p in parts["attention"]]),
        "mlp": torch.stack([logit_of(p[0]) for p in parts["mlp"]]),
        "constant": constant,
    }
    heads, head_bias = [], []
    n_heads = model.config.get_text_config().num_attention_heads
    for index, layer in enumerate(layers):
        module = _get(layer, SUBLAYER_PATHS[model.config.model_type][2])
        matrix = module.weight.double()
        if type(module).__name__ == "Conv1D":  # GPT-2 stores [in, out]
            matrix = matrix.T
        inputs = parts["heads_in"][index][0]  # [seq, heads * head_dim]
        width = inputs.shape[-1] // n_heads
        pieces = [
            inputs[:, h * width : (h + 1) * width] @ matrix[:, h * width : (h + 1) * width].T
            for h in range(n_heads)
        ]
        bias = module.bias.double() if module.bias is not None else torch.zeros(matrix.shape[0])
        bias = bias.double().expand_as(pieces[0])
        if post_norm_path is not None:
            post = _frozen_norm(model, _get(layer, post_norm_path), parts["heads_out"][index][0])
            pieces = [_apply_frozen(post, piece) for piece in pieces]
            bias = _apply_frozen(post, bias) + post[1]
        heads.append(torch.stack([logit_of(piece) for piece in pieces]))
        head_bias.append(logit_of(bias))
    out["heads"] = torch.stack(heads)
    out["head_bias"] = torch.stack(head_bias)
    out["logit"] = model_logit(model, final, token_id)
    return out


@torch.no_grad()
def model_logit(model: nn.Module, final: torch.Tensor, token_id: int) -> torch.Tensor:
    """The model's own logit for ``token_id`` before any soft-cap, from its last layer's
    output ``[seq, d]``: final norm, project_out, lm_head, in the model's dtype."""
    hidden = final.to(model.dtype)
    norm = final_norm(model)
    if norm is not None:
        hidden = norm(hidden)
    projection = project_out(model)
    if projection is not None:
        hidden = projection(hidden)
    return model.get_output_embeddings()(hidden)[..., token_id].double()


def resid_mid(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """The residual between attention and MLP, ``[layers, batch, seq, d]`` float64: each
    layer's input plus what its attention adds (sequential blocks only)."""
    parts = sublayer_parts(model, input_ids)
    return torch.stack([i + a for i, a in zip(parts["inputs"], parts["attention"], strict=True)])
