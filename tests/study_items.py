"""Synthetic study items for tests: any number, every category, some without alternative.

Prompts are built from words the tiny tokenizer knows, with varied lengths so that
length bucketing has something to sort; the same ``n`` and ``seed`` give the same items.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from logitlens.studies.dataset import StudyItem

CATEGORIES = ("pun", "literal", "fact", "two_hop")
_WORDS = [
    "the",
    "current",
    "in",
    "the",
    "river",
    "was",
    "strong",
    "so",
    "the",
    "swimmers",
    "stayed",
    "near",
    "the",
    "shore",
    "why",
    "do",
    "electricians",
    "make",
    "good",
    "swimmers",
    "because",
    "they",
    "know",
    "the",
    "capital",
    "of",
    "France",
    "is",
    "Paris",
]
_TARGETS = (" current", " Paris", " France", " capital", " swimmers", " the")


def make_items(n: int, seed: int = 0) -> list[StudyItem]:
    """``n`` items with ids ``item-0000``...; every fifth has no alternative."""
    rng = random.Random(seed)
    items = []
    for index in range(n):
        category = CATEGORIES[index % len(CATEGORIES)]
        words = [rng.choice(_WORDS) for _ in range(rng.randint(3, 24))]
        target, alternative = rng.sample(_TARGETS, 2)
        items.append(
            StudyItem(
                id=f"item-{index:04d}",
                category=category,
                prompt=" ".join(words).capitalize(),
                target=target,
                alternative=None if index % 5 == 4 else alternative,
                tags=("cultural",) if category == "pun" and index % 3 == 0 else (),
                pair=None,
            )
        )
    return items


def write_items(items: list[StudyItem], path: Path) -> Path:
    """The items as a JSONL file in the dataset schema."""
    with path.open("w", encoding="utf-8") as handle:
        for item in items:
            record = {
                "id": item.id,
                "category": item.category,
                "prompt": item.prompt,
                "target": item.target,
                "alternative": item.alternative,
                "tags": list(item.tags),
                "pair": item.pair,
            }
            handle.write(json.dumps(record) + "\n")
    return path
