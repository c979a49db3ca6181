"""Tests for logitlens.corpus: sources, the held-out split, packing and batch order."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_models import tiny_tokenizer

from logitlens.errors import InputError
from logitlens.training.corpus import (
    batch_order,
    bible_documents,
    is_heldout,
    load_documents,
    sample_documents,
    split_documents,
    tokenize_documents,
)


def test_plain_text_splits_at_blank_lines(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("First paragraph\nstill first.\n\n\nSecond one.\n")
    assert load_documents(path) == ["First paragraph\nstill first.", "Second one."]


def test_jsonl_accepts_objects_and_strings(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"text": "one"}) + "\n\n" + json.dumps("two") + "\n")
    assert load_documents(path) == ["one", "two"]


def test_jsonl_errors_name_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{"title": 3}\n')
    with pytest.raises(InputError, match=r"bad\.jsonl:2"):
        load_documents(path)
    path.write_text("not json\n")
    with pytest.raises(InputError, match="not valid JSON"):
        load_documents(path)


def test_directory_reads_text_and_jsonl_files_in_order(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("bee")
    (tmp_path / "sub" / "c.jsonl").write_text('{"text": "sea"}\n')
    (tmp_path / "a.txt").write_text("ay")
    (tmp_path / "ignored.bin").write_bytes(b"\x00\x01")
    assert load_documents(tmp_path) == ["ay", "bee", "sea"]


@pytest.mark.parametrize("content", ["", "\n\n   \n"])
def test_empty_corpus_is_a_clear_error(tmp_path, content):
    (tmp_path / "empty.txt").write_text(content)
    with pytest.raises(InputError, match="empty"):
        load_documents(tmp_path / "empty.txt")
    with pytest.raises(InputError, match="empty"):
        load_documents(tmp_path)


def test_missing_corpus_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="No corpus at"):
        load_documents(tmp_path / "nope.txt")


def test_bible_is_the_bundled_corpus():
    documents = bible_documents()
    assert len(documents) == 1189  # chapters of the KJV
    assert documents[0].startswith("In the beginning God created the heaven and the earth.")


def test_heldout_split_is_stable_and_disjoint():
    documents = bible_documents()
    train, heldout = split_documents(documents)
    assert set(train).isdisjoint(heldout)
    assert len(train) + len(heldout) == len(documents)
    assert 0.02 < len(heldout) / len(documents) < 0.1
    # Decided by the text alone: order and company do not matter.
    assert split_documents(list(reversed(documents)))[1] == list(reversed(heldout))
    assert all(is_heldout(doc) for doc in heldout)


def test_too_few_documents_for_a_split():
    with pytest.raises(InputError, match="too few"):
        split_documents(["just one document"])


def test_packing_and_batch_order_are_deterministic():
    tokenizer = tiny_tokenizer()
    ids = tokenize_documents(tokenizer, ["the river bank"] * 20, seq_len=8)
    assert ids.ndim == 2 and ids.shape[1] == 8 and ids.dtype == torch.long
    assert (ids == tokenizer.eos_token_id).any()  # documents are separated
    first = batch_order(10, 3, step=0, seed=1)
    assert torch.equal(first, batch_order(10, 3, step=0, seed=1))
    assert not torch.equal(first, batch_order(10, 3, step=0, seed=2))
    epoch = torch.cat([batch_order(10, 3, step, seed=1) for step in range(3)])
    assert len(set(epoch.tolist())) == 9  # no repeats within an epoch


def test_model_samples_are_text_and_reproducible(wrap_tiny):
    model = wrap_tiny("llama")
    first = sample_documents(model, n_documents=3, length=8, seed=5)
    assert first and all(isinstance(text, str) for text in first)
    assert first == sample_documents(model, n_documents=3, length=8, seed=5)
