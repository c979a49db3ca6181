"""Studies: a lens over a whole dataset, to answer the seed's questions at scale.

- :mod:`.dataset`: the item schema, the bundled pun/literal/fact items, loading files
  and the single-token check;
- :mod:`.run`: :func:`run_study`, batched, streamed to Parquet and resumable;
- :mod:`.stats`: per-group summaries with bootstrap intervals, rank tests, paired
  pun-vs-literal tests, comparisons;
- :mod:`.ranktests`: the rank tests and the bootstrap themselves (NumPy, checked
  against scipy).
"""

from __future__ import annotations

from .dataset import StudyItem, TokenReport, check_single_tokens, load_items
from .run import StudyResult, run_study
from .stats import StudyComparison, StudySummary, compare_studies, summarize_study

__all__ = [
    "StudyComparison",
    "StudyItem",
    "StudyResult",
    "StudySummary",
    "TokenReport",
    "check_single_tokens",
    "compare_studies",
    "load_items",
    "run_study",
    "summarize_study",
]
