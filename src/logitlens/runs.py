"""Long runs that write as they go and resume where they stopped.

``analyze_to_jsonl`` appends one JSON line per prompt as soon as its batch is
done. Running the same call again skips every prompt already in the file, so an
interrupted run (Ctrl-C, a dropped NDIF connection) loses at most one batch.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .analysis import analyze
from .errors import InputError
from .loading import LensModel
from .results import LensResult
from .targets import Target


def _key(model: LensModel, prompt: str, target: Any, options: dict[str, Any]) -> str:
    text = json.dumps([model.name, prompt, target, options], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _read_done(path: Path) -> dict[str, LensResult]:
    """Results already in ``path``; a torn last line (interrupted write) is dropped."""
    done: dict[str, LensResult] = {}
    if not path.exists():
        return done
    good_bytes = 0
    with path.open("rb") as handle:
        for line in handle:
            try:
                record = json.loads(line)
                done[record["key"]] = LensResult.from_dict(record["result"])
            except (ValueError, KeyError, TypeError):
                break
            good_bytes += len(line)
    if good_bytes < path.stat().st_size:
        with path.open("r+b") as handle:
            handle.truncate(good_bytes)
    return done


def analyze_to_jsonl(
    model: LensModel,
    prompts: Sequence[str],
    path: str | Path,
    *,
    targets: Target | Sequence[Target] | None = None,
    batch_size: int = 16,
    progress: bool = True,
    **options: Any,
) -> LensResult:
    """Like :func:`logitlens.analyze`, saving each prompt's result to a JSONL file.

    ``targets`` is ``None``, one target for all prompts, or one per prompt. Other
    keyword arguments go to ``analyze``. Returns all results, in prompt order.
    """
    prompts = list(prompts)
    if isinstance(targets, (str, int)) or targets is None:
        per_prompt: list[Any] = [targets] * len(prompts)
    else:
        per_prompt = list(targets)
        if len(per_prompt) != len(prompts):
            raise InputError(f"Got {len(per_prompt)} targets for {len(prompts)} prompts.")
    path = Path(path)
    if path.parent and not path.parent.is_dir():
        raise InputError(f"Directory {str(path.parent)!r} does not exist; create it first.")
    keys = [_key(model, p, t, options) for p, t in zip(prompts, per_prompt, strict=True)]
    done = _read_done(path)
    todo = [i for i, key in enumerate(keys) if key not in done]
    from tqdm.auto import tqdm

    with (
        path.open("a", encoding="utf-8") as handle,
        tqdm(
            total=len(prompts),
            initial=len(prompts) - len(todo),
            desc="prompts",
            disable=not progress,
        ) as bar,
    ):
        for start in range(0, len(todo), batch_size):
            chosen = todo[start : start + batch_size]
            chosen_targets = [per_prompt[i] for i in chosen]
            result = analyze(
                model,
                [prompts[i] for i in chosen],
                targets=None if chosen_targets[0] is None else chosen_targets,
                batch_size=batch_size,
                progress=False,
                **options,
            )
            for offset, index in enumerate(chosen):
                single = result.subset([offset])
                done[keys[index]] = single
                record = {"key": keys[index], "result": single.to_dict()}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
            bar.update(len(chosen))
    return LensResult.concat([done[key] for key in keys])
