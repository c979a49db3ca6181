"""Fit the Jacobian lens of the bundled SmolLM2-135M on 2 CPU cores, offline.

A full ``J`` costs one backward pass per output dimension (576) per prompt, about
12 minutes per 128-token prompt on 2 shared CPU cores, so the defaults here are
modest: 3 sequences of 32 tokens from the training split of the King James Bible,
the first 8 positions skipped (23 source positions per sequence), about 10 minutes.
The paper's settings (1,000 x 128 tokens, skip 16) want a GPU:
``logitlens jlens fit --n-texts 1000 --device cuda``. The fit checkpoints after every
sequence, so an interrupted run resumes where it stopped.

Writes ``<cache>/lenses/SmolLM2-135M-Instruct.jlens.safetensors`` (about 40 MB); the
README's scoreboard then comes from
``logitlens lens eval --lens raw --lens logit --lens tuned --lens jacobian``.

Run:  .venv/bin/python scripts/fit_bundled_jlens.py [--n-texts 3] [--seq-len 32]
      [--skip-first 8] [--output PATH]
"""

from __future__ import annotations

import argparse
import time

import logitlens
from logitlens.lenses.files import default_lens_path
from logitlens.training.corpus import bible_documents, split_documents
from logitlens.training.jacobian import JacobianFitConfig, fit_jacobian_lens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-texts", type=int, default=3)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--skip-first", type=int, default=8)
    parser.add_argument("--dims-per-pass", type=int, default=64)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    model = logitlens.load_model()
    output = args.output or default_lens_path(model, "jacobian")
    config = JacobianFitConfig(
        n_texts=args.n_texts,
        seq_len=args.seq_len,
        skip_first=args.skip_first,
        dims_per_pass=args.dims_per_pass,
        batch_size=1,
        dtype="float32",
    )
    train, _ = split_documents(bible_documents())
    began = time.perf_counter()
    lens = fit_jacobian_lens(model, train, config, output=output, info={"corpus": "bible"})
    print(
        f"Fitted on {lens.n_prompts} x {args.seq_len} tokens in {time.perf_counter() - began:.0f} s"
    )
    print(f"Saved to {lens.path}")


if __name__ == "__main__":
    main()
