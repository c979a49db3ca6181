"""Study summaries (the planted order, paired tests, comparisons), their plots and the report."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from test_report import Chromium, _open, browser  # noqa: F401  (fixture)

from logitlens.pictures import plots
from logitlens.pictures.study_report import render_study_report, write_study_report
from logitlens.studies.run import StudyResult
from logitlens.studies.stats import compare_studies, pun_literal_pairs, summarize_study

# ----- summaries of a (synthetic) study ---------------------------------------------------


def _study(
    n_layers: int = 10, seed: int = 0, name: str = "model-a", generate: int = 0
) -> StudyResult:
    """A study with known decision depths: puns late, facts early, literals between.

    Pun ``i`` and literal ``i`` are a pair; puns have a lower final probability. With
    ``generate``, the model "says" the target for every second fact and no pun.
    """
    rng = np.random.default_rng(seed)
    plan = {"pun": (0.8, 30), "literal": (0.5, 30), "fact": (0.3, 30)}
    item_rows, layer_rows = [], []
    for category, (centre, n) in plan.items():
        for index in range(n):
            item_id = f"{category}-{index:03d}"
            top1 = int(np.clip(round(rng.normal(centre, 0.1) * n_layers), 0, n_layers - 1))
            never = category == "pun" and index % 5 == 0
            probs = np.where(np.arange(n_layers) >= top1, 0.6, 0.01)
            item_rows.append(
                {
                    "id": item_id,
                    "category": category,
                    "tags": ["cultural"] if category == "pun" and index % 2 else [],
                    "pair": {"pun": f"literal-{index:03d}", "literal": f"pun-{index:03d}"}.get(
                        category
                    ),
                    "first_layer_top1": None if never else top1,
                    "depth_top1": None if never else (top1 + 1) / n_layers,
                    "depth_above": (top1 + 1) / n_layers,
                    "final_prob": rng.uniform(0.1, 0.4) if category == "pun" else 0.6,
                }
            )
            if generate:
                said_top1 = None if category == "pun" and index % 3 == 0 else top1
                item_rows[-1].update(
                    says_target=category == "fact" and index % 2 == 0,
                    said_first_top1=said_top1,
                    said_depth_top1=None if said_top1 is None else (said_top1 + 1) / n_layers,
                    said_depth_stable=None if said_top1 is None else 1.0,
                )
            for layer in range(n_layers):
                layer_rows.append(
                    {
                        "id": item_id,
                        "category": category,
                        "layer": layer,
                        "depth": (layer + 1) / n_layers,
                        "target_prob": probs[layer],
                        "logit_diff": float(layer - top1),
                        "entropy": 3.0,
                    }
                )
    items = pd.DataFrame(item_rows).sort_values("id").reset_index(drop=True)
    layers = pd.DataFrame(layer_rows).sort_values(["id", "layer"]).reset_index(drop=True)
    manifest = {
        "model": {"name": name, "n_layers": n_layers},
        "lens": {"name": "logit"},
        "options": {"threshold": 0.1, "batch_size": 16, "generate": generate},
        "dataset": {"n_items": len(items)},
    }
    return StudyResult(out_dir=None, manifest=manifest, items=items, layers=layers)


def test_summary_recovers_the_planted_order():
    summary = summarize_study(_study(), n_boot=300)
    groups = {g.group: g for g in summary.groups}
    assert set(groups) == {"fact", "literal", "pun", "pun (cultural)", "pun (other)"}
    assert groups["pun"].share_top1.estimate == pytest.approx(24 / 30)
    assert groups["fact"].share_top1.estimate == 1.0
    assert groups["fact"].depth_top1.high < groups["literal"].depth_top1.low
    assert groups["literal"].depth_top1.high < groups["pun"].depth_top1.low
    items = _study().items
    pun_depths = items[items.category == "pun"].depth_top1.dropna()
    assert groups["pun"].depth_top1.estimate == np.median(pun_depths)
    tests = {(t.first, t.second): t for t in summary.tests}
    assert tests[("pun", "fact")].cliffs_delta > 0.9 and tests[("pun", "fact")].p_value < 1e-6
    assert summary.kruskal.groups == ("pun", "literal", "fact") and summary.kruskal.p_value < 1e-6
    band = summary.trajectory("fact", "target_prob")
    assert band.mean.shape == (10,) and (band.low <= band.mean + 1e-12).all()
    assert (band.mean <= band.high + 1e-12).all()
    frame = summary.to_dataframe()
    assert list(frame.group) == [g.group for g in summary.groups]
    assert {"depth_top1", "depth_top1_low", "depth_top1_high", "share_top1"} <= set(frame)


def test_paired_pun_literal_comparison():
    study = _study()
    summary = summarize_study(study, n_boot=300)
    items = study.items
    pairs = pun_literal_pairs(items)
    assert len(pairs) == 30
    assert all(items.id[p][4:] == items.id[q][8:] for p, q in pairs)  # pun-007 <-> literal-007
    depth, final = summary.paired
    assert depth.metric == "decision depth" and final.metric == "final P(target)"
    puns, literals = (np.array(side) for side in zip(*pairs, strict=True))
    layers = items.first_layer_top1.astype(float).fillna(10).to_numpy()  # never: one past
    expected = scipy_stats.wilcoxon(layers[puns], layers[literals], method="asymptotic")
    assert depth.w == pytest.approx(expected.statistic) and depth.p_value < 1e-5
    assert depth.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    assert depth.n_pairs == 30 and depth.n_first_higher + depth.n_second_higher + depth.n_tied == 30
    assert depth.rank_biserial > 0.9  # puns decide later than their literal controls
    mean = ((layers[puns] - layers[literals]) / 10).mean()
    assert depth.mean_difference.estimate == pytest.approx(mean)
    assert depth.mean_difference.low < mean < depth.mean_difference.high
    assert final.n_second_higher == 30 and final.rank_biserial == -1.0
    assert final.mean_difference.high < 0
    frame = summary.paired_dataframe()
    assert list(frame.metric) == ["decision depth", "final P(target)"]
    assert {"mean_difference_low", "p_value", "rank_biserial"} <= set(frame)
    assert summary.to_dict()["paired"][0]["n_pairs"] == 30
    # No pairs in the study, no paired tests.
    assert summarize_study(_study_without_pairs(), n_boot=50).paired == []


def _study_without_pairs() -> StudyResult:
    study = _study()
    study.items = study.items.drop(columns="pair")
    return study


def test_summary_of_what_the_model_says():
    summary = summarize_study(_study(generate=1), n_boot=200)
    groups = {g.group: g for g in summary.groups}
    assert groups["fact"].says_target.estimate == pytest.approx(0.5)
    assert groups["pun"].says_target.estimate == 0.0
    items = _study(generate=1).items
    said = items[items.category == "pun"].said_depth_top1.dropna()
    assert groups["pun"].said_depth_top1.estimate == np.median(said)
    frame = summary.to_dataframe()
    assert {"says_target", "said_depth_top1_low", "said_depth_stable"} <= set(frame)
    assert summarize_study(_study(), n_boot=50).groups[0].says_target is None
    assert "says_target" not in summarize_study(_study(), n_boot=50).to_dataframe()


def test_summary_is_seeded():
    first = summarize_study(_study(), seed=5, n_boot=200).to_dict()
    assert summarize_study(_study(), seed=5, n_boot=200).to_dict() == first
    assert summarize_study(_study(), seed=6, n_boot=200).to_dict() != first


def test_compare_puts_models_on_one_axis():
    comparison = compare_studies([_study(10, name="a"), _study(30, seed=1, name="b")], n_boot=100)
    frame = comparison.to_dataframe()
    assert set(frame.model) == {"a", "b"} and set(frame.n_layers) == {10, 30}
    for summary in comparison.summaries:
        assert summary.trajectory("pun").depth[-1] == 1.0
    figure = plots.plot_study_comparison(comparison)
    assert len(figure.axes) == 3  # pun, literal, fact panels


def test_plots_draw_every_group(tmp_path):
    summary = summarize_study(_study(), n_boot=100)
    figure = plots.plot_study_trajectories(summary)
    assert len(figure.axes[0].lines) == len(summary.groups)
    depths = plots.plot_decision_depths(summary)
    assert len(depths.axes) == len(summary.groups)
    plots.save_figure(depths, tmp_path / "d.png")
    assert (tmp_path / "d.png").stat().st_size > 1000


def test_report_is_self_contained(tmp_path):
    page = render_study_report(summarize_study(_study(name="<b>m</b>"), n_boot=50))
    assert "<b>m</b>" not in page.replace("\\u003cb>m\\u003c/b>", "")
    assert not re.search(r"<(script|img|link|image)[^>]*(src|href)=", page)  # nothing fetched
    assert page.count("<svg") == 2


def test_report_in_headless_chromium(browser, tmp_path):  # noqa: F811
    path = write_study_report(summarize_study(_study(), n_boot=100), tmp_path / "study.html")
    _open(browser, path)
    rows = browser.evaluate("document.querySelectorAll('#groups tr').length")
    assert rows == 1 + 5
    assert "pun vs fact" in browser.evaluate("document.getElementById('tests').textContent")
    assert "Kruskal-Wallis" in browser.evaluate("document.getElementById('kruskal').textContent")
    widths = browser.evaluate(
        "[...document.querySelectorAll('figure svg')].map(s => s.getBoundingClientRect().width)"
    )
    assert len(widths) == 2 and min(widths) > 300
    # Sorting by n (click the header) keeps every row.
    browser.evaluate("document.querySelectorAll('#groups th')[1].click()")
    first = browser.evaluate("document.querySelectorAll('#groups tr')[1].cells[0].textContent")
    assert first in {"pun (cultural)", "pun (other)"}  # the two smallest groups (n = 15)
    assert browser.evaluate("document.querySelectorAll('#paired tr').length") == 1 + 2
    assert "decision depth" in browser.evaluate("document.getElementById('paired').textContent")
    assert not browser.evaluate("document.getElementById('paired-section').hidden")
    assert browser.evaluate("document.querySelectorAll('#groups th').length") == 7
    assert browser.errors() == []
    # With generation, three more columns: what the model says; without pairs, no section.
    study = _study_without_pairs()
    study.manifest["options"]["generate"] = 1
    study.items = _study(generate=1).items.drop(columns="pair")
    path = write_study_report(summarize_study(study, n_boot=100), tmp_path / "said.html")
    browser.events.clear()  # wait for this page's load event, not the first page's
    _open(browser, path)
    assert browser.evaluate("document.querySelectorAll('#groups th').length") == 10
    assert browser.evaluate("document.getElementById('paired-section').hidden")
    assert browser.errors() == []


def _study_with_attribution() -> StudyResult:
    """``_study()`` with planted parts: puns written by the MLP of the last layer,
    literals and facts by attention in the middle; noise elsewhere."""
    study = _study()
    rng = np.random.default_rng(5)
    layers = study.layers.copy()
    n = len(layers)
    for column in ("attention_target", "mlp_target", "attention_diff", "mlp_diff"):
        layers[column] = rng.normal(0, 0.05, n)
    pun = layers.category.eq("pun").to_numpy()
    last = layers.layer.eq(9).to_numpy()
    middle = layers.layer.eq(5).to_numpy()
    for measure in ("target", "diff"):
        layers.loc[pun & last, f"mlp_{measure}"] += 3.0
        layers.loc[~pun & middle, f"attention_{measure}"] += 2.0
    study.layers = layers
    return study


def test_component_summary_says_which_part_writes_the_target():
    study = _study_with_attribution()
    summary = summarize_study(study, n_boot=300)
    frame = summary.components_dataframe()
    assert len(frame) == len(summary.groups) * 4  # groups x (part, measure)
    layers = study.layers
    for row in frame[frame.group.isin(["pun", "literal", "fact"])].itertuples():
        column = {"target": "target", "target - alternative": "diff"}[row.measure]
        chosen = layers[layers.category == row.group]
        totals = chosen.groupby("id")[f"{row.part}_{column}"].sum()
        assert row.total == pytest.approx(totals.mean())
        assert row.total_low < row.total < row.total_high
    peak = frame[(frame.group == "pun") & (frame.part == "mlp")].peak_depth
    assert (peak == 1.0).all()  # the planted layer 9 of 10
    # MLP against attention within each group, item by item, as scipy computes it.
    (pun_test,) = [
        t for t in summary.component_tests if t.metric == "pun: MLP vs attention -> target"
    ]
    puns = layers[layers.category == "pun"].groupby("id")
    expected = scipy_stats.wilcoxon(
        puns.mlp_target.sum(), puns.attention_target.sum(), method="asymptotic"
    )
    assert pun_test.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    assert pun_test.n_first_higher == 30
    facts = [t for t in summary.component_tests if t.metric.startswith("fact")]
    assert all(t.n_second_higher == 30 for t in facts)  # attention writes the facts
    # Pun against literal on each part, pair by pair.
    mlp_pairs = next(t for t in summary.paired if t.metric == "mlp -> target")
    assert mlp_pairs.n_pairs == 30 and mlp_pairs.rank_biserial == 1.0
    assert summary.to_dict()["components"][0]["total"]["estimate"] is not None
    # A study without the columns has no component rows.
    assert summarize_study(_study(), n_boot=50).components == []
