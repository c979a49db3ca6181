"""Statistics of a study: decision depths with bootstrap intervals, rank tests, effect sizes.

The decision depth of an item is the normalised depth ``(layer + 1) / n_layers`` of the
first layer where its target is the lens's top-1 token. Items that never get there are
kept, not dropped: for the rank tests they count as deciding after the last layer (a tie
above every depth), and each group reports the share that ever reaches top-1. Medians
and their intervals are over the items that do reach it (``depth_top1``), and over the
items whose target ever exceeds the threshold (``depth_above``).

Intervals are percentile bootstraps over items (seeded, so reproducible); groups are
compared by Mann-Whitney U and Kruskal-Wallis H with Cliff's delta as effect size (for
decision depth, positive means the first group decides later). The tests themselves
live in :mod:`.ranktests`.

Puns and literal controls linked by ``pair`` (the same target word, two senses) are
also compared pair by pair: Wilcoxon signed-rank on decision depth and on the final
target probability, with the matched-pairs rank-biserial correlation as effect size and
the mean paired difference with a bootstrap interval over pairs. For these paired depths
an item that never reaches top-1 decides one layer after the last.

Example:
    >>> summary = summarize_study(StudyResult.load("runs/smollm2"))
    >>> summary.to_dataframe()
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from ..options import check_limit
from ..views import InlineView
from .ranktests import (
    Interval,
    bootstrap_interval,
    cliffs_delta,
    kruskal_wallis,
    mann_whitney_u,
    wilcoxon_signed_rank,
)
from .run import StudyResult

TESTED_CATEGORIES = ("pun", "literal", "fact")
"""Categories compared pairwise and by Kruskal-Wallis (when the study has them)."""
CULTURAL_TAG = "cultural"
TRAJECTORY_METRICS = (
    "target_prob",
    "logit_diff",
    "entropy",
    "attention_target",
    "mlp_target",
    "attention_diff",
    "mlp_diff",
)
"""Layer columns averaged per group (the attention / MLP ones need ``attribution=True``)."""
COMPONENT_COLUMNS = {
    ("attention", "target"): "attention_target",
    ("mlp", "target"): "mlp_target",
    ("attention", "target - alternative"): "attention_diff",
    ("mlp", "target - alternative"): "mlp_diff",
}
"""(part, measure) -> the study's layer column holding its direct logit attribution."""
GROUP_INTERVALS = (
    "share_top1",
    "depth_top1",
    "share_above",
    "depth_above",
    "says_target",
    "said_depth_top1",
    "said_depth_stable",
)
"""The :class:`GroupSummary` intervals, in table order (the ``said`` ones need generate=N)."""


@dataclass(frozen=True)
class GroupSummary:
    """One group of items (a category, or the pun items with / without a tag)."""

    group: str
    n: int
    share_top1: Interval
    """Share of items whose target is top-1 at some layer."""
    depth_top1: Interval
    """Median decision depth over the items that reach top-1."""
    share_above: Interval
    depth_above: Interval
    """Median depth of the first layer above the threshold, over the items that get there."""
    final_prob: float
    """Mean target probability at the last layer (the model's own prediction)."""
    says_target: Interval | None = None
    """Share of items whose first greedily generated token is the target (``generate=N``)."""
    said_depth_top1: Interval | None = None
    """Median decision depth (``first_top1``) of the first token the model says."""
    said_depth_stable: Interval | None = None
    """Median depth from which that token stays top-1 (``stable_top1``)."""


@dataclass(frozen=True)
class RankTest:
    """Two groups compared by Mann-Whitney U, with Cliff's delta as effect size."""

    first: str
    second: str
    n_first: int
    n_second: int
    u: float
    p_value: float
    cliffs_delta: float


@dataclass(frozen=True)
class KruskalTest:
    """Several groups compared at once by Kruskal-Wallis H."""

    groups: tuple[str, ...]
    h: float
    df: int
    p_value: float


@dataclass(frozen=True)
class PairedTest:
    """Paired items (a pun and its literal control) compared by Wilcoxon signed-rank."""

    metric: str
    """``"decision depth"`` or ``"final P(target)"``."""
    first: str
    second: str
    n_pairs: int
    n_first_higher: int
    """Pairs where the first item's value is higher (for depth: it decides later)."""
    n_second_higher: int
    n_tied: int
    w: float
    """The smaller of the signed-rank sums (scipy's two-sided statistic)."""
    p_value: float
    rank_biserial: float
    """(R+ - R-) / (R+ + R-): > 0 when the first item's value tends to be higher."""
    mean_difference: Interval
    """Mean of first - second over pairs, with a bootstrap interval over pairs."""


@dataclass(frozen=True)
class ComponentSummary:
    """What one part (attention or MLP, summed over layers) writes, over a group's items.

    ``total`` is the mean over items of the part's direct contribution to the measure
    (the target's final logit, or target minus alternative), with a bootstrap interval;
    ``peak_depth`` the median normalised depth of the layer where that part adds most.
    """

    group: str
    part: str
    measure: str
    n: int
    total: Interval
    peak_depth: Interval


@dataclass
class Trajectory:
    """Mean of one metric per layer over a group's items, with a bootstrap band."""

    group: str
    metric: str
    depth: np.ndarray
    """Normalised depth of each layer ``[layer]``."""
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


@dataclass
class StudySummary(InlineView):
    """Everything ``logitlens study summary`` prints, plots and reports."""

    model_name: str
    lens: str
    n_layers: int
    n_items: int
    threshold: float
    seed: int
    n_boot: int
    groups: list[GroupSummary]
    tests: list[RankTest]
    kruskal: KruskalTest | None
    trajectories: list[Trajectory] = field(default_factory=list)
    decision_depths: dict[str, np.ndarray] = field(default_factory=dict)
    """Per group, every item's decision depth (``inf`` for never top-1): the distribution."""
    paired: list[PairedTest] = field(default_factory=list)
    """Puns against their literal controls (``pair``), when the study has both; with an
    attribution also on each part's direct contribution (summed over layers)."""
    components: list[ComponentSummary] = field(default_factory=list)
    """With an attribution: per group, part and measure, what the part writes."""
    component_tests: list[PairedTest] = field(default_factory=list)
    """With an attribution: MLP against attention within each group, item by item."""

    def components_dataframe(self) -> pd.DataFrame:
        """One row per group, part and measure: mean total and peak depth, with intervals."""
        rows = []
        for item in self.components:
            row: dict[str, Any] = {
                "group": item.group,
                "part": item.part,
                "measure": item.measure,
                "n": item.n,
            }
            for name in ("total", "peak_depth"):
                interval = getattr(item, name)
                row.update(
                    {
                        name: interval.estimate,
                        f"{name}_low": interval.low,
                        f"{name}_high": interval.high,
                    }
                )
            rows.append(row)
        return pd.DataFrame(rows)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per group: n, shares and median depths with their intervals."""
        rows = []
        for group in self.groups:
            row: dict[str, Any] = {"group": group.group, "n": group.n}
            for name in GROUP_INTERVALS:
                interval = getattr(group, name)
                if interval is None:
                    continue
                row[name] = interval.estimate
                row[f"{name}_low"] = interval.low
                row[f"{name}_high"] = interval.high
            row["final_prob"] = group.final_prob
            rows.append(row)
        return pd.DataFrame(rows)

    def tests_dataframe(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(test) for test in self.tests])

    def paired_dataframe(self) -> pd.DataFrame:
        """One row per paired comparison, the mean difference's interval in three columns."""
        rows = []
        for test in self.paired:
            row = asdict(test)
            difference = row.pop("mean_difference")
            row.update(
                mean_difference=difference["estimate"],
                mean_difference_low=difference["low"],
                mean_difference_high=difference["high"],
            )
            rows.append(row)
        return pd.DataFrame(rows)

    def trajectory(self, group: str, metric: str = "target_prob") -> Trajectory:
        for item in self.trajectories:
            if item.group == group and item.metric == metric:
                return item
        raise InputError(f"No {metric!r} trajectory for group {group!r} in this summary.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: numbers only (NaN and inf as null)."""
        return _jsonable(
            {
                "model": self.model_name,
                "lens": self.lens,
                "n_layers": self.n_layers,
                "n_items": self.n_items,
                "threshold": self.threshold,
                "seed": self.seed,
                "n_boot": self.n_boot,
                "groups": [asdict(group) for group in self.groups],
                "tests": [asdict(test) for test in self.tests],
                "kruskal": None if self.kruskal is None else asdict(self.kruskal),
                "paired": [asdict(test) for test in self.paired],
                "components": [asdict(item) for item in self.components],
                "component_tests": [asdict(test) for test in self.component_tests],
                "trajectories": [
                    {
                        "group": t.group,
                        "metric": t.metric,
                        "depth": t.depth.tolist(),
                        "mean": t.mean.tolist(),
                        "low": t.low.tolist(),
                        "high": t.high.tolist(),
                    }
                    for t in self.trajectories
                ],
            }
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


# ----- a study's summary --------------------------------------------------------------------


def study_groups(items: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row masks of ``items`` per group: each category, then the pun items with / without
    the cultural tag (when both kinds exist)."""
    groups = {str(c): (items.category == c).to_numpy() for c in sorted(items.category.unique())}
    if "pun" in groups:
        cultural = items.tags.map(lambda tags: CULTURAL_TAG in list(tags)).to_numpy()
        pun = groups["pun"]
        if (pun & cultural).any() and (pun & ~cultural).any():
            groups["pun (cultural)"] = pun & cultural
            groups["pun (other)"] = pun & ~cultural
    return groups


def decision_depths(items: pd.DataFrame) -> np.ndarray:
    """Each item's ``depth_top1``, with ``inf`` where the target never becomes top-1."""
    return items.depth_top1.astype(float).fillna(math.inf).to_numpy()


def summarize_study(
    study: StudyResult | str | Path, *, seed: int = 0, n_boot: int = 2000, level: float = 0.95
) -> StudySummary:
    """Per group: shares and median depths with bootstrap intervals; rank tests; trajectories.

    ``study`` is a :class:`StudyResult` or its directory.
    """
    n_boot, seed = check_limit(n_boot, "n_boot"), check_limit(seed, "seed")
    study = _study(study)
    items = study.items
    if items.empty:
        raise InputError(
            f"The study in {study.out_dir} has no finished items yet; run it (it resumes)."
        )
    groups = study_groups(items)
    depths_all = decision_depths(items)
    above_all = items.depth_above.astype(float).to_numpy()
    generated = int(study.manifest["options"].get("generate", 0)) > 0
    summaries, depth_lists = [], {}
    for offset, (name, mask) in enumerate(groups.items()):
        depths, above = depths_all[mask], above_all[mask]
        group_seed = seed + 7919 * offset  # distinct, reproducible streams per group
        boot = {"n_boot": n_boot, "level": level}
        said = _said_intervals(items[mask], group_seed + 4, boot) if generated else {}
        summaries.append(
            GroupSummary(
                group=name,
                n=int(mask.sum()),
                share_top1=bootstrap_interval(
                    np.isfinite(depths), np.mean, seed=group_seed, **boot
                ),
                depth_top1=bootstrap_interval(
                    depths[np.isfinite(depths)], seed=group_seed + 1, **boot
                ),
                share_above=bootstrap_interval(
                    np.isfinite(above), np.mean, seed=group_seed + 2, **boot
                ),
                depth_above=bootstrap_interval(
                    above[np.isfinite(above)], seed=group_seed + 3, **boot
                ),
                final_prob=float(items.final_prob[mask].mean()),
                **said,
            )
        )
        depth_lists[name] = depths
    tests = _rank_tests(depth_lists)
    present = [c for c in TESTED_CATEGORIES if c in depth_lists]
    kruskal = None
    if len(present) >= 2:
        h, df, p = kruskal_wallis(*(depth_lists[c] for c in present))
        kruskal = KruskalTest(groups=tuple(present), h=h, df=df, p_value=p)
    pairs = pun_literal_pairs(items)
    parts = component_totals(study)
    paired = _paired_tests(items, pairs, study.n_layers, seed + 15485863, n_boot, level)
    pun_literal, within = _component_tests(parts, groups, pairs, seed + 32452843, n_boot, level)
    return StudySummary(
        model_name=study.model_name,
        lens=str(study.manifest["lens"]["name"]),
        n_layers=study.n_layers,
        n_items=len(items),
        threshold=study.threshold,
        seed=seed,
        n_boot=n_boot,
        groups=summaries,
        tests=tests,
        kruskal=kruskal,
        trajectories=_trajectories(study, groups, seed, n_boot, level),
        decision_depths=depth_lists,
        paired=paired + pun_literal,
        component_tests=within,
        components=_component_summaries(
            parts, groups, study.n_layers, seed + 49979687, n_boot, level
        ),
    )


def component_totals(study: StudyResult) -> dict[tuple[str, str], np.ndarray]:
    """(part, measure) -> ``[item, layer]`` direct contributions, for the columns present.

    Items in the order of ``study.items``; a row is NaN where the item has none (a
    target minus alternative without an alternative). Empty without an attribution.
    """
    layers, n_items = study.layers, len(study.items)
    found = {}
    for key, column in COMPONENT_COLUMNS.items():
        if column not in layers or layers[column].isna().all():
            continue
        found[key] = layers[column].astype(float).to_numpy().reshape(n_items, study.n_layers)
    return found


def _component_summaries(
    parts: dict[tuple[str, str], np.ndarray],
    groups: dict[str, np.ndarray],
    n_layers: int,
    seed: int,
    n_boot: int,
    level: float,
) -> list[ComponentSummary]:
    summaries = []
    depth = (np.arange(n_layers) + 1) / n_layers
    for offset, ((part, measure), matrix) in enumerate(parts.items()):
        for group_offset, (name, mask) in enumerate(groups.items()):
            values = matrix[mask]
            values = values[~np.isnan(values).any(axis=1)]
            stream = seed + 1009 * offset + 7919 * group_offset
            boot = {"n_boot": n_boot, "level": level}
            summaries.append(
                ComponentSummary(
                    group=name,
                    part=part,
                    measure=measure,
                    n=len(values),
                    total=bootstrap_interval(values.sum(axis=1), np.mean, seed=stream, **boot),
                    peak_depth=bootstrap_interval(
                        depth[values.argmax(axis=1)] if len(values) else values[:, 0],
                        seed=stream + 1,
                        **boot,
                    ),
                )
            )
    return summaries


def _component_tests(
    parts: dict[tuple[str, str], np.ndarray],
    groups: dict[str, np.ndarray],
    pairs: list[tuple[int, int]],
    seed: int,
    n_boot: int,
    level: float,
) -> tuple[list[PairedTest], list[PairedTest]]:
    """Pun against literal on each part's total; MLP against attention within each group."""
    tests, within = [], []
    totals = {key: matrix.sum(axis=1) for key, matrix in parts.items()}
    if pairs:
        puns, literals = (np.array(side) for side in zip(*pairs, strict=True))
        for offset, ((part, measure), values) in enumerate(totals.items()):
            first, second = values[puns], values[literals]
            keep = ~(np.isnan(first) | np.isnan(second))
            tests.append(
                _paired(
                    f"{part} -> {measure}",
                    "pun",
                    "literal",
                    first[keep],
                    second[keep],
                    seed + offset,
                    n_boot,
                    level,
                )
            )
    for measure in ("target", "target - alternative"):
        if ("mlp", measure) not in totals:
            continue
        mlp, attention = totals[("mlp", measure)], totals[("attention", measure)]
        for offset, (name, mask) in enumerate(groups.items()):
            keep = mask & ~(np.isnan(mlp) | np.isnan(attention))
            if keep.sum() == 0:
                continue
            within.append(
                _paired(
                    f"{name}: MLP vs attention -> {measure}",
                    "MLP",
                    "attention",
                    mlp[keep],
                    attention[keep],
                    seed + 101 + offset,
                    n_boot,
                    level,
                )
            )
    return tests, within


def _paired(
    metric: str,
    first_name: str,
    second_name: str,
    first: np.ndarray,
    second: np.ndarray,
    seed: int,
    n_boot: int,
    level: float,
    scale: float = 1.0,
) -> PairedTest:
    """Wilcoxon signed-rank of ``first`` against ``second`` (paired), with the mean
    difference (times ``scale``: layers to depth) and its bootstrap interval."""
    w, p, rank_biserial = wilcoxon_signed_rank(first, second)
    return PairedTest(
        metric=metric,
        first=first_name,
        second=second_name,
        n_pairs=len(first),
        n_first_higher=int((first > second).sum()),
        n_second_higher=int((first < second).sum()),
        n_tied=int((first == second).sum()),
        w=w,
        p_value=p,
        rank_biserial=rank_biserial,
        mean_difference=bootstrap_interval(
            (first - second) * scale, np.mean, n_boot=n_boot, seed=seed, level=level
        ),
    )


def _said_intervals(items: pd.DataFrame, seed: int, boot: dict[str, Any]) -> dict[str, Interval]:
    """What a group's items say when generated: share saying the target, decision depths."""
    says = items.says_target.astype(float).to_numpy()
    says = says[~np.isnan(says)]
    found = {"says_target": bootstrap_interval(says, np.mean, seed=seed, **boot)}
    for offset, name in enumerate(("said_depth_top1", "said_depth_stable"), start=1):
        depths = items[name].astype(float).to_numpy()
        found[name] = bootstrap_interval(depths[np.isfinite(depths)], seed=seed + offset, **boot)
    return found


def pun_literal_pairs(items: pd.DataFrame) -> list[tuple[int, int]]:
    """Row positions ``(pun, literal)`` of the items linked by ``pair`` (either way round)
    whose partner is in the study, in the order of the pun rows."""
    if "pair" not in items:
        return []
    position = {item_id: index for index, item_id in enumerate(items.id)}
    category = items.category.to_numpy()
    found: set[tuple[int, int]] = set()
    for index, partner in enumerate(items.pair):
        other = position.get(partner) if isinstance(partner, str) else None
        if other is None:
            continue
        kinds = (category[index], category[other])
        if kinds == ("pun", "literal"):
            found.add((index, other))
        elif kinds == ("literal", "pun"):
            found.add((other, index))
    return sorted(found)


def _paired_tests(
    items: pd.DataFrame,
    pairs: list[tuple[int, int]],
    n_layers: int,
    seed: int,
    n_boot: int,
    level: float,
) -> list[PairedTest]:
    if not pairs:
        return []
    puns, literals = (np.array(side) for side in zip(*pairs, strict=True))
    # Decision layers as integers (never: one after the last), so that equal differences
    # tie exactly; depth differences are layer differences / n_layers.
    layers = items.first_layer_top1.astype(float).fillna(n_layers).to_numpy()
    final = items.final_prob.astype(float).to_numpy()
    return [
        _paired(
            metric,
            "pun",
            "literal",
            values[puns],
            values[literals],
            seed + offset,
            n_boot,
            level,
            scale,
        )
        for offset, (metric, values, scale) in enumerate(
            (("decision depth", layers, 1 / n_layers), ("final P(target)", final, 1.0))
        )
    ]


def _rank_tests(depths: dict[str, np.ndarray]) -> list[RankTest]:
    pairs = [(a, b) for a, b in combinations(TESTED_CATEGORIES, 2) if a in depths and b in depths]
    if "pun (cultural)" in depths:
        pairs.append(("pun (cultural)", "pun (other)"))
    tests = []
    for first, second in pairs:
        u, p = mann_whitney_u(depths[first], depths[second])
        tests.append(
            RankTest(
                first=first,
                second=second,
                n_first=depths[first].size,
                n_second=depths[second].size,
                u=u,
                p_value=p,
                cliffs_delta=cliffs_delta(depths[first], depths[second]),
            )
        )
    return tests


def _trajectories(
    study: StudyResult, groups: dict[str, np.ndarray], seed: int, n_boot: int, level: float
) -> list[Trajectory]:
    """Mean of each metric per layer and group, with a bootstrap band over items."""
    layers = study.layers
    n_layers = study.n_layers
    ids = study.items.id.to_numpy()
    depth = (np.arange(n_layers) + 1) / n_layers
    trajectories = []
    for metric in TRAJECTORY_METRICS:
        if metric not in layers or layers[metric].isna().all():
            continue  # an attribution column of a study run without one
        # [item, layer], items in the order of study.items (both tables sort by id).
        matrix = layers[metric].astype(float).to_numpy().reshape(len(ids), n_layers)
        for offset, (name, mask) in enumerate(groups.items()):
            values = matrix[mask]
            values = values[~np.isnan(values).any(axis=1)]
            if len(values) == 0:
                continue
            rng = np.random.default_rng(seed + 104729 * offset)
            samples = rng.integers(0, len(values), size=(n_boot, len(values)))
            # One replicate at a time keeps memory at n_boot x layers, not x items.
            replicates = np.stack([values[s].mean(axis=0) for s in samples])
            tail = (1 - level) / 2
            low, high = np.quantile(replicates, [tail, 1 - tail], axis=0)
            trajectories.append(Trajectory(name, metric, depth, values.mean(axis=0), low, high))
    return trajectories


# ----- several models -----------------------------------------------------------------------


@dataclass
class StudyComparison:
    """Several studies (models) on one normalised-depth axis."""

    summaries: list[StudySummary]

    def to_dataframe(self) -> pd.DataFrame:
        """One row per model and group, with the model's depth in layers."""
        frames = []
        for summary in self.summaries:
            frame = summary.to_dataframe()
            frame.insert(0, "n_layers", summary.n_layers)
            frame.insert(0, "model", summary.model_name)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    def to_dict(self) -> dict[str, Any]:
        return {"studies": [summary.to_dict() for summary in self.summaries]}


def _study(study: Any) -> StudyResult:
    """A study result, loaded from its directory when given a path."""
    if isinstance(study, (str, Path)):
        return StudyResult.load(study)
    if not isinstance(study, StudyResult):
        raise InputError(
            f"Expected a study (run_study's result, or its directory), not "
            f"{type(study).__name__}: summarize_study(StudyResult.load('study_dir'))."
        )
    return study


def compare_studies(
    studies: Sequence[StudyResult | str | Path], *, seed: int = 0, n_boot: int = 2000
) -> StudyComparison:
    """Summaries of several studies (results or directories), for a table and a plot on
    normalised depth."""
    if len(studies) < 1:
        raise InputError("Give at least one study directory to compare.")
    check_limit(n_boot, "n_boot")
    check_limit(seed, "seed")
    loaded = [_study(study) for study in studies]
    return StudyComparison([summarize_study(s, seed=seed, n_boot=n_boot) for s in loaded])
