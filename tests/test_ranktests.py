"""The rank tests and the bootstrap against scipy and brute force (studies/ranktests.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from logitlens.errors import InputError
from logitlens.studies.ranktests import (
    bootstrap_interval,
    cliffs_delta,
    kruskal_wallis,
    mann_whitney_u,
    wilcoxon_signed_rank,
)

RNG = np.random.default_rng(20240601)
# Fixed data with many ties (depths are multiples of 1/n_layers), plus "never" (inf).
GROUP_A = np.concatenate([RNG.integers(1, 31, 40) / 30, [math.inf] * 6])
GROUP_B = np.concatenate([RNG.integers(8, 31, 35) / 30, [math.inf] * 2])
GROUP_C = RNG.normal(0.6, 0.1, 25)

# scipy ranks inf like any value; a finite stand-in above every depth ranks the same.
_LATE = 99.0


def _finite(values: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(values), values, _LATE)


@pytest.mark.parametrize(
    ("x", "y"), [(GROUP_A, GROUP_B), (GROUP_B, GROUP_C), (GROUP_C, GROUP_A), ([1, 2], [3, 4, 5])]
)
def test_mann_whitney_matches_scipy(x, y):
    u, p = mann_whitney_u(x, y)
    expected = scipy_stats.mannwhitneyu(
        _finite(np.asarray(x, float)), _finite(np.asarray(y, float)), method="asymptotic"
    )
    assert u == pytest.approx(expected.statistic, abs=1e-9)
    assert p == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(
    "groups",
    [
        (GROUP_A, GROUP_B, GROUP_C),
        (GROUP_A, GROUP_B),
        (GROUP_A, GROUP_B, GROUP_C, GROUP_C + 0.1),  # df 3: the odd closed form
        (GROUP_A, GROUP_B, GROUP_C, GROUP_C + 0.1, GROUP_B - 0.2),  # df 4
    ],
)
def test_kruskal_matches_scipy(groups):
    h, df, p = kruskal_wallis(*groups)
    expected = scipy_stats.kruskal(*(_finite(g) for g in groups))
    assert df == len(groups) - 1
    assert h == pytest.approx(expected.statistic, rel=1e-12)
    assert p == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-15)


def test_cliffs_delta_equals_brute_force_and_rank_biserial():
    for x, y in [(GROUP_A, GROUP_B), (GROUP_C, GROUP_A), (GROUP_B, GROUP_B)]:
        pairs = np.sign(np.subtract.outer(_finite(x), _finite(y)))
        assert cliffs_delta(x, y) == pytest.approx(pairs.mean(), abs=1e-12)
        u, _ = mann_whitney_u(x, y)
        assert cliffs_delta(x, y) == pytest.approx(2 * u / (len(x) * len(y)) - 1, abs=1e-12)
    assert cliffs_delta([2, 3], [0, 1]) == 1.0
    assert math.isnan(cliffs_delta([], [1]))


# Paired data with zero differences and tied absolute differences (layers are integers).
PAIRED_X = np.concatenate([RNG.integers(20, 31, 60), [30] * 8, RNG.normal(0.5, 0.2, 12)])
PAIRED_Y = np.concatenate([RNG.integers(15, 31, 60), [30] * 8, RNG.normal(0.4, 0.2, 12)])


@pytest.mark.parametrize(
    ("x", "y"),
    [
        (PAIRED_X, PAIRED_Y),
        (PAIRED_Y, PAIRED_X),
        (PAIRED_X[:68], PAIRED_Y[:68]),  # integers only: many ties and zeros
        (PAIRED_X[-12:], PAIRED_Y[-12:]),  # continuous, small
        ([1.0, 2, 3, 4, 5, 6, 7, 8], [2.0, 2, 1, 1, 3, 9, 1, 0]),
    ],
)
def test_wilcoxon_matches_scipy(x, y):
    w, p, rank_biserial = wilcoxon_signed_rank(x, y)
    expected = scipy_stats.wilcoxon(x, y, zero_method="wilcox", method="asymptotic")
    assert w == pytest.approx(expected.statistic, abs=1e-9)
    assert p == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-15)
    # Rank-biserial by brute force: signed ranks of the non-zero differences.
    d = np.asarray(x, float) - np.asarray(y, float)
    d = d[d != 0]
    ranks = scipy_stats.rankdata(np.abs(d))
    assert rank_biserial == pytest.approx(
        (ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum(), abs=1e-12
    )


def test_wilcoxon_edge_cases():
    assert all(math.isnan(v) for v in wilcoxon_signed_rank([1, 2], [1, 2]))
    with pytest.raises(InputError, match="equal lengths"):
        wilcoxon_signed_rank([1, 2], [1])


def test_bootstrap_seeded_reproducible_and_correct():
    values = RNG.normal(size=60)
    first = bootstrap_interval(values, n_boot=500, seed=3)
    assert bootstrap_interval(values, n_boot=500, seed=3) == first
    # Medians of resamples are few distinct values; means show another seed's draws.
    assert bootstrap_interval(values, np.mean, n_boot=500, seed=4) != bootstrap_interval(
        values, np.mean, n_boot=500, seed=3
    )
    assert first.estimate == np.median(values) and first.low < first.estimate < first.high
    # A plain reimplementation: the same draws, one resample at a time.
    rng = np.random.default_rng(3)
    draws = rng.integers(0, values.size, size=(500, values.size))
    medians = [np.median(values[row]) for row in draws]
    np.testing.assert_allclose((first.low, first.high), np.quantile(medians, [0.025, 0.975]))
    # Coverage against scipy's percentile bootstrap on the same data: close intervals.
    scipy_ci = scipy_stats.bootstrap(
        (values,), np.mean, n_resamples=4000, method="percentile", random_state=0
    ).confidence_interval
    ours = bootstrap_interval(values, np.mean, n_boot=4000, seed=0)
    assert ours.low == pytest.approx(scipy_ci.low, abs=0.05)
    assert ours.high == pytest.approx(scipy_ci.high, abs=0.05)
    assert math.isnan(bootstrap_interval([]).estimate)
