"""Speed and memory of logitlens's core analyses, side by side with the floor.

The floor is the least plain PyTorch that computes the same numbers as logitlens: the
backbone only (forward hooks on the decoder layers keep the positions needed, no
``lm_head`` over every position), then one batched final norm + unembedding of those
positions, and the reduction. Like logitlens, it sorts prompts by token length and
batches them 16 at a time; it tokenises its prompts, as any loop over a dataset must.

- W1: top-10 at the last position, all 30 layers, one prompt (also against a plain
  forward pass of the whole model and the seed notebook's nnsight loop, for scale);
  and the floor written as a hand-written nnsight trace against the floor: what nnsight
  itself costs, below which no nnsight tool's W1 can go;
- W2: P(target) at every layer x position, one 12-token prompt;
- W3: P(own target) at the last position, all layers, 64 bundled pun prompts of 8-30
  tokens (what a study does);
- peak extra memory of W2 on a 512-token prompt, against the floor that materialises
  all layers' logits at once (each measured in a fresh subprocess).

Each thread count runs in its own subprocess (``torch.set_num_threads``); inside it
logitlens and the floor run back to back in a random order, round after round (W1 4x
and W2 2x ``--rounds``, W3 ``--rounds``), and a ratio is the median over rounds of
logitlens's time over the floor's in the same round, so a machine that slows down
between rounds moves both sides of it; a 95% bootstrap interval of that median shows
how far this machine's noise moves it. OpenMP's wait policy is left as the caller set
it (unset: OpenMP's default, what a Python user of the library gets).

Run:  .venv/bin/python benchmarks/bench_core.py [--rounds 15] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import SimpleNamespace

import nnsight
import torch
from transformers import AutoModelForCausalLM

import logitlens
from logitlens.batching import plan_batches
from logitlens.studies import load_items
from logitlens.targets import MultiTokenTargetWarning

PUN = "Why do electricians make good swimmers? Because they know the"
TARGET = " current"
BATCH = 16
N_PUNS = 64
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
]


# ----- the floor: plain PyTorch -----------------------------------------------------------


def plain_copy(model) -> SimpleNamespace:
    """The same weights loaded by plain transformers, untouched by nnsight.

    nnsight wraps the forward of every module of the model it traces (inert outside a
    trace, but not free), so the floor runs on its own copy, as a script without
    logitlens would.
    """
    module = AutoModelForCausalLM.from_pretrained(model.module.name_or_path, dtype=torch.float32)
    return SimpleNamespace(module=module.eval(), tokenizer=model.tokenizer)


@contextmanager
def hooked(model, select: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[list]:
    """Plain forward hooks keeping ``select(hidden states)`` of every decoder layer."""
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
    """Final norm + unembedding of ``hidden`` ``[..., d]``, as fp32 logits."""
    hf = model.module
    return hf.lm_head(hf.model.norm(hidden)).float()


def encode(model, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
    """Left-padded inputs with position ids (padding does not shift positions)."""
    encoded = model.tokenizer(list(prompts), return_tensors="pt", padding=True)
    inputs = dict(encoded)
    inputs["position_ids"] = (encoded["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    return inputs


def length_batches(model, prompts: Sequence[str], size: int = BATCH) -> list[list[int]]:
    """Prompt indices sorted by token length, in batches of ``size``, as logitlens plans them."""
    return plan_batches([len(ids) for ids in model.tokenizer(list(prompts))["input_ids"]], size)


def floor(
    model,
    prompts: Sequence[str],
    reduce: Callable[[torch.Tensor, list[int]], object],
    select: Callable[[torch.Tensor], torch.Tensor] = lambda out: out[:, -1].clone(),
) -> list[object]:
    """The backbone over length-sorted batches, one batched unembedding per batch.

    ``select`` keeps the positions needed from each layer's output ``[batch, seq, d]``;
    ``reduce(logprobs [layer, batch, ..., vocab], prompt indices)`` makes the numbers.
    The last position is copied out, as logitlens does: a view would keep every layer's
    whole output alive until the unembedding, and that made this floor 2% slower on 32
    puns (one thread), which flattered logitlens.
    """
    out = []
    for batch in length_batches(model, prompts):
        inputs = encode(model, [prompts[i] for i in batch])
        with hooked(model, select) as kept:
            model.module.model(**inputs)
            logprobs = unembed(model, torch.stack(kept)).log_softmax(-1)
            out.append(reduce(logprobs, batch))
    return out


def floor_topk(model, prompts: Sequence[str], k: int = 10) -> list[object]:
    return floor(model, prompts, lambda logprobs, _batch: logprobs.topk(k))


def floor_target_all_positions(model, prompt: str, target_id: int) -> list[object]:
    return floor(
        model, [prompt], lambda logprobs, _b: logprobs[..., target_id].exp(), lambda out: out
    )


def floor_own_targets(model, prompts: Sequence[str], target_ids: list[int]) -> list[object]:
    def reduce(logprobs: torch.Tensor, batch: list[int]) -> torch.Tensor:
        ids = torch.tensor([target_ids[i] for i in batch])
        chosen = logprobs.gather(-1, ids[None, :, None].expand(logprobs.shape[0], -1, 1))
        return chosen.exp(), chosen  # probability, and the logit's log-softmax

    return floor(model, prompts, reduce)


def nnsight_floor_topk(model, prompts: Sequence[str], k: int = 10) -> list[object]:
    """The floor written as the least nnsight trace: the same batches, reads of every
    layer's last position and one batched unembedding, in the trace, as logitlens does.

    What any tool built on nnsight pays at least (its controller on every module, a
    trace per batch, a handoff per read), so W1's ratio cannot go below this one's.
    """
    nn, out = model.nn, []
    for batch in length_batches(model, prompts):
        inputs = encode(model, [prompts[i] for i in batch])
        with torch.inference_mode(), nn.trace(inputs) as tracer:
            kept = [layer.output[:, -1].clone() for layer in nn.model.layers]
            hidden = torch.stack(kept)
            top = nn.lm_head(nn.model.norm(hidden)).float().log_softmax(-1).topk(k)
            out.append(nnsight.save(top))
            tracer.stop()
    return out


# ----- for scale ----------------------------------------------------------------------------


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


def plain_forward(model, prompt: str):
    with torch.inference_mode():
        return model.module(**encode(model, [prompt]))


# ----- timing -------------------------------------------------------------------------------


def race(contenders: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds per round for each contender, timed in interleaved rounds.

    The first two (logitlens and its floor) run back to back in a random order, so a
    ratio pairs two runs a few hundred ms apart; the others take random places around them.
    """
    for run in contenders.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    pair, others = list(contenders)[:2], list(contenders)[2:]
    for _ in range(rounds):
        random.shuffle(pair)
        blocks = [pair, *([name] for name in others)]
        random.shuffle(blocks)
        for name in itertools.chain.from_iterable(blocks):
            start = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - start)
    return times


def round_ratios(times: dict[str, list[float]], ours: str, base: str) -> list[float]:
    """``ours / base`` for each round, both timed in the same round."""
    return [a / b for a, b in zip(times[ours], times[base], strict=True)]


def paired_ratio(times: dict[str, list[float]], ours: str, base: str) -> float:
    """Median over rounds of ``ours / base`` timed in the same round."""
    return statistics.median(round_ratios(times, ours, base))


def ratio_interval(times: dict[str, list[float]], ours: str, base: str) -> tuple[float, float]:
    """A 95% bootstrap interval of :func:`paired_ratio` (resampling the rounds), so a
    reader can see how far this machine's noise moves the median."""
    ratios = round_ratios(times, ours, base)
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(2000))
    return medians[50], medians[1949]


def report(
    title: str, times: dict[str, list[float]], baselines: list[str], ours: str = "logitlens"
) -> dict[str, tuple[float, float, float]]:
    """Print medians and ratios; return ``{baseline: (ratio, interval low, high)}``."""
    print(f"\n{title}")
    for name, seconds in times.items():
        print(f"  {name:<34} {statistics.median(seconds) * 1000:8.1f} ms")
    ratios = {}
    for base in baselines:
        ratio, (low, high) = paired_ratio(times, ours, base), ratio_interval(times, ours, base)
        print(f"  ratio {ours} / {base}: {ratio:.3f}x (95% interval {low:.3f}-{high:.3f})")
        ratios[base] = (ratio, low, high)
    return ratios


def pun_items(n: int = N_PUNS) -> tuple[list[str], list[str]]:
    puns = [item for item in load_items() if item.category == "pun"][:n]
    return [item.prompt for item in puns], [item.target for item in puns]


def speed_child(threads: int, rounds: int) -> None:
    """Run in a subprocess: time W1-W3 at ``threads`` torch threads; last line JSON ratios."""
    torch.set_num_threads(threads)
    warnings.simplefilter("ignore", MultiTokenTargetWarning)  # 3 puns: their first token
    model = logitlens.load_model()
    plain = plain_copy(model)
    print(f"{model.name}: {model.n_layers} layers, torch threads {torch.get_num_threads()}")
    target_id = model.tokenizer.encode(TARGET, add_special_tokens=False)[0]
    floor_name = "floor (backbone + batched unembed)"
    ratios = {}

    # W1 and W2 take a fraction of a second: many more paired rounds for the same time.
    w1 = race(
        {
            "logitlens": lambda: logitlens.analyze(model, PUN, k=10),
            floor_name: lambda: floor_topk(plain, [PUN]),
        },
        4 * rounds,
    )
    ratios["W1"] = report(
        "W1: top-10 at the last position, all layers, one prompt", w1, [floor_name]
    )[floor_name]
    bare = "nnsight trace (hand-written)"
    w1_nnsight = race(
        {
            bare: lambda: nnsight_floor_topk(model, [PUN]),
            floor_name: lambda: floor_topk(plain, [PUN]),
        },
        4 * rounds,
    )
    ratios["W1 nnsight"] = report(
        "W1 through nnsight at its least: the floor as a hand-written trace",
        w1_nnsight,
        [floor_name],
        ours=bare,
    )[floor_name]
    scale = race(
        {
            "logitlens": lambda: logitlens.analyze(model, PUN, k=10),
            "plain forward (whole model)": lambda: plain_forward(plain, PUN),
            "notebook loop (nnsight)": lambda: notebook_loop(model, PUN),
        },
        rounds,
    )
    report("W1 for scale", scale, ["plain forward (whole model)", "notebook loop (nnsight)"])

    w2 = race(
        {
            "logitlens": lambda: logitlens.analyze(
                model, PUN, positions="all", targets=TARGET, metrics=["target"]
            ),
            floor_name: lambda: floor_target_all_positions(plain, PUN, target_id),
        },
        2 * rounds,
    )
    ratios["W2"] = report(
        "W2: P(target) at every layer x position, one 12-token prompt", w2, [floor_name]
    )[floor_name]

    prompts, targets = pun_items()
    target_ids = [model.tokenizer.encode(t, add_special_tokens=False)[0] for t in targets]
    w3 = race(
        {
            "logitlens": lambda: logitlens.analyze(
                model, prompts, targets=targets, metrics=["target"], batch_size=BATCH
            ),
            floor_name: lambda: floor_own_targets(plain, prompts, target_ids),
        },
        rounds,
    )
    ratios["W3"] = report(
        f"W3: P(own target) at the last position, all layers, {len(prompts)} pun prompts",
        w3,
        [floor_name],
    )[floor_name]
    print(json.dumps({"threads": threads, "ratios": ratios}))


def measure_speed(thread_counts: list[int], rounds: int) -> None:
    policy = os.environ.get("OMP_WAIT_POLICY", "unset: OpenMP's default, as for a library user")
    print(f"OMP_WAIT_POLICY: {policy}")
    summary = {}
    for threads in thread_counts:
        print(f"\n=== {threads} thread(s) ===", flush=True)
        child = subprocess.run(
            [sys.executable, __file__, "--speed-child", str(threads), "--rounds", str(rounds)],
            capture_output=True,
            text=True,
        )
        if child.returncode:
            sys.exit(f"the {threads}-thread run failed:\n{child.stderr[-3000:]}")
        lines = child.stdout.strip().splitlines()
        print("\n".join(lines[:-1]))
        summary[threads] = json.loads(lines[-1])["ratios"]
    print("\nlogitlens / floor (median of paired rounds, 95% interval; target <= 1.02x)")
    print("  workload    " + "".join(f"{f'{t} thread(s)':>24}" for t in thread_counts))
    for workload in ("W1", "W2", "W3", "W1 nnsight"):
        cells = [summary[t][workload] for t in thread_counts]
        row = "".join(f"{f'{r:.3f}x ({lo:.3f}-{hi:.3f})':>24}" for r, lo, hi in cells)
        print(f"  {workload:<12}{row}")
    print("  (W1 nnsight: the hand-written nnsight trace / floor, what nnsight itself costs)")


# ----- memory -------------------------------------------------------------------------------


def random_prompt(n_words: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


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
    plain = plain_copy(model)
    ids = model.tokenizer(random_prompt(600))["input_ids"][:512]
    prompt = model.tokenizer.decode(ids)
    target_id = model.tokenizer.encode(TARGET, add_special_tokens=False)[0]

    def run(text: str) -> object:
        if kind == "logitlens":
            return logitlens.analyze(
                model, text, positions="all", targets=TARGET, metrics=["target"]
            )
        if kind == "forward":
            return plain_forward(plain, text)
        return floor_target_all_positions(plain, text, target_id)

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
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--speed-child", type=int, metavar="THREADS")
    parser.add_argument("--memory-child", choices=["logitlens", "forward", "floor"])
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
    elif args.speed_child:
        speed_child(args.speed_child, args.rounds)
    else:
        measure_speed(args.threads, args.rounds)
        if not args.skip_memory:
            measure_memory()


if __name__ == "__main__":
    main()
