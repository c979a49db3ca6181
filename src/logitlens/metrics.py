"""Reductions of lens logits to the small numbers users look at.

Each function takes logits (or log-probabilities) with the vocabulary last and
returns one value per row; they run inside the trace, so only their outputs travel.
"""

from __future__ import annotations

import torch

METRICS = ("topk", "target", "entropy", "kl", "final_rank")
"""Metric names accepted by ``analyze(metrics=...)``.

- ``topk``: the k most probable tokens and their probabilities;
- ``target``: probability, logit and rank of the target token(s);
- ``entropy``: entropy of the lens distribution, in nats;
- ``kl``: KL(final-layer distribution || lens distribution), in nats;
- ``final_rank``: rank of the model's own top-1 prediction under the lens.
"""


def entropy(logprobs: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of distributions given as log-probabilities ``[..., vocab]``."""
    return -(logprobs.exp() * logprobs).sum(-1)


def kl_divergence(reference_logprobs: torch.Tensor, logprobs: torch.Tensor) -> torch.Tensor:
    """KL(reference || lens) in nats; both ``[..., vocab]`` log-probabilities."""
    return (reference_logprobs.exp() * (reference_logprobs - logprobs)).sum(-1)


def token_rank(logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """1-based rank of ``token_ids`` ``[..., T]`` among ``logits`` ``[..., vocab]``.

    Rank 1 is the most likely token; ties are resolved in the token's favour.
    """
    chosen = logits.gather(-1, token_ids)
    return (logits.unsqueeze(-2) > chosen.unsqueeze(-1)).sum(-1) + 1
