"""Study items: the bundled set, the schema's errors, file formats, the single-token check."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from logitlens import loading
from logitlens.cli import app
from logitlens.errors import InputError
from logitlens.studies.dataset import (
    CATEGORIES,
    StudyItem,
    bundled_items_path,
    check_single_tokens,
    load_items,
    save_items,
)

GOOD = {
    "id": "pun-001",
    "category": "pun",
    "prompt": "Why do electricians make good swimmers? Because they know the",
    "target": " current",
    "alternative": " water",
    "tags": ["electricity"],
    "pair": None,
}


def _write_jsonl(path: Path, records: list) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _error(tmp_path: Path, records: list) -> str:
    path = _write_jsonl(tmp_path / "items.jsonl", records)
    with pytest.raises(InputError) as excinfo:
        load_items(path)
    return str(excinfo.value)


# ----- the bundled set ------------------------------------------------------------


def test_bundled_items_validate_and_have_the_promised_counts():
    items = load_items()
    counts = Counter(item.category for item in items)
    assert len(items) >= 300
    assert counts["pun"] >= 110 and counts["literal"] >= 110
    assert counts["fact"] >= 70 and counts["two_hop"] >= 30
    assert set(counts) == set(CATEGORIES)
    cultural = [i for i in items if i.category == "pun" and "cultural" in i.tags]
    assert len(cultural) >= 35


def test_bundled_file_is_the_packaged_data_and_round_trips_exactly():
    path = bundled_items_path()
    assert path.parts[-2:] == ("data", "study_items.jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()
    items = load_items()
    assert [json.loads(line) for line in lines] == [item.to_json() for item in items]


def test_bundled_puns_and_literals_pair_up_on_the_same_target():
    by_id = {item.id: item for item in load_items()}
    for item in by_id.values():
        if item.category == "pun":
            partner = by_id[item.pair]
            assert partner.category == "literal" and partner.pair == item.id
            assert partner.target == item.target
            assert item.alternative and item.alternative != item.target
        if item.category in ("pun", "literal"):
            assert item.pair is not None


def test_bundled_targets_start_with_a_space_and_prompts_do_not_end_with_one():
    for item in load_items():
        assert item.target.startswith(" ") and item.target.strip()
        assert item.prompt == item.prompt.strip()


# ----- one clear error per problem ------------------------------------------------


def test_missing_field_names_file_line_and_field(tmp_path):
    record = {k: v for k, v in GOOD.items() if k != "target"}
    message = _error(tmp_path, [GOOD | {"id": "a"}, record])
    assert "items.jsonl:2" in message and "'target'" in message and "missing" in message


def test_bad_category(tmp_path):
    message = _error(tmp_path, [GOOD | {"category": "joke"}])
    assert "items.jsonl:1" in message and "'category'" in message and "'joke'" in message


def test_duplicate_id_names_both_lines(tmp_path):
    message = _error(tmp_path, [GOOD, GOOD | {"id": "b"}, GOOD])
    assert "items.jsonl:3" in message and "duplicate id 'pun-001'" in message
    assert "items.jsonl:1" in message


def test_empty_prompt(tmp_path):
    message = _error(tmp_path, [GOOD | {"prompt": "   "}])
    assert "items.jsonl:1" in message and "'prompt' is empty" in message


def test_trailing_space_in_prompt(tmp_path):
    message = _error(tmp_path, [GOOD | {"prompt": "they know the "}])
    assert "'prompt' ends with whitespace" in message and "' current'" in message


@pytest.mark.parametrize("field", ["target", "alternative"])
def test_word_without_content(tmp_path, field):
    message = _error(tmp_path, [GOOD | {field: " "}])
    assert f"'{field}' has no word" in message


def test_missing_target_as_null(tmp_path):
    assert "'target' is missing" in _error(tmp_path, [GOOD | {"target": None}])


def test_non_utf8_names_the_line(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"id": "caf\xe9"}\n')
    with pytest.raises(InputError, match=r"items.jsonl:2 is not UTF-8 text \(byte 0xe9"):
        load_items(path)


def test_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\n")
    assert load_items(path)[0].id == "pun-001"


def test_bad_json_line(tmp_path):
    message = _error(tmp_path, [GOOD | {"id": "a"}, "", '{"id": "b",'])
    assert "items.jsonl:3: not valid JSON" in message


def test_pair_may_name_an_item_outside_the_file(tmp_path):
    path = _write_jsonl(tmp_path / "items.jsonl", [GOOD | {"pair": "literal-404"}])
    assert load_items(path)[0].pair == "literal-404"


def test_unknown_field_is_named(tmp_path):
    assert "'targte'" in _error(tmp_path, [GOOD | {"targte": " x"}])


def test_tags_must_be_a_list_of_strings(tmp_path):
    assert "'tags' must be a list" in _error(tmp_path, [GOOD | {"tags": "cultural"}])


def test_wrong_type_and_empty_file_and_suffix(tmp_path):
    assert "'id' must be a string" in _error(tmp_path, [GOOD | {"id": 7}])
    assert "no items" in _error(tmp_path, ["", "  "])
    with pytest.raises(InputError, match=r"\.jsonl, \.csv or \.parquet"):
        load_items(tmp_path / "items.txt")
    with pytest.raises(InputError, match="No items file"):
        load_items(tmp_path / "missing.jsonl")


# ----- formats --------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_formats_round_trip(tmp_path, suffix):
    items = [*load_items()[:40], StudyItem("x-1", "fact", "Rome is in", " Italy")]
    path = save_items(items, tmp_path / f"items{suffix}")
    assert load_items(path) == items


def test_csv_written_by_hand(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text(
        "id,category,prompt,target,alternative,tags,pair\n"
        'a,fact,"Paris, the capital of",  France,,geography; capital,\n'
        "b,literal,The boat drifted on the, current, wind,,\n",
        encoding="utf-8",
    )
    first, second = load_items(path)
    assert first.prompt == "Paris, the capital of" and first.alternative is None
    assert first.tags == ("geography", "capital") and first.pair is None
    assert second.alternative == " wind" and second.tags == ()


def test_csv_error_names_the_line(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text(
        "id,category,prompt,target\na,fact,Rome is in, Italy\nb,poem,Roses are, red\n",
        encoding="utf-8",
    )
    with pytest.raises(InputError, match=r"items.csv:3: field 'category'"):
        load_items(path)


def test_parquet_error_names_the_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "items.parquet"
    records = [GOOD | {"id": "a"}, GOOD | {"prompt": ""}]
    pq.write_table(pa.Table.from_pylist(records), path)
    with pytest.raises(InputError, match=r"items.parquet:row 2: field 'prompt' is empty"):
        load_items(path)


# ----- single tokens --------------------------------------------------------------


def _token_count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_single_token_report_matches_the_tokenizer():
    from tiny_models import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    items = [
        StudyItem("a", "pun", "they know the", " current", " water"),
        StudyItem("b", "fact", "It is", " xylophonic", None),
        StudyItem("c", "fact", "It is", " the", " zebracorn"),
    ]
    report = check_single_tokens(items, tokenizer)
    expected = [
        (item.id, name, getattr(item, name))
        for item in items
        for name in ("target", "alternative")
        if getattr(item, name) is not None and _token_count(tokenizer, getattr(item, name)) != 1
    ]
    assert [(w.item_id, w.field, w.text) for w in report.multi_token] == expected
    assert ("b", "target", " xylophonic") in expected  # the check can fail
    assert report.n_items == 3 and report.n_words == 5 and not report.ok
    assert check_single_tokens(items, tokenizer, "tiny BPE").tokenizer == "tiny BPE"
    word = report.multi_token[0]
    assert "".join(word.tokens) == word.text
    assert json.loads(json.dumps(report.to_json()))["multi_token"][0]["tokens"] == list(word.tokens)


def test_dataset_check_cli_json(tmp_path, monkeypatch):
    from tiny_models import tiny_tokenizer

    monkeypatch.setattr(loading, "load_tokenizer", lambda name: tiny_tokenizer())
    path = _write_jsonl(tmp_path / "items.jsonl", [GOOD, GOOD | {"id": "b", "target": " zq"}])
    result = CliRunner().invoke(app, ["dataset", "check", str(path), "--json", "-m", "tiny"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["n_items"] == 2 and payload["categories"]["pun"] == 2
    [report] = payload["tokenizers"]
    assert {w["item_id"] for w in report["multi_token"]} >= {"b"}


def test_dataset_check_cli_reports_a_bad_file_as_one_line(tmp_path):
    path = _write_jsonl(tmp_path / "items.jsonl", [GOOD | {"category": "joke"}])
    result = CliRunner().invoke(app, ["dataset", "check", str(path)])
    assert result.exit_code != 0
    assert isinstance(result.exception, InputError)


@pytest.mark.bundled
def test_bundled_items_on_the_smollm2_tokenizer():
    from logitlens.loading import load_tokenizer

    tokenizer = load_tokenizer()
    items = load_items()
    report = check_single_tokens(items, tokenizer)
    split = {w.text for w in report.multi_token}
    assert split == {
        " waved",
        " dawned",
        " hoarse",
        " mugged",
        " racket",
    }  # docs/how-to/datasets.md
    for word in report.multi_token:
        assert word.field == "target" and word.item_id.startswith(("pun-", "literal-"))
    for word in report.multi_token:
        assert _token_count(tokenizer, word.text) > 1
