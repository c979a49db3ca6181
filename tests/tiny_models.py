"""Tiny, randomly initialised causal LMs for fast offline tests.

``tiny_model(model_type)`` builds a ``*ForCausalLM`` from a ``transformers`` config class
(nothing is downloaded) together with one shared, in-memory-trained byte-level BPE
tokenizer. Every model is fp32, in ``eval()`` mode, uses eager attention, has 2 decoder
layers, a hidden size of 64 (OPT's ``project_out`` variant projects to 32), at least 128
positions where the family has a position limit (BLOOM uses ALiBi and states none), and
a vocabulary of exactly ``len(tokenizer)``.

Weights are re-drawn after construction (``N(0, init_std)`` for every matrix and
embedding, small noise on biases and norm gains) so the layers really move the residual
stream, the final norm's gain is not the identity, and predictions are far from uniform.
The same ``model_type`` and ``seed`` always give the same weights; the global torch RNG
is left untouched.

Model types (``TINY_MODEL_TYPES``) are HF ``config.model_type`` values, plus OPT
variants that differ only in their config:

* ``"opt-project_out"``: ``word_embed_proj_dim`` (32) != ``hidden_size`` (64), so the
  decoder has ``project_in``/``project_out`` and ``project_out`` must run between the
  final norm and ``lm_head``.
* ``"opt-post_ln"``: ``do_layer_norm_before=False`` (post-LN, like OPT-350m), so
  ``model.decoder.final_layer_norm`` is ``None``.
* ``"opt-350m-like"``: both of the above at once, as in the real OPT-350m.

All variants have ``config.model_type == "opt"``. Gemma 2 and Gemma 3 (text) get
``final_logit_softcapping=3.0`` so the soft-cap visibly changes random logits.

Tokenizer facts tests can rely on (checked in ``tests/test_architectures.py``):

* It prepends ``<bos>`` (like Llama/Gemma tokenizers); special ids are ``<pad>``=0,
  ``<bos>``=1, ``<eos>``=2, ``<unk>``=3. ``padding_side`` is the HF default ("right").
* Every word in ``SINGLE_TOKEN_WORDS`` (e.g. ``" current"``, ``"current"``, ``" Paris"``)
  encodes to exactly one token.
* ``MULTI_TOKEN_WORD`` (``" antidisestablishmentarianism"``) encodes to several tokens.

``tiny_model`` returns a fresh tokenizer object each call (cheap; the trained BPE itself
is cached per process), so a test may change e.g. ``padding_side`` without leaking.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    BloomConfig,
    FalconConfig,
    Gemma2Config,
    Gemma3Config,
    Gemma3TextConfig,
    GemmaConfig,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    MistralConfig,
    MixtralConfig,
    Olmo2Config,
    OPTConfig,
    Phi3Config,
    PhiConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen3Config,
    Qwen3MoeConfig,
    SiglipVisionConfig,
)

__all__ = [
    "MULTI_TOKEN_WORD",
    "SINGLE_TOKEN_WORDS",
    "TINY_MODEL_TYPES",
    "tiny_config",
    "tiny_model",
    "tiny_tokenizer",
]

# --------------------------------------------------------------------------- tokenizer

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)  # ids 0, 1, 2, 3

SINGLE_TOKEN_WORDS: tuple[str, ...] = (
    " current",
    "current",
    " Paris",
    " France",
    " capital",
    " swimmers",
    " the",
)
MULTI_TOKEN_WORD = " antidisestablishmentarianism"

_CORPUS_SENTENCES = (
    "Why do electricians make good swimmers? Because they know the current.",
    "The capital of France is Paris. The capital of Germany is Berlin.",
    "The capital of Italy is Rome, and the capital of Spain is Madrid.",
    "Paris is a city in France. France is a country in Europe.",
    "The current in the river was strong, so the swimmers stayed near the shore.",
    "current events are in the news, and the current news is good.",
    "The cat sat on the mat. The dog sat on the log.",
    "A quick brown fox jumps over the lazy dog.",
    "She said that the weather would be sunny and warm tomorrow.",
    "One, two, three, four, five, six, seven, eight, nine, ten.",
    "Good swimmers know the water; good electricians know the wires.",
    "What is the name of the city? The name of the city is Paris.",
    "I think that language models predict the next word in a sentence.",
    "He went to the store to buy some bread, milk and eggs.",
    "The sun rises in the east and sets in the west.",
    "Water is wet, fire is hot, and ice is cold.",
)
_CORPUS_REPEATS = 8
_BPE_VOCAB_SIZE = 512


@functools.cache
def _tokenizer_json() -> str:
    """Train the byte-level BPE once per process; return it serialised."""
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_BPE_VOCAB_SIZE,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(
        [line for _ in range(_CORPUS_REPEATS) for line in _CORPUS_SENTENCES], trainer
    )
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
            ),
        ]
    )
    return tok.to_str()


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A fresh ``PreTrainedTokenizerFast`` around the cached tiny BPE."""
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=256,
    )


@functools.cache
def _vocab_size() -> int:
    return len(tiny_tokenizer())


# ------------------------------------------------------------------------------ models

HIDDEN = 64
LAYERS = 2
HEADS = 4
KV_HEADS = 2
HEAD_DIM = HIDDEN // HEADS
FFN = 128
POSITIONS = 256
SOFTCAP = 3.0


def _special_ids() -> dict[str, int]:
    return {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}


def _llama_kwargs() -> dict[str, Any]:
    return {
        "vocab_size": _vocab_size(),
        "hidden_size": HIDDEN,
        "intermediate_size": FFN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "max_position_embeddings": POSITIONS,
        **_special_ids(),
    }


def _gemma_kwargs() -> dict[str, Any]:
    return {**_llama_kwargs(), "head_dim": HEAD_DIM}


def _opt_kwargs(**variant: Any) -> dict[str, Any]:
    return {
        "vocab_size": _vocab_size(),
        "hidden_size": HIDDEN,
        "ffn_dim": FFN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "max_position_embeddings": POSITIONS,
        "word_embed_proj_dim": HIDDEN,
        "dropout": 0.0,
        **_special_ids(),
        **variant,
    }


# model type -> (config class, default kwargs factory)
_CONFIGS: dict[str, tuple[type[PretrainedConfig], Callable[[], dict[str, Any]]]] = {
    "llama": (LlamaConfig, _llama_kwargs),
    "mistral": (MistralConfig, lambda: {**_llama_kwargs(), "sliding_window": None}),
    "mixtral": (
        MixtralConfig,
        lambda: {**_llama_kwargs(), "num_local_experts": 4, "num_experts_per_tok": 2},
    ),
    "qwen2": (Qwen2Config, _llama_kwargs),
    "qwen3": (Qwen3Config, lambda: {**_llama_kwargs(), "head_dim": HEAD_DIM}),
    "qwen3_moe": (
        Qwen3MoeConfig,
        lambda: {
            **_llama_kwargs(),
            "head_dim": HEAD_DIM,
            "moe_intermediate_size": FFN // 2,
            "num_experts": 4,
            "num_experts_per_tok": 2,
        },
    ),
    "phi3": (Phi3Config, _llama_kwargs),
    "olmo2": (Olmo2Config, _llama_kwargs),
    "phi": (PhiConfig, _llama_kwargs),
    "gemma": (GemmaConfig, _gemma_kwargs),
    "gemma2": (
        Gemma2Config,
        lambda: {
            **_gemma_kwargs(),
            "query_pre_attn_scalar": HEAD_DIM,
            "sliding_window": 64,
            "final_logit_softcapping": SOFTCAP,
        },
    ),
    "gemma3_text": (
        Gemma3TextConfig,
        lambda: {
            **_gemma_kwargs(),
            "query_pre_attn_scalar": HEAD_DIM,
            "sliding_window": 64,
            "final_logit_softcapping": SOFTCAP,
        },
    ),
    # Multimodal Gemma 3 (4B and up): a tiny SigLIP tower beside the language model.
    "gemma3": (
        Gemma3Config,
        lambda: {
            "text_config": Gemma3TextConfig(
                **_gemma_kwargs(), query_pre_attn_scalar=HEAD_DIM, sliding_window=64
            ),
            "vision_config": SiglipVisionConfig(
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=1,
                num_attention_heads=2,
                image_size=28,
                patch_size=14,
            ),
            "mm_tokens_per_image": 4,
            # Ids of the tokenizer's specials, so text prompts never contain an image token.
            "image_token_index": 3,
            "boi_token_index": 2,
            "eoi_token_index": 2,
        },
    ),
    "gpt2": (
        GPT2Config,
        lambda: {
            "vocab_size": _vocab_size(),
            "n_embd": HIDDEN,
            "n_layer": LAYERS,
            "n_head": HEADS,
            "n_inner": FFN,
            "n_positions": POSITIONS,
            "resid_pdrop": 0.0,
            "embd_pdrop": 0.0,
            "attn_pdrop": 0.0,
            **_special_ids(),
        },
    ),
    "gpt_neox": (
        GPTNeoXConfig,
        lambda: {
            "vocab_size": _vocab_size(),
            "hidden_size": HIDDEN,
            "intermediate_size": FFN,
            "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS,
            "max_position_embeddings": POSITIONS,
            **_special_ids(),
        },
    ),
    "opt": (OPTConfig, _opt_kwargs),
    "opt-project_out": (OPTConfig, lambda: _opt_kwargs(word_embed_proj_dim=HIDDEN // 2)),
    "opt-post_ln": (OPTConfig, lambda: _opt_kwargs(do_layer_norm_before=False)),
    "opt-350m-like": (
        OPTConfig,
        lambda: _opt_kwargs(word_embed_proj_dim=HIDDEN // 2, do_layer_norm_before=False),
    ),
    "falcon": (
        FalconConfig,
        lambda: {
            "vocab_size": _vocab_size(),
            "hidden_size": HIDDEN,
            "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS,
            "max_position_embeddings": POSITIONS,
            **_special_ids(),
        },
    ),
    "bloom": (
        BloomConfig,
        lambda: {
            "vocab_size": _vocab_size(),
            "hidden_size": HIDDEN,
            "n_layer": LAYERS,
            "n_head": HEADS,
            **_special_ids(),
        },
    ),
}

TINY_MODEL_TYPES: list[str] = list(_CONFIGS)

DEFAULT_INIT_STD = 0.2


def tiny_config(model_type: str, **overrides: Any) -> PretrainedConfig:
    """The config ``tiny_model`` would build (``overrides`` replace config fields)."""
    try:
        config_class, defaults = _CONFIGS[model_type]
    except KeyError:
        raise ValueError(
            f"unknown tiny model type {model_type!r}; choose from {TINY_MODEL_TYPES}"
        ) from None
    return config_class(**{**defaults(), **overrides})


@torch.no_grad()
def _reinitialise(model: torch.nn.Module, seed: int, std: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        noise = torch.randn(param.shape, generator=gen, dtype=torch.float32)
        if param.ndim >= 2:  # linear/conv weights, embeddings, stacked MoE experts
            param.copy_(noise * std)
        elif name.endswith("bias"):
            param.copy_(noise * 0.1)
        else:  # norm gains (ones, or zeros for Gemma's 1 + w): perturb, keep the offset
            param.add_(noise * 0.1)


@torch.no_grad()
def _boost_sandwich_norms(model: torch.nn.Module) -> None:
    """Gemma 2/3 normalise each block's output before adding it (sandwich norms), so with
    unit gains every layer adds a vector of norm ~sqrt(d), swamped by the sqrt(d)-scaled
    embedding: the prediction would never change across layers. Gains of ~3 fix that."""
    for name, param in model.named_parameters():
        if name.endswith(("post_attention_layernorm.weight", "post_feedforward_layernorm.weight")):
            param.add_(2.0)


# model type -> extra step after re-initialisation
_POST_INIT: dict[str, Callable[[torch.nn.Module], None]] = {
    "gemma2": _boost_sandwich_norms,
    "gemma3_text": _boost_sandwich_norms,
    "gemma3": _boost_sandwich_norms,
}


def tiny_model(
    model_type: str, *, seed: int = 0, init_std: float = DEFAULT_INIT_STD, **overrides: Any
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A tiny random ``*ForCausalLM`` of ``model_type`` and the shared tiny tokenizer.

    Args:
        model_type: one of ``TINY_MODEL_TYPES``.
        seed: weights are a pure function of ``(model_type, seed, init_std, overrides)``.
        init_std: standard deviation of every weight matrix and embedding.
        **overrides: config fields replacing the tiny defaults (e.g. ``num_hidden_layers=3``
            or ``tie_word_embeddings=False``).
    """
    config = tiny_config(model_type, **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(
            config, attn_implementation="eager", dtype=torch.float32
        )
    _reinitialise(model, seed, init_std)
    if model_type in _POST_INIT:
        _POST_INIT[model_type](model)
    model = model.float().eval()
    return model, tiny_tokenizer()


def _describe() -> None:  # pragma: no cover - manual inspection helper
    tok = tiny_tokenizer()
    print("vocab", len(tok))
    for mt in TINY_MODEL_TYPES:
        model, _ = tiny_model(mt)
        n = sum(p.numel() for p in model.parameters())
        print(f"{mt:16s} {type(model).__name__:24s} params={n} log-vocab={math.log(len(tok)):.2f}")


if __name__ == "__main__":  # pragma: no cover
    _describe()
