"""The one path every analysis command shares: options -> checks -> model -> analyze -> output.

A command declares only what differs: its own options, and which shared options it takes
(:func:`analysis_command`). Checks that need no model run first and import nothing heavy,
so ``--help`` and argument errors come back at once; torch, transformers and nnsight are
imported only once the arguments are known to be good.
"""

from __future__ import annotations

import functools
import inspect
import re
import sys
import typing
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from .. import jsontext
from ..errors import InputError
from ..lens_registry import file_lenses, kind_named, lens_help, parse_lens_spec
from ..metrics import REGISTRY
from ..options import (
    MAX_PICTURE_POSITIONS,
    check_layers_spec,
    check_limit,
    metric_names,
    position_items,
)
from ..training.config import BIBLE, MODEL_SAMPLES

if TYPE_CHECKING:
    from ..lenses import Lens
    from ..loading import LensModel
    from ..results import LensResult

app = typer.Typer(
    help="Look inside transformer language models layer by layer "
    "(logit, raw, tuned and Jacobian lenses)."
    "\n\nExamples:\n\n"
    "  logitlens top 'The capital of France is'\n\n"
    "  logitlens track 'Why do electricians make good swimmers? Because they know the' "
    "-t ' current'\n\n"
    "  logitlens grid 'The Eiffel Tower is in the city of' -o grid.png\n\n"
    "Errors are one line on stderr (exit code 2); --debug or LOGITLENS_DEBUG=1 shows the "
    "traceback.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: flags shown as flags, fast to print
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)


class Session:
    """What the entry point reports when a command stops early (see ``cli.main``)."""

    debug = False
    kept: Callable[[], str] | None = None
    interrupted = False

    @classmethod
    def kept_now(cls) -> str:
        """What an interrupted command left on disk, read from the disk now."""
        return cls.kept() if cls.kept is not None else "Nothing was written."


def keep(describe: Callable[[], str]) -> None:
    """Say how to tell what an interrupted command leaves behind (read when it stops,
    from the disk: e.g. how many prompts a resumable output file holds)."""
    Session.kept = describe


PICTURE_WINDOW = 64
"""Positions drawn at most when a picture asks for all positions of a long prompt."""

_DEVICE = re.compile(r"^(cpu|auto|mps|cuda(:\d+)?)$")


def note(text: str) -> None:
    """One plain line on stderr (never wrapped, never on stdout)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# ----- the shared options -----------------------------------------------------------------


def limited(name: str) -> Callable[[Any], Any]:
    """A typer callback that checks an integer option against ``options.LIMITS[name]``
    while the command line is parsed, before anything loads."""
    flag = "--" + name.replace("_", "-")

    def check(value: Any) -> Any:
        return value if value is None else check_limit(value, name, flag)

    return check


PromptArgument = Annotated[str, typer.Argument(help="The prompt to analyse.", show_default=False)]
TargetOption = Annotated[
    str,
    typer.Option(
        "--target", "-t", help="Token to follow, e.g. ' current', or a token id: id:1234."
    ),
]
AlternativeOption = Annotated[
    str | None,
    typer.Option(
        "--alternative",
        "-a",
        help="Token to weigh the target against, e.g. ' river' or id:1234: adds the "
        "logit_diff metric (target logit - alternative logit).",
    ),
]
AlternativesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--alternative",
        "-a",
        help="Token to weigh each target against (logit_diff); one for all or one per prompt.",
    ),
]
ThresholdOption = Annotated[
    float,
    typer.Option("--threshold", help="Report the first layer above this probability, in (0, 1]."),
]
PlotOption = Annotated[
    Path | None, typer.Option("--plot", help="Also save a picture (.png, .svg or .pdf).")
]
ShowOption = Annotated[
    int, typer.Option("--show", min=1, help="Tokens shown per layer in the table (at least 1).")
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Hub id or local directory, or a bundled model (offline): smollm2 (default) "
        "or gemma3-270m.",
    ),
]
DeviceOption = Annotated[
    str | None,
    typer.Option(
        "--device",
        help="cpu, cuda, cuda:1 ..., mps, or auto to spread a large model over all GPUs "
        "(device_map='auto'). Default: cuda if present, else cpu.",
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print machine-readable JSON on stdout, nothing else.")
]

# Options of the commands that read a corpus and make a lens file (tuned train, jlens fit,
# lens eval, tuned eval).
CorpusOption = Annotated[
    str,
    typer.Option(
        "--corpus",
        help=f"'{BIBLE}' (King James Bible, offline), '{MODEL_SAMPLES}' (text the model "
        "writes, sized to --tokens), or a .txt / .jsonl file or a directory of them.",
    ),
]
SeqLenOption = Annotated[int, typer.Option("--seq-len", min=2, help="Tokens per sequence.")]
BatchOption = Annotated[
    int, typer.Option("--batch-size", min=1, help="Sequences per forward pass.")
]
ForceOption = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Replace an output file (lens, picture, report) even if logitlens did not write it.",
    ),
]
LensOutputOption = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Lens file (.safetensors); default: user cache."),
]

SHARED: dict[str, tuple[Any, Any]] = {
    "model": (ModelOption, None),
    "remote": (
        Annotated[bool, typer.Option("--remote", help="Run on NDIF (needs NDIF_API_KEY).")],
        False,
    ),
    "timeout": (
        Annotated[
            float | None,
            typer.Option(
                "--timeout",
                min=0,
                help="With --remote: seconds one NDIF job may take, queue included (600).",
            ),
        ],
        None,
    ),
    "device": (DeviceOption, None),
    "lens": (
        Annotated[
            str | None,
            typer.Option(
                "--lens",
                "-l",
                help=lens_help(),
            ),
        ],
        None,
    ),
    "tuned_path": (
        Annotated[
            str | None,
            typer.Option(
                "--lens-path",
                "--tuned-path",
                help=f"Lens file for --lens {' or '.join(k.name for k in file_lenses())}; alone "
                "it implies --lens tuned.",
            ),
        ],
        None,
    ),
    "layers": (
        Annotated[
            str | None,
            typer.Option("--layers", help="All by default; e.g. 0,5,-1 or 10:20 or embed,0:5."),
        ],
        None,
    ),
    "positions": (
        Annotated[
            str,
            typer.Option(
                "--positions",
                help="last, all, or token indices like 0,-1. Pictures of long prompts draw "
                f"the last {PICTURE_WINDOW} positions unless told (see --window).",
            ),
        ],
        "last",
    ),
    "window": (
        Annotated[
            int,
            typer.Option(
                "--window",
                callback=limited("window"),
                help="With --positions all: draw at most this many positions "
                f"(1..{MAX_PICTURE_POSITIONS}).",
            ),
        ],
        PICTURE_WINDOW,
    ),
    "k": (
        Annotated[int, typer.Option("--k", "-k", min=1, help="Top tokens kept per layer.")],
        10,
    ),
    "metrics": (
        Annotated[
            str | None,
            typer.Option(
                "--metrics",
                help="Extra metrics, comma separated: "
                + ", ".join(f"{m.name} ({m.description})" for m in REGISTRY.values())
                + ".",
            ),
        ],
        None,
    ),
    "json_output": (JsonOption, False),
    "force": (ForceOption, False),
}
"""Options many commands take: name -> (annotated type, default)."""


@dataclass
class Request:
    """The shared options of one command line, checked by :meth:`check`."""

    model: str | None = None
    remote: bool = False
    timeout: float | None = None
    device: str | None = None
    lens: str | None = None
    tuned_path: str | None = None
    layers: str | None = None
    positions: str = "last"
    window: int = PICTURE_WINDOW
    k: int = 10
    metrics: str | None = None
    json_output: bool = False
    force: bool = False

    def check(self) -> None:
        """Everything that can be checked without torch or the model."""
        if self.device is not None and not _DEVICE.match(self.device):
            raise InputError(f"Unknown device {self.device!r}: use cpu, cuda, cuda:N, mps or auto.")
        check_layers_spec(self.layers)
        position_items(self.positions)
        if self.metrics is not None:
            metric_names(self.metrics)
        if self.tuned_path is not None and self.lens is None:
            note("Note: --tuned-path implies --lens tuned.")
            self.lens = "tuned"
        kind = kind_named(self.lens or "logit")
        if self.tuned_path is not None and not kind.needs_file:
            files = file_lenses()
            raise InputError(
                f"--tuned-path is for a lens with a file ({' or '.join(k.name for k in files)}; "
                f"also spelled --lens-path), but --lens is {self.lens!r}: drop it or use "
                + " / ".join(f"--lens {k.name}" for k in files)
                + "."
            )

    def metric_list(self, *always: str) -> list[str]:
        return list(dict.fromkeys([*always, *(metric_names(self.metrics) or [])]))


def analysis_command(*shared: str, name: str | None = None, parent: typer.Typer = app, **defaults):
    """Register ``func`` as a command taking its own parameters plus the ``shared`` options.

    The shared options reach ``func`` as one :class:`Request` argument named ``request``;
    ``defaults`` overrides a shared option's default (e.g. ``positions="all"``).
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        hints = typing.get_type_hints(func, include_extras=True)
        own = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in inspect.signature(func).parameters.values()
            if p.name != "request"
        ]
        extra = [
            inspect.Parameter(
                option,
                inspect.Parameter.KEYWORD_ONLY,
                default=defaults.get(option, SHARED[option][1]),
                annotation=SHARED[option][0],
            )
            for option in shared
        ]
        parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + extra

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            request = Request(**{option: kwargs.pop(option) for option in shared})
            request.check()
            return func(request=request, **kwargs)

        del command.__wrapped__  # typer must read the signature below, not func's
        command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        parent.command(name)(command)
        return command

    return decorate


# ----- model, lens, analysis -----------------------------------------------------------------


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


def parse_target(target: str) -> str | int:
    """``--target`` (or ``--alternative``) text, or a token id written as ``id:1234``."""
    if target.startswith("id:"):
        try:
            return int(target[3:])
        except ValueError:
            raise InputError(f"Bad token id {target!r}: write it as id:1234.") from None
    return target


def parse_tokens(tokens: Sequence[str] | None) -> Any:
    """A repeatable ``--target``/``--alternative``: ``None``, one for all, or one per prompt."""
    parsed = [parse_target(token) for token in tokens or []]
    return None if not parsed else parsed[0] if len(parsed) == 1 else parsed


# ----- output ----------------------------------------------------------------------------------


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


def say(text: str, json_output: bool = False) -> None:
    """A line for the user: stdout normally, stderr under --json."""
    if json_output:
        note(text)
    else:
        console.print(text, highlight=False, soft_wrap=True)


def print_json(payload: Any) -> None:
    """Write JSON to stdout without rich markup or wrapping."""
    typer.echo(jsontext.dumps(payload, ensure_ascii=False))


def as_dict(value: Any) -> dict[str, Any]:
    """A dataclass as a plain dict (for JSON payloads)."""
    return {item.name: getattr(value, item.name) for item in fields(value)}


def show_warnings_on_stderr() -> None:
    """Show library warnings (e.g. multi-token targets) as one plain line each."""

    def show(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
        note(f"Warning: {message}")

    warnings.showwarning = show


show_warnings_on_stderr()
