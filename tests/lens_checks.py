"""Shared checks for lenses with weights (tuned, Jacobian): run every metric, compare exactly."""

from __future__ import annotations

import numpy as np

import logitlens

PROMPTS = ["Why do electricians make good swimmers? Because they know the", "The river bank"]
METRICS = ["topk", "target", "target_rank", "entropy", "kl", "final_rank"]
COMPARED = ("top_ids", "top_probs", "target_prob", "target_rank", "entropy", "kl")


def run_every_metric(model, lens, prompts=PROMPTS, **kwargs) -> logitlens.LensResult:
    """``analyze`` with every metric, every position and the embedding layer."""
    return logitlens.analyze(
        model,
        prompts,
        lens=lens,
        metrics=METRICS,
        targets=" current",
        positions="all",
        include_embed=True,
        **kwargs,
    )


def assert_same_arrays(first, second) -> None:
    """The compared arrays exist in both results and are equal bit for bit."""
    for name in COMPARED:
        left, right = getattr(first, name), getattr(second, name)
        assert left is not None and right is not None, f"{name} was not computed"
        np.testing.assert_array_equal(left, right, err_msg=name)
