"""Bad input by kind (the second tester's findings): one table per kind, CLI and library.

Each kind is fixed where it enters: one check of the command line's arguments, one
reader of user text files, the lens file reader, the model loader, one table of option
ranges. Every case must end as one line naming the problem (exit code 2, or a
``LogitLensError`` in the library), never ``Unexpected ...`` and never a traceback.
CLI cases run through ``cli.main`` in-process; ``load_model`` is replaced by a tiny
model except where the case is the model directory itself.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import logitlens
from logitlens import loading
from logitlens.cli import main
from logitlens.errors import LogitLensError

PUN = "Why do electricians make good swimmers? Because they know the"
LATIN1 = "café au lait, naïve résumé".encode("latin-1")


@pytest.fixture(scope="module")
def bad(tmp_path_factory, tiny_dir):
    """Bad files by name (text, models, lenses), made once for the module."""
    root = tmp_path_factory.mktemp("bad")
    paths = {"tmp": root}

    def write(name, data):
        paths[name] = root / name
        paths[name].write_bytes(data)

    # Text that is not UTF-8.
    paragraphs = b"\n\n".join([LATIN1 + b" " + str(i).encode() for i in range(60)])
    write("latin1.txt", paragraphs)
    write("latin1.jsonl", b'{"text": "ok"}\n{"text": "' + LATIN1 + b'"}\n')
    lens_folder = root / "latin1-lens"
    lens_folder.mkdir()
    (lens_folder / "config.json").write_bytes(b'{"d_model": 64, "note": "' + LATIN1 + b'"}')
    torch.save({"0.weight": torch.zeros(64, 64)}, lens_folder / "params.pt")
    paths["latin1-lens"] = lens_folder

    # Damaged models: truncated weights, no tokenizer, a config that is not UTF-8.
    for name in ("truncated-model", "no-tokenizer", "latin1-config"):
        folder = root / name
        folder.mkdir()
        for file in tiny_dir.iterdir():
            if name == "truncated-model" or not file.name.startswith(("tokenizer", "special")):
                (folder / file.name).write_bytes(file.read_bytes())
        paths[name] = folder
    weights = paths["truncated-model"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    config = paths["latin1-config"] / "config.json"
    config.write_bytes(config.read_bytes().replace(b"{", b'{"note": "' + LATIN1 + b'",', 1))

    # Lens files whose config lies about itself.
    good = {"format": "logitlens-tuned-lens", "version": 1, "kind": "tuned", "model": {}}
    good |= {"n_layers": 2, "d_model": 64}
    configs = {
        "kind-banana": {**good, "kind": "banana"},
        "layers-text": {**good, "n_layers": "two"},
        "kind-list": {**good, "kind": ["tuned"]},
        "model-text": {**good, "model": "llama"},
        "training-number": {**good, "training": 5},
        "layers-bool": {**good, "n_layers": True},
    }
    for name, config in configs.items():
        paths[name] = root / f"{name}.safetensors"
        tensors = {"weight": torch.zeros(3, 64, 64), "bias": torch.zeros(3, 64)}
        save_file(tensors, str(paths[name]), metadata={"logitlens": json.dumps(config)})

    # A tuned-lens folder whose config has a field of the wrong type.
    folder = root / "hash-number"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"d_model": 64, "num_hidden_layers": 2, "unembed_hash": 5})
    )
    torch.save({"0.weight": torch.zeros(64, 64)}, folder / "params.pt")
    paths["hash-number"] = folder

    # Jacobian-lens files (.pt): empty, truncated, not PyTorch at all, a count as text.
    torch.save({"J": {0: torch.eye(64)}, "n_prompts": "many"}, root / "prompts-text.pt")
    paths["prompts-text.pt"] = root / "prompts-text.pt"
    torch.save({"J": {}}, root / "empty-J.pt")
    paths["empty-J.pt"] = root / "empty-J.pt"
    torch.save({"J": {0: torch.eye(64)}}, root / "good-J.pt")
    whole = (root / "good-J.pt").read_bytes()
    write("truncated-J.pt", whole[: len(whole) // 2])
    write("garbage.pt", bytes(range(256)) * 4)
    write("empty.pt", b"")
    return paths


@pytest.fixture
def tiny_everywhere(tiny, monkeypatch):
    """The tiny llama, and ``load_model`` replaced so that every command gets it."""
    monkeypatch.setattr(loading, "load_model", lambda *args, **kwargs: tiny)
    return tiny


def _fill(args, paths):
    for name, path in paths.items():
        args = [arg.replace("{" + name + "}", str(path)) for arg in args]
    return args


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(args)
    return stopped.value.code, capsys.readouterr().err


def assert_one_line_error(code, err, message):
    lines = err.strip().splitlines()
    assert code == 2, err
    assert lines and lines[-1].startswith("Error:"), err
    assert message in lines[-1], err
    assert "Unexpected" not in err and "Traceback" not in err, err
    assert all(line.startswith(("Error:", "Note:", "Warning:")) for line in lines), err


def _cases(table):
    return pytest.mark.parametrize(
        ("args", "message"), table, ids=[" ".join(args)[:70] for args, _ in table]
    )


# ----- text that is not UTF-8 ----------------------------------------------------------------

NOT_UTF8 = "byte 0xe9 at character"
TEXT_CASES = [
    (["top", "caf\udce9 is"], "Argument 2 is not valid UTF-8 text (byte 0xe9 at character 3"),
    (["track", PUN, "--target", " caf\udce9"], "Argument 4 (after --target) is not valid UTF-8"),
    (["generate", "caf\udce9", "-n", "2"], NOT_UTF8),
    (["compare", "-p", "caf\udce9=> x"], NOT_UTF8),
    (["tuned", "train", "--corpus", "{latin1.txt}"], "latin1.txt:1 is not UTF-8 text (byte 0xe9"),
    (["tuned", "train", "--corpus", "{latin1.jsonl}"], "latin1.jsonl:2 is not UTF-8 text"),
    (["jlens", "fit", "--corpus", "{latin1.jsonl}"], "latin1.jsonl:2 is not UTF-8 text"),
    (["lens", "eval", "--corpus", "{latin1.txt}"], "latin1.txt:1 is not UTF-8 text"),
    (
        ["lens", "import", "{latin1-lens}", "-o", "{tmp}/x.safetensors"],
        "config.json:1 is not UTF-8",
    ),
]


@_cases(TEXT_CASES)
def test_text_that_is_not_utf8_is_named(args, message, bad, tiny_everywhere, capsys):
    assert_one_line_error(*run_cli(_fill(args, bad), capsys), message)


def test_a_latin1_terminal_argument_is_named_in_a_real_process():
    """The real decoding path: bytes in argv, decoded by Python with surrogateescape."""
    completed = subprocess.run(
        [sys.executable, "-m", "logitlens", "track", PUN.encode(), b"-t", b" caf\xe9"],
        capture_output=True,
        timeout=60,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
    )
    err = completed.stderr.decode()
    assert completed.returncode == 2, err
    assert err.count("\n") == 1 and "(after -t) is not valid UTF-8 text (byte 0xe9" in err


def test_a_file_whose_name_is_not_utf8_may_still_be_named(tiny_everywhere, tmp_path, capsys):
    """Linux file names are bytes: an existing one passes the argument check."""
    name = os.fsdecode(b"caf\xe9.jsonl")
    (tmp_path / name).write_text(json.dumps({"prompt": PUN, "target": " x"}) + "\n", "utf-8")
    with pytest.raises(SystemExit) as stopped:
        main(["compare", "-f", str(tmp_path / name), "--json"])
    assert stopped.value.code == 0, capsys.readouterr().err


TEXT_LIBRARY_CASES = [
    (lambda m, p: logitlens.analyze(m, PUN, targets=" caf\udce9"), "The target is not valid UTF-8"),
    (lambda m, p: logitlens.generate_lens(m, "caf\udce9"), "The prompt is not valid UTF-8"),
    (lambda m, p: logitlens.analyze(m, "a\ud800b"), "Prompt 0 is not valid UTF-8 text (U+D800"),
    (lambda m, p: _documents(p["latin1.txt"]), "latin1.txt:1 is not UTF-8 text (byte 0xe9"),
    (lambda m, p: _items(p["latin1.jsonl"]), "latin1.jsonl:2 is not UTF-8 text (byte 0xe9"),
]


def _documents(path):
    from logitlens.training.corpus import load_documents

    return load_documents(path)


def _items(path):
    from logitlens.studies.dataset import load_items

    return load_items(path)


@pytest.mark.parametrize(("call", "message"), TEXT_LIBRARY_CASES, ids=lambda c: str(c)[:30])
def test_library_text_that_is_not_utf8_is_named(call, message, bad, tiny_everywhere):
    _assert_library_error(call, message, tiny_everywhere, bad)


def _assert_library_error(call, message, model, paths):
    with pytest.raises(LogitLensError) as raised:
        call(model, paths)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_json_lines_may_hold_unicode_line_separators(tmp_path):
    """U+2028 and U+0085 are text inside a JSON string, not line ends."""
    from logitlens.studies.dataset import load_items, load_pairs
    from logitlens.training.corpus import load_documents

    prompt = "Line\u2028separator and next\u0085line: the"
    item = {"id": "a", "category": "fact", "prompt": prompt, "target": " x"}
    (tmp_path / "items.jsonl").write_text(json.dumps(item, ensure_ascii=False) + "\n", "utf-8")
    (tmp_path / "pairs.jsonl").write_text(json.dumps(item, ensure_ascii=False) + "\r\n", "utf-8")
    (tmp_path / "text.jsonl").write_text(json.dumps({"text": prompt}, ensure_ascii=False))
    assert [i.prompt for i in load_items(tmp_path / "items.jsonl")] == [prompt]
    assert load_pairs(tmp_path / "pairs.jsonl") == [(prompt, " x", None)]
    assert load_documents(tmp_path / "text.jsonl") == [prompt]


# ----- damaged models and lenses ---------------------------------------------------------------

DAMAGED_CASES = [
    (["top", PUN, "-m", "{truncated-model}"], "are damaged: truncated or corrupt"),
    (["doctor", "-m", "{truncated-model}"], "are damaged: truncated or corrupt"),
    (["top", PUN, "-m", "{no-tokenizer}"], "has no usable tokenizer"),
    (["top", PUN, "-m", "{latin1-config}"], "config.json:1 is not UTF-8 text (byte 0xe9"),
]


@_cases(DAMAGED_CASES)
def test_damaged_model_directories_are_named(args, message, bad, capsys):
    assert_one_line_error(*run_cli(_fill(args, bad), capsys), message)


def test_a_damaged_model_is_not_called_another_kind_of_model(bad):
    for name in ("truncated-model", "no-tokenizer"):
        with pytest.raises(logitlens.ModelLoadError) as raised:
            logitlens.load_model(bad[name])
        assert "not T5, BERT" not in str(raised.value)


LENS_CASES = [
    (["top", PUN, "--lens-path", "{kind-banana}"], "holds a lens of kind 'banana', which"),
    (["top", PUN, "--lens", "jacobian", "--lens-path", "{kind-banana}"], "kind 'banana'"),
    (["top", PUN, "--lens-path", "{layers-text}"], "config field 'n_layers' is 'two', not a"),
    (["top", PUN, "--lens-path", "{layers-bool}"], "config field 'n_layers' is True"),
    (["top", PUN, "--lens-path", "{kind-list}"], "config field 'kind' is ['tuned']"),
    (["top", PUN, "--lens-path", "{model-text}"], "config field 'model' is 'llama'"),
    (["top", PUN, "--lens-path", "{training-number}"], "config field 'training' is 5"),
    (["lens", "import", "{empty-J.pt}", "-o", "{tmp}/a.safetensors"], "holds no Jacobians"),
    (["lens", "import", "{hash-number}", "-o", "{tmp}/e.safetensors"], "'unembed_hash' is 5"),
    (["lens", "import", "{prompts-text.pt}", "-o", "{tmp}/f.safetensors"], "'n_prompts' is 'many'"),
    (["lens", "import", "{truncated-J.pt}", "-o", "{tmp}/b.safetensors"], "is damaged or not a"),
    (["lens", "import", "{garbage.pt}", "-o", "{tmp}/c.safetensors"], "is damaged or not a"),
    (["lens", "import", "{empty.pt}", "-o", "{tmp}/d.safetensors"], "is damaged or not a"),
]


@_cases(LENS_CASES)
def test_damaged_lens_files_are_named(args, message, bad, tiny_everywhere, capsys):
    code, err = run_cli(_fill(args, bad), capsys)
    assert_one_line_error(code, err, message)
    assert "--lens banana" not in err and "would need to run code" not in err
    assert not list(bad["tmp"].glob("?.safetensors"))


@pytest.mark.parametrize("name", ["kind-banana", "layers-text", "model-text", "kind-list"])
def test_library_damaged_lens_files_fail_at_load(name, bad):
    from logitlens.lenses import load_lens

    for load in (load_lens, logitlens.TunedLens.load, logitlens.JacobianLens.load):
        with pytest.raises(logitlens.LensFileError, match=r"damaged|which logitlens does not"):
            load(bad[name])


# ----- option ranges, checked before any work --------------------------------------------------

RANGE_CASES = [
    (["study", "summary", "{tmp}/none", "--n-boot", "0"], "--n-boot must be between 1 and"),
    (["study", "summary", "{tmp}/none", "--n-boot", "-5"], "got -5"),
    (["study", "summary", "{tmp}/none", "--n-boot", "1000000000"], "each resample redraws"),
    (["study", "summary", "{tmp}/none", "--seed", "-1"], "--seed must be between 0 and"),
    (["study", "compare", "{tmp}/none", "--n-boot", "0"], "--n-boot must be between 1 and"),
    (["tuned", "train", "--seed", "-1"], "--seed must be between 0 and"),
    (["grid", PUN, "-o", "{tmp}/g.png", "--window", "100000"], "--window must be between 1"),
    (["grid", PUN, "-o", "{tmp}/g.png", "--positions", ",".join(map(str, range(200)))], "at most"),
    (["generate", PUN, "-n", "500", "--plot", "{tmp}/g.png"], "lower --max-new-tokens"),
    (["lens", "eval", "--pass-k", "1,1000000", "--tokens", "64"], "pass@k needs every k between"),
]


@_cases(RANGE_CASES)
def test_option_ranges_are_checked_before_any_work(
    args, message, bad, tiny_everywhere, capsys, monkeypatch
):
    from logitlens import analysis, evaluation

    def no_work(*args, **kwargs):
        raise AssertionError("the work started before the option was checked")

    monkeypatch.setattr(evaluation, "evaluate_lenses", no_work)
    monkeypatch.setattr(analysis, "_run_batch", no_work)
    assert_one_line_error(*run_cli(_fill(args, bad), capsys), message)
    assert not list(bad["tmp"].glob("g.png"))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A finished study of six items on the tiny llama."""
    from tiny_models import tiny_model

    from logitlens.studies import load_items, run_study

    hf_model, tokenizer = tiny_model("llama")
    model = logitlens.load_model(hf_model, tokenizer=tokenizer)
    items = [item for item in load_items() if item.category in ("pun", "literal")][:6]
    return run_study(model, items, out_dir=tmp_path_factory.mktemp("study"), progress=False)


RANGE_LIBRARY_CASES = [
    (lambda s: _summarize(s, n_boot=0), "n_boot must be between 1 and 10,000, got 0"),
    (lambda s: _summarize(s, n_boot=10**9), "each resample redraws every item"),
    (lambda s: _summarize(s, seed=-1), "seed must be between 0 and"),
    (lambda s: _summarize(s, n_boot=2.5), "Bad n_boot 2.5"),
    (lambda s: _bootstrap(n_boot=20_000_000), "n_boot must be between"),
    (lambda s: _summarize(5), "Expected a study (run_study's result, or its directory)"),
    (lambda s: logitlens.TrainingConfig(seed=-3).validate(), "seed must be between 0 and"),
    (lambda s: _compare([s, 5]), "Expected a study"),
]


def _compare(studies):
    from logitlens.studies import compare_studies

    return compare_studies(studies, n_boot=10)


def _summarize(study, **options):
    from logitlens.studies import summarize_study

    return summarize_study(study, **options)


def _bootstrap(**options):
    from logitlens.studies.stats import bootstrap_interval

    return bootstrap_interval([1.0, 2.0, 3.0], **options)


@pytest.mark.parametrize(("call", "message"), RANGE_LIBRARY_CASES, ids=lambda c: str(c)[:40])
def test_library_option_ranges(call, message, study):
    with pytest.raises(LogitLensError, match=re.escape(message)):
        call(study)


def test_numpy_counts_are_in_range(study):
    from logitlens.studies import summarize_study

    summary = summarize_study(study, n_boot=np.int64(50), seed=np.uint32(3))
    assert summary.n_boot == 50 and summary.seed == 3
    from_directory = summarize_study(str(study.out_dir), n_boot=50, seed=3)
    assert from_directory.to_dict() == summary.to_dict()


def test_pass_at_k_refuses_k_at_the_vocabulary_size(wrap_tiny):
    from logitlens.evaluation import check_ks, pass_at_k

    model = wrap_tiny("llama")
    assert check_ks(np.array([1, 10]), model.vocab_size) == [1, 10]
    with pytest.raises(logitlens.InputError, match="below the vocabulary size"):
        pass_at_k(model, ["logit"], ["not scored"], ks=[1, model.vocab_size])


# ----- pictures: the cap is what keeps them bounded --------------------------------------------


def test_a_picture_wider_than_the_cap_is_refused_before_drawing(wrap_tiny):
    from logitlens.options import MAX_PICTURE_POSITIONS
    from logitlens.pictures import plots

    model = wrap_tiny("llama")
    long_prompt = " ".join(["word"] * 70)  # about 140 tokens: more than the cap, in context
    result = logitlens.analyze(model, long_prompt, positions="all", k=1, targets=" word")
    assert result.positions.shape[1] > MAX_PICTURE_POSITIONS
    for draw in (plots.plot_grid, plots.plot_heatmap):
        with pytest.raises(logitlens.InputError, match="too wide to draw"):
            draw(result)
    at_cap = logitlens.analyze(model, long_prompt, positions=range(-MAX_PICTURE_POSITIONS, 0), k=1)
    assert plots.plot_grid(at_cap) is not None  # the cap itself is drawable


# ----- the library gets the same care as the command line --------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A result file, and damaged copies of it, by name."""
    from tiny_models import tiny_model

    hf_model, tokenizer = tiny_model("llama")
    model = logitlens.load_model(hf_model, tokenizer=tokenizer)
    result = logitlens.analyze(model, PUN, targets=" x", metrics=["topk", "target", "kl"])
    root = tmp_path_factory.mktemp("results")
    text = result.to_json(root / "good.json")
    record = json.loads(text)
    files = {"good": root / "good.json", "directory": root, "missing": root / "missing.json"}
    edits = {
        "truncated": text[: len(text) // 2],
        "fewer-layers": {**record, "layers": record["layers"][:-1]},
        "prompts-number": {**record, "prompts": 5},
        "token-ids-text": {**record, "token_ids": [["a"] * len(record["token_ids"][0])]},
        "position-outside": {**record, "positions": [[999]]},
        "k-bigger": {**record, "k": record["k"] + 1},
        "vocab-keys": {**record, "vocab": {"x": 1}},
    }
    for name, edit in edits.items():
        files[name] = root / f"{name}.json"
        files[name].write_text(edit if isinstance(edit, str) else json.dumps(edit), "utf-8")
    return files


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing", "No such file"),
        ("directory", "is a directory"),
        ("truncated", "is not valid JSON"),
        ("fewer-layers", "damaged or was edited: top_ids has shape"),
        ("prompts-number", "prompts must be a non-empty list of text"),
        ("token-ids-text", "token_ids must hold one list of int per prompt"),
        ("position-outside", "a position is outside its prompt"),
        ("k-bigger", "top_ids has shape"),
        ("vocab-keys", "not a logitlens result"),
    ],
)
def test_a_damaged_result_fails_at_load(name, message, saved):
    with pytest.raises(logitlens.InputError) as raised:
        logitlens.LensResult.from_json(saved[name])
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_good_result_still_loads(saved):
    result = logitlens.LensResult.from_json(saved["good"])
    assert result.top_tokens() and result.trajectory("target_prob").shape == (len(result.layers),)


LIBRARY_CASES = [
    (lambda m: logitlens.analyze(m, PUN, include_embed="no"), "include_embed must be True or"),
    (lambda m: logitlens.generate_lens(m, PUN, include_embed="yes"), "include_embed must be"),
    (
        lambda m: logitlens.analyze(m, PUN, targets=" x", alternatives=[" a", " b", " c"]),
        "Got 3 alternatives for 1 prompts",
    ),
    (lambda m: logitlens.analyze(m, PUN, layers=np.array([0.5])), "Bad layer 0.5"),
    (lambda m: logitlens.analyze(m, PUN, k=np.array([1, 2])), "Bad k [1, 2]"),
    (lambda m: logitlens.generate_lens(m, PUN, max_new_tokens=np.int64(0)), "at least 1"),
    (lambda m: _study(m, "/nonexistent/items.jsonl"), "No items file at"),
    (lambda m: _study(m, ["a prompt"]), "items must be StudyItem objects, not str"),
    (lambda m: _study("gpt2", []), "run_study() needs a model from logitlens.load_model()"),
    (lambda m: _study(m, [_long_item()]), "Item 'long' is"),
]


def _study(model, items):
    from logitlens.studies import run_study

    return run_study(model, items, out_dir="/nonexistent/never-made", progress=False)


def _long_item():
    from logitlens.studies import StudyItem

    return StudyItem("long", "fact", " ".join(["word"] * 400), " x")


@pytest.mark.parametrize(("call", "message"), LIBRARY_CASES, ids=[c[1][:40] for c in LIBRARY_CASES])
def test_library_bad_input_is_a_clear_error(call, message, wrap_tiny):
    with pytest.raises(LogitLensError) as raised:
        call(wrap_tiny("llama"))
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_numpy_arrays_are_indices_and_counts(wrap_tiny):
    model = wrap_tiny("llama")
    result = logitlens.analyze(
        model, PUN, layers=np.array([0, -1]), positions=np.array([0, -1]), k=np.array(3)
    )
    assert result.layers == [0, 1] and result.k == 3
    assert result.positions.tolist() == [[0, len(result.tokens[0]) - 1]]
    assert logitlens.analyze(model, PUN, include_embed=np.bool_(True)).layers[0] == -1
    two = logitlens.analyze(model, [PUN, PUN], targets=np.array([5, 6]))
    assert two.target_ids == [[5], [6]]
    generated = logitlens.generate_lens(model, PUN, max_new_tokens=np.int64(2), k=np.int32(2))
    assert len(generated.generated_tokens) <= 2


def test_a_study_item_longer_than_the_context_is_named_before_any_batch(wrap_tiny, tmp_path):
    from logitlens.studies import load_items, run_study

    items = [*load_items()[:20], _long_item()]
    with pytest.raises(logitlens.InputError, match=r"Item 'long' is \d+ tokens, longer than"):
        run_study(wrap_tiny("llama"), items, out_dir=tmp_path, batch_size=2, progress=False)
    assert not list(tmp_path.rglob("part-*"))


def test_run_study_takes_a_dataset_path(wrap_tiny, tmp_path):
    from logitlens.studies import load_items, run_study

    items = load_items()[:3]
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(i.to_json()) + "\n" for i in items), "utf-8")
    study = run_study(wrap_tiny("llama"), str(path), out_dir=tmp_path / "s", progress=False)
    assert list(study.items.id) == [i.id for i in items]


# ----- JSON is always JSON ---------------------------------------------------------------------


def test_json_output_never_holds_nan_or_infinity(capsys, wrap_tiny):
    from logitlens.cli.application import print_json

    print_json({"depth": float("inf"), "low": -np.inf, "gap": [np.float64("nan"), 1.5]})
    assert json.loads(capsys.readouterr().out) == {"depth": None, "low": None, "gap": [None, 1.5]}
    result = logitlens.analyze(wrap_tiny("llama"), PUN, metrics=["kl"])
    result.kl[0, 0, 0] = np.inf
    text = result.to_json()
    assert "Infinity" not in text and json.loads(text)["kl"][0][0][0] is None


def test_a_long_prompt_in_a_later_batch_is_named_before_any_batch(
    tiny_everywhere, tmp_path, capsys
):
    long_prompt = " ".join(["word"] * 400)
    pairs = [arg for i in range(5) for arg in ("-p", f"Prompt number {i} is=> the")]
    args = ["compare", *pairs, "-p", f"{long_prompt}=> x", "--batch-size", "2"]
    code, err = run_cli([*args, "--out", str(tmp_path / "r.jsonl")], capsys)
    assert_one_line_error(code, err, "Prompt 5 is")
    assert not (tmp_path / "r.jsonl").exists() or len((tmp_path / "r.jsonl").read_text()) == 0
