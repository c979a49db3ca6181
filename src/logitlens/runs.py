"""Long runs that write as they go and resume where they stopped, and cannot mix runs.

``analyze_to_jsonl`` appends one JSON line per prompt as soon as its batch is done.
Running the same call again skips every prompt already in the file, so an interrupted
run (Ctrl-C, ``kill -9``, a dropped NDIF connection) loses at most one batch.

The file's first line is a header naming the model (its weight fingerprint), the lens
(kind, parameters, hash) and every option that changes a number. A run whose header differs
is refused, naming the part that differs, so two checkpoints with the same directory
name can never share results. logitlens never truncates a file that is not its own,
never opens FIFOs or devices, sets corrupt lines aside in ``<file>.rejected`` instead
of dropping the good lines after them, and holds an exclusive lock while it writes.
The file is only ever appended to, or rewritten whole through a temporary sibling and
a rename (:mod:`logitlens.storage`), so no interruption can lose a finished prompt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from . import jsontext
from .analysis import analyze, tokenize_prompts
from .errors import InputError
from .lenses import Lens, get_lens
from .lenses.files import model_fingerprint
from .loading import LensModel
from .paths import check_output_path, check_regular_file
from .results import LensResult
from .storage import (
    NOTHING_WRITTEN,
    manifest_differences,
    open_locked,
    remove_stale_temporaries,
    rewrite_locked,
    write_all,
    write_error,
)
from .targets import Target

FORMAT = "logitlens-results/1"
_NOT_NUMBERS = ("batch_size", "progress", "chunk_rows", "tuned_path")
"""Options that change speed or how the lens was named, never a number."""


def check_results_path(path: str | Path, inputs: Iterable[str | Path] = ()) -> Path:
    """Refuse, before any work, a results path that is not a logitlens results file.

    Directories, FIFOs and devices, a path equal to one of ``inputs``, a missing or
    read-only directory, and an existing file whose first line is not a logitlens
    results header are all refused with one line; nothing is opened for writing.
    """
    path = check_output_path(path, None)
    for source in inputs:
        source = Path(source).expanduser()
        if source.exists() and path.exists() and os.path.samefile(source, path):
            raise InputError(
                f"--out {str(path)!r} is also an input file: write the results elsewhere."
            )
    if path.exists() and path.stat().st_size > 0:
        with path.open("rb") as handle:
            first = handle.readline(1 << 20)
        if _header_of(first) is None:
            raise InputError(
                f"{str(path)!r} exists and is not a logitlens results file; logitlens will "
                "not overwrite it. Choose another --out path."
            )
    return path


def _header_of(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and record.get("format") == FORMAT else None


def run_header(model: LensModel, lens: Lens, options: dict[str, Any]) -> dict[str, Any]:
    """What a results file's numbers depend on: model weights, lens weights, options."""
    numbers = {k: v for k, v in sorted(options.items()) if k not in _NOT_NUMBERS}
    return {
        "format": FORMAT,
        "model": model_fingerprint(model),
        "lens": lens.identify(),
        "options": json.loads(json.dumps(numbers, default=str)),
    }


def _per_prompt(tokens: Any, n_prompts: int, what: str) -> list[Any]:
    """``targets`` or ``alternatives`` as one entry per prompt (``None``: none)."""
    if isinstance(tokens, (str, int)) or tokens is None:
        return [tokens] * n_prompts
    per_prompt = list(tokens)
    if len(per_prompt) != n_prompts:
        raise InputError(f"Got {len(per_prompt)} {what} for {n_prompts} prompts.")
    if any(t is None for t in per_prompt):
        raise InputError(f"Give one of the {what} for every prompt, or {what}=None for none.")
    return per_prompt


def _key(prompt: str, target: Any, alternative: Any = None) -> str:
    """A prompt's key in the file (an alternative joins it; keys without one are unchanged)."""
    item = [prompt, target] if alternative is None else [prompt, target, alternative]
    text = json.dumps(item, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def kept_in(path: str | Path) -> str:
    """What a results file holds now, in words (for a message after an interruption)."""
    path = Path(path).expanduser()
    try:
        with path.open("rb") as handle:
            lines = handle.read().splitlines(keepends=True)
    except OSError:
        return NOTHING_WRITTEN
    finished = sum(1 for line in lines[1:] if line.endswith(b"\n") and _is_record(line))
    if not finished:
        return f"No prompt was finished ({path} holds no results yet)."
    return (
        f"{finished} finished prompt(s) are kept in {path}; run the same command again to resume."
    )


def _is_record(line: bytes) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and "key" in record and "result" in record


def _read_done(handle: IO[bytes], path: Path) -> tuple[IO[bytes], dict[str, LensResult], int]:
    """The (possibly new) locked handle, the results after the header, and how many
    corrupt lines were set aside.

    A corrupt line (a torn write, a hand edit) goes to ``<file>.rejected``; the good
    lines after it are kept, and the file is rewritten without it: a new file renamed
    over the old one, so the old file stays whole until the new one is.
    """
    handle.seek(0)
    lines = handle.read().splitlines(keepends=True)
    done: dict[str, LensResult] = {}
    good, rejected = lines[:1], []
    for line in lines[1:]:
        try:
            record = json.loads(line)
            done[record["key"]] = LensResult.from_dict(record["result"])
            good.append(line if line.endswith(b"\n") else line + b"\n")
        except Exception:  # any damage: JSON, fields, array shapes
            if line.strip():
                rejected.append(line if line.endswith(b"\n") else line + b"\n")
    if rejected or (lines and not lines[-1].endswith(b"\n")):
        if rejected:
            aside = Path(f"{path}.rejected")
            try:
                with open(aside, "ab", buffering=0) as stream:
                    write_all(stream, b"".join(rejected))
                    os.fsync(stream.fileno())
            except OSError as error:
                raise write_error(aside, error, kept=f"{str(path)!r} was left as it was.") from None
        rewritten = rewrite_locked(path, b"".join(good))
        handle.close()
        handle = rewritten  # type: ignore[assignment]
    return handle, done, len(rejected)


def analyze_to_jsonl(
    model: LensModel,
    prompts: Sequence[str],
    path: str | Path,
    *,
    targets: Target | Sequence[Target] | None = None,
    alternatives: Target | Sequence[Target] | None = None,
    batch_size: int = 16,
    progress: bool = True,
    **options: Any,
) -> LensResult:
    """Like :func:`logitlens.analyze`, saving each prompt's result to a JSONL file.

    ``targets`` (and ``alternatives``, for ``logit_diff``) is ``None``, one token for
    all prompts, or one per prompt. Other keyword arguments go to ``analyze``. Returns
    all results, in prompt order.

    Raises:
        InputError: the file is not a logitlens results file, or was written by another
            model, lens or options (the message names which).
        OutputError: another run holds the file, or it cannot be written.
    """
    from .options import check_prompts

    prompts = check_prompts(prompts)
    per_prompt = _per_prompt(targets, len(prompts), "targets")
    alternatives = _per_prompt(alternatives, len(prompts), "alternatives")
    path = Path(path).expanduser()
    if not path.parent.is_dir():
        raise InputError(f"Directory {str(path.parent)!r} does not exist; create it first.")
    check_results_path(path)
    tokenize_prompts(model, prompts)  # a prompt beyond the context is named before any batch
    lens = get_lens(options.pop("lens", "logit"), options.get("tuned_path"))
    options["lens"] = lens
    header = run_header(model, lens, {**options, "lens": lens.name})
    keys = [_key(*item) for item in zip(prompts, per_prompt, alternatives, strict=True)]
    created = not path.exists()
    handle = open_locked(
        path,
        f"Another logitlens run is writing {str(path)!r}: wait for it to finish, or "
        "choose another --out.",
    )
    try:
        check_regular_file(path, "write")
        remove_stale_temporaries(path)
        handle.seek(0)
        first = handle.readline()
        if not first:
            try:
                write_all(handle, (json.dumps(header) + "\n").encode())
            except OSError as error:  # a full disk: leave no empty file behind
                if created:
                    path.unlink(missing_ok=True)
                raise write_error(path, error, kept=NOTHING_WRITTEN) from None
        else:
            saved = _header_of(first)
            if saved is None:
                raise InputError(f"{str(path)!r} is not a logitlens results file.")
            differ = manifest_differences(saved, header, ("model", "lens", "options"))
            if differ:
                raise InputError(
                    f"{str(path)!r} holds results of a different run: differs in "
                    f"{'; '.join(differ)}. Use another --out, or delete the file to start over."
                )
        handle, done, rejected = _read_done(handle, path)
        if rejected:
            import warnings

            warnings.warn(
                f"{rejected} corrupt line(s) of {path} set aside in {path}.rejected; "
                "their prompts are analysed again.",
                stacklevel=2,
            )
        todo = [i for i, key in enumerate(keys) if key not in done]
        _write_missing(
            handle,
            path,
            model,
            prompts,
            per_prompt,
            alternatives,
            keys,
            todo,
            done,
            batch_size,
            progress,
            options,
        )
    finally:
        handle.close()
    return LensResult.concat([done[key] for key in keys])


def _write_missing(
    handle: IO[bytes],
    path: Path,
    model: LensModel,
    prompts: list[str],
    per_prompt: list[Any],
    alternatives: list[Any],
    keys: list[str],
    todo: list[int],
    done: dict[str, LensResult],
    batch_size: int,
    progress: bool,
    options: dict[str, Any],
) -> None:
    from tqdm.auto import tqdm

    with tqdm(
        total=len(prompts), initial=len(prompts) - len(todo), desc="prompts", disable=not progress
    ) as bar:
        for start in range(0, len(todo), batch_size):
            chosen = todo[start : start + batch_size]
            chosen_targets = [per_prompt[i] for i in chosen]
            chosen_alternatives = [alternatives[i] for i in chosen]
            result = analyze(
                model,
                [prompts[i] for i in chosen],
                targets=None if chosen_targets[0] is None else chosen_targets,
                alternatives=None if chosen_alternatives[0] is None else chosen_alternatives,
                batch_size=batch_size,
                progress=False,
                **options,
            )
            lines = []
            for offset, index in enumerate(chosen):
                single = result.subset([offset])
                done[keys[index]] = single
                record = {"key": keys[index], "result": single.to_dict()}
                lines.append(jsontext.dumps(record, ensure_ascii=False) + "\n")
            end = handle.seek(0, os.SEEK_END)
            try:
                write_all(handle, "".join(lines).encode("utf-8"))
                os.fsync(handle.fileno())
            except OSError as error:  # keep the finished prompts, drop the torn lines
                with contextlib.suppress(OSError):  # else the next run sets it aside
                    handle.truncate(end)
                raise write_error(path, error, kept=kept_in(path)) from None
            bar.update(len(chosen))
