"""``serve``: the lens explorer, a local web page over one loaded model."""

from __future__ import annotations

from typing import Annotated

import typer

from .flags import Request, analysis_command
from .runners import open_lens, open_model


@analysis_command("model", "remote", "timeout", "device", "lens", "tuned_path")
def serve(
    request: Request,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Address to listen on; anything but a loopback address (127.0.0.1, ::1, "
            "localhost) needs --token.",
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port (0: a free one).")
    ] = 8765,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help="Secret every request must carry (open http://HOST:PORT/?token=SECRET); "
            "required with a --host other than loopback.",
        ),
    ] = None,
):
    """Explore lenses in the browser: type prompts, see every layer under every lens.

    The model stays loaded; each analysis is the same library call as `top` and `track`.

    Example: logitlens serve --lens raw   (then open http://127.0.0.1:8765/)
    """
    from ..explorer import Explorer, available_lenses
    from ..explorer.server import check_binding, serve

    check_binding(host, token)
    open_lens(request)  # a lens file is read and checked before the model loads
    model = open_model(request.model, request.remote, request.device, request.timeout)
    lenses = available_lenses(model, request.lens, request.tuned_path)
    serve(Explorer(model, lenses, request.lens or "logit"), host, port, token)
