"""MkDocs hooks (mkdocs.yml ``hooks:``): the reference pages written from the code itself.

- ``reference/cli.md``: every command of the Typer app, with its usage, help and options,
  read from the click command tree (so a new command or option appears by itself);
- ``reference/metrics.md``: the metric registry (``logitlens.metrics.REGISTRY``);
- ``reference/api/*.md``: one mkdocstrings page per module of the package (found by
  walking ``src/logitlens``), added to the nav under "API";
- ``changelog.md`` (the repository's ``CHANGELOG.md``) and ``tutorials/notebook.md``, the
  pun notebook (``notebooks/logit_lens_puns.ipynb``) as a page: its Markdown cells as
  they are, its code cells as Python blocks (it is stored without outputs; the test
  suite runs it).
"""

from __future__ import annotations

import json
import pkgutil
import textwrap
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "logit_lens_puns.ipynb"
NOTEBOOK_PAGE = "tutorials/notebook.md"
API_INDEX = "reference/api/index.md"
# The command line is documented from the Typer app itself (reference/cli.md).
UNDOCUMENTED_PACKAGES = ("logitlens.cli",)


def api_modules() -> list[str]:
    """Every module of the package, dotted, in a stable order (the CLI's apart)."""
    import logitlens

    modules = ["logitlens"]
    for info in pkgutil.walk_packages(logitlens.__path__, "logitlens."):
        name = info.name
        if name == "logitlens.__main__" or name.startswith(UNDOCUMENTED_PACKAGES):
            continue
        modules.append(name)
    return sorted(modules)


def api_page(module: str) -> str:
    """The page path of one module's API reference."""
    return f"reference/api/{module}.md"


def on_config(config: Any) -> Any:
    """Put one nav entry per module under the "API" entry of the nav."""
    nav = config["nav"]
    entries = [{"Overview": API_INDEX}] + [{module: api_page(module)} for module in api_modules()]

    def replace(items: list[Any]) -> bool:
        for index, item in enumerate(items):
            if isinstance(item, dict):
                ((title, value),) = item.items()
                if value == API_INDEX:
                    items[index] = {title: entries}
                    return True
                if isinstance(value, list) and replace(value):
                    return True
        return False

    if not replace(nav):
        raise ValueError(f"mkdocs.yml's nav needs an entry for {API_INDEX}")
    return config


def on_files(files: Files, config: Any) -> Files:
    """Add the generated pages, the changelog and the notebook to the site."""
    modules = api_modules()
    generated = {
        "reference/cli.md": cli_reference(),
        "reference/metrics.md": metrics_reference(),
        API_INDEX: api_index(modules),
        "changelog.md": (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"),
    }
    generated.update({api_page(module): f"# `{module}`\n\n::: {module}\n" for module in modules})
    for path, content in generated.items():
        files.append(File.generated(config, path, content=content))
    files.append(File.generated(config, NOTEBOOK_PAGE, content=notebook_page()))
    return files


def notebook_page() -> str:
    """The pun notebook as Markdown: text cells as they are, code cells fenced."""
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    link = "https://github.com/logitlens/logitlens/blob/main/notebooks/logit_lens_puns.ipynb"
    parts = [
        f"<!-- Generated from notebooks/logit_lens_puns.ipynb by scripts/docs_hooks.py. -->\n\n"
        f"!!! note\n    This page is the notebook [`notebooks/logit_lens_puns.ipynb`]({link}) "
        "without its outputs: open it in Jupyter to run it (the test suite runs it top to "
        "bottom on the bundled model)."
    ]
    for cell in notebook["cells"]:
        source = "".join(cell["source"]).strip()
        if not source:
            continue
        if cell["cell_type"] == "markdown":
            parts.append(source)
        elif cell["cell_type"] == "code":
            parts.append(f"```python\n{source}\n```")
    return "\n\n".join(parts) + "\n"


# ----- the command line ---------------------------------------------------------------------


def cli_reference() -> str:
    """Markdown for every command of the ``logitlens`` app, depth first."""
    import typer

    from logitlens.cli import app

    root = typer.main.get_command(app)
    lines = [
        "# Command line",
        "",
        "Every `logitlens` command with its options, generated from the Typer app itself",
        "(`logitlens COMMAND --help` prints the same). Conventions shared by all commands",
        "(`--json`, errors, Ctrl-C, checks before the model loads) are in",
        "[Command-line conventions](cli-conventions.md).",
        "",
    ]
    for path, command in walk_commands(root, ["logitlens"]):
        lines += command_section(path, command)
    return "\n".join(lines) + "\n"


def walk_commands(command: Any, path: list[str]) -> list[tuple[list[str], Any]]:
    """The command and all its subcommands, with their full paths."""
    found = [(path, command)]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        if not sub.hidden:
            found += walk_commands(sub, [*path, name])
    return found


def command_section(path: list[str], command: Any) -> list[str]:
    """One command: heading, usage, help text and a table of its parameters."""
    ctx = command.context_class(command, info_name=" ".join(path))
    usage = command.collect_usage_pieces(ctx)
    lines = [
        f"{'#' * min(len(path) + 1, 4)} `{' '.join(path)}`",
        "",
        "```text",
        " ".join(["Usage:", *path, *usage]),
        "",
        textwrap.dedent(command.help or "").strip(),
        "```",
        "",
    ]
    records = [param.get_help_record(ctx) for param in command.params if not param.hidden]
    rows = [f"| `{spelling}` | {cell(text)} |" for spelling, text in filter(None, records)]
    if rows:
        lines += ["| Argument or option | Help |", "|---|---|", *rows, ""]
    subcommands = sorted(getattr(command, "commands", {}))
    if subcommands:
        lines += [
            "Commands: " + ", ".join(f"`{name}`" for name in subcommands),
            "",
        ]
    return lines


def escape(text: str) -> str:
    """Keep a help text literal in Markdown (no emphasis from ``*``, no HTML)."""
    return text.replace("<", "&lt;").replace(">", "&gt;")


def cell(text: str) -> str:
    """A help text as one table cell."""
    return escape(" ".join(text.split())).replace("|", "\\|")


# ----- the metric registry ------------------------------------------------------------------


def metrics_reference() -> str:
    """Markdown for every entry of ``logitlens.metrics.REGISTRY``."""
    from logitlens.metrics import REGISTRY

    lines = [
        "# Metrics",
        "",
        "Generated from the metric registry, `logitlens.metrics.REGISTRY`: each metric is",
        "one entry, and the fields of `LensResult`, its JSON and DataFrame columns, the",
        "grid pictures and the CLI's `--metrics` all derive from it. How to add one:",
        "[Add a metric](../how-to/add-metric.md).",
        "",
        "| Metric | Computes | Arrays `[dimensions]` | Needs | How to ask for it |",
        "|---|---|---|---|---|",
    ]
    for metric in REGISTRY.values():
        arrays = "<br>".join(
            f"`{array.name}` `[{', '.join(array.dims)}]` ({array.kind}): {cell(array.description)}"
            for array in metric.arrays
        )
        needs = ", ".join(f"`{need}`" for need in sorted(metric.needs)) or "—"
        lines.append(
            f"| `{metric.name}` | {cell(metric.description)} | {arrays} | {needs} "
            f"| {cell(metric.how)} |"
        )
    pictures = [metric for metric in REGISTRY.values() if metric.picture is not None]
    lines += [
        "",
        "## Grid colourings",
        "",
        "Metrics with a picture colour the cells of the logit-lens grid",
        "(`plots.plot_grid(result, metric=...)`, `logitlens grid --metric ...`, the report).",
        "",
        "| `--metric` | From | Label | Colour map | Scale |",
        "|---|---|---|---|---|",
    ]
    for metric in pictures:
        picture = metric.picture
        lines.append(
            f"| `{picture.name}` | `{picture.array}` | {cell(picture.label)} | `{picture.cmap}` "
            f"| {picture.scale} |"
        )
    return "\n".join(lines) + "\n"


def api_index(modules: list[str]) -> str:
    """The API overview: one line per module, with its docstring's first line."""
    import importlib

    lines = [
        "# API reference",
        "",
        "Generated by mkdocstrings from the docstrings: every module of the package, each",
        "public function, class and constant. The command line has its own",
        "[reference](../cli.md).",
        "",
        "| Module | Holds |",
        "|---|---|",
    ]
    for module in modules:
        doc = (importlib.import_module(module).__doc__ or "").strip().splitlines()
        summary = cell(doc[0]) if doc else ""
        lines.append(f"| [`{module}`]({module}.md) | {summary} |")
    return "\n".join(lines) + "\n"
