"""Studies: a lens over a whole dataset, to answer the seed's questions at scale.

- :mod:`.dataset`: the item schema, the bundled pun/literal/fact items, loading files
  and the single-token check.
"""

from __future__ import annotations

from .dataset import StudyItem, TokenReport, check_single_tokens, load_items

__all__ = ["StudyItem", "TokenReport", "check_single_tokens", "load_items"]
