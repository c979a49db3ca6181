"""Speed and memory of logitlens's core analyses, side by side, on the bundled model.

Every workload is timed against its baselines in the same run, interleaved round by
round (these machines are noisy), and reported as a median ratio:

- W1: last-position top-10 over all 30 layers, vs a plain forward pass, vs the
  floor (one forward with plain PyTorch hooks + one batched unembedding), and vs
  the seed notebook's nnsight loop (one ``lm_head`` call per layer);
- W2: one target's probability at every layer x position, vs the floor;
- W3: 64 prompts of 8 to 30 tokens (last-position top-10 and a target), vs the floor;
- peak extra memory of W2 on a 512-token prompt, vs the floor that materialises
  all layers' logits at once (each measured in a fresh subprocess).

Run:  .venv/bin/python benchmarks/bench_core.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager

import torch

import logitlens

PUN = "Why do electricians make good swimmers? Because they know the"
TARGET = " current"
WORDS = [
    "the",
    "a",
    "model",
    "river",
    "bank",
    "current",
    "water",
    "light",
    "electric",
    "swim",
    "fish",
    "cow",
    "bell",
    "horn",
    "interest",
    "banker",
    "girlfriend",
    "wire",
    "carry",
    "know",
    "good",
    "make",
    "why",
    "because",
    "they",
    "what",
    "call",
    "eyes",
    "without",
    "city",
    "capital",
    "country",
    "France",
    "Paris",
    "language",
    "small",
    "large",
]


@contextmanager
def hooked(model, select):
    """Plain forward hooks keeping ``select(output)`` of every decoder layer."""
    kept: list[torch.Tensor] = []
    handles = [
        layer.register_forward_hook(lambda _m, _i, out: kept.append(select(out)))
        for layer in model.module.model.layers
    ]
    try:
        with torch.inference_mode():
            yield kept
    finally:
        for handle in handles:
            handle.remove()


def unembed(model, hidden: torch.Tensor) -> torch.Tensor:
    hf = model.module
    return hf.lm_head(hf.model.norm(hidden)).float()


def floor_topk(model, inputs: dict, k: int = 10):
    """Plain PyTorch: hooks on every layer, then one batched unembedding of the last position."""
    with hooked(model, lambda out: out[:, -1]) as kept:
        model.module(**inputs)
        return unembed(model, torch.stack(kept)).log_softmax(-1).topk(k)


def floor_target_all_positions(model, inputs: dict, target_id: int):
    """Plain PyTorch: hooks, then all layers x positions unembedded at once."""
    with hooked(model, lambda out: out) as kept:
        model.module(**inputs)
        return unembed(model, torch.stack(kept)).softmax(-1)[..., target_id]


def floor_batch(model, inputs: dict, target_id: int, k: int = 10):
    with hooked(model, lambda out: out[:, -1]) as kept:
        model.module(**inputs)
        logprobs = unembed(model, torch.stack(kept)).log_softmax(-1)
        return logprobs.topk(k), logprobs[..., target_id].exp()


def notebook_loop(model, prompt: str, k: int = 10):
    """The seed notebook's code, with its tuple bug fixed: one lm_head call per layer."""
    nn = model.nn
    saved = []
    with nn.trace(prompt):
        for layer in nn.model.layers:
            logits = nn.lm_head(nn.model.norm(layer.output))
            probs = torch.softmax(logits[0, -1], dim=-1)
            saved.append(probs.topk(k).indices.save())
    return saved


def plain_forward(model, inputs: dict):
    with torch.inference_mode():
        return model.module(**inputs)


def encode(model, prompts: list[str]) -> dict:
    encoded = model.tokenizer(prompts, return_tensors="pt", padding=True)
    inputs = dict(encoded)
    inputs["position_ids"] = (encoded["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    return inputs


def race(contenders: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds per contender, timed in interleaved rounds (random order)."""
    for run in contenders.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for _ in range(rounds):
        random.shuffle(names)
        for name in names:
            start = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def report(title: str, medians: dict[str, float], ours: str, baselines: list[str]) -> None:
    print(f"\n{title}")
    for name, seconds in medians.items():
        print(f"  {name:<34} {seconds * 1000:8.1f} ms")
    for base in baselines:
        print(f"  ratio {ours} / {base}: {medians[ours] / medians[base]:.2f}x")


def random_prompts(n: int, low: int, high: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high))) for _ in range(n)]


class PeakRSS:
    """Samples this process's resident memory every millisecond; ``peak`` in bytes."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def current() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * resource.getpagesize()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            time.sleep(0.001)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def memory_child(kind: str) -> None:
    """Run in a subprocess: print the peak RSS growth (MiB) of W2 on a 512-token prompt."""
    model = logitlens.load_model()
    ids = model.tokenizer(" ".join(random_prompts(1, 600, 600)[0].split()))["input_ids"][:512]
    prompt = model.tokenizer.decode(ids)
    target_id = model.tokenizer.encode(TARGET, add_special_tokens=False)[0]

    def run(text: str) -> object:
        if kind == "logitlens":
            return logitlens.analyze(
                model, text, positions="all", targets=TARGET, metrics=["target"]
            )
        if kind == "forward":
            return plain_forward(model, encode(model, [text]))
        return floor_target_all_positions(model, encode(model, [text]), target_id)

    run(model.tokenizer.decode(ids[:16]))  # warm up lazily initialised state
    baseline = PeakRSS.current()
    with PeakRSS() as sampler:
        run(prompt)
    print(json.dumps({"tokens": len(ids), "peak_mib": (sampler.peak - baseline) / 2**20}))


def measure_memory() -> None:
    print("\nPeak extra memory, W2 on a 512-token prompt (fresh process each)")
    kinds = {
        "logitlens": "logitlens",
        "plain forward (for scale)": "forward",
        "floor (all logits at once)": "floor",
    }
    for kind, arg in kinds.items():
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", arg],
            capture_output=True,
            text=True,
            check=True,
        )
        data = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  {kind:<34} {data['peak_mib']:8.1f} MiB  ({data['tokens']} tokens)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--memory-child", choices=["logitlens", "forward", "floor"])
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return
    model = logitlens.load_model()
    print(f"{model.name}: {model.n_layers} layers, torch threads {torch.get_num_threads()}")
    target_id = model.tokenizer.encode(TARGET, add_special_tokens=False)[0]
    pun = encode(model, [PUN])

    w1 = race(
        {
            "logitlens": lambda: logitlens.analyze(model, PUN, k=10),
            "plain forward": lambda: plain_forward(model, pun),
            "floor (hooks + batched unembed)": lambda: floor_topk(model, pun),
            "notebook loop (nnsight)": lambda: notebook_loop(model, PUN),
        },
        args.rounds,
    )
    report(
        "W1: last-position top-10, all layers",
        w1,
        "logitlens",
        ["plain forward", "floor (hooks + batched unembed)", "notebook loop (nnsight)"],
    )

    w2 = race(
        {
            "logitlens": lambda: logitlens.analyze(
                model, PUN, positions="all", targets=TARGET, metrics=["target"]
            ),
            "floor (hooks + batched unembed)": lambda: floor_target_all_positions(
                model, pun, target_id
            ),
        },
        args.rounds,
    )
    report(
        "W2: target probability, every layer x position",
        w2,
        "logitlens",
        ["floor (hooks + batched unembed)"],
    )

    prompts = random_prompts(64, 8, 30)
    batch = encode(model, prompts)
    w3 = race(
        {
            "logitlens": lambda: logitlens.analyze(
                model, prompts, k=10, targets=TARGET, batch_size=64
            ),
            "floor (hooks + batched unembed)": lambda: floor_batch(model, batch, target_id),
        },
        max(3, args.rounds // 3),
    )
    report(
        "W3: 64 prompts of 8-30 tokens, last-position top-10 + target",
        w3,
        "logitlens",
        ["floor (hooks + batched unembed)"],
    )
    if not args.skip_memory:
        measure_memory()


if __name__ == "__main__":
    main()
