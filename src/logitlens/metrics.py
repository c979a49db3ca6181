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
    ranks = [_count_above(logits, chosen[..., t : t + 1]) for t in range(chosen.shape[-1])]
    return torch.stack(ranks, -1) + 1


_INT16_SAFE = 2**15 - 1


def _count_above(logits: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """How many entries of each row exceed ``threshold`` ``[..., 1]``, as int64.

    Summing booleans as int16 is several times faster on CPUs than the default int64
    accumulation; vocabulary pieces shorter than 2**15 cannot overflow it.
    """
    above = (logits > threshold).view(torch.uint8)
    pieces = above.split(_INT16_SAFE, dim=-1)
    return sum(piece.sum(-1, dtype=torch.int16).long() for piece in pieces)
