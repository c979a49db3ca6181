"""The lens over generated text: what every layer predicted at each generation step.

:func:`generate_lens` generates greedily in ONE nnsight generation trace. At every
step it reads each requested layer's residual at the newest position (the prompt's
last token on the first step, then the token generated before), and reduces it in
place with the same code as :func:`logitlens.analyze` (top-k, and the rank of the
model's own top-1), so only small tensors leave the model, locally and on NDIF.

Two depths describe when the model "decided" a generated token:

- ``first_top1``: the first layer whose lens top-1 is the generated token;
- ``stable_top1``: the first layer from which the lens top-1 is the generated token
  at every later layer (``None`` when the last layer's top-1 differs, as it can for
  the raw lens or a tuned lens).

Both are layer indices among the layers read; divide by ``n_layers`` for a depth that
compares across models (:meth:`GenerationResult.normalised_depth`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import nnsight
import numpy as np
import torch

from .analysis import ReductionPlan, reduce_here, reduce_residuals
from .errors import InputError
from .lenses import Lens, Unembedding, get_lens
from .loading import LensModel
from .options import Layers, check_count, check_index, check_layers_spec, check_text, parse_layers
from .residuals import analysis_chunk_rows, read_residuals
from .results import LensResult
from .views import InlineView

GREEDY = {"do_sample": False, "num_beams": 1, "repetition_penalty": 1.0}
"""Generation options that make ``generate`` pick the model's own argmax at each step
(a checkpoint's generation_config may ask for sampling or penalties)."""
NEWEST = torch.tensor([[-1]])
"""Gather index of the newest position of each step's input (batch of one)."""
NO_TOKENS: dict[str, torch.Tensor] = {}
"""``topk`` and ``final_rank`` need no token ids (targets, next tokens)."""
METRICS = frozenset({"topk", "final_rank"})
"""``final_rank`` also yields ``model_top_ids``: the model's own argmax at each step."""


@dataclass
class GenerationResult(InlineView):
    """Greedy generation and each layer's lens reading at every step.

    ``lens_result`` is a :class:`~logitlens.results.LensResult` with one "prompt": the
    text the model read (prompt plus all generated tokens but the last), and one
    column per generation step, at the position that predicts the step's token. Its
    arrays are ``[1, layer, step, ...]``; ``model_top_ids[0, step]`` is the model's own
    argmax, which greedy decoding makes the generated token.
    """

    lens_result: LensResult
    prompt: str
    n_prompt_tokens: int
    generated_ids: list[int]
    text: str
    n_layers: int

    @property
    def layers(self) -> list[int]:
        return self.lens_result.layers

    @property
    def generated_tokens(self) -> list[str]:
        return [self.lens_result.token_text(i) for i in self.generated_ids]

    @property
    def top1_ids(self) -> np.ndarray:
        """The lens's top-1 token id ``[step, layer]``."""
        return self.lens_result.require("top_ids")[0, :, :, 0].T

    def is_top1(self) -> np.ndarray:
        """``[step, layer]``: whether the layer's top-1 is the token generated at that step."""
        return self.top1_ids == np.asarray(self.generated_ids)[:, None]

    @property
    def first_top1(self) -> list[int | None]:
        """Per step, the first layer whose top-1 is the generated token (``None``: none)."""
        return [self.layers[int(row.argmax())] if row.any() else None for row in self.is_top1()]

    @property
    def stable_top1(self) -> list[int | None]:
        """Per step, the first layer from which every later layer's top-1 is the token."""
        stable: list[int | None] = []
        for row in self.is_top1():
            misses = np.flatnonzero(~row)
            start = 0 if len(misses) == 0 else int(misses[-1]) + 1
            stable.append(self.layers[start] if start < len(row) else None)
        return stable

    def normalised_depth(self, which: str = "first") -> list[float | None]:
        """``first_top1`` (or ``stable_top1``) as a fraction of depth: (layer + 1) / n_layers.

        The embedding output counts as depth 0; the last layer as 1.
        """
        layers = self.first_top1 if which == "first" else self.stable_top1
        return [None if layer is None else (layer + 1) / self.n_layers for layer in layers]

    def steps(self) -> list[dict[str, Any]]:
        """One plain record per generated token (what ``--json`` prints)."""
        top_ids = self.lens_result.require("top_ids")[0]
        top_probs = self.lens_result.require("top_probs")[0]
        records = []
        for step, (token_id, first, stable) in enumerate(
            zip(self.generated_ids, self.first_top1, self.stable_top1, strict=True)
        ):
            records.append(
                {
                    "step": step,
                    "token_id": token_id,
                    "token": self.lens_result.token_text(token_id),
                    "first_top1": first,
                    "stable_top1": stable,
                    "top": {
                        label: [
                            [self.lens_result.token_text(int(i)), float(p)]
                            for i, p in zip(top_ids[row, step], top_probs[row, step], strict=True)
                        ]
                        for row, label in enumerate(self.lens_result.layer_labels)
                    },
                }
            )
        return records

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.lens_result.model_name,
            "lens": self.lens_result.lens,
            "prompt": self.prompt,
            "text": self.text,
            "n_layers": self.n_layers,
            "layers": self.layers,
            "steps": self.steps(),
        }


def generate_lens(
    model: LensModel,
    prompt: str,
    max_new_tokens: int = 20,
    *,
    lens: str | Lens = "logit",
    k: int = 5,
    layers: Layers = None,
    include_embed: bool = False,
    tuned_path: str | None = None,
    timeout: float | None = None,
) -> GenerationResult:
    """Generate greedily and read every layer with a lens at every step, in one trace.

    Args:
        model: from :func:`logitlens.load_model` (local, ``remote=True`` or ``"local"``).
        prompt: the text to continue.
        max_new_tokens: tokens to generate at most (fewer when the model ends the text).
        lens: as in :func:`logitlens.analyze`.
        k: as in :func:`logitlens.analyze`.
        layers: as in :func:`logitlens.analyze`.
        include_embed: as in :func:`logitlens.analyze`.
        tuned_path: as in :func:`logitlens.analyze`.

    Example:
        >>> result = generate_lens(model, "The capital of France is", max_new_tokens=5)
        >>> result.text, result.first_top1
    """
    lens, plan, prompt_ids = _prepare(
        model, prompt, max_new_tokens, lens, k, layers, include_embed, tuned_path
    )
    steps, generated = _trace(model, lens, plan, prompt_ids, max_new_tokens, timeout)
    return _result(model, lens, plan, prompt, prompt_ids, steps, generated)


def _prepare(
    model: LensModel,
    prompt: str,
    max_new_tokens: int,
    lens: str | Lens,
    k: int,
    layers: Layers,
    include_embed: bool,
    tuned_path: str | None,
) -> tuple[Lens, ReductionPlan, list[int]]:
    """Check one generation's arguments: its lens, reduction plan and prompt ids."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("The prompt is empty; give some text to continue.")
    check_text(prompt, "The prompt")
    max_new_tokens = check_count(max_new_tokens, "max_new_tokens")
    check_layers_spec(layers)
    lens = get_lens(lens, tuned_path)
    lens.check_model(model)
    vocab_size = model.vocab_size
    k = check_index(k, "k")
    if not 1 <= k <= vocab_size:
        raise InputError(f"k must be between 1 and the vocabulary size ({vocab_size}), got {k}.")
    prompt_ids = list(model.tokenizer(prompt, add_special_tokens=True)["input_ids"])
    limit = model.context_length
    if limit is not None and len(prompt_ids) + max_new_tokens > limit:
        raise InputError(
            f"The prompt ({len(prompt_ids)} tokens) plus {max_new_tokens} new tokens exceeds "
            f"the model's context of {limit} tokens; ask for fewer tokens."
        )
    plan = ReductionPlan(
        layers=parse_layers(layers, model.n_layers, include_embed),
        metrics=METRICS,
        k=k,
        chunk_rows=max(analysis_chunk_rows(vocab_size), model.n_layers + 1),
        n_layers=model.n_layers,
    )
    return lens, plan, prompt_ids


def generate_lens_many(
    model: LensModel,
    prompts: list[str],
    max_new_tokens: int = 20,
    *,
    lens: str | Lens = "logit",
    k: int = 5,
    layers: Layers = None,
    include_embed: bool = False,
    tuned_path: str | None = None,
    timeout: float | None = None,
) -> list[GenerationResult]:
    """:func:`generate_lens` for each prompt; on NDIF all of them in ONE job.

    Remote, the generations are traces of one nnsight session, which NDIF runs as a
    single request: one round trip (one queue wait) instead of one per prompt.
    Locally, one generation after the other. Results equal :func:`generate_lens`'s.
    """
    chosen = get_lens(lens, tuned_path)  # one lens for every prompt, read once
    prepared = [
        _prepare(model, prompt, max_new_tokens, chosen, k, layers, include_embed, None)
        for prompt in prompts
    ]
    if model.remote is not True or not prepared:
        return [
            generate_lens(
                model,
                prompt,
                max_new_tokens,
                lens=chosen,
                k=k,
                layers=layers,
                include_embed=include_embed,
                timeout=timeout,
            )
            for prompt, (chosen, _, _) in zip(prompts, prepared, strict=True)
        ]
    lens, plan = prepared[0][0], prepared[0][1]
    nn_model, architecture, config = model.nn, model.architecture, model.config
    # What the session body names travels to NDIF: a lens with weights stays out (None).
    in_trace = None if model.applies_here(lens) else lens
    pad_id = model.tokenizer.pad_token_id
    batches = [
        {
            "input_ids": torch.tensor([ids]),
            "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
        }
        for _, _, ids in prepared
    ]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*was never reached.*")
        # The session body runs on NDIF as one request; every trace is written out here
        # (nnsight captures a nested trace from the source of the block it sits in).
        with model.session(timeout):
            outputs = nnsight.save(list())
            for inputs in batches:
                with nn_model.generate(
                    max_new_tokens=max_new_tokens, pad_token_id=pad_id, **GREEDY
                ) as tracer:
                    with tracer.invoke(inputs):
                        steps = list()
                        for _ in tracer.iter[:max_new_tokens]:
                            steps.append(
                                step_reductions(nn_model, architecture, config, in_trace, plan)
                            )
                    with tracer.invoke():
                        output = tracer.result
                outputs.append((steps, output))
    results = []
    for prompt, (_, _, prompt_ids), (steps, output) in zip(prompts, prepared, outputs, strict=True):
        steps, generated = _finish(model, lens, plan, in_trace is None, steps, output, prompt_ids)
        results.append(_result(model, lens, plan, prompt, prompt_ids, steps, generated))
    return results


def _trace(
    model: LensModel,
    lens: Lens,
    plan: ReductionPlan,
    prompt_ids: list[int],
    max_new_tokens: int,
    timeout: float | None,
) -> tuple[list[dict[str, torch.Tensor]], list[int]]:
    """The generation trace: per step the reductions (or, remote with a lens that
    carries weights, the residuals, reduced here); and the generated ids."""
    nn_model = model.nn
    architecture = model.architecture
    # What the trace body names travels to NDIF: a lens with weights stays out (None).
    in_trace = None if model.applies_here(lens) else lens
    config = model.config
    input_ids = torch.tensor([prompt_ids])
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    pad_id = model.tokenizer.pad_token_id
    with warnings.catch_warnings():
        # A generation that ends early (end of text) leaves the step loop open by
        # design; nnsight warns that the remaining steps were never reached.
        warnings.filterwarnings("ignore", message=".*was never reached.*")
        with model.generate(
            timeout, max_new_tokens=max_new_tokens, pad_token_id=pad_id, **GREEDY
        ) as tracer:
            with tracer.invoke(inputs):
                steps = nnsight.save(list())
                for _ in tracer.iter[:max_new_tokens]:
                    steps.append(step_reductions(nn_model, architecture, config, in_trace, plan))
            with tracer.invoke():
                output = nnsight.save(tracer.result)
    return _finish(model, lens, plan, in_trace is None, steps, output, prompt_ids)


def _finish(
    model: LensModel,
    lens: Lens,
    plan: ReductionPlan,
    applied_here: bool,
    steps: list[dict[str, torch.Tensor]],
    output: Any,
    prompt_ids: list[int],
) -> tuple[list[dict[str, torch.Tensor]], list[int]]:
    """A generation trace's saves: per step the reductions (the residuals, reduced here,
    when the lens is ``applied_here``) and the generated ids."""
    if applied_here:
        steps = [
            reduce_here(model, lens, plan, residuals, (1, 1), NO_TOKENS) for residuals in steps
        ]
    sequence = output[0] if isinstance(output, torch.Tensor) else output.sequences[0]
    generated = [int(i) for i in sequence[len(prompt_ids) :].tolist()]
    return [{n: v.detach().cpu() for n, v in step.items()} for step in steps], generated


def step_reductions(
    root: Any, architecture: Any, config: Any, lens: Lens | None, plan: ReductionPlan
) -> dict[str, torch.Tensor]:
    """Inside a generation step: the newest position's reductions, where the model runs;
    its residuals when ``lens`` is ``None`` (a lens with weights on NDIF, applied here
    afterwards by :func:`~logitlens.analysis.reduce_here`).
    """
    residuals = read_residuals(root, architecture, plan.layers, NEWEST, plan.final_layer)
    if lens is None:
        return residuals
    unembedding = Unembedding(root, architecture, config)
    return reduce_residuals(unembedding, lens, plan, residuals, (1, 1), NO_TOKENS)


def _result(
    model: LensModel,
    lens: Lens,
    plan: ReductionPlan,
    prompt: str,
    prompt_ids: list[int],
    steps: list[dict[str, torch.Tensor]],
    generated: list[int],
) -> GenerationResult:
    if len(steps) != len(generated):
        raise RuntimeError(  # an nnsight or transformers change: never silently misalign
            f"The trace recorded {len(steps)} steps for {len(generated)} generated tokens."
        )
    n_steps = len(generated)
    read_ids = prompt_ids + generated[:-1]
    # [layer, 1, 1, ...] per step -> [1, layer, step, ...], as LensResult stores them
    arrays = {
        name: torch.cat([step[name] for step in steps], dim=2).movedim(1, 0).numpy()
        for name in ("top_ids", "top_probs", "final_rank")
    }
    model_top_ids = torch.cat([step["model_top_ids"] for step in steps], dim=1).numpy()
    vocab = model.decode_each([*read_ids, *generated, *np.unique(arrays["top_ids"]).tolist()])
    lens_result = LensResult(
        model_name=model.name,
        lens=lens.name,
        prompts=[model.tokenizer.decode(read_ids, skip_special_tokens=True)],
        tokens=[[vocab[i] for i in read_ids]],
        token_ids=[read_ids],
        layers=plan.layers,
        positions=np.arange(len(prompt_ids) - 1, len(prompt_ids) - 1 + n_steps)[None, :],
        k=plan.k,
        model_top_ids=model_top_ids,
        vocab=vocab,
        **arrays,
    )
    return GenerationResult(
        lens_result=lens_result,
        prompt=prompt,
        n_prompt_tokens=len(prompt_ids),
        generated_ids=generated,
        text=model.tokenizer.decode(generated, skip_special_tokens=True),
        n_layers=model.n_layers,
    )


__all__ = ["GenerationResult", "generate_lens"]
