"""``logitlens tuned train`` and ``logitlens tuned eval``: the tuned lens's life cycle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..errors import InputError
from ..evaluation import LensEvaluation, evaluate_lenses
from ..lenses import TunedLens
from ..lenses.files import default_lens_path
from ..paths import check_output_path
from ..pictures import plots
from ..training import SCHEDULES, TrainingConfig, train_tuned_lens
from ..training.corpus import BIBLE, load_documents, sample_documents, split_documents
from .common import (
    DeviceOption,
    JsonOption,
    ModelOption,
    app,
    console,
    err_console,
    open_model,
    print_json,
)

tuned_app = typer.Typer(
    help="Train and evaluate a tuned lens (per-layer affine translators).",
    no_args_is_help=True,
)
app.add_typer(tuned_app, name="tuned")

SAMPLED = "model-samples"
_DEFAULTS = TrainingConfig()

CorpusOption = Annotated[
    str,
    typer.Option(
        "--corpus",
        help=f"'{BIBLE}' (King James Bible, offline), '{SAMPLED}' (text the model writes), "
        "or a .txt / .jsonl file or a directory of them.",
    ),
]
SeqLenOption = Annotated[int, typer.Option("--seq-len", help="Tokens per sequence.")]
BatchOption = Annotated[int, typer.Option("--batch-size", help="Sequences per forward pass.")]


def _documents(corpus: str, model, seed: int) -> list[str] | None:
    """Text sampled from the model for ``model-samples``; ``None``: read ``corpus``."""
    if corpus != SAMPLED:
        return None
    with err_console.status("Sampling text from the model..."):
        return sample_documents(model, n_documents=256, length=128, seed=seed)


@tuned_app.command()
def train(
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Lens file (.safetensors); default: user cache."),
    ] = None,
    model: ModelOption = None,
    corpus: CorpusOption = BIBLE,
    tokens: Annotated[int, typer.Option("--tokens", help="Token budget.")] = _DEFAULTS.tokens,
    seq_len: SeqLenOption = _DEFAULTS.seq_len,
    batch_size: BatchOption = _DEFAULTS.batch_size,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW).")] = _DEFAULTS.lr,
    schedule: Annotated[
        str, typer.Option("--schedule", help=f"One of {', '.join(SCHEDULES)}.")
    ] = _DEFAULTS.schedule,
    warmup_steps: Annotated[int, typer.Option("--warmup-steps")] = _DEFAULTS.warmup_steps,
    weight_decay: Annotated[float, typer.Option("--weight-decay")] = _DEFAULTS.weight_decay,
    device: DeviceOption = None,
    dtype: Annotated[
        str | None, typer.Option("--dtype", help="float32, bfloat16 or float16 for the model.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = _DEFAULTS.seed,
    checkpoint_every: Annotated[
        int, typer.Option("--checkpoint-every", help="Steps between checkpoints.")
    ] = _DEFAULTS.checkpoint_every,
    resume: Annotated[
        bool, typer.Option("--resume/--no-resume", help="Continue an interrupted run.")
    ] = True,
):
    """Train a tuned lens on a corpus (held-out split kept apart) and save it."""
    config = TrainingConfig(
        corpus=corpus,
        tokens=tokens,
        seq_len=seq_len,
        batch_size=batch_size,
        lr=lr,
        schedule=schedule,
        warmup_steps=warmup_steps,
        weight_decay=weight_decay,
        device=device,
        dtype=dtype,
        seed=seed,
        checkpoint_every=max(1, checkpoint_every),
    )
    config.validate()
    lens_model = open_model(model, False, device)
    documents = _documents(corpus, lens_model, seed)
    path = output or default_lens_path(lens_model)
    lens = train_tuned_lens(lens_model, path, config, documents=documents, resume=resume)
    console.print(
        f"Saved the tuned lens for {lens_model.name} ({lens.info['tokens']} tokens, final "
        f"KL {lens.info['final_loss']:.3f} nats per layer) to {lens.path}\n"
        f"Evaluate it:  logitlens tuned eval --tuned-path {lens.path}",
        highlight=False,
    )


@tuned_app.command("eval")
def evaluate(
    tuned_path: Annotated[
        str | None,
        typer.Option("--tuned-path", help="Lens file; default: this model's in the user cache."),
    ] = None,
    model: ModelOption = None,
    corpus: CorpusOption = BIBLE,
    tokens: Annotated[int, typer.Option("--tokens", help="Held-out tokens to evaluate.")] = 1024,
    seq_len: SeqLenOption = _DEFAULTS.seq_len,
    batch_size: BatchOption = _DEFAULTS.batch_size,
    device: DeviceOption = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Save a PNG plot here.")] = None,
    json_output: JsonOption = False,
):
    """Per-layer KL to the final layer, cross-entropy and perplexity: raw, logit, tuned."""
    if tokens < 1:
        raise InputError(f"--tokens must be positive, got {tokens}.")
    if plot is not None:
        check_output_path(plot)
    lens_model = open_model(model, False, device)
    lens = TunedLens.load(tuned_path or default_lens_path(lens_model))
    seed = lens.info.get("config", {}).get("seed", 0) + 1  # never the training samples
    _, heldout = split_documents(_documents(corpus, lens_model, seed) or load_documents(corpus))
    evaluation = evaluate_lenses(
        lens_model,
        ["raw", "logit", lens],
        heldout,
        seq_len=seq_len,
        batch_size=batch_size,
        max_tokens=tokens,
        progress=not json_output,
    )
    if plot is not None:
        plots.save_figure(plots.plot_evaluation(evaluation), plot)
    if json_output:
        print_json(evaluation.to_dict())
        return
    console.print(evaluation_table(evaluation))
    if plot is not None:
        console.print(f"Plot saved to {plot}")


def evaluation_table(evaluation: LensEvaluation) -> Table:
    """KL and perplexity per layer for each lens, with the tuned/logit KL ratio."""
    table = Table(
        title=f"{evaluation.model_name}: {evaluation.tokens} held-out tokens "
        f"({evaluation.seconds:.0f} s)"
    )
    table.add_column("layer", justify="right")
    for lens in evaluation.lenses:
        table.add_column(f"KL {lens}", justify="right")
    table.add_column("tuned/logit", justify="right")
    for lens in evaluation.lenses:
        table.add_column(f"ppl {lens}", justify="right")
    perplexity = {lens: evaluation.perplexity(lens) for lens in evaluation.lenses}
    for i, label in enumerate(evaluation.layer_labels()):
        logit = evaluation.kl["logit"][i]
        ratio = evaluation.kl["tuned"][i] / logit if logit > 0 else float("nan")
        table.add_row(
            label,
            *(f"{evaluation.kl[lens][i]:.3f}" for lens in evaluation.lenses),
            f"{ratio:.2f}",
            *(f"{perplexity[lens][i]:,.1f}" for lens in evaluation.lenses),
        )
    return table
