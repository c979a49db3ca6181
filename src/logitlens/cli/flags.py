"""The command line's options: the shared option types, and the decorator that gives a
command the shared options as one checked :class:`Request`.

A command declares only what differs: its own options, and which shared options it takes
(:func:`analysis_command`). The checks here need no model and import nothing heavy, so
``--help`` and argument errors come back at once.
"""

from __future__ import annotations

import functools
import inspect
import re
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import InputError
from ..lens_registry import file_lenses, kind_named, lens_help
from ..metrics import REGISTRY
from ..options import (
    MAX_PICTURE_POSITIONS,
    check_layers_spec,
    check_limit,
    metric_names,
    position_items,
)
from ..targets import parse_target
from ..training.config import BIBLE, MODEL_SAMPLES
from .application import app, note

PICTURE_WINDOW = 64
"""Positions drawn at most when a picture asks for all positions of a long prompt."""

_DEVICE = re.compile(r"^(cpu|auto|mps|cuda(:\d+)?)$")


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


def parse_tokens(tokens: Sequence[str] | None) -> Any:
    """A repeatable ``--target``/``--alternative``: ``None``, one for all, or one per prompt."""
    parsed = [parse_target(token) for token in tokens or []]
    return None if not parsed else parsed[0] if len(parsed) == 1 else parsed
