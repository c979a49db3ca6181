"""Rank tests and bootstrap intervals, in NumPy: the statistics library of the studies.

- :func:`bootstrap_interval`: a statistic with a seeded percentile-bootstrap interval;
- :func:`mann_whitney_u`: two-sided Mann-Whitney U (normal approximation with tie and
  continuity correction);
- :func:`kruskal_wallis`: Kruskal-Wallis H (chi-square approximation with tie correction);
- :func:`wilcoxon_signed_rank`: paired Wilcoxon signed-rank (normal approximation with
  tie correction, zero differences dropped) and the matched-pairs rank-biserial
  correlation;
- :func:`cliffs_delta`: Cliff's delta, P(x > y) - P(x < y).

``inf`` is a valid value everywhere: a tie above every finite value (an item that never
decides). Each is checked against scipy in ``tests/test_ranktests.py``; the study
summary (:mod:`.stats`) uses them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..options import check_limit


@dataclass(frozen=True)
class Interval:
    """An estimate with a percentile bootstrap interval (NaN when there is no data)."""

    estimate: float
    low: float
    high: float

    def text(self, digits: int = 2) -> str:
        if math.isnan(self.estimate):
            return "-"
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def bootstrap_interval(
    values: Sequence[float] | np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray] = np.median,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """``statistic`` of ``values`` with a percentile bootstrap interval (resampling values).

    ``statistic`` must accept ``axis=-1`` (NumPy reductions do). The same ``seed`` gives
    the same interval.
    """
    n_boot, seed = check_limit(n_boot, "n_boot"), check_limit(seed, "seed")
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return Interval(math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    samples = values[rng.integers(0, values.size, size=(n_boot, values.size))]
    replicates = statistic(samples, axis=-1)
    tail = (1 - level) / 2
    low, high = np.quantile(replicates, [tail, 1 - tail])
    return Interval(float(statistic(values)), float(low), float(high))


def _rank(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (``inf`` is allowed)."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(values.size)
    start = 0
    while start < values.size:
        stop = start
        while stop + 1 < values.size and sorted_values[stop + 1] == sorted_values[start]:
            stop += 1
        ranks[order[start : stop + 1]] = (start + stop) / 2 + 1
        start = stop + 1
    return ranks


def _tie_sum(values: np.ndarray) -> float:
    """Sum of t^3 - t over groups of t tied values."""
    _, counts = np.unique(values, return_counts=True)
    return float((counts**3 - counts).sum())


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def _chi2_sf(x: float, df: int) -> float:
    """Survival function of the chi-square distribution for integer ``df`` (closed form)."""
    if x <= 0:
        return 1.0
    half = x / 2
    if df % 2 == 0:
        term, total = 1.0, 1.0
        for i in range(1, df // 2):
            term *= half / i
            total += term
        return min(1.0, math.exp(-half) * total)
    total = math.erfc(math.sqrt(half))
    term = math.sqrt(2 * x / math.pi) * math.exp(-half)
    for i in range(1, (df - 1) // 2 + 1):
        total += term
        term *= x / (2 * i + 1)
    return min(1.0, total)


def mann_whitney_u(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Two-sided Mann-Whitney U test: ``(U of x, p)``, normal approximation.

    Tie- and continuity-corrected, as ``scipy.stats.mannwhitneyu(x, y,
    method="asymptotic")``. ``inf`` values are ties above every finite value.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n1, n2 = x.size, y.size
    if n1 == 0 or n2 == 0:
        return math.nan, math.nan
    combined = np.concatenate([x, y])
    ranks = _rank(combined)
    u = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2)
    n = n1 + n2
    variance = n1 * n2 / 12 * ((n + 1) - _tie_sum(combined) / (n * (n - 1)))
    if variance <= 0:
        return u, 1.0
    mean = n1 * n2 / 2
    z = (abs(u - mean) - 0.5) / math.sqrt(variance)
    return u, min(1.0, 2 * _normal_sf(max(z, 0.0)))


def kruskal_wallis(*groups: Sequence[float]) -> tuple[float, int, float]:
    """Kruskal-Wallis H test with tie correction: ``(H, df, p)``, as ``scipy.stats.kruskal``."""
    arrays = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if len(arrays) < 2:
        return math.nan, 0, math.nan
    combined = np.concatenate(arrays)
    n = combined.size
    ranks = _rank(combined)
    h, start = 0.0, 0
    for array in arrays:
        h += ranks[start : start + array.size].sum() ** 2 / array.size
        start += array.size
    h = 12 / (n * (n + 1)) * h - 3 * (n + 1)
    correction = 1 - _tie_sum(combined) / (n**3 - n)
    df = len(arrays) - 1
    if correction <= 0:
        return math.nan, df, math.nan
    h /= correction
    return h, df, _chi2_sf(h, df)


def wilcoxon_signed_rank(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """Two-sided Wilcoxon signed-rank test of paired ``x``, ``y``: ``(W, p, rank-biserial)``.

    Zero differences are dropped and tied absolute differences share their average
    rank (variance corrected for ties); normal approximation without continuity
    correction, as ``scipy.stats.wilcoxon(x, y, method="asymptotic")``. ``W`` is the
    smaller signed-rank sum; the rank-biserial correlation is ``(R+ - R-) / (R+ + R-)``.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape:
        raise InputError(f"Paired values need equal lengths, got {x.size} and {y.size}.")
    differences = x - y
    differences = differences[differences != 0]
    n = differences.size
    if n == 0:
        return math.nan, math.nan, math.nan
    ranks = _rank(np.abs(differences))
    plus, minus = float(ranks[differences > 0].sum()), float(ranks[differences < 0].sum())
    variance = n * (n + 1) * (2 * n + 1) / 24 - _tie_sum(np.abs(differences)) / 48
    rank_biserial = (plus - minus) / (plus + minus)
    if variance <= 0:
        return min(plus, minus), 1.0, rank_biserial
    z = (plus - n * (n + 1) / 4) / math.sqrt(variance)
    return min(plus, minus), min(1.0, 2 * _normal_sf(abs(z))), rank_biserial


def cliffs_delta(x: Sequence[float], y: Sequence[float]) -> float:
    """Cliff's delta, P(x > y) - P(x < y), over all pairs (``inf`` compares as largest)."""
    x, y = np.asarray(x, dtype=float), np.sort(np.asarray(y, dtype=float))
    if x.size == 0 or y.size == 0:
        return math.nan
    below = np.searchsorted(y, x, side="left")  # y values < each x
    above = y.size - np.searchsorted(y, x, side="right")  # y values > each x
    return float((below.sum() - above.sum()) / (x.size * y.size))
