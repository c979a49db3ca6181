"""Direct logit attribution: its cost next to a logit lens, and TransformerLens's numbers.

On the bundled SmolLM2-135M, measured side by side in one run (interleaved rounds,
random order each round; a ratio is the median over rounds of the two times in the
same round):

- cost: ``attribute`` (embedding, 30 attention and 30 MLP parts, last position, one
  target and its alternative) against a logit lens over all 30 layers (``analyze``,
  top-10 at the last position); target <= 1.3x. Also ``--heads`` (9 heads per layer),
  and ``analyze(..., attribution=True)`` against the same ``analyze`` without it (the
  attribution's extra cost inside the lens's trace);
- agreement (``--transformer-lens``, when ``transformer-lens`` is installed; it is not
  a test dependency): per-layer attention and MLP attributions from TransformerLens's
  own ``ActivationCache.decompose_resid`` + ``logit_attrs`` on the same weights, without
  weight folding or centring, printed as the largest absolute difference.

Run:  .venv/bin/python benchmarks/bench_attribution.py [--rounds 7] [--transformer-lens]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

import logitlens
from logitlens import attribute

PUN = "Why do electricians make good swimmers? Because they know the"
TARGET, ALTERNATIVE = " current", " water"
PROMPTS = [
    PUN,
    "The capital of France is",
    "A bank is where you keep money, and the river bank is where you",
    "Time flies like an arrow; fruit flies like a",
]


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def cost(model: logitlens.LensModel, rounds: int) -> None:
    contenders = {
        "logit lens, all layers": lambda: logitlens.analyze(model, PROMPTS, k=10),
        "attribute": lambda: attribute(model, PROMPTS, target=TARGET, alternative=ALTERNATIVE),
        "attribute --heads": lambda: attribute(
            model, PROMPTS, target=TARGET, alternative=ALTERNATIVE, heads=True
        ),
        "lens + attribution, one trace": lambda: logitlens.analyze(
            model, PROMPTS, k=10, targets=TARGET, alternatives=ALTERNATIVE, attribution=True
        ),
        "lens alone, same metrics": lambda: logitlens.analyze(
            model, PROMPTS, k=10, targets=TARGET, alternatives=ALTERNATIVE
        ),
    }
    for run in contenders.values():  # warm up
        run()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        order = list(contenders)
        random.shuffle(order)
        for name in order:
            times[name].append(timed(contenders[name]))

    def ratio(first: str, second: str) -> float:
        return statistics.median(a / b for a, b in zip(times[first], times[second], strict=True))

    print(f"{len(PROMPTS)} prompts, last position, {rounds} rounds (median seconds):")
    for name, values in times.items():
        print(f"  {name:32s} {statistics.median(values):.3f}")
    lens = "logit lens, all layers"
    for label, first, second in (
        ("attribute / logit lens", "attribute", lens),
        ("attribute --heads / logit lens", "attribute --heads", lens),
        (
            "lens + attribution / lens alone",
            "lens + attribution, one trace",
            "lens alone, same metrics",
        ),
    ):
        print(f"{label:38s} {ratio(first, second):.2f}x")


def transformer_lens_agreement(model: logitlens.LensModel) -> None:
    try:
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError:
        print("transformer-lens is not installed: agreement not measured.")
        return
    from logitlens.loading import bundled_model_dir

    ids = torch.tensor([model.tokenizer(PUN)["input_ids"]])
    target = model.tokenizer.encode(TARGET, add_special_tokens=False)[0]
    alternative = model.tokenizer.encode(ALTERNATIVE, add_special_tokens=False)[0]
    ours = attribute(model, PUN, target=TARGET, alternative=ALTERNATIVE).difference
    mine = {"embed": float(ours.embed[0, 0, 0])}
    for layer in range(ours.components.shape[1]):
        mine[f"{layer}_attn_out"] = float(ours.attention[0, layer, 0, 0])
        mine[f"{layer}_mlp_out"] = float(ours.mlp[0, layer, 0, 0])
    print(f"TransformerLens logit_attrs vs logitlens, logit({TARGET!r}) - logit({ALTERNATIVE!r}):")
    for mode in ("raw weights", "compatibility mode (final norm folded)"):
        bridge = TransformerBridge.boot_transformers(
            str(bundled_model_dir()), hf_model=model.module, tokenizer=model.tokenizer, device="cpu"
        )
        if mode != "raw weights":
            bridge.enable_compatibility_mode()
        _, cache = bridge.run_with_cache(ids)
        parts, labels = cache.decompose_resid(layer=-1, mode="all", return_labels=True)
        theirs = cache.logit_attrs(parts, tokens=target, incorrect_tokens=alternative)[
            :, 0, -1
        ].detach()
        gaps = [
            abs(float(value) - mine[label]) for label, value in zip(labels, theirs, strict=True)
        ]
        total = float(theirs.sum())
        print(
            f"  {mode:40s} {len(gaps)} parts, max |difference| {max(gaps):.2e}; "
            f"their sum {total:+.4f}, ours {float(ours.total()[0, 0, 0]):+.4f}, "
            f"model's own {float(ours.logit[0, 0, 0]):+.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--transformer-lens", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    random.seed(0)
    model = logitlens.load_model()
    np.set_printoptions(precision=3)
    cost(model, args.rounds)
    if args.transformer_lens:
        transformer_lens_agreement(model)


if __name__ == "__main__":
    main()
