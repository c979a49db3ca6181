"""Fitting lenses with weights, and the text they are fitted on.

- :mod:`.config`: the options of a run (no torch needed to read them);
- :mod:`.tuned`: training the tuned lens (KL to the model's own output);
- :mod:`.corpus`: documents (the bundled Bible, files, model samples) and splits.

``train_tuned_lens`` is imported on first use, so reading the options stays light.
"""

from __future__ import annotations

from typing import Any

from .config import SCHEDULES, TrainingConfig

__all__ = [
    "SCHEDULES",
    "JacobianFitConfig",
    "TrainingConfig",
    "fit_jacobian_lens",
    "merge_jacobian_lenses",
    "train_tuned_lens",
]


def __getattr__(name: str) -> Any:
    if name == "train_tuned_lens":
        from .tuned import train_tuned_lens

        return train_tuned_lens
    if name in ("JacobianFitConfig", "fit_jacobian_lens", "merge_jacobian_lenses"):
        from . import jacobian

        return getattr(jacobian, name)
    raise AttributeError(f"module 'logitlens.training' has no attribute {name!r}")
