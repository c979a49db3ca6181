"""Regenerate the pictures of the electricians pun (README, docs) on the bundled SmolLM2-135M.

Usage: ``python scripts/make_readme_pictures.py [OUT_DIR]`` (default ``docs/images``).
Writes ``pun_trajectory.png``, ``pun_heatmap.png`` and ``pun_grid.png``; runs offline
in a few seconds on a CPU.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import logitlens
from logitlens.pictures import plots

PUN = "Why do electricians make good swimmers? Because they know the"
TARGET = " current"


def main(out_dir: Path) -> list[Path]:
    model = logitlens.load_model()
    result = logitlens.analyze(
        model, PUN, targets=TARGET, positions="all", metrics=["topk", "target_rank", "final_rank"]
    )
    figures = {
        # A 135M model never makes " current" likely: a log scale shows its rise.
        "pun_trajectory.png": plots.plot_trajectory(result, threshold=0.1, log=True),
        "pun_heatmap.png": plots.plot_heatmap(result),
        "pun_grid.png": plots.plot_grid(result, metric="prob"),
    }
    return [plots.save_figure(figure, out_dir / name, dpi=110) for name, figure in figures.items()]


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    target_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "docs" / "images"
    for path in main(target_dir):
        print(f"Wrote {path}")
