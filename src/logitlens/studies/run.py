"""Running a lens over a whole dataset: batched, streamed to Parquet, resumable.

``run_study`` sorts the items by token length and batches neighbours (little padding),
runs :func:`logitlens.analyze` on each batch and writes the batch's rows as soon as it
is done: ``layers/part-NNNNN.parquet`` (one row per item and layer) and then
``items/part-NNNNN.parquet`` (one row per item). Each file is written to a hidden
temporary name and renamed into place; the ``items`` part is the commit marker, so a
``kill -9`` at any moment loses at most the batch in flight. A rerun plans the same
batches, skips every committed one and rewrites the rest, so nothing is duplicated.

``manifest.json`` (written atomically before the first batch) records the model
fingerprint, a hash of the lens, the options and a hash of the dataset; a rerun into
the same directory with anything different is refused with the differences named.
A directory with parts but no valid manifest is refused (nobody can tell which setup
wrote them), and a damaged part (truncated, empty, not Parquet) is set aside as
``part-NNNNN.parquet.rejected`` and its batch run again. Every file goes through
:mod:`logitlens.storage`.

Normalised depth is ``(layer + 1) / n_layers``: the share of the model's layers applied
(the last layer is 1.0), so models of different depth share one axis.

Example:
    >>> study = run_study(load_model(), load_items(), out_dir="runs/smollm2")
    >>> study.items.groupby("category").depth_top1.median()
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from ..analysis import analyze
from ..batching import plan_batches
from ..errors import InputError
from ..generation import generate_lens_many
from ..lenses import Lens, get_lens
from ..lenses.files import model_fingerprint
from ..loading import LensModel
from ..options import check_count
from ..storage import NOTHING_WRITTEN, locked, manifest_differences, write_atomic
from ..targets import MultiTokenTargetWarning
from .dataset import StudyItem, load_items

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LOCK = ".lock"
ITEMS_DIR = "items"
LAYERS_DIR = "layers"

ITEM_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("category", pa.string()),
        ("tags", pa.list_(pa.string())),
        ("pair", pa.string()),
        ("prompt", pa.string()),
        ("target", pa.string()),
        ("alternative", pa.string()),
        ("target_token", pa.string()),
        ("target_n_tokens", pa.int32()),
        ("n_tokens", pa.int32()),
        ("n_layers", pa.int32()),
        ("first_layer_above", pa.int32()),
        ("first_layer_top1", pa.int32()),
        ("depth_above", pa.float64()),
        ("depth_top1", pa.float64()),
        ("final_prob", pa.float32()),
        ("final_rank", pa.int64()),
        ("final_logit_diff", pa.float32()),
        ("said_text", pa.string()),
        ("said_token", pa.string()),
        ("says_target", pa.bool_()),
        ("said_first_top1", pa.int32()),
        ("said_stable_top1", pa.int32()),
        ("said_depth_top1", pa.float64()),
        ("said_depth_stable", pa.float64()),
    ]
)
"""One row per item. Layers and depths are null where the target never gets there.

The ``said_*`` columns (and ``says_target``) describe what the model actually says,
from :func:`~logitlens.generation.generate_lens` with ``generate=N``; null without it.
``said_text`` is the N greedy tokens; the rest are about the first of them: its text,
whether it is the target's (first) token, and its ``first_top1`` / ``stable_top1``
layers, also as normalised depth.
"""

LAYER_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("category", pa.string()),
        ("layer", pa.int32()),
        ("depth", pa.float64()),
        ("target_prob", pa.float32()),
        ("target_rank", pa.int64()),
        ("alternative_prob", pa.float32()),
        ("alternative_rank", pa.int64()),
        ("logit_diff", pa.float32()),
        ("entropy", pa.float32()),
        ("attention_target", pa.float32()),
        ("mlp_target", pa.float32()),
        ("attention_diff", pa.float32()),
        ("mlp_diff", pa.float32()),
    ]
)
"""One row per item and layer (long format). Alternative columns are null without one.

With ``attribution=True``, ``attention_target`` / ``mlp_target`` are what the layer's
attention / MLP add directly to the target's final logit at the last position, and
``*_diff`` to target minus alternative (:mod:`logitlens.attribution`); null otherwise.
"""


@dataclass(frozen=True)
class StudyOptions:
    """The options that change a study's rows (recorded in, and checked against, the manifest)."""

    batch_size: int = 16
    threshold: float = 0.1
    generate: int = 0
    """Tokens generated greedily per item (0: none), for the ``said_*`` columns."""
    attribution: bool = False
    """Also record each layer's attention and MLP direct logit attribution."""


@dataclass
class StudyResult:
    """A study directory, read back: its manifest and its two long-format tables.

    ``items``: one row per item (:data:`ITEM_SCHEMA`); ``layers``: one row per item and
    layer (:data:`LAYER_SCHEMA`). Both are pandas DataFrames ordered by item id.
    """

    out_dir: Path
    manifest: dict[str, Any]
    items: pd.DataFrame
    layers: pd.DataFrame

    @property
    def model_name(self) -> str:
        return str(self.manifest["model"]["name"])

    @property
    def n_layers(self) -> int:
        return int(self.manifest["model"]["n_layers"])

    @property
    def threshold(self) -> float:
        return float(self.manifest["options"]["threshold"])

    @property
    def complete(self) -> bool:
        return len(self.items) == int(self.manifest["dataset"]["n_items"])

    @classmethod
    def load(cls, out_dir: str | Path) -> StudyResult:
        """Read a study directory (complete or not); only committed batches are read."""
        out_dir = Path(out_dir).expanduser()
        manifest = read_manifest(out_dir)
        if manifest is None:
            raise InputError(
                f"{str(out_dir)!r} is not a study directory (no {MANIFEST}). Run "
                "`logitlens study DATA --out DIR` first, or check the path."
            )
        parts = committed_parts(out_dir)
        damaged = damaged_parts(out_dir, parts)
        if damaged:
            raise InputError(
                f"{damaged[0]} is damaged (truncated, empty or not Parquet): rerun `logitlens "
                f"study DATA --out {out_dir}` with the study's setup; it sets the damaged "
                "part aside and runs its batch again."
            )
        items = _read_parts(out_dir / ITEMS_DIR, parts, ITEM_SCHEMA)
        layers = _read_parts(out_dir / LAYERS_DIR, parts, LAYER_SCHEMA)
        items = items.sort_values("id", kind="stable").reset_index(drop=True)
        layers = layers.sort_values(["id", "layer"], kind="stable").reset_index(drop=True)
        return cls(out_dir=out_dir, manifest=manifest, items=items, layers=layers)


def _read_parts(directory: Path, parts: Sequence[str], schema: pa.Schema) -> pd.DataFrame:
    tables = [pq.read_table(directory / name, schema=schema) for name in parts]
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    return table.to_pandas(types_mapper=_NULLABLE_INTEGERS.get)


# Integer columns with nulls stay integers in pandas (first_layer_top1 is null for "never").
_NULLABLE_INTEGERS = {pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype()}


def committed_parts(out_dir: Path) -> list[str]:
    """Names of the batches whose items part (the commit marker) exists, in order."""
    directory = out_dir / ITEMS_DIR
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.glob("part-*.parquet"))


def damaged_parts(out_dir: Path, parts: Sequence[str]) -> list[Path]:
    """The files of committed batches that cannot be read as this study's Parquet.

    Missing, truncated, empty or not Parquet at all, without an ``id`` column, or with a
    column of another type. (A column added since the part was written reads as null.)
    """
    damaged = []
    for name in parts:
        for directory, schema in ((ITEMS_DIR, ITEM_SCHEMA), (LAYERS_DIR, LAYER_SCHEMA)):
            path = out_dir / directory / name
            try:
                found = pq.read_schema(path)
            except (OSError, pa.ArrowException):
                damaged.append(path)
                continue
            wrong_type = any(
                field.name in schema.names and field.type != schema.field(field.name).type
                for field in found
            )
            if "id" not in found.names or wrong_type:
                damaged.append(path)
    return damaged


def items_on_disk(out_dir: Path) -> int:
    """How many items the readable committed batches of a study directory hold."""
    total = 0
    for name in committed_parts(out_dir):
        try:
            total += pq.read_metadata(out_dir / ITEMS_DIR / name).num_rows
        except (OSError, pa.ArrowException):
            continue
    return total


def kept_in(out_dir: str | Path) -> str:
    """What a study directory holds now, in words (for a message after an interruption)."""
    out_dir = Path(out_dir).expanduser()
    n_items = items_on_disk(out_dir)
    if not n_items:
        return (
            f"No item was finished ({out_dir} holds no results yet)."
            if (out_dir / MANIFEST).is_file()
            else NOTHING_WRITTEN
        )
    try:
        manifest = read_manifest(out_dir)
        total = f" of {int(manifest['dataset']['n_items'])}" if manifest else ""
    except (InputError, KeyError, TypeError, ValueError):
        total = ""
    return f"{n_items}{total} items are kept in {out_dir}; run the same command again to resume."


def read_manifest(out_dir: Path) -> dict[str, Any] | None:
    """A study directory's manifest, checked to be one; ``None`` when there is none."""
    path = out_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        manifest = None
    sections = ("model", "lens", "options", "dataset")
    if not isinstance(manifest, dict) or not all(
        isinstance(manifest.get(key), dict) for key in sections
    ):
        raise InputError(
            f"{path} is not a logitlens study manifest (it was edited or replaced): "
            "restore it, or choose a new --out directory."
        )
    return manifest


def _sha256_json(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def dataset_hash(items: Sequence[StudyItem]) -> str:
    """sha256 of the items' fields (order included), independent of the file format."""
    return _sha256_json([_item_record(item) for item in items])


def _item_record(item: StudyItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "category": item.category,
        "prompt": item.prompt,
        "target": item.target,
        "alternative": item.alternative,
        "tags": list(item.tags or ()),
        "pair": item.pair,
    }


def lens_hash(lens: Lens) -> str:
    """sha256 of the lens's :meth:`~logitlens.lenses.Lens.identify`: its name, its weights'
    hash and its parameters (a lens without any hashes as it did before they existed)."""
    return _sha256_json(list(lens.identify().values()))


def _manifest(
    model: LensModel, lens: Lens, items: Sequence[StudyItem], options: StudyOptions
) -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION,
        "model": model_fingerprint(model),
        "lens": {**lens.to_json(), "sha256": lens_hash(lens)},
        "options": asdict(options),
        "dataset": {"sha256": dataset_hash(items), "n_items": len(items)},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two manifests, in words (empty when a resume is safe).

    The lens is compared by its identity (name, parameters and the hash of both with
    its weights), not by the path it was read from; an option added since the old
    study was written took its default there.
    """

    def identity(manifest: dict[str, Any]) -> dict[str, Any]:
        lens = manifest.get("lens", {})
        keys = ("name", "parameters", "sha256")
        return {**manifest, "lens": {key: lens[key] for key in keys if key in lens}}

    return manifest_differences(
        identity(old),
        identity(new),
        ("model", "lens", "options", "dataset", "format"),
        defaults={"options": asdict(StudyOptions())},
    )


def _check_items(items: Sequence[StudyItem] | str | Path) -> list[StudyItem]:
    if isinstance(items, (str, Path)):  # a dataset file, as on the command line
        return load_items(items)
    if not isinstance(items, Sequence):
        raise InputError(
            f"items must be a list of StudyItem or a dataset path, not {type(items).__name__}: "
            "run_study(model, load_items('items.jsonl'), out_dir=...)."
        )
    items = list(items)
    wrong = next((item for item in items if not isinstance(item, StudyItem)), None)
    if wrong is not None:
        raise InputError(
            f"items must be StudyItem objects, not {type(wrong).__name__} {wrong!r:.60}: "
            "read them with logitlens.studies.load_items(path), or pass the path itself."
        )
    if not items:
        raise InputError("The dataset has no items: give a file with at least one item.")
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise InputError(f"Item id {item.id!r} appears twice; ids must be unique.")
        seen.add(item.id)
    return items


def run_study(
    model: LensModel,
    items: Sequence[StudyItem] | str | Path,
    *,
    out_dir: str | Path,
    lens: str | Lens = "logit",
    tuned_path: str | None = None,
    batch_size: int = 16,
    threshold: float = 0.1,
    generate: int = 0,
    attribution: bool = False,
    progress: bool = True,
) -> StudyResult:
    """Run ``lens`` over every item (last position) and stream the rows to ``out_dir``.

    Per item and layer: probability and rank of the target and of its alternative, the
    logit difference target - alternative, and the entropy. Per item: the first layer
    where the target probability exceeds ``threshold`` and the first where it is top-1,
    also as normalised depth. With ``generate=N``, each item's prompt is also continued
    greedily by N tokens with :func:`~logitlens.generation.generate_lens` (the same
    lens), recording what the model says and the decision depth of its first token
    (the ``said_*`` columns). With ``attribution=True``, the same trace also splits each
    item's final target logit (and target minus alternative) into each layer's attention
    and MLP parts (the ``attention_*`` / ``mlp_*`` layer columns). Rerunning the same
    call resumes; a different model, lens, option or dataset in an existing ``out_dir``
    raises :class:`InputError`.
    """
    if not isinstance(model, LensModel):
        raise InputError(
            f"run_study() needs a model from logitlens.load_model(), not {type(model).__name__}."
        )
    items = _check_items(items)
    batch_size = check_count(batch_size, "batch_size")
    generate = check_count(generate, "generate", minimum=0)
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold is a probability, between 0 and 1; got {threshold}.")
    lens = get_lens(lens, tuned_path)
    lens.check_model(model)
    out_dir = Path(out_dir).expanduser()
    options = StudyOptions(
        batch_size=batch_size,
        threshold=float(threshold),
        generate=generate,
        attribution=bool(attribution),
    )
    manifest = _manifest(model, lens, items, options)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"Cannot create the study directory {out_dir}: {error}.") from None
    busy = f"Another study is running in {out_dir}; wait for it, or choose another --out."
    with locked(out_dir / LOCK, busy, InputError):
        _check_or_write_manifest(out_dir, manifest)
        _remove_temporaries(out_dir)
        _set_aside_damaged(out_dir)
        _run_batches(model, lens, items, out_dir, options, progress)
    return StudyResult.load(out_dir)


def _check_or_write_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    """Refuse a directory that holds another setup's study, or parts without a manifest;
    start a new study's manifest."""
    old = read_manifest(out_dir)
    if old is None:
        leftovers = [p for d in (ITEMS_DIR, LAYERS_DIR) for p in (out_dir / d).glob("part-*")]
        if leftovers:
            raise InputError(
                f"{out_dir} holds study parts but no {MANIFEST}, so nobody can tell which "
                "model, lens and dataset wrote them: choose a new --out directory, or delete "
                f"{out_dir / ITEMS_DIR} and {out_dir / LAYERS_DIR} to start over."
            )
        write_atomic(out_dir / MANIFEST, json.dumps(manifest, indent=2))
        return
    differences = _differences(old, manifest)
    if differences:
        raise InputError(
            f"{out_dir} holds a study with another setup ({'; '.join(differences)}). "
            "Use a new --out directory, or rerun with the original setup to resume."
        )


def _remove_temporaries(out_dir: Path) -> None:
    """Half-written parts a killed run left behind (never read: they are hidden files)."""
    for directory in (out_dir / ITEMS_DIR, out_dir / LAYERS_DIR):
        for stale in directory.glob(".part-*.tmp"):
            stale.unlink(missing_ok=True)


def _set_aside_damaged(out_dir: Path) -> None:
    """Rename the parts of batches with a damaged file to ``*.rejected``: run again."""
    damaged = damaged_parts(out_dir, committed_parts(out_dir))
    names = sorted({path.name for path in damaged})
    for name in names:
        for directory in (ITEMS_DIR, LAYERS_DIR):
            part = out_dir / directory / name
            if part.exists():
                part.replace(part.with_name(name + ".rejected"))
    if names:
        warnings.warn(
            f"{len(names)} damaged batch(es) of {out_dir} set aside as "
            f"{', '.join(n + '.rejected' for n in names)}; their items are run again.",
            stacklevel=4,
        )


def _run_batches(
    model: LensModel,
    lens: Lens,
    items: list[StudyItem],
    out_dir: Path,
    options: StudyOptions,
    progress: bool,
) -> None:
    tokenizer = model.tokenizer
    lengths = [len(tokenizer(item.prompt, add_special_tokens=True)["input_ids"]) for item in items]
    _check_lengths(items, lengths, options.generate, model.context_length)
    target_pieces = [len(tokenizer.encode(item.target, add_special_tokens=False)) for item in items]
    several = sum(n > 1 for n in target_pieces)
    if several:
        warnings.warn(
            f"{several} of {len(items)} targets are several tokens; their first token is "
            "used (column target_n_tokens says which).",
            MultiTokenTargetWarning,
            stacklevel=4,
        )
    batches = plan_batches(lengths, options.batch_size)
    done = set(committed_parts(out_dir))
    todo = [(b, batch) for b, batch in enumerate(batches) if _part_name(b) not in done]
    n_done = len(items) - sum(len(batch) for _, batch in todo)
    with tqdm(
        total=len(items), initial=n_done, unit="item", desc="study", disable=not progress
    ) as bar:
        for index, batch in todo:
            chosen = [items[i] for i in batch]
            item_table, layer_table = _run_batch(
                model,
                lens,
                chosen,
                [lengths[i] for i in batch],
                [target_pieces[i] for i in batch],
                options,
            )
            name = _part_name(index)
            for directory, table in ((LAYERS_DIR, layer_table), (ITEMS_DIR, item_table)):
                (out_dir / directory).mkdir(exist_ok=True)
                write_atomic(out_dir / directory / name, lambda p, t=table: pq.write_table(t, p))
            bar.update(len(batch))


def _check_lengths(
    items: list[StudyItem], lengths: list[int], generate: int, limit: int | None
) -> None:
    """Refuse, before any batch runs, an item longer than the model's context (named)."""
    too_long = [
        (item, n) for item, n in zip(items, lengths, strict=True) if limit and n + generate > limit
    ]
    if too_long:
        item, n = too_long[0]
        extra = f" plus {generate} generated" if generate else ""
        raise InputError(
            f"Item {item.id!r} is {n} tokens{extra}, longer than the model's context of "
            f"{limit} tokens ({len(too_long)} item(s) in all): shorten or drop them."
        )


def _part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def _run_batch(
    model: LensModel,
    lens: Lens,
    items: list[StudyItem],
    lengths: list[int],
    target_pieces: list[int],
    options: StudyOptions,
) -> tuple[pa.Table, pa.Table]:
    """One forward pass over a batch; the item and layer rows as Arrow tables."""
    # The alternative is also a second target, for its probability and rank; the
    # logit_diff metric pairs each target with an alternative (the target's: the
    # literal word; the second target's own: unused). An item without alternative uses
    # its target in every role, and its alternative columns are nulled.
    alternatives = [item.alternative or item.target for item in items]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MultiTokenTargetWarning)  # counted once, up front
        result = analyze(
            model,
            [item.prompt for item in items],
            lens=lens,
            targets=[
                [item.target, alternative]
                for item, alternative in zip(items, alternatives, strict=True)
            ],
            alternatives=[[alternative, alternative] for alternative in alternatives],
            metrics=["target", "target_rank", "entropy", "logit_diff"],
            attribution=options.attribution,
            batch_size=len(items),
            progress=False,
        )
    n_layers = len(result.layers)
    probs = result.target_prob[:, :, 0, :]  # [item, layer, target]
    ranks = result.target_rank[:, :, 0, :]
    logit_diff = result.logit_diff[:, :, 0, 0]  # [item, layer]: target - alternative
    entropy = result.entropy[:, :, 0]
    has_alternative = np.array([item.alternative is not None for item in items])
    layer_index = np.arange(n_layers)
    depth = (layer_index + 1) / n_layers

    above = _first_true(probs[..., 0] > options.threshold)
    top1 = _first_true(ranks[..., 0] == 1)
    item_columns = {
        "id": [item.id for item in items],
        "category": [item.category for item in items],
        "tags": [list(item.tags or ()) for item in items],
        "pair": [item.pair for item in items],
        "prompt": [item.prompt for item in items],
        "target": [item.target for item in items],
        "alternative": [item.alternative for item in items],
        "target_token": [row[0] for row in result.target_tokens],
        "target_n_tokens": target_pieces,
        "n_tokens": lengths,
        "n_layers": [n_layers] * len(items),
        "first_layer_above": above,
        "first_layer_top1": top1,
        "depth_above": [None if a is None else (a + 1) / n_layers for a in above],
        "depth_top1": [None if t is None else (t + 1) / n_layers for t in top1],
        "final_prob": probs[:, -1, 0],
        "final_rank": ranks[:, -1, 0],
        "final_logit_diff": logit_diff[:, -1],
    }
    n = len(items)
    alternative_mask = np.repeat(~has_alternative, n_layers)
    layer_columns = {
        "id": np.repeat(item_columns["id"], n_layers),
        "category": np.repeat(item_columns["category"], n_layers),
        "layer": np.tile(layer_index, n),
        "depth": np.tile(depth, n),
        "target_prob": probs[..., 0].reshape(-1),
        "target_rank": ranks[..., 0].reshape(-1),
        "alternative_prob": pa.array(probs[..., 1].reshape(-1), mask=alternative_mask),
        "alternative_rank": pa.array(ranks[..., 1].reshape(-1), mask=alternative_mask),
        "logit_diff": pa.array(logit_diff.reshape(-1), mask=alternative_mask),
        "entropy": entropy.reshape(-1),
        **_attribution_columns(result.attribution, n_layers, len(items), alternative_mask),
    }
    item_columns["final_logit_diff"] = pa.array(
        item_columns["final_logit_diff"], mask=~has_alternative
    )
    target_ids = [row[0] for row in result.target_ids]
    item_columns.update(_said_columns(model, lens, items, target_ids, options.generate))
    return (
        pa.Table.from_pydict(item_columns, schema=ITEM_SCHEMA),
        pa.Table.from_pydict(layer_columns, schema=LAYER_SCHEMA),
    )


def _attribution_columns(
    attribution: Any, n_layers: int, n_items: int, alternative_mask: np.ndarray
) -> dict[str, Any]:
    """The layer table's attention / MLP columns (all null without an attribution)."""
    names = ("attention_target", "mlp_target", "attention_diff", "mlp_diff")
    if attribution is None:
        return {name: pa.nulls(n_layers * n_items, pa.float32()) for name in names}
    # [item, layer, component]: the last position (one column), the first target.
    target = attribution.target.components[:, :, :, 0, 0].reshape(-1, 2)
    difference = attribution.difference.components[:, :, :, 0, 0].reshape(-1, 2)
    return {
        "attention_target": target[:, 0],
        "mlp_target": target[:, 1],
        "attention_diff": pa.array(difference[:, 0], mask=alternative_mask),
        "mlp_diff": pa.array(difference[:, 1], mask=alternative_mask),
    }


def _first_true(hits: np.ndarray) -> list[int | None]:
    """Per row of ``hits`` ``[item, layer]``, the first layer that is true, or ``None``."""
    first = hits.argmax(axis=1)
    return [int(f) if hits[row, f] else None for row, f in enumerate(first)]


def _said_columns(
    model: LensModel, lens: Lens, items: list[StudyItem], target_ids: list[int], generate: int
) -> dict[str, list[Any]]:
    """The ``said_*`` columns: each prompt continued greedily (all null for ``generate=0``)."""
    names = [name for name in ITEM_SCHEMA.names if name.startswith("said") or name == "says_target"]
    columns: dict[str, list[Any]] = {name: [] for name in names}
    if not generate:
        return {name: [None] * len(items) for name in names}
    # On NDIF, the whole batch's generations are one job (an nnsight session).
    generations = generate_lens_many(
        model, [item.prompt for item in items], generate, lens=lens, k=1
    )
    for said, target_id in zip(generations, target_ids, strict=True):
        columns["said_text"].append(said.text)
        columns["said_token"].append(said.generated_tokens[0])
        columns["says_target"].append(said.generated_ids[0] == target_id)
        columns["said_first_top1"].append(said.first_top1[0])
        columns["said_stable_top1"].append(said.stable_top1[0])
        columns["said_depth_top1"].append(said.normalised_depth("first")[0])
        columns["said_depth_stable"].append(said.normalised_depth("stable")[0])
    return columns
