"""Study throughput against the plain-PyTorch floor, and peak memory for 10,000 items.

- Throughput: ``run_study`` on the bundled model and the first ``--items`` bundled items
  (writing its Parquet parts and manifest into a fresh directory each round), against
  the floor on the same items and the same length-bucketed batches: one forward with
  plain PyTorch hooks keeping the last position of every layer, one batched
  unembedding, then target / alternative probability and rank, logit difference and
  entropy. Interleaved rounds, median seconds, reported as items/s and their ratio.
- Memory: peak resident-memory growth of a study of 1,000 and of 10,000 items on a
  tiny random Llama (tests/tiny_models.py), each in a fresh subprocess. Rows are
  streamed to disk batch by batch, so 10x the items must not mean 10x the memory.

Run:  .venv/bin/python benchmarks/bench_study.py [--items 64] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_core import PeakRSS, hooked, race, unembed

import logitlens
from logitlens.batching import plan_batches
from logitlens.studies import load_items, run_study

TESTS = Path(__file__).resolve().parents[1] / "tests"


def floor_study(model, items, batches, encoded) -> list[torch.Tensor]:
    """Plain PyTorch over the same batches: the per-layer numbers a study stores."""
    out = []
    for batch, inputs in zip(batches, encoded, strict=True):
        ids = torch.tensor(
            [
                [model.tokenizer.encode(t, add_special_tokens=False)[0] for t in pair]
                for pair in (
                    (items[i].target, items[i].alternative or items[i].target) for i in batch
                )
            ]
        )
        with hooked(model, lambda output: output[:, -1]) as kept:
            model.module(**inputs)
            logprobs = unembed(model, torch.stack(kept)).log_softmax(-1)  # [layer, batch, vocab]
            chosen = logprobs.gather(-1, ids.expand(logprobs.shape[0], -1, -1))
            ranks = (logprobs.unsqueeze(-2) > chosen.unsqueeze(-1)).sum(-1) + 1
            entropy = -(logprobs.exp() * logprobs).sum(-1)
            out.append(torch.cat([chosen.exp(), ranks, entropy.unsqueeze(-1)], -1))
            out.append(chosen[..., 0] - chosen[..., 1])
    return out


def encode_batches(model, items, batches) -> list[dict]:
    encoded = []
    for batch in batches:
        prompts = [items[i].prompt for i in batch]
        tokens = model.tokenizer(prompts, return_tensors="pt", padding=True)
        inputs = dict(tokens)
        inputs["position_ids"] = (tokens["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        encoded.append(inputs)
    return encoded


def throughput(n_items: int, rounds: int, batch_size: int) -> None:
    model = logitlens.load_model()
    items = load_items()[:n_items]
    lengths = [len(model.tokenizer(item.prompt)["input_ids"]) for item in items]
    batches = plan_batches(lengths, batch_size)
    encoded = encode_batches(model, items, batches)
    work = Path(tempfile.mkdtemp(prefix="bench-study-"))
    runs = iter(range(10**6))
    medians = race(
        {
            "logitlens study": lambda: run_study(
                model,
                items,
                out_dir=work / str(next(runs)),
                batch_size=batch_size,
                progress=False,
            ),
            "floor (hooks + batched unembed)": lambda: floor_study(model, items, batches, encoded),
        },
        rounds,
    )
    print(
        f"\nThroughput: {model.name}, {len(items)} bundled items, batch {batch_size}, "
        f"torch threads {torch.get_num_threads()}, median of {rounds} rounds"
    )
    for name, seconds in medians.items():
        print(f"  {name:<34} {len(items) / seconds:8.1f} items/s")
    ratio = medians["floor (hooks + batched unembed)"] / medians["logitlens study"]
    print(f"  ratio study / floor (items/s):     {ratio:.2f}x")


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
