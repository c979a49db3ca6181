"""Fitting lenses with weights, and the text they are fitted on.

- :mod:`.tuned`: training the tuned lens (KL to the model's own output);
- :mod:`.jacobian`: fitting the Jacobian lens (average input-output Jacobians);
- :mod:`.corpus`: documents (the bundled Bible, files, model samples) and splits.
"""

from .jacobian import JacobianFitConfig, fit_jacobian_lens, merge_jacobian_lenses
from .tuned import SCHEDULES, TrainingConfig, train_tuned_lens

__all__ = [
    "SCHEDULES",
    "JacobianFitConfig",
    "TrainingConfig",
    "fit_jacobian_lens",
    "merge_jacobian_lenses",
    "train_tuned_lens",
]
