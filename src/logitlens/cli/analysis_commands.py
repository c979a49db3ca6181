"""``info``, ``top``, ``track``, ``compare`` and ``demo``: the seed notebook's analyses."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from ..analysis import analyze
from ..errors import InputError
from ..paths import check_output_path
from ..pictures import plots
from ..results import LensResult
from ..runs import analyze_to_jsonl
from .common import (
    DeviceOption,
    JsonOption,
    KOption,
    LayersOption,
    LensOption,
    MetricsOption,
    ModelOption,
    PositionsOption,
    RemoteOption,
    TimeoutOption,
    TunedPathOption,
    app,
    console,
    err_console,
    keep,
    open_model,
    parse_metrics,
    parse_target,
    print_json,
)
from .tables import compare_table, info_table, summary_sentences, topk_table, track_table

PUN_PROMPT = "Why do electricians make good swimmers? Because they know the"
PUN_TARGET = " current"

ThresholdOption = Annotated[
    float, typer.Option("--threshold", help="Report the first layer above this probability.")
]
ShowOption = Annotated[int, typer.Option("--show", help="Tokens shown per layer in the table.")]
PlotOption = Annotated[
    Path | None, typer.Option("--plot", help="Also save a picture (.png, .svg or .pdf).")
]


@app.command()
def info(
    model: ModelOption = None,
    remote: RemoteOption = False,
    timeout: TimeoutOption = None,
    json_output: JsonOption = False,
):
    """Load a model and print its configuration (layers, sizes, dtype, device)."""
    details = open_model(model, remote, timeout=timeout).info()
    if json_output:
        print_json(asdict(details))
    else:
        console.print(info_table(details))


@app.command()
def top(
    prompt: Annotated[str, typer.Argument(help="The prompt to analyse.")],
    model: ModelOption = None,
    remote: RemoteOption = False,
    timeout: TimeoutOption = None,
    device: DeviceOption = None,
    lens: LensOption = "logit",
    tuned_path: TunedPathOption = None,
    layers: LayersOption = None,
    positions: PositionsOption = "last",
    k: KOption = 10,
    show: ShowOption = 5,
    metrics: MetricsOption = None,
    json_output: JsonOption = False,
    plot: PlotOption = None,
):
    """Top-k next-token predictions at every layer (--plot: the logit-lens grid)."""
    if plot:
        check_output_path(plot)
    lens_model = open_model(model, remote, device, timeout)
    result = analyze(
        lens_model,
        prompt,
        lens=lens,
        tuned_path=tuned_path,
        layers=layers,
        positions=positions,
        k=k,
        metrics=parse_metrics(metrics, "topk", *(["final_rank"] if plot else [])),
    )
    if plot:
        _save_plot(plots.plot_grid(result), plot, json_output)
    if json_output:
        print_json(result.to_dict())
        return
    for position in result.positions[0]:
        console.print(topk_table(result, 0, int(position), show))


@app.command()
def track(
    prompt: Annotated[str, typer.Argument(help="The prompt to analyse.")],
    target: Annotated[
        str,
        typer.Option("--target", "-t", help="Token to follow, e.g. ' current', or id:1234."),
    ],
    model: ModelOption = None,
    remote: RemoteOption = False,
    timeout: TimeoutOption = None,
    device: DeviceOption = None,
    lens: LensOption = "logit",
    tuned_path: TunedPathOption = None,
    layers: LayersOption = None,
    positions: PositionsOption = "last",
    k: KOption = 10,
    threshold: ThresholdOption = 0.1,
    metrics: MetricsOption = None,
    json_output: JsonOption = False,
    plot: PlotOption = None,
):
    """Probability, logit and rank of one target token at every layer."""
    if plot:
        check_output_path(plot)
    lens_model = open_model(model, remote, device, timeout)
    result = analyze(
        lens_model,
        prompt,
        lens=lens,
        tuned_path=tuned_path,
        layers=layers,
        positions=positions,
        k=k,
        targets=parse_target(target),
        metrics=parse_metrics(metrics),
    )
    analysed = [int(p) for p in result.positions[0]]
    summary = result.target_summary(threshold, position=analysed[-1])
    if plot:
        figure = plots.plot_trajectory(result, position=analysed[-1], threshold=threshold)
        _save_plot(figure, plot, json_output)
    if json_output:
        print_json({"summary": asdict(summary), "result": result.to_dict()})
        return
    for position in analysed:
        console.print(track_table(result, position=position))
        for line in summary_sentences(result.target_summary(threshold, position=position)):
            console.print(line, highlight=False)


def _save_plot(figure, path: Path, json_output: bool) -> None:
    """Save a figure; its path goes to stderr under --json so stdout stays JSON."""
    written = plots.save_figure(figure, path)
    (err_console if json_output else console).print(f"Plot written to {written}")


def _read_pairs(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise InputError(f"No such file {str(path)!r}: give a JSONL file of prompt/target pairs.")
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            pairs.append((record["prompt"], record["target"]))
        except (ValueError, KeyError, TypeError):
            raise InputError(
                f"{path}:{number} is not a JSON object with 'prompt' and 'target', e.g. "
                '{"prompt": "Why do cows wear bells? Because their horns don\'t", '
                '"target": " work"}'
            ) from None
    if not pairs:
        raise InputError(f"{path} holds no prompt/target pairs.")
    return pairs


@app.command()
def compare(
    pair: Annotated[
        list[str] | None,
        typer.Option("--pair", "-p", help="PROMPT=>TARGET; repeat for several prompts."),
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="JSONL with 'prompt' and 'target'.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Append each prompt's result to this JSONL as it is done; re-running resumes.",
        ),
    ] = None,
    model: ModelOption = None,
    remote: RemoteOption = False,
    timeout: TimeoutOption = None,
    device: DeviceOption = None,
    lens: LensOption = "logit",
    tuned_path: TunedPathOption = None,
    layers: LayersOption = None,
    threshold: ThresholdOption = 0.1,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Prompts per forward.")] = 16,
    json_output: JsonOption = False,
    plot: PlotOption = None,
):
    """Several prompt/target pairs (the notebook's pun comparison), batched."""
    pairs = [_split_pair(text) for text in pair or []]
    if file is not None:
        pairs += _read_pairs(file)
    if not pairs:
        raise InputError(
            "Nothing to compare: give --pair 'PROMPT=> TARGET' (repeatable) or --file pairs.jsonl."
        )
    if plot:
        check_output_path(plot)
    lens_model = open_model(model, remote, device, timeout)
    prompts = [p for p, _ in pairs]
    targets = [parse_target(t) for _, t in pairs]
    options = {"lens": lens, "tuned_path": tuned_path, "layers": layers}
    if out is not None:
        keep(f"Finished prompts are kept in {out}; run the same command again to resume.")
        result = analyze_to_jsonl(
            lens_model, prompts, out, targets=targets, batch_size=batch_size, **options
        )
    else:
        result = analyze(lens_model, prompts, targets=targets, batch_size=batch_size, **options)
    summaries = [result.target_summary(threshold, prompt=i) for i in range(len(prompts))]
    if plot:
        _save_plot(plots.plot_comparison(result), plot, json_output)
    if json_output:
        print_json({"summaries": [asdict(s) for s in summaries], "result": result.to_dict()})
        return
    console.print(compare_table(summaries))
    if out is not None:
        console.print(f"Results written to {out}")


def _split_pair(text: str) -> tuple[str, str]:
    prompt, separator, target = text.partition("=>")
    if not separator or not prompt.strip() or not target:
        raise InputError(
            f"Bad --pair {text!r}: write PROMPT=>TARGET, e.g. "
            "'Why do electricians make good swimmers? Because they know the=> current'."
        )
    return prompt, target


@app.command()
def demo(
    model: ModelOption = None,
    remote: RemoteOption = False,
    timeout: TimeoutOption = None,
    device: DeviceOption = None,
    lens: LensOption = "logit",
    tuned_path: TunedPathOption = None,
    k: KOption = 10,
    show: ShowOption = 5,
    threshold: ThresholdOption = 0.1,
    json_output: JsonOption = False,
):
    """The seed notebook's main job: the electricians pun, layer by layer."""
    lens_model = open_model(model, remote, device, timeout)
    result = analyze(
        lens_model,
        PUN_PROMPT,
        lens=lens,
        tuned_path=tuned_path,
        k=k,
        targets=PUN_TARGET,
        metrics=["topk"],
    )
    summary = result.target_summary(threshold)
    if json_output:
        print_json({"summary": asdict(summary), "result": result.to_dict()})
        return
    _print_demo(result, summary, show)


def _print_demo(result: LensResult, summary, show: int) -> None:
    console.print(f"Model: {result.model_name}    Prompt: {result.prompts[0]!r}", highlight=False)
    console.print(topk_table(result, show=show))
    console.print(track_table(result))
    for line in summary_sentences(summary):
        console.print(line, highlight=False)
