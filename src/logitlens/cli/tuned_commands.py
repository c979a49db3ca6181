"""``logitlens tuned train``, and ``tuned eval``: the scoreboard with raw, logit, tuned."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..training.config import BIBLE, DTYPE_NAMES, MODEL_SAMPLES, SCHEDULES, TrainingConfig
from .application import app, err_console, say
from .flags import (
    BatchOption,
    CorpusOption,
    DeviceOption,
    ForceOption,
    JsonOption,
    LensOutputOption,
    ModelOption,
    SeqLenOption,
    limited,
)
from .runners import open_model_for_lens

tuned_app = typer.Typer(
    help="Train and evaluate a tuned lens (per-layer affine translators).",
    no_args_is_help=True,
)
app.add_typer(tuned_app, name="tuned")

_DEFAULTS = TrainingConfig()


@tuned_app.command()
def train(
    output: LensOutputOption = None,
    model: ModelOption = None,
    corpus: CorpusOption = BIBLE,
    tokens: Annotated[
        int, typer.Option("--tokens", min=1, help="Token budget (whole batches).")
    ] = _DEFAULTS.tokens,
    seq_len: SeqLenOption = _DEFAULTS.seq_len,
    batch_size: BatchOption = _DEFAULTS.batch_size,
    lr: Annotated[
        float, typer.Option("--lr", help="Peak learning rate (AdamW), above 0.")
    ] = _DEFAULTS.lr,
    schedule: Annotated[
        str, typer.Option("--schedule", help=f"Decay after warm-up: {', '.join(SCHEDULES)}.")
    ] = _DEFAULTS.schedule,
    warmup_steps: Annotated[
        int, typer.Option("--warmup-steps", min=0, help="Steps of linear warm-up (0 or more).")
    ] = _DEFAULTS.warmup_steps,
    weight_decay: Annotated[
        float, typer.Option("--weight-decay", min=0, help="AdamW weight decay (0 or more).")
    ] = _DEFAULTS.weight_decay,
    device: DeviceOption = None,
    dtype: Annotated[
        str | None,
        typer.Option("--dtype", help=f"Model precision: {', '.join(DTYPE_NAMES)}."),
    ] = None,
    seed: Annotated[
        int,
        typer.Option(
            "--seed",
            callback=limited("seed"),
            help="Seed of the batch order and sampling (reproducible; 0 or more).",
        ),
    ] = _DEFAULTS.seed,
    checkpoint_every: Annotated[
        int, typer.Option("--checkpoint-every", min=1, help="Steps between checkpoints.")
    ] = _DEFAULTS.checkpoint_every,
    resume: Annotated[
        bool, typer.Option("--resume/--no-resume", help="Continue an interrupted run.")
    ] = True,
    force: ForceOption = False,
):
    """Train a tuned lens on a corpus (held-out split kept apart) and save it.

    Example: logitlens tuned train --tokens 16384 -o lens.safetensors
    """
    from ..training import train_tuned_lens

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
        checkpoint_every=checkpoint_every,
    )
    config.validate()
    lens_model, path = open_model_for_lens(output, model, device, "tuned", "training", force)
    if corpus == MODEL_SAMPLES:
        err_console.print("Sampling text from the model...")
    lens = train_tuned_lens(lens_model, path, config, resume=resume, force=force)
    say(
        f"Saved the tuned lens for {lens_model.name} ({lens.info['tokens']} tokens, final "
        f"KL {lens.info['final_loss']:.3f} nats per layer) to {lens.path}\n"
        f"Evaluate it:  logitlens tuned eval --tuned-path {lens.path}"
    )


@tuned_app.command("eval")
def evaluate(
    tuned_path: Annotated[
        str | None,
        typer.Option("--tuned-path", help="Lens file; default: this model's in the user cache."),
    ] = None,
    model: ModelOption = None,
    corpus: CorpusOption = BIBLE,
    tokens: Annotated[
        int, typer.Option("--tokens", min=1, help="Held-out tokens to evaluate.")
    ] = 1024,
    seq_len: SeqLenOption = _DEFAULTS.seq_len,
    batch_size: BatchOption = _DEFAULTS.batch_size,
    device: DeviceOption = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Save a picture (.png, .svg or .pdf).")
    ] = None,
    json_output: JsonOption = False,
    force: ForceOption = False,
):
    """The lens scoreboard for raw, logit and the tuned lens (``lens eval`` with those three).

    Example: logitlens tuned eval --tuned-path lens.safetensors --plot eval.png
    """
    from .lens_commands import run_scoreboard

    run_scoreboard(
        model=model,
        specs=["raw", "logit", tuned_path or "tuned"],
        corpus=corpus,
        tokens=tokens,
        seq_len=seq_len,
        batch_size=batch_size,
        device=device,
        items="none",
        pass_k="1",
        plot=plot,
        json_output=json_output,
        force=force,
    )
