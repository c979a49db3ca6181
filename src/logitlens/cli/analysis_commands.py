"""``info``, ``top``, ``track``, ``compare`` and ``demo``: the seed notebook's analyses.

Each command declares only its own options; the shared ones, the checks, the model and
the analysis come from :mod:`.flags` and :mod:`.runners`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import InputError
from ..options import check_threshold
from ..targets import parse_target
from .application import as_dict, console, print_json, say
from .flags import (
    AlternativeOption,
    AlternativesOption,
    PlotOption,
    PromptArgument,
    Request,
    ShowOption,
    TargetOption,
    ThresholdOption,
    analysis_command,
    parse_tokens,
)
from .runners import check_picture_path, run_analysis, save_plot

PUN_PROMPT = "Why do electricians make good swimmers? Because they know the"
PUN_TARGET = " current"
LENS_OPTIONS = ("model", "remote", "timeout", "device", "lens", "tuned_path")


@analysis_command("model", "remote", "timeout", "json_output")
def info(request: Request):
    """Load a model and print its configuration (layers, sizes, dtype, device).

    Example: logitlens info --model gpt2
    """
    from .runners import open_model
    from .tables import info_table

    details = open_model(request.model, request.remote, timeout=request.timeout).info()
    if request.json_output:
        print_json(as_dict(details))
    else:
        console.print(info_table(details))


@analysis_command(*LENS_OPTIONS, "layers", "positions", "k", "metrics", "json_output", "force")
def top(request: Request, prompt: PromptArgument, show: ShowOption = 5, plot: PlotOption = None):
    """Top-k next-token predictions at every layer (--plot: the logit-lens grid).

    Example: logitlens top 'The capital of France is' --k 5 --layers 20:30
    """
    check_picture_path(plot, force=request.force)
    metrics = request.metric_list("topk", *(["final_rank"] if plot else []))
    result = run_analysis(request, prompt, metrics=metrics)
    save_plot(lambda: _plots().plot_grid(result), plot, request.json_output, request.force)
    if request.json_output:
        print_json(result.to_dict())
        return
    from .tables import topk_table

    for position in result.positions[0]:
        console.print(topk_table(result, 0, int(position), show))


@analysis_command(*LENS_OPTIONS, "layers", "positions", "k", "metrics", "json_output", "force")
def track(
    request: Request,
    prompt: PromptArgument,
    target: TargetOption,
    alternative: AlternativeOption = None,
    threshold: ThresholdOption = 0.1,
    plot: PlotOption = None,
):
    """Probability, logit and rank of one target token at every layer.

    Example: logitlens track 'Why do electricians make good swimmers? Because they know
    the' --target ' current' --alternative ' water'
    """
    check_threshold(threshold)
    check_picture_path(plot, force=request.force)
    result = run_analysis(
        request,
        prompt,
        targets=parse_target(target),
        alternatives=None if alternative is None else parse_target(alternative),
        metrics=request.metric_list("topk", "target_rank"),
    )
    analysed = [int(p) for p in result.positions[0]]
    summary = result.target_summary(threshold, position=analysed[-1])
    save_plot(
        lambda: _plots().plot_trajectory(result, position=analysed[-1], threshold=threshold),
        plot,
        request.json_output,
        request.force,
    )
    if request.json_output:
        print_json({"summary": as_dict(summary), "result": result.to_dict()})
        return
    from .tables import summary_sentences, track_table

    for position in analysed:
        console.print(track_table(result, position=position))
        for line in summary_sentences(result.target_summary(threshold, position=position)):
            say(line)


@analysis_command(*LENS_OPTIONS, "layers", "json_output", "force")
def compare(
    request: Request,
    pair: Annotated[
        list[str] | None,
        typer.Option("--pair", "-p", help="PROMPT=>TARGET; repeat for several prompts."),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            help='JSONL, one {"prompt": "...", "target": " word"} per line (UTF-8); an '
            '"alternative" field on every line adds logit_diff.',
        ),
    ] = None,
    alternative: AlternativesOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Append each prompt's result to this JSONL as it is done; re-running resumes "
            "(the file's header must match the model, lens and options).",
        ),
    ] = None,
    threshold: ThresholdOption = 0.1,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Prompts per forward pass.")
    ] = 16,
    plot: PlotOption = None,
):
    """Several prompt/target pairs (the notebook's pun comparison), batched.

    Example: logitlens compare -p 'Why do electricians make good swimmers? Because they
    know the=> current' -p 'Electricians work with wires that carry electrical=> current'
    """
    check_threshold(threshold)
    if out is not None:
        from ..runs import check_results_path

        check_results_path(out, inputs=[file] if file is not None else [])
    pairs = [(*split_pair(text), None) for text in pair or []]
    if file is not None:
        from ..studies.dataset import load_pairs

        pairs += load_pairs(file)
    if not pairs:
        raise InputError(
            "Nothing to compare: give --pair 'PROMPT=> TARGET' (repeatable) or --file pairs.jsonl."
        )
    check_picture_path(plot, force=request.force)
    result = run_analysis(
        request,
        [p for p, _, _ in pairs],
        targets=[t for _, t, _ in pairs],
        alternatives=compare_alternatives(pairs, parse_tokens(alternative)),
        metrics=request.metric_list("topk", "target_rank"),
        out=out,
        batch_size=batch_size,
    )
    summaries = [result.target_summary(threshold, prompt=i) for i in range(len(pairs))]
    save_plot(lambda: _plots().plot_comparison(result), plot, request.json_output, request.force)
    if request.json_output:
        print_json({"summaries": [as_dict(s) for s in summaries], "result": result.to_dict()})
        return
    from .tables import compare_table

    console.print(compare_table(summaries))
    if out is not None:
        say(f"Results written to {out}")


def compare_alternatives(pairs: list[tuple[str, Any, Any]], given: Any) -> Any:
    """One alternative per pair: ``--alternative`` (one for all, or one per pair) or the
    file's ``alternative`` fields, which must then be on every line."""
    from_file = [alternative for _, _, alternative in pairs]
    if given is not None and any(a is not None for a in from_file):
        raise InputError("Give alternatives either with --alternative or in the file, not both.")
    if given is not None:
        return given
    if all(a is None for a in from_file):
        return None
    if any(a is None for a in from_file):
        raise InputError(
            "Some pairs have an 'alternative' and some do not: give one on every line of "
            "the file (and none with --pair), or none."
        )
    return from_file


def split_pair(text: str) -> tuple[str, str | int]:
    """``PROMPT=>TARGET`` from ``--pair``."""
    prompt, separator, target = text.partition("=>")
    if not separator or not prompt.strip() or not target:
        raise InputError(
            f"Bad --pair {text!r}: write PROMPT=>TARGET, e.g. "
            "'Why do electricians make good swimmers? Because they know the=> current'."
        )
    return prompt, parse_target(target)


@analysis_command(*LENS_OPTIONS, "k", "json_output")
def demo(request: Request, show: ShowOption = 5, threshold: ThresholdOption = 0.1):
    """The seed notebook's main job: the electricians pun, layer by layer.

    Example: logitlens demo --lens raw
    """
    check_threshold(threshold)
    result = run_analysis(request, PUN_PROMPT, targets=PUN_TARGET, metrics=["topk", "target_rank"])
    summary = result.target_summary(threshold)
    if request.json_output:
        print_json({"summary": as_dict(summary), "result": result.to_dict()})
        return
    from .tables import summary_sentences, topk_table, track_table

    say(f"Model: {result.model_name}    Prompt: {result.prompts[0]!r}")
    console.print(topk_table(result, show=show))
    console.print(track_table(result))
    for line in summary_sentences(summary):
        say(line)


def _plots() -> Any:
    from ..pictures import plots

    return plots
