"""What an analysis command runs once its options are checked: open the lens and the
model, run ``analyze`` (or a resumable JSONL run), and write pictures.

torch, transformers and nnsight are imported here only when a command runs, after its
arguments are known to be good.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..lens_registry import parse_lens_spec
from ..options import MAX_PICTURE_POSITIONS, position_items
from .application import err_console, keep, note, say
from .flags import Request

if TYPE_CHECKING:
    from ..lenses import Lens
    from ..loading import LensModel
    from ..results import LensResult


def open_model(
    model: str | None,
    remote: bool = False,
    device: str | None = None,
    timeout: float | None = None,
) -> LensModel:
    """Load the model named on the command line, with a status line on stderr."""
    from transformers.utils import logging as hf_logging

    from ..loading import load_model

    hf_logging.disable_progress_bar()  # the status line below says what is happening
    with err_console.status(f"Loading {model or 'the bundled SmolLM2-135M'}..."):
        if device == "auto":
            return load_model(model, remote=remote, device_map="auto", timeout=timeout)
        return load_model(model, remote=remote, device=device, timeout=timeout)


def open_model_for_lens(
    output: Path | None,
    model: str | None,
    device: str | None,
    kind: str,
    resumed: str,
    force: bool = False,
) -> tuple[LensModel, Path]:
    """For a command that makes a lens file: check that ``output`` and its checkpoint can be
    written (before the model loads), open the model, and choose the default path (the
    user cache) when ``output`` is ``None``. ``resumed`` names what a Ctrl-C keeps."""
    from ..lenses.files import default_lens_path
    from ..training.tuned import check_writable_output, checkpoint_path_for

    if output is not None:
        check_writable_output(Path(output).expanduser(), force)
    lens_model = open_model(model, False, device)
    path = output or default_lens_path(lens_model, kind)
    checkpoint = checkpoint_path_for(path)
    keep(
        lambda: (
            f"The {resumed} so far is kept in {checkpoint}; run again to resume."
            if checkpoint.is_file()
            else "Nothing was written."
        )
    )
    return lens_model, path


def open_lens(request: Request, model: LensModel | None = None) -> Lens | None:
    """The lens (a lens file is read and checked here, before the model loads).

    A lens with a file (tuned, jacobian) without ``--lens-path`` means the model's file
    in the user cache: ``None`` until the model is loaded, then call again with ``model``.
    """
    kind, values = parse_lens_spec(request.lens or "logit")
    if kind.needs_file and request.tuned_path is None:
        return None if model is None else kind.cached(model)
    return kind.build(request.tuned_path, values)


def run_analysis(
    request: Request,
    prompts: str | Sequence[str],
    *,
    targets: Any = None,
    alternatives: Any = None,
    metrics: Sequence[str] | None = None,
    picture: bool = False,
    out: Path | None = None,
    **options: Any,
) -> LensResult:
    """Check the metrics, open the lens and the model, bound a picture's positions, and run
    ``analyze``. ``out`` appends each prompt's result to a resumable JSONL file instead.
    """
    from ..metrics import check_metrics
    from ..options import check_prompts

    prompts = check_prompts(prompts)
    asked = position_items(request.positions)
    if picture and isinstance(asked, list) and len(asked) > MAX_PICTURE_POSITIONS:
        raise InputError(
            f"A picture draws at most {MAX_PICTURE_POSITIONS} positions, not {len(asked)}: "
            "give fewer --positions, or --positions all --window N."
        )
    metrics = metrics or request.metric_list("topk")
    check_metrics(metrics, targets is not None, alternatives is not None)
    from ..analysis import analyze

    lens = open_lens(request)
    model = open_model(request.model, request.remote, request.device, request.timeout)
    if lens is None:  # the model's file in the user cache
        lens = open_lens(request, model)
    positions = _picture_positions(model, prompts, request) if picture else request.positions
    kwargs = {
        "lens": lens,
        "layers": request.layers,
        "positions": positions,
        "k": request.k,
        "targets": targets,
        "alternatives": alternatives,
        "metrics": metrics,
        **options,
    }
    if out is None:
        return analyze(model, prompts, **kwargs)
    from ..runs import analyze_to_jsonl, kept_in

    keep(lambda: kept_in(out))
    return analyze_to_jsonl(model, prompts, out, progress=not request.json_output, **kwargs)


def _picture_positions(model: LensModel, prompts: list[str], request: Request) -> Any:
    """``all`` positions of a long prompt become its last ``window`` ones, said on stderr."""
    from ..options import window_positions

    if request.positions != "all":
        return request.positions
    lengths = [len(model.tokenizer(p)["input_ids"]) for p in prompts]
    positions = window_positions("all", lengths, request.window)
    if positions != "all":
        note(
            f"Note: the prompt is {max(lengths)} tokens; drawing the last {len(positions)} "
            "positions (choose with --window N or --positions).",
        )
    return positions


def check_picture_path(
    path: Path | None, suffixes: Sequence[str] | None = None, force: bool = False
) -> None:
    """Refuse an unwritable picture or report path, or one that would replace a file
    logitlens did not write, before any work (``None``: no picture asked)."""
    if path is None:
        return
    from ..paths import FIGURE_SUFFIXES, REPORT_SUFFIXES, check_document_output

    what = "report" if suffixes == REPORT_SUFFIXES else "picture"
    check_document_output(path, suffixes or FIGURE_SUFFIXES, what, force=force)


def save_plot(
    draw: Callable[[], Any], path: Path | None, json_output: bool = False, force: bool = False
) -> None:
    """Draw and save a figure; its path goes to stderr under --json so stdout stays JSON."""
    if path is None:
        return
    from ..pictures import plots

    written = plots.save_figure(draw(), path, force=force)
    say(f"Picture written to {written}", json_output)
