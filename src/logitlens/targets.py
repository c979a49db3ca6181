"""Turning target strings into token ids, with the multi-token policy made visible.

Policy: a target string is tokenized without special tokens; if it becomes several
tokens, the FIRST token is used and a :class:`MultiTokenTargetWarning` names all of
them. Leading spaces matter (``" current"`` and ``"current"`` are different tokens in
most vocabularies), so results always record the token actually used. To choose
exactly, pass token ids (``int``) instead of strings.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InputError
from .options import check_text, plain

Target = str | int


class MultiTokenTargetWarning(UserWarning):
    """A target string tokenizes to more than one token; the first one is used."""


@dataclass(frozen=True)
class ResolvedTarget:
    """A target as the user wrote it and the token id used for it."""

    text: Target
    token_id: int
    token: str


def resolve_target(tokenizer: Any, target: Target, vocab_size: int) -> ResolvedTarget:
    """The token id for one target (a string or an explicit token id)."""
    if isinstance(target, numbers.Integral) and not isinstance(target, bool):
        target = int(target)  # NumPy integers too
    if isinstance(target, bool) or not isinstance(target, (str, int)):
        raise InputError(
            f"A target must be a string or a token id (e.g. ' current' or 1234), not {target!r}."
        )
    if isinstance(target, int):
        if not 0 <= target < vocab_size:
            raise InputError(
                f"Target token id {target} is outside the vocabulary (0..{vocab_size - 1})."
            )
        return ResolvedTarget(target, target, tokenizer.decode([target]))
    if target == "":
        raise InputError("The target is empty: give a word such as ' current'.")
    check_text(target, "The target")
    ids = tokenizer.encode(target, add_special_tokens=False)
    if not ids:
        raise InputError(f"The target {target!r} tokenizes to nothing.")
    pieces = [tokenizer.decode([i]) for i in ids]
    if len(ids) > 1:
        warnings.warn(
            f"Target {target!r} is {len(ids)} tokens {pieces}; using the first, "
            f"{pieces[0]!r} (id {ids[0]}). Pass a token id to choose another.",
            MultiTokenTargetWarning,
            stacklevel=4,  # the caller of analyze(), via resolve_targets
        )
    return ResolvedTarget(target, ids[0], pieces[0])


def _is_single(target: Any) -> bool:
    return isinstance(target, (str, numbers.Integral)) or not isinstance(target, Sequence)


def resolve_targets(
    tokenizer: Any,
    targets: Target | Sequence[Target] | Sequence[Sequence[Target]] | None,
    n_prompts: int,
    vocab_size: int,
    what: str = "targets",
) -> list[list[ResolvedTarget]]:
    """Targets per prompt, ``[prompt][target]``, all prompts with the same count.

    ``targets`` may be one target shared by all prompts, a flat list with one target
    per prompt, or a list (one per prompt) of lists of targets. ``what`` names them in
    errors (``"alternatives"``).
    """
    targets = plain(targets)  # NumPy arrays of token ids, as lists
    if targets is None:
        return [[] for _ in range(n_prompts)]
    if _is_single(targets):
        per_prompt: list[Sequence[Target]] = [[targets]] * n_prompts
    else:
        targets = list(targets)
        if len(targets) != n_prompts:
            one = what.removesuffix("s")
            raise InputError(
                f"Got {len(targets)} {what} for {n_prompts} prompts. Give one {one} for "
                f"all prompts, one per prompt, or a list of {what} per prompt."
            )
        if any(t is None for t in targets):
            raise InputError(
                f"{what}[{targets.index(None)}] is None: give a {what.removesuffix('s')} for "
                f"every prompt (or {what}=None for none)."
            )
        per_prompt = [[t] if _is_single(t) else list(t) for t in targets]
    counts = {len(t) for t in per_prompt}
    if len(counts) != 1 or 0 in counts:
        raise InputError(f"Every prompt needs the same number (at least one) of {what}.")
    resolved: list[list[ResolvedTarget]] = []
    for row in per_prompt:  # plain loops: the warning's stacklevel must not see comprehensions
        resolved.append([])
        for target in row:
            resolved[-1].append(resolve_target(tokenizer, target, vocab_size))
    return resolved


def parse_target(target: str) -> str | int:
    """A target (or alternative) as text, or a token id written as ``id:1234`` (the form
    of ``--target`` on the command line and of the explorer's target field)."""
    if target.startswith("id:"):
        try:
            return int(target[3:])
        except ValueError:
            raise InputError(f"Bad token id {target!r}: write it as id:1234.") from None
    return target
