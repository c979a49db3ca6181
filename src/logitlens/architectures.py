"""The architecture registry: one small adapter per model family.

An adapter names where a family keeps its decoder layers, its final norm and its
unembedding, plus any extra step between the residual stream and the logits. Every
lens and analysis reads models only through an adapter, so supporting a new family
is one ``register(Architecture(...))`` call, here or in user code::

    from logitlens.architectures import Architecture, register
    register(Architecture(
        model_types=("my_model",),
        layers="model.layers", final_norm="model.norm", unembed="lm_head",
    ))

Paths are dotted attribute paths from the top-level ``*ForCausalLM`` module. They are
resolved on either the plain PyTorch module or its nnsight envoy, so the same adapter
serves local runs, remote NDIF runs and plain-hook reference computations.

Reading inside a layer (the residual between attention and MLP, what each adds, each
head's share: :mod:`logitlens.attribution`) needs a :class:`Sublayers` entry too, with
paths from one decoder layer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from .errors import UnsupportedArchitectureError


@dataclass(frozen=True)
class Sublayers:
    """Where one family's decoder layer keeps its attention and MLP (paths from a layer).

    Attributes:
        attention_out: module whose output (the first item of a tuple) is exactly what
            attention adds to the residual stream, after any post-norm (Gemma 2/3 and
            OLMo 2: ``post_attention_layernorm``; BLOOM: the output projection, as its
            attention module adds the residual itself).
        mlp_out: likewise for the MLP (Gemma 2/3, OLMo 2: ``post_feedforward_layernorm``).
        heads_in: the attention's output projection (``o_proj``, ``dense``, ``c_proj``,
            ``out_proj``); its input is the heads' outputs side by side.
        resid_mid: module whose input is the residual stream after attention and before
            the MLP; ``None`` for a family whose attention and MLP read the same input
            (a parallel block: Phi, GPT-J), which has no such residual.
        post_attention_norm: the norm applied to the attention output before it is added
            (Gemma 2/3, OLMo 2), linearised at its own scale to split it into heads.
        heads: config field (dotted) holding the number of attention heads.
        parallel_when: ``(config field, value)`` pairs, any of which makes the block
            parallel (GPT-NeoX ``use_parallel_residual``, Falcon ``parallel_attn``).
        not_additive_when: ``(config field, value)`` pairs, any of which means the
            residual stream is not a sum of the parts (a norm after the residual add:
            post-LN OPT, BLOOM's ``apply_residual_connection_post_layernorm``).

    Paths must be in forward order: ``heads_in``, ``attention_out``, ``resid_mid``,
    ``mlp_out`` (one trace reads them in that order); ``logitlens doctor`` checks it.
    """

    attention_out: str
    mlp_out: str
    heads_in: str
    resid_mid: str | None
    post_attention_norm: str | None = None
    heads: str = "num_attention_heads"
    parallel_when: tuple[tuple[str, Any], ...] = ()
    not_additive_when: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Architecture:
    """Where one model family keeps the parts a lens needs.

    Attributes:
        model_types: ``config.model_type`` values this entry serves.
        layers: path to the ``ModuleList`` of decoder layers (the residual stream is
            each layer's output; layers returning tuples are detected at run time).
        final_norm: path to the norm applied before the unembedding. It may resolve to
            ``None`` on some checkpoints (OPT-350m), in which case it is skipped.
        unembed: path to the unembedding (``lm_head``).
        pre_unembed: modules applied between the final norm and the unembedding, in
            order; a path resolving to ``None`` is skipped (OPT's ``project_out``).
        logit_softcap: name of a config field holding a final logit soft-cap
            (Gemma 2/3: ``logits = cap * tanh(logits / cap)``); ``None`` when absent.
        context_length: config fields (dotted paths allowed, for multimodal configs)
            that may hold the maximum sequence length, tried in order.
        sublayers: where each layer keeps its attention and MLP (:class:`Sublayers`);
            ``None``: the family is read at layer outputs only.
    """

    model_types: tuple[str, ...]
    layers: str
    final_norm: str | None
    unembed: str
    pre_unembed: tuple[str, ...] = ()
    logit_softcap: str | None = None
    context_length: tuple[str, ...] = (
        "max_position_embeddings",
        "n_positions",
        "seq_length",
        "text_config.max_position_embeddings",
    )
    sublayers: Sublayers | None = None

    @property
    def name(self) -> str:
        return self.model_types[0]


_REGISTRY: dict[str, Architecture] = {}


def register(architecture: Architecture) -> Architecture:
    """Add (or replace) an adapter for each of its ``model_types``."""
    for model_type in architecture.model_types:
        _REGISTRY[model_type] = architecture
    return architecture


def supported_model_types() -> list[str]:
    """The ``config.model_type`` values with an adapter, sorted."""
    return sorted(_REGISTRY)


def get_architecture(config_or_type: Any) -> Architecture:
    """The adapter for a model config (or a ``model_type`` string).

    Raises:
        UnsupportedArchitectureError: naming the type, the supported ones and how to
            add an entry.
    """
    model_type = (
        config_or_type
        if isinstance(config_or_type, str)
        else getattr(config_or_type, "model_type", None)
    )
    try:
        return _REGISTRY[model_type]
    except KeyError:
        raise UnsupportedArchitectureError(
            f"Model type {model_type!r} is not supported yet. Supported: "
            f"{', '.join(supported_model_types())}. To add it, register an adapter "
            "naming its decoder layers, final norm and unembedding, e.g. "
            "logitlens.architectures.register(Architecture(model_types=("
            f"{model_type!r},), layers='model.layers', final_norm='model.norm', "
            "unembed='lm_head')), then check it with `logitlens doctor --model MODEL` "
            "(logitlens.doctor.run_doctor)."
        ) from None


def resolve(root: Any, path: str | None) -> Any:
    """Follow a dotted attribute path from ``root``; ``None`` if any step is missing."""
    if path is None:
        return None
    node = root
    for part in path.split("."):
        node = getattr(node, part, None)
        if node is None:
            return None
    return node


def context_length(config: Any, architecture: Architecture) -> int | None:
    """The model's maximum sequence length, if its config states one."""
    for field in architecture.context_length:
        value = resolve(config, field)
        if isinstance(value, int) and value > 0:
            return value
    return None


LLAMA_SUBLAYERS = Sublayers(
    attention_out="self_attn",
    mlp_out="mlp",
    heads_in="self_attn.o_proj",
    resid_mid="post_attention_layernorm",
)
# Gemma 2/3 normalise each block's output before adding it ("sandwich" norms).
GEMMA2_SUBLAYERS = Sublayers(
    attention_out="post_attention_layernorm",
    mlp_out="post_feedforward_layernorm",
    heads_in="self_attn.o_proj",
    resid_mid="pre_feedforward_layernorm",
    post_attention_norm="post_attention_layernorm",
)
# OLMo 2: post-norms only, no norm before attention or MLP.
OLMO2_SUBLAYERS = Sublayers(
    attention_out="post_attention_layernorm",
    mlp_out="post_feedforward_layernorm",
    heads_in="self_attn.o_proj",
    resid_mid="mlp",
    post_attention_norm="post_attention_layernorm",
)


def _llama_like(
    *model_types: str, softcap: str | None = None, sublayers: Sublayers = LLAMA_SUBLAYERS
) -> Architecture:
    return Architecture(
        model_types=model_types,
        layers="model.layers",
        final_norm="model.norm",
        unembed="lm_head",
        logit_softcap=softcap,
        sublayers=sublayers,
    )


def _register_all(entries: Iterable[Architecture]) -> None:
    for entry in entries:
        register(entry)


_register_all(
    [
        _llama_like("llama"),
        _llama_like("mistral"),
        _llama_like("mixtral"),
        _llama_like("qwen2"),
        _llama_like("qwen3"),
        _llama_like("qwen3_moe"),
        _llama_like("phi3"),
        _llama_like("olmo2", sublayers=OLMO2_SUBLAYERS),
        _llama_like("gemma"),
        _llama_like("gemma2", softcap="final_logit_softcapping", sublayers=GEMMA2_SUBLAYERS),
        _llama_like("gemma3_text", softcap="final_logit_softcapping", sublayers=GEMMA2_SUBLAYERS),
        # Gemma 3 checkpoints of 4B and up: a vision tower beside the language model
        # (Gemma3ForConditionalGeneration, which applies no logit soft-cap).
        Architecture(
            model_types=("gemma3",),
            layers="model.language_model.layers",
            final_norm="model.language_model.norm",
            unembed="lm_head",
            sublayers=replace(GEMMA2_SUBLAYERS, heads="text_config.num_attention_heads"),
        ),
        Architecture(
            model_types=("phi",),
            layers="model.layers",
            final_norm="model.final_layernorm",
            unembed="lm_head",
            # Attention and MLP both read the input norm's output: a parallel block.
            sublayers=Sublayers(
                attention_out="self_attn", mlp_out="mlp", heads_in="self_attn.dense", resid_mid=None
            ),
        ),
        Architecture(
            model_types=("gpt2",),
            layers="transformer.h",
            final_norm="transformer.ln_f",
            unembed="lm_head",
            sublayers=Sublayers(
                attention_out="attn", mlp_out="mlp", heads_in="attn.c_proj", resid_mid="ln_2"
            ),
        ),
        Architecture(
            model_types=("gpt_neox",),
            layers="gpt_neox.layers",
            final_norm="gpt_neox.final_layer_norm",
            unembed="lm_head",
            sublayers=Sublayers(
                attention_out="attention",
                mlp_out="mlp",
                heads_in="attention.dense",
                resid_mid="post_attention_layernorm",
                parallel_when=(("use_parallel_residual", True),),
            ),
        ),
        Architecture(
            model_types=("opt",),
            layers="model.decoder.layers",
            final_norm="model.decoder.final_layer_norm",
            unembed="lm_head",
            pre_unembed=("model.decoder.project_out",),
            sublayers=Sublayers(
                attention_out="self_attn",
                mlp_out="fc2",
                heads_in="self_attn.out_proj",
                resid_mid="final_layer_norm",
                not_additive_when=(("do_layer_norm_before", False),),
            ),
        ),
        Architecture(
            model_types=("falcon",),
            layers="transformer.h",
            final_norm="transformer.ln_f",
            unembed="lm_head",
            sublayers=Sublayers(
                attention_out="self_attention",
                mlp_out="mlp",
                heads_in="self_attention.dense",
                resid_mid="post_attention_layernorm",
                parallel_when=(("parallel_attn", True), ("new_decoder_architecture", True)),
            ),
        ),
        Architecture(
            model_types=("bloom",),
            layers="transformer.h",
            final_norm="transformer.ln_f",
            unembed="lm_head",
            # BLOOM's attention and MLP modules add the residual themselves: read their
            # output projections.
            sublayers=Sublayers(
                attention_out="self_attention.dense",
                mlp_out="mlp.dense_4h_to_h",
                heads_in="self_attention.dense",
                resid_mid="post_attention_layernorm",
                not_additive_when=(("apply_residual_connection_post_layernorm", True),),
            ),
        ),
    ]
)
