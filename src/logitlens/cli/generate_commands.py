"""``generate``: greedy generation with every layer's lens reading at each step."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import InputError
from ..options import MAX_PICTURE_POSITIONS
from . import runners
from .application import console, print_json, say
from .flags import PlotOption, Request, analysis_command
from .runners import check_picture_path, open_lens, save_plot


@analysis_command(
    "model",
    "remote",
    "timeout",
    "device",
    "lens",
    "tuned_path",
    "layers",
    "k",
    "json_output",
    "force",
    k=5,
)
def generate(
    request: Request,
    prompt: Annotated[str, typer.Argument(help="The text to continue.", show_default=False)],
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", "-n", min=1, help="Tokens to generate at most.")
    ] = 20,
    plot: PlotOption = None,
):
    """Generate greedily; for every new token, the layer where it first became top-1.

    Example: logitlens generate 'The capital of France is' -n 8 --plot generation.png
    """
    from ..generation import generate_lens
    from .tables import generation_table

    check_picture_path(plot, force=request.force)
    if plot is not None and max_new_tokens > MAX_PICTURE_POSITIONS:
        raise InputError(
            f"--plot draws one column per new token, at most {MAX_PICTURE_POSITIONS}: "
            f"lower --max-new-tokens ({max_new_tokens}) or drop --plot."
        )
    lens = open_lens(request)
    model = runners.open_model(request.model, request.remote, request.device, request.timeout)
    if lens is None:  # the model's file in the user cache
        lens = open_lens(request, model)
    result = generate_lens(
        model,
        prompt,
        max_new_tokens,
        lens=lens,
        k=request.k,
        layers=request.layers,
        timeout=request.timeout,
    )
    if request.json_output:
        print_json(result.to_dict())
    else:
        say(f"{result.prompt}{result.text}")
        console.print(generation_table(result))
    if plot is not None:
        from ..pictures import plots

        save_plot(lambda: plots.plot_generation(result), plot, request.json_output, request.force)
