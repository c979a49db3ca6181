"""Train, evaluate and save the tuned lens of the bundled SmolLM2-135M, offline.

Writes the lens to the user cache (``logitlens.lenses.files.default_lens_path``, about 40 MB,
too big to commit), then evaluates raw, logit and tuned lenses on the held-out
split of the King James Bible and prints the Markdown table and the electricians
pun under all three lenses, as shown in docs/explanation/findings.md.

Run:  .venv/bin/python scripts/train_bundled_lens.py [--tokens 8192] [--eval-tokens 1024]
      [--output PATH] [--json results.json] [--plot lenses.png]
"""

from __future__ import annotations

import argparse
import json
import time

import logitlens
from logitlens.evaluation import evaluate_lenses
from logitlens.lenses.files import default_lens_path
from logitlens.pictures.plots import plot_evaluation, save_figure
from logitlens.training import TrainingConfig, train_tuned_lens
from logitlens.training.corpus import bible_documents, split_documents

PUN = "Why do electricians make good swimmers? Because they know the"
TARGET = " current"


def markdown_table(evaluation: logitlens.evaluation.LensEvaluation) -> str:
    lines = [
        "| layer | KL raw | KL logit | KL tuned | tuned / logit | ppl logit | ppl tuned |",
        "|---|---|---|---|---|---|---|",
    ]
    kl, ppl = evaluation.kl, {lens: evaluation.perplexity(lens) for lens in evaluation.lenses}
    for i, label in enumerate(evaluation.layer_labels()):
        ratio = kl["tuned"][i] / kl["logit"][i] if kl["logit"][i] > 0 else float("nan")
        lines.append(
            f"| {label} | {kl['raw'][i]:.2f} | {kl['logit'][i]:.3f} | {kl['tuned'][i]:.3f} "
            f"| {ratio:.2f} | {ppl['logit'][i]:.3g} | {ppl['tuned'][i]:.3g} |"
        )
    return "\n".join(lines)


def pun_table(model: logitlens.LensModel, lens: logitlens.Lens) -> str:
    """Top-1 token and the rank of ' current' at every layer of the pun, under each lens."""
    results = {
        name: logitlens.analyze(model, PUN, lens=chosen, targets=TARGET, include_embed=True)
        for name, chosen in (("raw", "raw"), ("logit", "logit"), ("tuned", lens))
    }
    lines = [
        f"Prompt: {PUN!r}, target {TARGET!r}",
        "",
        "| layer | raw: top-1 (rank of current) | logit: top-1 (rank) | tuned: top-1 (rank) |",
        "|---|---|---|---|",
    ]
    reference = results["logit"]
    for row, label in enumerate(reference.layer_labels):
        cells = []
        for result in results.values():
            top = result.top_tokens(layer=result.layers[row] if row else "embed")[0]
            rank = int(result.trajectory("target_rank")[row])
            cells.append(f"`{top.token!r}` ({rank:,})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for name, result in results.items():
        summary = result.target_summary()
        lines.append(
            f"\n{name}: first layer with p > 0.1: {summary.first_layer_above}, first top-1 "
            f"layer: {summary.first_layer_top1}, best p: {summary.max_prob:.4f} at layer "
            f"{summary.max_prob_layer}, final p: {summary.final_prob:.4f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = TrainingConfig()
    parser.add_argument("--tokens", type=int, default=defaults.tokens)
    parser.add_argument("--eval-tokens", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--output", default=None)
    parser.add_argument("--json", default=None, help="Also write the evaluation as JSON.")
    parser.add_argument("--plot", default=None, help="Also save the evaluation plot (PNG).")
    args = parser.parse_args()

    model = logitlens.load_model()
    output = args.output or default_lens_path(model)
    config = TrainingConfig(tokens=args.tokens, seed=args.seed, lr=args.lr)
    started = time.perf_counter()
    lens = train_tuned_lens(model, output, config)
    train_seconds = time.perf_counter() - started
    print(f"Trained on {lens.info['tokens']} tokens in {train_seconds:.0f} s -> {output}")

    _, heldout = split_documents(bible_documents())
    evaluation = evaluate_lenses(
        model, ["raw", "logit", lens], heldout, max_tokens=args.eval_tokens, progress=True
    )
    print(f"Evaluated on {evaluation.tokens} held-out tokens in {evaluation.seconds:.0f} s\n")
    print(markdown_table(evaluation))
    beaten = [
        label
        for i, label in enumerate(evaluation.layer_labels()[:-1])
        if evaluation.kl["tuned"][i] < evaluation.kl["logit"][i]
    ]
    print(f"\nTuned KL < logit KL at {len(beaten)} of {len(evaluation.layers) - 1} layers")

    print(f"\n{pun_table(model, lens)}\n")

    if args.json:
        payload = {"evaluation": evaluation.to_dict(), "train_seconds": train_seconds}
        with open(args.json, "w") as handle:
            json.dump(payload, handle, indent=1)
    if args.plot:
        save_figure(plot_evaluation(evaluation), args.plot)


if __name__ == "__main__":
    main()
