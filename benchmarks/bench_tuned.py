"""Tuned-lens training throughput and evaluation time on the bundled model.

Training throughput (tokens/s) is reported as a ratio to the model's own forward-pass
throughput on the same batches, measured interleaved round by round (these machines
are noisy). A training step is one forward pass plus, for each of the 30 trained
layers, an unembedding of every position and its backward pass, so expect the ratio
to be far below 1: the unembedding (576 x 49152) dominates. Evaluation time is for
raw, logit and tuned lenses over ``--eval-tokens`` held-out tokens.

Run:  .venv/bin/python benchmarks/bench_tuned.py [--rounds 3] [--eval-tokens 512]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import logitlens
from logitlens.evaluation import evaluate_lenses
from logitlens.lenses import TunedLens, Unembedding
from logitlens.residuals import residual_stream
from logitlens.training.corpus import bible_documents, split_documents, tokenize_documents
from logitlens.training.tuned import TrainingConfig, lens_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--eval-tokens", type=int, default=512)
    args = parser.parse_args()

    model = logitlens.load_model()
    config = TrainingConfig()
    train, heldout = split_documents(bible_documents())
    sequences = tokenize_documents(model.tokenizer, train[:40], config.seq_len)
    batches = [sequences[i * config.batch_size : (i + 1) * config.batch_size] for i in range(2)]
    lens = TunedLens.identity(model)
    for tensor in lens.parameters():
        tensor.requires_grad_(True)
    optimizer = torch.optim.AdamW(lens.parameters(), lr=config.lr)
    unembedding = Unembedding(model.module, model.architecture, model.config)

    def forward(batch: torch.Tensor) -> None:
        with torch.no_grad():
            model.module(input_ids=batch)

    def train_step(batch: torch.Tensor) -> None:
        lens_loss(lens, unembedding, residual_stream(model, batch), config.chunk_rows)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    forward(batches[0])  # warm-up
    timings: dict[str, list[float]] = {"forward": [], "train": []}
    for _ in range(args.rounds):
        for name, work in (("forward", forward), ("train", train_step)):
            for batch in batches:
                started = time.perf_counter()
                work(batch)
                timings[name].append(time.perf_counter() - started)
    tokens = config.batch_size * config.seq_len
    forward_speed = tokens / statistics.median(timings["forward"])
    train_speed = tokens / statistics.median(timings["train"])
    print(f"batches of {config.batch_size} x {config.seq_len} tokens, {args.rounds} rounds")
    print(f"forward pass:   {forward_speed:8.1f} tokens/s")
    print(f"training step:  {train_speed:8.1f} tokens/s  ({train_speed / forward_speed:.3f} x)")

    for tensor in lens.parameters():
        tensor.requires_grad_(False)
    with tempfile.TemporaryDirectory() as directory:
        saved = TunedLens.load(lens.save(Path(directory) / "lens.safetensors"))
    started = time.perf_counter()
    evaluation = evaluate_lenses(
        model, ["raw", "logit", saved], heldout, max_tokens=args.eval_tokens
    )
    seconds = time.perf_counter() - started
    print(
        f"evaluation:     {seconds:8.1f} s for 3 lenses x {len(evaluation.layers)} layers x "
        f"{evaluation.tokens} tokens ({evaluation.tokens / seconds:.1f} tokens/s)"
    )


if __name__ == "__main__":
    main()
