"""``logitlens lens eval|import`` and ``logitlens jlens fit|merge``: every lens side by side.

``lens eval`` is the scoreboard: any set of lenses (raw, logit, tuned, jacobian, or lens
files, imported ones included) on held-out text and on prompts with known answers.
``tuned eval`` runs the same scoreboard with raw, logit and one tuned lens.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import InputError
from ..lens_registry import LENSES, file_lenses, parse_lens_spec
from ..training.config import BIBLE
from .application import app, console, print_json, say
from .flags import (
    BatchOption,
    CorpusOption,
    DeviceOption,
    ForceOption,
    JsonOption,
    LensOutputOption,
    ModelOption,
    PlotOption,
    SeqLenOption,
)
from .runners import check_picture_path, open_model, open_model_for_lens, save_plot

if TYPE_CHECKING:
    from rich.table import Table

    from ..evaluation import Scoreboard
    from ..lenses import Lens
    from ..loading import LensModel

lens_app = typer.Typer(
    help="Score lenses side by side; import pretrained lenses.", no_args_is_help=True
)
jlens_app = typer.Typer(help="Fit and merge Jacobian lenses.", no_args_is_help=True)
app.add_typer(lens_app, name="lens")
app.add_typer(jlens_app, name="jlens")

ItemsOption = Annotated[
    str | None,
    typer.Option(
        "--items",
        help="Prompts with known answers for pass@k (.jsonl/.csv/.parquet); default: the "
        "bundled study items; 'none' to skip.",
    ),
]
PassKOption = Annotated[str, typer.Option("--pass-k", help="k values for pass@k, e.g. 1,10.")]
TokensOption = Annotated[int, typer.Option("--tokens", min=1, help="Held-out tokens to score.")]


def _is_named(spec: str) -> bool:
    """Whether a ``--lens`` value names a lens (``NAME`` or ``NAME:key=value``), not a file."""
    return spec.partition(":")[0] in LENSES


def load_lens_files(specs: list[str]) -> dict[str, Lens]:
    """The ``--lens`` values that are files, read (and checked) before the model loads."""
    from ..lenses import load_lens

    return {spec: load_lens(spec) for spec in specs if not _is_named(spec)}


def resolve_lenses(specs: list[str], model: LensModel, files: dict[str, Lens]) -> dict[str, Lens]:
    """Lenses by label from ``--lens`` values: a name (a lens with a file: this model's file
    in the user cache) or a lens file from :func:`load_lens_files` (labelled by its kind, or
    by its file name when that kind is taken)."""
    lenses: dict[str, Lens] = {}
    for spec in specs:
        if not _is_named(spec):
            lens = files[spec]
            label = lens.name if lens.name not in lenses else Path(spec).stem
            lenses[label] = lens
        else:
            kind, values = parse_lens_spec(spec)
            lenses[spec] = kind.cached(model) if kind.needs_file else kind.build(None, values)
    return lenses


def default_specs(model: LensModel) -> list[str]:
    """raw and logit, plus the lenses with a file that the user cache has for ``model``."""
    present = [kind.name for kind in file_lenses() if kind.cache_path(model).is_file()]
    return ["raw", "logit", *present]


def run_scoreboard(
    *,
    model: str | None,
    specs: list[str] | None,
    corpus: str,
    tokens: int,
    seq_len: int,
    batch_size: int,
    device: str | None,
    items: str | None,
    pass_k: str,
    plot: Path | None,
    json_output: bool,
    force: bool = False,
) -> None:
    """The shared body of ``lens eval`` and ``tuned eval``."""
    from ..evaluation import check_ks, scoreboard
    from ..studies.dataset import load_items
    from ..training.config import MODEL_SAMPLES
    from ..training.corpus import load_documents, split_documents

    check_picture_path(plot, force=force)
    ks = _parse_ks(pass_k)
    chosen_items = None if items == "none" else load_items(items)
    files = load_lens_files(specs or [])
    lens_model = open_model(model, False, device)
    if chosen_items:
        check_ks(ks, lens_model.vocab_size)
    lenses = resolve_lenses(specs or default_specs(lens_model), lens_model, files)
    # seed 1: model samples other than those a tuned lens trains on (seed 0) by default
    documents = load_documents(corpus, model=lens_model, tokens=tokens, seed=1)
    heldout = documents if corpus == MODEL_SAMPLES else split_documents(documents)[1]
    board = scoreboard(
        lens_model,
        lenses,
        heldout,
        chosen_items,
        ks=ks,
        seq_len=seq_len,
        batch_size=batch_size,
        max_tokens=tokens,
        progress=not json_output,
    )
    from ..pictures import plots

    save_plot(lambda: plots.plot_scoreboard(board), plot, json_output, force)
    if json_output:
        print_json(board.to_dict())
        return
    console.print(scoreboard_table(board))


def _parse_ks(text: str) -> list[int]:
    try:
        ks = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise InputError(f"Bad --pass-k {text!r}: write k values like 1,10.") from None
    if not ks or ks[0] < 1:
        raise InputError(f"Bad --pass-k {text!r}: every k must be at least 1.")
    return ks


def scoreboard_table(board: Scoreboard) -> Table:
    """One row per layer; for each lens: KL, top-1 agreement, perplexity, pass@k (all)."""
    from rich.table import Table

    evaluation, scored = board.evaluation, board.pass_at_k
    items = f", {scored.categories['all']} items" if scored else ""
    table = Table(
        title=f"{evaluation.model_name}: {evaluation.tokens} held-out tokens{items} "
        f"({evaluation.seconds:.0f} s)"
    )
    table.add_column("layer", justify="right")
    columns = [("KL", lambda lens: evaluation.kl[lens], "{:.3f}")]
    columns.append(("top-1", lambda lens: evaluation.top1_agreement[lens], "{:.0%}"))
    columns.append(("ppl", evaluation.perplexity, "{:,.1f}"))
    if scored is not None:
        k = max(scored.ks)
        columns.append((f"pass@{k}", lambda lens: scored.values[lens]["all"][k], "{:.0%}"))
    for title, _, _ in columns:
        for lens in evaluation.lenses:
            table.add_column(f"{title} {lens}", justify="right")
    cells = [(values(lens), form) for _, values, form in columns for lens in evaluation.lenses]
    for i, label in enumerate(evaluation.layer_labels()):
        table.add_row(label, *(form.format(values[i]) for values, form in cells))
    return table


@lens_app.command("eval")
def evaluate(
    lens: Annotated[
        list[str] | None,
        typer.Option(
            "--lens",
            "-l",
            help="Repeatable: a lens ("
            + ", ".join(LENSES)
            + "; with parameters NAME:key=value,...; a lens with a file: this model's file in "
            "the user cache) or a lens file. Default: raw, logit and the cached lens files.",
        ),
    ] = None,
    model: ModelOption = None,
    corpus: CorpusOption = BIBLE,
    tokens: TokensOption = 1024,
    seq_len: SeqLenOption = 128,
    batch_size: BatchOption = 4,
    items: ItemsOption = None,
    pass_k: PassKOption = "1,10",
    device: DeviceOption = None,
    plot: PlotOption = None,
    json_output: JsonOption = False,
    force: ForceOption = False,
):
    """The lens scoreboard: per layer, KL to the model's output, top-1 agreement with it,
    perplexity of the held-out text, and pass@k on prompts with known answers.

    Example: logitlens lens eval -l raw -l logit -l tuned -l jlens.safetensors --plot s.png
    """
    run_scoreboard(
        model=model,
        specs=lens,
        corpus=corpus,
        tokens=tokens,
        seq_len=seq_len,
        batch_size=batch_size,
        device=device,
        items=items,
        pass_k=pass_k,
        plot=plot,
        json_output=json_output,
        force=force,
    )


@lens_app.command("import")
def import_command(
    source: Annotated[
        str,
        typer.Argument(
            help="A tuned-lens folder (config.json + params.pt), a Jacobian-lens .pt, or a "
            "hub id: tuned-lens:<model> or jacobian-lens:<file in the repo>."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The logitlens lens file to write.")],
    model: ModelOption = None,
    hash_check: Annotated[
        bool,
        typer.Option("--hash-check/--no-hash-check", help="Refuse a foreign unembedding hash."),
    ] = True,
    force: ForceOption = False,
):
    """Convert a pretrained lens to a logitlens file, never running pickled code."""
    from ..lenses.files import check_lens_output
    from ..lenses.imports import import_lens

    check_lens_output(out, force=force)
    lens_model = open_model(model)
    lens = import_lens(source, lens_model, check_hash=hash_check)
    path = lens.save(out, force=force)
    console.print(
        f"Imported a {lens.name} lens for {lens_model.name} to {path}\n"
        f"Use it:  logitlens lens eval -l logit -l {path}",
        highlight=False,
    )


@jlens_app.command("fit")
def fit(
    output: LensOutputOption = None,
    model: ModelOption = None,
    corpus: CorpusOption = BIBLE,
    n_texts: Annotated[int, typer.Option("--n-texts", min=1, help="Sequences to average.")] = 100,
    seq_len: SeqLenOption = 128,
    skip_first: Annotated[
        int, typer.Option("--skip-first", min=0, help="Leading positions left out (sinks).")
    ] = 16,
    target_layer: Annotated[
        int, typer.Option("--target-layer", help="Layer the Jacobians are of (-1: last).")
    ] = -1,
    dims_per_pass: Annotated[
        int, typer.Option("--dims-per-pass", min=1, help="Output dims per backward pass.")
    ] = 64,
    batch_size: BatchOption = 4,
    device: DeviceOption = None,
    dtype: Annotated[
        str | None, typer.Option("--dtype", help="float32, bfloat16 or float16 for the model.")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume/--no-resume", help="Continue an interrupted fit.")
    ] = True,
    force: ForceOption = False,
):
    """Fit a Jacobian lens (average d h_final / d h_l) on the training split of a corpus."""
    from ..training.corpus import load_documents, split_documents
    from ..training.jacobian import JacobianFitConfig, fit_jacobian_lens

    config = JacobianFitConfig(
        n_texts=n_texts,
        seq_len=seq_len,
        skip_first=skip_first,
        target_layer=target_layer,
        dims_per_pass=dims_per_pass,
        batch_size=batch_size,
        device=None if device == "auto" else device,
        dtype=dtype,
    )
    config.validate()
    train, _ = split_documents(load_documents(corpus))
    lens_model, path = open_model_for_lens(output, model, device, "jacobian", "fit", force)
    lens = fit_jacobian_lens(
        lens_model,
        train,
        config,
        output=path,
        resume=resume,
        info={"corpus": corpus},
        force=force,
    )
    say(
        f"Saved the Jacobian lens for {lens_model.name} ({lens.n_prompts} x {seq_len} tokens) "
        f"to {lens.path}\nScore it:  logitlens lens eval -l logit -l {lens.path}"
    )


@jlens_app.command("merge")
def merge(
    paths: Annotated[list[Path], typer.Argument(help="Jacobian-lens files fitted on shards.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The merged lens file.")],
    force: ForceOption = False,
):
    """Merge fits on disjoint texts: the mean of their J weighted by prompt count."""
    from ..lenses.files import check_lens_output
    from ..training.jacobian import merge_jacobian_lenses

    check_lens_output(out, force=force)
    merged = merge_jacobian_lenses(paths)
    written = merged.save(out, force=force)
    say(f"Merged {len(paths)} fits ({merged.n_prompts} prompts) into {written}")
