"""Fitting lenses with weights, and the text they are fitted on.

- :mod:`.tuned`: training the tuned lens (KL to the model's own output);
- :mod:`.corpus`: documents (the bundled Bible, files, model samples) and splits.
"""

from .tuned import SCHEDULES, TrainingConfig, train_tuned_lens

__all__ = ["SCHEDULES", "TrainingConfig", "train_tuned_lens"]
