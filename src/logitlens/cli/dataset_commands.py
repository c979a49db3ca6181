"""``dataset check``: validate a study items file and list multi-token words per tokenizer."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from .application import app, console, err_console, print_json
from .flags import JsonOption

dataset_app = typer.Typer(
    help="Study items: the bundled set or your own file.", no_args_is_help=True
)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command()
def check(
    path: Annotated[
        Path | None,
        typer.Argument(help="Items file (.jsonl, .csv or .parquet); default: the bundled set."),
    ] = None,
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="Tokenizer(s) to check against (repeatable): bundled name, hub id or "
            "directory. Default: the bundled SmolLM2.",
        ),
    ] = None,
    json_output: JsonOption = False,
):
    """Validate an items file and report targets/alternatives that are not one token.

    Example: logitlens dataset check my_items.csv -m smollm2 -m gemma3-270m
    """
    from rich.table import Table

    from ..loading import find_bundled, load_tokenizer
    from ..studies.dataset import CATEGORIES, bundled_items_path, check_single_tokens, load_items

    items = load_items(path)
    counts = Counter(item.category for item in items)
    reports = []
    for name in models or [None]:
        with err_console.status(f"Loading the tokenizer of {name or 'the bundled SmolLM2'}..."):
            tokenizer = load_tokenizer(name)
        bundled = find_bundled(name)
        label = bundled.name if bundled is not None else str(name)
        reports.append(check_single_tokens(items, tokenizer, label))
    source = str(path or bundled_items_path())
    if json_output:
        print_json(
            {
                "file": source,
                "n_items": len(items),
                "categories": {c: counts.get(c, 0) for c in CATEGORIES},
                "tokenizers": [report.to_json() for report in reports],
            }
        )
        return
    summary = ", ".join(f"{counts.get(c, 0)} {c}" for c in CATEGORIES)
    console.print(f"{source}: {len(items)} items, valid ({summary}).", highlight=False)
    for report in reports:
        if report.ok:
            console.print(
                f"{report.tokenizer}: all {report.n_words} targets and alternatives are "
                "single tokens.",
                highlight=False,
            )
            continue
        table = Table(
            title=f"{report.tokenizer}: {len(report.multi_token)} of {report.n_words} words "
            "are several tokens (the lens uses the first)"
        )
        for column in ("item", "field", "word", "tokens"):
            table.add_column(column)
        for word in report.multi_token:
            tokens = " | ".join(map(repr, word.tokens))
            table.add_row(word.item_id, word.field, repr(word.text), tokens)
        console.print(table)
