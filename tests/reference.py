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
