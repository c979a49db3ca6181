"""Study throughput against the plain-PyTorch floor, and peak memory for 10,000 items.

- Throughput: ``run_study`` on the bundled model and the first ``--items`` bundled items
  (writing its Parquet parts and manifest into a fresh directory each round), against
  the floor (see ``bench_core``: the backbone of a plain transformers copy, hooks keeping
  the last position of every layer, one batched unembedding) over the same
  length-sorted batches, computing what a study stores: target and alternative
  probability and rank, logit difference and entropy. Interleaved rounds; items/s from
  the median seconds, and the ratio as the median over rounds of the floor's seconds
  over the study's in the same round.
- Memory: peak resident-memory growth of a study of 1,000 and of 10,000 items on a
  tiny random Llama (tests/tiny_models.py), each in a fresh subprocess. Rows are
  streamed to disk batch by batch, so 10x the items must not mean 10x the memory.

Run:  OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_study.py [--items 64] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from bench_core import (
    PeakRSS,
    encode,
    hooked,
    paired_ratio,
    plain_copy,
    race,
    ratio_interval,
    unembed,
)

import logitlens
from logitlens.batching import plan_batches
from logitlens.studies import load_items, run_study
from logitlens.targets import MultiTokenTargetWarning

TESTS = Path(__file__).resolve().parents[1] / "tests"


def count_above(values: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Entries of each row above ``threshold`` ``[..., 1]``; int16 sums of vocabulary pieces
    shorter than 2**15 (int64 sums of booleans are ~3x slower on CPUs)."""
    above = (values > threshold).view(torch.uint8)
    return sum(piece.sum(-1, dtype=torch.int16).long() for piece in above.split(2**15 - 1, -1))


def floor_study(model, items, batch_size: int) -> list[tuple[torch.Tensor, ...]]:
    """Plain PyTorch over the same length-sorted batches: the per-layer numbers a study stores.

    Target and alternative probability and rank, their log-probability difference, the
    entropy; the backbone only, one batched unembedding of the last position per batch.
    """
    tokenizer = model.tokenizer
    prompts = [item.prompt for item in items]
    out = []
    for batch in plan_batches([len(ids) for ids in tokenizer(prompts)["input_ids"]], batch_size):
        pairs = [(items[i].target, items[i].alternative or items[i].target) for i in batch]
        ids = torch.tensor(
            [[tokenizer.encode(t, add_special_tokens=False)[0] for t in pair] for pair in pairs]
        )
        with hooked(model, lambda output: output[:, -1].clone()) as kept:  # as bench_core
            model.module.model(**encode(model, [prompts[i] for i in batch]))
            logprobs = unembed(model, torch.stack(kept)).log_softmax(-1)  # [layer, batch, vocab]
            chosen = logprobs.gather(-1, ids.expand(logprobs.shape[0], -1, -1))
            ranks = [count_above(logprobs, chosen[..., t : t + 1]) + 1 for t in range(2)]
            entropy = -(logprobs.exp() * logprobs).sum(-1)
            out.append((chosen.exp(), *ranks, chosen[..., 0] - chosen[..., 1], entropy))
    return out


def throughput(n_items: int, rounds: int, batch_size: int) -> None:
    warnings.simplefilter("ignore", MultiTokenTargetWarning)  # their first token, in both
    model = logitlens.load_model()
    plain = plain_copy(model)
    items = load_items()[:n_items]
    work = Path(tempfile.mkdtemp(prefix="bench-study-"))
    runs = iter(range(10**6))
    floor_name = "floor (backbone + batched unembed)"
    times = race(
        {
            "logitlens study": lambda: run_study(
                model,
                items,
                out_dir=work / str(next(runs)),
                batch_size=batch_size,
                progress=False,
            ),
            floor_name: lambda: floor_study(plain, items, batch_size),
        },
        rounds,
    )
    print(
        f"\nThroughput: {model.name}, {len(items)} bundled items, batch {batch_size}, "
        f"torch threads {torch.get_num_threads()}, median of {rounds} rounds"
    )
    for name, seconds in times.items():
        print(f"  {name:<34} {len(items) / statistics.median(seconds):8.1f} items/s")
    # items/s of the study over the floor's = the floor's seconds over the study's
    ratio = paired_ratio(times, floor_name, "logitlens study")
    low, high = ratio_interval(times, floor_name, "logitlens study")
    print(
        f"  ratio study / floor (items/s, median of paired rounds): {ratio:.3f}x "
        f"(95% interval {low:.3f}-{high:.3f}; target >= 0.95x)"
    )


def memory_child(n_items: int) -> None:
    sys.path.insert(0, str(TESTS))
    from study_items import make_items
    from tiny_models import tiny_model

    torch.set_num_threads(1)
    hf_model, tokenizer = tiny_model("llama")
    model = logitlens.load_model(hf_model, tokenizer=tokenizer)
    items = make_items(n_items)
    run_study(model, items[:32], out_dir=tempfile.mkdtemp(), batch_size=32, progress=False)
    baseline = PeakRSS.current()
    start = time.perf_counter()
    with PeakRSS() as peak:
        run_study(model, items, out_dir=tempfile.mkdtemp(), batch_size=32, progress=False)
    seconds = time.perf_counter() - start
    print(json.dumps({"peak_mib": (peak.peak - baseline) / 2**20, "seconds": seconds}))


def memory() -> None:
    print("\nPeak memory growth during a study (tiny random Llama, batch 32, fresh process)")
    for n_items in (1_000, 10_000):
        output = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(n_items)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        result = json.loads(output.strip().splitlines()[-1])
        print(
            f"  {n_items:>6} items: peak +{result['peak_mib']:6.1f} MiB, "
            f"{n_items / result['seconds']:7.1f} items/s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--memory-child", type=int)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return
    throughput(args.items, args.rounds, args.batch_size)
    if not args.skip_memory:
        memory()


if __name__ == "__main__":
    main()
