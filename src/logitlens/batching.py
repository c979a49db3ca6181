"""Batching prompts of different lengths: neighbours in token length share a batch.

A left-padded batch computes every padding position in every layer, so batching
prompts of similar length is the cheapest way to run many of them. ``analyze`` and
``run_study`` both plan their batches here.
"""

from __future__ import annotations

from collections.abc import Sequence


def plan_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Item indices per batch: sorted by token length (ties by index), then chunked.

    Deterministic, so a resumed run plans exactly the batches of the first run.
    """
    order = sorted(range(len(lengths)), key=lambda index: (lengths[index], index))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
