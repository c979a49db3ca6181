"""Metrics against plain, slow computations (float64 loops over the vocabulary)."""

from __future__ import annotations

import math

import pytest
import torch

from logitlens.metrics import entropy, kl_divergence, token_rank


@pytest.mark.parametrize("vocab", [7, 40_000, 70_000])
def test_token_rank_counts_strictly_larger_logits(vocab):
    generator = torch.Generator().manual_seed(vocab)
    logits = torch.randn(3, 4, vocab, generator=generator)
    logits[0, 0, :100] = 5.0  # ties: rank resolved in the token's favour
    token_ids = torch.randint(0, vocab, (3, 4, 2), generator=generator)
    token_ids[0, 0, 0] = 0
    ranks = token_rank(logits, token_ids)
    for index in torch.cartesian_prod(torch.arange(3), torch.arange(4), torch.arange(2)):
        i, j, t = index.tolist()
        chosen = logits[i, j, token_ids[i, j, t]]
        expected = int((logits[i, j] > chosen).sum()) + 1
        assert ranks[i, j, t] == expected
    assert ranks[0, 0, 0] == 1
    assert ranks.dtype == torch.int64


def test_rank_of_the_largest_and_smallest_logit():
    logits = torch.tensor([[0.5, 3.0, -2.0, 1.0]])
    assert token_rank(logits, torch.tensor([[1, 2]])).tolist() == [[1, 4]]


def test_entropy_and_kl_match_their_definitions():
    generator = torch.Generator().manual_seed(0)
    p = torch.randn(5, 11, generator=generator, dtype=torch.float64).log_softmax(-1)
    q = torch.randn(5, 11, generator=generator, dtype=torch.float64).log_softmax(-1)
    for row in range(5):
        probs_p, probs_q = p[row].exp().tolist(), q[row].exp().tolist()
        expected_entropy = -sum(a * math.log(a) for a in probs_p)
        expected_kl = sum(a * math.log(a / b) for a, b in zip(probs_p, probs_q, strict=True))
        assert entropy(p)[row].item() == pytest.approx(expected_entropy, rel=1e-9)
        assert kl_divergence(p, q)[row].item() == pytest.approx(expected_kl, rel=1e-9)
    assert torch.allclose(kl_divergence(p, p), torch.zeros(5, dtype=torch.float64))
    uniform = torch.full((1, 8), -math.log(8), dtype=torch.float64)
    assert entropy(uniform).item() == pytest.approx(math.log(8))
