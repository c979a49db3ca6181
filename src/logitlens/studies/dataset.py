"""Study items: one schema, the bundled pun/literal/fact set, loading and checking files.

An item is one prompt that ends just before a target word, with a competing word,
a category and tags. The bundled file (``logitlens/data/study_items.jsonl``, CC0,
described in ``logitlens/data/README.md``) holds 123 puns, their 123 literal
controls, 70 facts and 30 two-hop questions. Users bring their own items in the
same schema as JSONL, CSV or Parquet::

    {"id": "pun-001", "category": "pun",
     "prompt": "Why do electricians make good swimmers? Because they know the",
     "target": " current", "alternative": " water",
     "tags": ["electricity", "water"], "pair": "literal-001"}

``pair`` names the matching pun or literal item; it may name an item absent from
the file, so a subset of the bundled set loads as it is. In CSV, ``tags`` is one
cell with the tags separated by ``;`` and an empty ``alternative`` or ``pair`` cell
means none. Every problem in a file is reported as an
:class:`~logitlens.errors.InputError` naming the file, the line (or row) and the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..paths import read_text_file, text_lines

CATEGORIES = ("pun", "literal", "fact", "two_hop")
"""The item categories, in the order summaries list them."""
REQUIRED_FIELDS = ("id", "category", "prompt", "target")
OPTIONAL_FIELDS = ("alternative", "tags", "pair")
FILE_SUFFIXES = (".jsonl", ".csv", ".parquet")
BUNDLED_ITEMS = "study_items.jsonl"


@dataclass(frozen=True)
class StudyItem:
    """One prompt, the word expected next, a competing word, its category and tags."""

    id: str
    category: str
    prompt: str
    target: str
    alternative: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)
    pair: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The item as one JSONL record of the documented schema."""
        record = asdict(self)
        record["tags"] = list(self.tags)
        return record


def bundled_items_path() -> Path:
    """The bundled ``study_items.jsonl`` inside the installed package."""
    return Path(__file__).resolve().parent.parent / "data" / BUNDLED_ITEMS


def load_items(path: str | Path | None = None) -> list[StudyItem]:
    """Read and validate study items; the bundled set when ``path`` is ``None``.

    The format follows the suffix: ``.jsonl``, ``.csv`` or ``.parquet``. A UTF-8 byte
    order mark is accepted.

    Raises:
        InputError: for the first problem found, as ``file:line: field ...: problem``.

    Example:
        >>> items = load_items()
        >>> [item.target for item in items if item.id == "pun-001"]
        [' current']
    """
    path = bundled_items_path() if path is None else Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise InputError(
            f"Cannot tell the format of {str(path)!r}: name it .jsonl, .csv or .parquet."
        )
    if not path.is_file():
        raise InputError(f"No items file at {str(path)!r}: check the path.")
    reader = {".jsonl": _jsonl_records, ".csv": _csv_records, ".parquet": _parquet_records}
    items: list[StudyItem] = []
    where_by_id: dict[str, str] = {}
    for where, record in reader[suffix](path):
        item = _to_item(record, where)
        if item.id in where_by_id:
            raise InputError(
                f"{where}: field 'id': duplicate id {item.id!r} (first at "
                f"{where_by_id[item.id]}); give every item its own id."
            )
        where_by_id[item.id] = where
        items.append(item)
    if not items:
        raise InputError(f"{path}: no items found; write one JSON object per line.")
    return items


def _jsonl_records(path: Path) -> Iterator[tuple[str, Any]]:
    for number, line in enumerate(text_lines(read_text_file(path)), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            yield where, json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(
                f"{where}: not valid JSON ({error.msg} at column {error.colno}); write one "
                "JSON object per line."
            ) from None


def _csv_records(path: Path) -> Iterator[tuple[str, Any]]:
    import csv
    import io

    reader = csv.DictReader(io.StringIO(read_text_file(path), newline=""))
    for record in reader:
        where = f"{path}:{reader.line_num}"
        if None in record:
            raise InputError(f"{where}: more cells than header columns; quote cells with commas.")
        record = {key: (None if value == "" else value) for key, value in record.items()}
        if "tags" in record:
            tags = record["tags"] or ""
            record["tags"] = [tag.strip() for tag in tags.split(";") if tag.strip()]
        yield where, record


def _parquet_records(path: Path) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as error:  # pyarrow raises several types for damaged files
        raise InputError(f"{path}: not a readable Parquet file ({error}).") from None
    for number, record in enumerate(rows, start=1):
        yield f"{path}:row {number}", record


def _to_item(record: Any, where: str) -> StudyItem:
    if not isinstance(record, dict):
        raise InputError(f"{where}: expected a JSON object with fields {list(REQUIRED_FIELDS)}.")
    for name in REQUIRED_FIELDS:
        if record.get(name) is None:
            raise InputError(f"{where}: field {name!r} is missing; every item needs it.")
    unknown = sorted(set(record) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS))
    if unknown:
        raise InputError(
            f"{where}: field {unknown[0]!r} is not part of the schema; the fields are "
            f"{', '.join(REQUIRED_FIELDS + OPTIONAL_FIELDS)}."
        )
    for name in ("id", "category", "prompt", "target", "alternative", "pair"):
        value = record.get(name)
        if value is not None and not isinstance(value, str):
            raise InputError(f"{where}: field {name!r} must be a string, not {value!r}.")
    if not record["id"].strip():
        raise InputError(f"{where}: field 'id' is empty; give the item a name like 'pun-001'.")
    if record["category"] not in CATEGORIES:
        raise InputError(
            f"{where}: field 'category': {record['category']!r} is not one of "
            f"{', '.join(CATEGORIES)}."
        )
    prompt = record["prompt"]
    if not prompt.strip():
        raise InputError(f"{where}: field 'prompt' is empty; give the text before the target.")
    if prompt != prompt.rstrip():
        raise InputError(
            f"{where}: field 'prompt' ends with whitespace; remove it and start the target "
            "with the space instead (' current')."
        )
    for name in ("target", "alternative"):
        value = record.get(name)
        if value is not None and not value.strip():
            raise InputError(
                f"{where}: field {name!r} has no word in it ({value!r}); write the word with "
                "its leading space, e.g. ' current'."
            )
    tags = record.get("tags")
    if tags is None:
        tags = []
    if not isinstance(tags, Sequence) or isinstance(tags, str):
        raise InputError(f"{where}: field 'tags' must be a list of strings, not {tags!r}.")
    if not all(isinstance(tag, str) and tag for tag in tags):
        raise InputError(f"{where}: field 'tags' must hold non-empty strings, got {tags!r}.")
    return StudyItem(
        id=record["id"],
        category=record["category"],
        prompt=prompt,
        target=record["target"],
        alternative=record.get("alternative"),
        tags=tuple(tags),
        pair=record.get("pair"),
    )


def save_items(items: Sequence[StudyItem], path: str | Path) -> Path:
    """Write items as JSONL, CSV or Parquet (by suffix), readable by :func:`load_items`."""
    from ..storage import write_atomic

    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    records = [item.to_json() for item in items]
    if suffix == ".jsonl":
        return write_atomic(
            path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        )
    if suffix == ".csv":
        import pandas as pd

        for record in records:
            record["tags"] = ";".join(record["tags"])
        frame = pd.DataFrame(records, columns=list(REQUIRED_FIELDS + OPTIONAL_FIELDS))
        return write_atomic(path, lambda temporary: frame.to_csv(temporary, index=False))
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(records)
        return write_atomic(path, lambda temporary: pq.write_table(table, temporary))
    raise InputError(f"Cannot tell the format of {str(path)!r}: name it .jsonl, .csv or .parquet.")


@dataclass(frozen=True)
class MultiTokenWord:
    """A target or alternative that one tokenizer splits into several tokens."""

    item_id: str
    field: str
    text: str
    tokens: tuple[str, ...]


@dataclass
class TokenReport:
    """Which targets and alternatives are not single tokens for one tokenizer.

    A lens reads one token; for a multi-token word it uses the first (see
    :mod:`logitlens.targets`), which may say little about the whole word.
    """

    tokenizer: str
    n_items: int
    n_words: int
    multi_token: list[MultiTokenWord]

    @property
    def ok(self) -> bool:
        return not self.multi_token

    def to_json(self) -> dict[str, Any]:
        return {
            "tokenizer": self.tokenizer,
            "n_items": self.n_items,
            "n_words": self.n_words,
            "multi_token": [
                asdict(word) | {"tokens": list(word.tokens)} for word in self.multi_token
            ],
        }


def check_single_tokens(
    items: Sequence[StudyItem], tokenizer: Any, name: str | None = None
) -> TokenReport:
    """List the targets and alternatives that ``tokenizer`` splits into several tokens.

    Words are tokenized as the lens does it: alone, without special tokens, leading
    space included. ``name`` labels the report (default: the tokenizer's own path).
    """
    words = [
        (item.id, field_name, text)
        for item in items
        for field_name in ("target", "alternative")
        if (text := getattr(item, field_name)) is not None
    ]
    return check_words(words, tokenizer, name, len(items))


def check_words(
    words: Sequence[tuple[str, str, str]],
    tokenizer: Any,
    name: str | None = None,
    n_items: int | None = None,
) -> TokenReport:
    """:func:`check_single_tokens` on ``(item id, field, word)`` triples from any file."""
    multi_token = []
    for item_id, field_name, text in words:
        ids = tokenizer.encode(text, add_special_tokens=False)
        if len(ids) != 1:
            pieces = tuple(tokenizer.decode([i]) for i in ids)
            multi_token.append(MultiTokenWord(item_id, field_name, text, pieces))
    name = name or getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
    return TokenReport(
        tokenizer=str(name),
        n_items=len({item_id for item_id, _, _ in words}) if n_items is None else n_items,
        n_words=len(words),
        multi_token=multi_token,
    )


def load_pairs(path: str | Path) -> list[tuple[str, str | int, str | int | None]]:
    """Prompt, target and alternative of each line of a ``compare`` JSONL file.

    One ``{"prompt": "...", "target": " word"}`` object per line (UTF-8, with or without
    BOM), with an optional ``"alternative"``; a word may be a token id. Every problem is an
    :class:`~logitlens.errors.InputError` naming the line.
    """
    path = Path(path).expanduser()
    text = read_text_file(path)
    pairs = []
    for number, line in enumerate(text_lines(text), start=1):
        if line.strip():
            pairs.append(_pair_of(_json_line(line, path, number), f"{path}:{number}"))
    if not pairs:
        raise InputError(f"{path} holds no prompt/target pairs.")
    return pairs


def _json_line(line: str, path: Path, number: int) -> Any:
    """One JSON value of a JSONL file, or an error naming the line."""
    try:
        return json.loads(line)
    except ValueError as error:
        raise InputError(
            f"{path}:{number} is not valid JSON ({error.msg} at column {error.colno}); "
            'write one object per line, e.g. {"prompt": "The capital of France is", '
            '"target": " Paris"}'
        ) from None


def _pair_of(record: Any, where: str) -> tuple[str, str | int, str | int | None]:
    if not isinstance(record, dict):
        raise InputError(f'{where} is not a JSON object: write {{"prompt": ..., "target": ...}}.')
    for field_name in ("prompt", "target"):
        if field_name not in record:
            raise InputError(f"{where} has no {field_name!r} field (it has {sorted(record)}).")
    prompt, target = record["prompt"], record["target"]
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError(f"{where}: 'prompt' must be non-empty text, got {prompt!r}.")
    alternative = record.get("alternative")
    for field_name, token in (("target", target), ("alternative", alternative)):
        if field_name == "alternative" and token is None:
            continue
        if isinstance(token, bool) or not isinstance(token, (str, int)) or token == "":
            raise InputError(
                f'{where}: {field_name!r} must be text such as " current" or a token id, '
                f"got {token!r}."
            )
    return prompt, target, alternative
