"""Fit the Jacobian lens of the bundled SmolLM2-135M on 2 CPU cores, offline.

A full ``J`` costs one backward pass per output dimension (576) per prompt, 1.5 to 20
minutes per 128-token prompt on 2 CPU cores (idle to heavily shared), so the defaults are
modest: 3 sequences of 32 tokens from the training split of the King James Bible,
the first 8 positions skipped (23 source positions per sequence): 881 s on 2 busy cores.
The paper's settings (1,000 x 128 tokens, skip 16) want a GPU:
``logitlens jlens fit --n-texts 1000 --device cuda``. The fit checkpoints after every
sequence, so an interrupted run resumes where it stopped.

Writes ``<cache>/lenses/SmolLM2-135M-Instruct.jlens.safetensors`` (about 40 MB; an
existing file is kept unless ``--refit``), then prints the tables of
docs/explanation/findings.md: the scoreboard of raw, logit, tuned
(scripts/train_bundled_lens.py) and Jacobian lenses on held-out Bible text and the
bundled study items, and the electricians pun under all four lenses.

Run:  .venv/bin/python scripts/fit_bundled_jlens.py [--n-texts 3] [--seq-len 32]
      [--skip-first 8] [--output PATH] [--refit] [--json board.json] [--plot board.png]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import logitlens
from logitlens.evaluation import Scoreboard, scoreboard
from logitlens.lenses import JacobianLens, TunedLens
from logitlens.lenses.files import default_lens_path
from logitlens.pictures.plots import plot_scoreboard, save_figure
from logitlens.studies.dataset import load_items
from logitlens.training.corpus import bible_documents, split_documents
from logitlens.training.jacobian import JacobianFitConfig, fit_jacobian_lens

PUN = "Why do electricians make good swimmers? Because they know the"
TARGET = " current"


def markdown_scoreboard(board: Scoreboard, every: int = 3) -> str:
    """The per-lens summary, then KL / top-1 / pass@10 at every ``every``-th layer."""
    evaluation, scored = board.evaluation, board.pass_at_k
    lenses = evaluation.lenses
    lines = [
        "| lens | mean KL (nats) | top-1 agreement | perplexity | pass@1 | pass@10 |",
        "|---|---|---|---|---|---|",
    ]
    for lens, row in board.summary().items():
        lines.append(
            f"| {lens} | {row['kl']:.2f} | {row['top1_agreement']:.1%} | "
            f"{row['perplexity']:,.0f} | {row['pass@1']:.1%} | {row['pass@10']:.1%} |"
        )
    lines += [
        "",
        "| layer | "
        + " | ".join(f"KL {lens}" for lens in lenses)
        + " | "
        + " | ".join(f"top-1 {lens}" for lens in lenses)
        + " | "
        + " | ".join(f"pass@10 {lens}" for lens in lenses)
        + " |",
        "|---" * (1 + 3 * len(lenses)) + "|",
    ]
    labels = evaluation.layer_labels()
    for i in [*range(0, len(labels) - 1, every), len(labels) - 1]:
        cells = [f"{evaluation.kl[lens][i]:.2f}" for lens in lenses]
        cells += [f"{evaluation.top1_agreement[lens][i]:.0%}" for lens in lenses]
        cells += [f"{scored.values[lens]['all'][10][i]:.0%}" for lens in lenses]
        lines.append(f"| {labels[i]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pun_table(model: logitlens.LensModel, lenses: dict, every: int = 3) -> str:
    """Top-1 token and the rank of ' current' at every ``every``-th layer, per lens."""
    results = {
        name: logitlens.analyze(model, PUN, lens=lens, targets=TARGET, include_embed=True)
        for name, lens in lenses.items()
    }
    lines = [
        "| layer | " + " | ".join(f"{name}: top-1 (rank of current)" for name in results) + " |",
        "|---" * (1 + len(results)) + "|",
    ]
    labels = next(iter(results.values())).layer_labels
    for row in [*range(0, len(labels) - 1, every), len(labels) - 1]:
        cells = []
        for result in results.values():
            top = result.top_tokens(layer=result.layers[row] if row else "embed")[0]
            rank = int(result.trajectory("target_rank")[row])
            cells.append(f"`{top.token!r}` ({rank:,})")
        lines.append(f"| {labels[row]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-texts", type=int, default=3)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--skip-first", type=int, default=8)
    parser.add_argument("--dims-per-pass", type=int, default=64)
    parser.add_argument("--output", default=None)
    parser.add_argument("--refit", action="store_true", help="Fit even if the file exists.")
    parser.add_argument("--eval-tokens", type=int, default=1024)
    parser.add_argument("--json", default=None, help="Also write the scoreboard as JSON.")
    parser.add_argument("--plot", default=None, help="Also save the scoreboard plot.")
    args = parser.parse_args()
    model = logitlens.load_model()
    output = Path(args.output or default_lens_path(model, "jacobian"))
    if output.is_file() and not args.refit:
        print(f"Using the Jacobian lens in {output} (--refit to fit again)")
        report(model, JacobianLens.load(output), args)
        return
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
    report(model, lens, args)


def report(model: logitlens.LensModel, jacobian: JacobianLens, args: argparse.Namespace) -> None:
    lenses = {"raw": "raw", "logit": "logit"}
    tuned_path = default_lens_path(model)
    if tuned_path.is_file():
        lenses["tuned"] = TunedLens.load(tuned_path)
    else:
        print("No tuned lens in the cache: run scripts/train_bundled_lens.py to include it.")
    lenses["jacobian"] = jacobian
    _, heldout = split_documents(bible_documents())
    board = scoreboard(
        model,
        lenses,
        heldout,
        load_items(),
        ks=(1, 10),
        max_tokens=args.eval_tokens,
        progress=True,
    )
    print(f"\n{markdown_scoreboard(board)}\n")
    print(f"Prompt: {PUN!r}, target {TARGET!r}\n")
    print(pun_table(model, lenses))
    if args.json:
        Path(args.json).write_text(json.dumps(board.to_dict(), indent=1))
    if args.plot:
        save_figure(plot_scoreboard(board), args.plot)


if __name__ == "__main__":
    main()
