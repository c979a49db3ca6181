"""``attribute``: which layer's attention or MLP (which head) writes a token.

The computation is :func:`logitlens.analysis.attribute`; the tables are in
:mod:`.tables`, the pictures in :mod:`logitlens.pictures.attribution_plots`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..targets import parse_target
from .application import console, print_json
from .flags import (
    AlternativeOption,
    PlotOption,
    PromptArgument,
    Request,
    TargetOption,
    analysis_command,
)
from .runners import check_picture_path, save_plot

HeadsOption = Annotated[
    bool,
    typer.Option("--heads", help="Also split each layer's attention into its heads."),
]
TopHeadsOption = Annotated[
    int, typer.Option("--top-heads", min=1, help="Heads listed in the table, largest first.")
]


@analysis_command(
    "model", "remote", "timeout", "device", "positions", "json_output", "force", name="attribute"
)
def attribute_command(
    request: Request,
    prompt: PromptArgument,
    target: TargetOption,
    alternative: AlternativeOption = None,
    heads: HeadsOption = False,
    top_heads: TopHeadsOption = 10,
    plot: PlotOption = None,
):
    """Direct logit attribution: each layer's attention and MLP share of a token's logit.

    The embedding, every attention and MLP output (and with --heads every head) projected
    through the final norm (at the model's own scale) onto the target's unembedding; the
    parts sum exactly to the model's logit. With --alternative: target minus alternative.

    Example: logitlens attribute 'Why do electricians make good swimmers? Because they
    know the' --target ' current' --alternative ' water' --heads --plot dla.png
    """
    from ..analysis import attribute
    from .runners import open_model

    check_picture_path(plot, force=request.force)
    model = open_model(request.model, request.remote, request.device, request.timeout)
    result = attribute(
        model,
        prompt,
        target=parse_target(target),
        alternative=None if alternative is None else parse_target(alternative),
        heads=heads,
        positions=request.positions,
        timeout=request.timeout,
    )
    measure = "difference" if result.difference is not None else "target"
    last = int(result.positions[0][-1])

    def draw():
        from ..pictures.attribution_plots import plot_attribution

        return plot_attribution(result, position=last, measure=measure)

    save_plot(draw, plot, request.json_output, request.force)
    if request.json_output:
        print_json(result.to_dict())
        return
    from .tables import attribution_table, heads_table

    for position in result.positions[0]:
        console.print(attribution_table(result, position=int(position)))
        if heads:
            console.print(heads_table(result, position=int(position), show=top_heads))
