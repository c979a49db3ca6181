"""run_study: rows equal analyze(), streaming and resuming, kill -9, refusals, the CLI."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from study_items import make_items, write_items
from typer.testing import CliRunner

import logitlens
from logitlens import InputError
from logitlens.cli import app
from logitlens.studies import StudyResult, run_study
from logitlens.studies import run as study_run
from logitlens.studies.run import plan_batches

SRC = Path(logitlens.__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def test_rows_equal_analyze_per_item(shared_tiny, tmp_path):
    items = make_items(12)
    study = run_study(shared_tiny, items, out_dir=tmp_path / "s", batch_size=4, progress=False)
    assert list(study.items.id) == sorted(item.id for item in items)
    n_layers = shared_tiny.n_layers
    assert len(study.layers) == len(items) * n_layers
    for item in items:
        alone = logitlens.analyze(
            shared_tiny,
            item.prompt,
            targets=[[item.target, item.alternative or item.target]],
            metrics=["target", "target_rank", "entropy"],
        )
        rows = study.layers[study.layers.id == item.id]
        np.testing.assert_allclose(rows.target_prob, alone.target_prob[0, :, 0, 0], rtol=1e-4)
        np.testing.assert_array_equal(rows.target_rank, alone.target_rank[0, :, 0, 0])
        np.testing.assert_allclose(rows.entropy, alone.entropy[0, :, 0], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(rows.depth, (np.arange(n_layers) + 1) / n_layers)
        if item.alternative is None:
            assert rows.logit_diff.isna().all() and rows.alternative_prob.isna().all()
        else:
            # The study's logit_diff comes from the logit_diff metric; here, independently,
            # from the logits of two plain targets.
            logits = alone.target_logit[0, :, 0]
            np.testing.assert_allclose(
                rows.logit_diff, logits[:, 0] - logits[:, 1], rtol=1e-4, atol=1e-4
            )
            np.testing.assert_allclose(
                rows.alternative_prob, alone.target_prob[0, :, 0, 1], rtol=1e-4
            )
            np.testing.assert_array_equal(rows.alternative_rank, alone.target_rank[0, :, 0, 1])
        row = study.items[study.items.id == item.id].iloc[0]
        top1 = alone.first_layer_top1()
        assert (None if pd.isna(row.first_layer_top1) else row.first_layer_top1) == top1
        above = alone.first_layer_above(0.1)
        assert (None if pd.isna(row.first_layer_above) else row.first_layer_above) == above
        assert row.category == item.category and list(row.tags) == list(item.tags)


def test_first_layers_and_depths_when_targets_win(shared_tiny, tmp_path):
    """Targets chosen as the model's own prediction reach top-1 at the last layer at least."""
    items = make_items(8)
    prompts = [item.prompt for item in items]
    own = logitlens.analyze(shared_tiny, prompts, metrics=["topk"], k=1)
    winners = [int(i) for i in own.top_ids[:, -1, 0, 0]]
    items = [
        type(item)(**{**vars(item), "target": own.vocab[token], "alternative": None})
        for item, token in zip(items, winners, strict=True)
        # a decoded token need not encode back to itself: keep those that do
        if shared_tiny.tokenizer.encode(own.vocab[token], add_special_tokens=False) == [token]
    ]
    assert len(items) >= 3
    study = run_study(shared_tiny, items, out_dir=tmp_path / "s", threshold=0.0, progress=False)
    n_layers = shared_tiny.n_layers
    assert study.items.first_layer_top1.notna().all()
    assert (study.items.first_layer_above == 0).all()  # any probability exceeds 0
    expected = (study.items.first_layer_top1.astype(float) + 1) / n_layers
    np.testing.assert_allclose(study.items.depth_top1, expected)
    assert (study.items.final_rank == 1).all()


def test_length_bucketing_sorts_neighbours():
    lengths = [5, 3, 9, 3, 7, 1]
    assert plan_batches(lengths, 2) == [[5, 1], [3, 0], [4, 2]]
    assert sorted(i for batch in plan_batches(lengths, 4) for i in batch) == list(range(6))


def test_interrupted_run_resumes_without_duplicates(shared_tiny, tmp_path, monkeypatch):
    items = make_items(40)
    reference = run_study(
        shared_tiny, items, out_dir=tmp_path / "ref", batch_size=4, progress=False
    )
    calls = {"n": 0}
    real = study_run._run_batch

    def crash_after_three(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(study_run, "_run_batch", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        run_study(shared_tiny, items, out_dir=tmp_path / "s", batch_size=4, progress=False)
    partial = StudyResult.load(tmp_path / "s")
    assert len(partial.items) == 12 and not partial.complete
    monkeypatch.setattr(study_run, "_run_batch", real)
    resumed = run_study(shared_tiny, items, out_dir=tmp_path / "s", batch_size=4, progress=False)
    assert resumed.complete
    pd.testing.assert_frame_equal(resumed.items, reference.items)
    pd.testing.assert_frame_equal(resumed.layers, reference.layers)


def test_refuses_other_setup_naming_it(shared_tiny, tmp_path):
    items = make_items(6)
    run_study(shared_tiny, items, out_dir=tmp_path / "s", batch_size=4, progress=False)
    with pytest.raises(InputError, match=r"options \(batch_size\): 4 -> 2"):
        run_study(shared_tiny, items, out_dir=tmp_path / "s", batch_size=2, progress=False)
    with pytest.raises(InputError, match=r"options \(threshold\)"):
        run_study(shared_tiny, items, out_dir=tmp_path / "s", batch_size=4, threshold=0.5)
    with pytest.raises(InputError, match=r"lens \(name, sha256\): name 'logit' -> 'raw'"):
        run_study(shared_tiny, items, out_dir=tmp_path / "s", batch_size=4, lens="raw")
    with pytest.raises(InputError, match=r"dataset"):
        run_study(shared_tiny, items[:5], out_dir=tmp_path / "s", batch_size=4)
    from tiny_models import tiny_model

    other_model, tokenizer = tiny_model("llama", seed=1)
    other = logitlens.load_model(other_model, tokenizer=tokenizer)
    with pytest.raises(InputError, match=r"model \(weights_sha256\)"):
        run_study(other, items, out_dir=tmp_path / "s", batch_size=4)


def test_refuses_a_lens_with_other_weights(shared_tiny, tmp_path):
    from logitlens.lenses import TunedLens

    items = make_items(4)
    first = TunedLens.identity(shared_tiny)
    run_study(shared_tiny, items, out_dir=tmp_path / "s", batch_size=4, lens=first, progress=False)
    retrained = TunedLens.identity(shared_tiny)
    retrained.bias[1] += 0.5
    with pytest.raises(InputError, match=r"lens \(sha256\): [0-9a-f]{12} -> [0-9a-f]{12}"):
        run_study(shared_tiny, items, out_dir=tmp_path / "s", batch_size=4, lens=retrained)
    resumed = run_study(
        shared_tiny,
        items,
        out_dir=tmp_path / "s",
        batch_size=4,
        lens=TunedLens.identity(shared_tiny),
    )
    assert resumed.complete


def test_bad_inputs(shared_tiny, tmp_path):
    items = make_items(3)
    with pytest.raises(InputError, match="twice"):
        run_study(shared_tiny, [items[0], items[0]], out_dir=tmp_path / "a")
    with pytest.raises(InputError, match="no items"):
        run_study(shared_tiny, [], out_dir=tmp_path / "b")
    with pytest.raises(InputError, match="threshold"):
        run_study(shared_tiny, items, out_dir=tmp_path / "c", threshold=2)
    with pytest.raises(InputError, match="not a study directory"):
        StudyResult.load(tmp_path / "nothing")


def test_tables_read_with_plain_pandas(shared_tiny, tmp_path):
    run_study(shared_tiny, make_items(10), out_dir=tmp_path / "s", batch_size=4, progress=False)
    layers = pd.read_parquet(tmp_path / "s" / "layers")
    items = pd.read_parquet(tmp_path / "s" / "items")
    assert len(items) == 10 and len(layers) == 10 * shared_tiny.n_layers
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["model"]["weights_sha256"] and manifest["lens"]["sha256"]
    assert manifest["dataset"]["n_items"] == 10


def _cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(TESTS)])
    env["OMP_NUM_THREADS"] = "1"  # one thread: the same floating-point sums in every run
    return env


def _study_command(data: Path, model_dir: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "logitlens",
        "study",
        str(data),
        "--model",
        str(model_dir),
        "--out",
        str(out),
        "--batch-size",
        "8",
        "--no-progress",
        "--json",
    ]


@pytest.mark.slow
def test_kill_minus_nine_five_times_then_resume_equals_uninterrupted(tiny_dir, tmp_path):
    """1,000 items, five kill -9 at random moments, resumed: exactly the uninterrupted rows."""
    data = write_items(make_items(1000), tmp_path / "items.jsonl")
    env = _cli_env()
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    subprocess.run(
        _study_command(data, tiny_dir, reference_dir), env=env, check=True, capture_output=True
    )
    reference = StudyResult.load(reference_dir)
    assert reference.complete
    n_batches = len(list((reference_dir / "items").glob("part-*.parquet")))

    rng = random.Random(1234)
    kills = 0
    while kills < 5:
        process = subprocess.Popen(
            _study_command(data, tiny_dir, killed_dir),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        done_before = len(list((killed_dir / "items").glob("part-*.parquet")))
        goal = min(n_batches - 1, done_before + rng.randint(1, n_batches // 6))
        deadline = time.time() + 120
        while (
            process.poll() is None
            and len(list((killed_dir / "items").glob("part-*.parquet"))) < goal
            and time.time() < deadline
        ):
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.05))  # land anywhere: mid-batch, mid-write, between
        if process.poll() is not None:
            break  # finished before we could kill it: nothing left to interrupt
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        kills += 1
        partial = StudyResult.load(killed_dir)
        assert not partial.items.id.duplicated().any()
    assert kills == 5
    subprocess.run(
        _study_command(data, tiny_dir, killed_dir), env=env, check=True, capture_output=True
    )
    resumed = StudyResult.load(killed_dir)
    assert not list(killed_dir.rglob(".*.tmp"))  # no stray temporaries either
    assert not resumed.items.id.duplicated().any()
    pd.testing.assert_frame_equal(resumed.items, reference.items, check_exact=True)
    pd.testing.assert_frame_equal(resumed.layers, reference.layers, check_exact=True)


def test_cli_run_summary_compare(tiny_dir, tmp_path):
    data = write_items(make_items(24), tmp_path / "items.jsonl")
    runner = CliRunner()
    out = tmp_path / "out"
    args = ["study", str(data), "--model", str(tiny_dir), "--out", str(out), "--no-progress"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["n_items"] == 24 and {g["group"] for g in payload["groups"]} >= {"pun", "fact"}
    result = runner.invoke(
        app, ["study", "summary", str(out), "--report", str(tmp_path / "r.html")]
    )
    assert result.exit_code == 0, result.output
    assert "pun vs literal" in result.stdout and (tmp_path / "r.html").is_file()
    result = runner.invoke(app, ["study", "compare", str(out), str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["studies"]) == 2
    result = runner.invoke(app, [*args, "--batch-size", "3"])
    assert result.exit_code != 0 and "(batch_size): 16 -> 3" in str(result.exception)


@pytest.mark.bundled
def test_bundled_study_smoke(bundled, tmp_path):
    from logitlens.studies import load_items, summarize_study

    items = load_items()
    chosen = [next(i for i in items if i.category == c) for c in ("pun", "literal", "fact")]
    study = run_study(bundled, chosen, out_dir=tmp_path / "s", progress=False)
    assert study.complete and len(study.layers) == 3 * bundled.n_layers
    fact = study.items[study.items.category == "fact"].iloc[0]
    assert fact.final_prob > 0.0
    summary = summarize_study(study, n_boot=100)
    assert {g.group for g in summary.groups} == {"pun", "literal", "fact"}


def test_refuses_a_second_process_in_the_same_directory(shared_tiny, tmp_path):
    import fcntl

    items = make_items(4)
    run_study(shared_tiny, items, out_dir=tmp_path / "s", progress=False)
    with open(tmp_path / "s" / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(InputError, match="Another study is running"):
            run_study(shared_tiny, items, out_dir=tmp_path / "s", progress=False)


def test_generate_equals_generate_lens_per_item(shared_tiny, tmp_path):
    from logitlens.generation import generate_lens

    items = make_items(9)
    study = run_study(
        shared_tiny, items, out_dir=tmp_path / "s", batch_size=4, generate=3, progress=False
    )
    assert study.manifest["options"]["generate"] == 3
    n_layers = shared_tiny.n_layers
    for item in items:
        said = generate_lens(shared_tiny, item.prompt, 3, k=1)
        row = study.items[study.items.id == item.id].iloc[0]
        assert row.said_text == said.text and row.said_token == said.generated_tokens[0]
        target_id = shared_tiny.tokenizer.encode(item.target, add_special_tokens=False)[0]
        assert bool(row.says_target) == (said.generated_ids[0] == target_id)
        assert row.said_first_top1 == said.first_top1[0]
        stable = said.stable_top1[0]
        assert (None if pd.isna(row.said_stable_top1) else row.said_stable_top1) == stable
        assert row.said_depth_top1 == pytest.approx((said.first_top1[0] + 1) / n_layers)
    # A study without the option has the columns, all null.
    plain = run_study(shared_tiny, items, out_dir=tmp_path / "p", batch_size=4, progress=False)
    assert plain.items.says_target.isna().all() and plain.items.said_text.isna().all()


def test_generate_resumes_and_is_part_of_the_setup(shared_tiny, tmp_path, monkeypatch):
    items = make_items(12)
    options = {"batch_size": 4, "generate": 2, "progress": False}
    reference = run_study(shared_tiny, items, out_dir=tmp_path / "ref", **options)
    real = study_run._run_batch
    calls = {"n": 0}

    def crash_on_the_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(study_run, "_run_batch", crash_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        run_study(shared_tiny, items, out_dir=tmp_path / "s", **options)
    assert len(StudyResult.load(tmp_path / "s").items) == 4
    monkeypatch.setattr(study_run, "_run_batch", real)
    with pytest.raises(InputError, match=r"options \(generate\): 2 -> 0"):
        run_study(shared_tiny, items, out_dir=tmp_path / "s", batch_size=4, progress=False)
    resumed = run_study(shared_tiny, items, out_dir=tmp_path / "s", **options)
    pd.testing.assert_frame_equal(resumed.items, reference.items)
    pd.testing.assert_frame_equal(resumed.layers, reference.layers)


def test_a_study_written_before_the_generate_option_resumes(shared_tiny, tmp_path):
    items = make_items(6)
    run_study(shared_tiny, items, out_dir=tmp_path / "s", batch_size=4, progress=False)
    manifest_path = tmp_path / "s" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["options"]["generate"]
    manifest_path.write_text(json.dumps(manifest))
    assert run_study(
        shared_tiny, items, out_dir=tmp_path / "s", batch_size=4, progress=False
    ).complete
    with pytest.raises(InputError, match=r"options \(generate\): 0 -> 1"):
        run_study(shared_tiny, items, out_dir=tmp_path / "s", batch_size=4, generate=1)


def test_cli_generate_option(tiny_dir, tmp_path):
    from dataclasses import replace

    items = make_items(8)
    for index in (0, 4):  # item 0 (pun) and item 1 (literal) are a pair, 4 and 5 too
        pun, literal = items[index], items[index + 1]
        items[index], items[index + 1] = (
            replace(pun, pair=literal.id),
            replace(literal, pair=pun.id),
        )
    data = write_items(items, tmp_path / "items.jsonl")
    out = tmp_path / "out"
    args = ["study", str(data), "--model", str(tiny_dir), "--out", str(out), "--no-progress"]
    result = CliRunner().invoke(app, [*args, "--generate", "2", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert all(group["says_target"]["estimate"] is not None for group in payload["groups"])
    assert [test["n_pairs"] for test in payload["paired"]] == [2, 2]
    result = CliRunner().invoke(app, ["study", "summary", str(out)])
    assert result.exit_code == 0, result.output
    assert "says" in result.stdout and "Wilcoxon" in result.stdout
    assert json.loads((out / "manifest.json").read_text())["options"]["generate"] == 2
    result = CliRunner().invoke(app, [*args, "--generate", "-1"])
    assert result.exit_code == 2


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    """``logitlens ARGS`` in-process through the real entry point: (exit code, stdout, stderr)."""
    from logitlens.cli import main

    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exit_:
        code = exit_.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Unexpected" not in err and "Traceback" not in err, err
    assert all(fragment in errors[0] for fragment in fragments), err


def _study_args(data: Path, model_dir: Path, out: Path) -> list[str]:
    model = ["--model", str(model_dir)]
    return ["study", str(data), *model, "--out", str(out), "--batch-size", "4", "--no-progress"]


MANIFESTS = {
    "deleted": None,
    "empty object": "{}",
    "a list": "[1, 2]",
    "a string": '"manifest"',
    "not JSON": "{model: ",
    "not UTF-8": b"\xff\xfe{",
}


@pytest.mark.parametrize("manifest", MANIFESTS.values(), ids=list(MANIFESTS))
def test_a_study_without_a_valid_manifest_is_refused_everywhere(
    shared_tiny, tiny_dir, tmp_path, capsys, manifest
):
    """Never adopt parts nobody can vouch for: run, summary and compare all refuse."""
    out = tmp_path / "s"
    run_study(shared_tiny, make_items(8), out_dir=out, batch_size=4, progress=False)
    before = sorted(p.name for p in (out / "items").iterdir())
    path = out / "manifest.json"
    if manifest is None:
        path.unlink()
    else:
        (path.write_bytes if isinstance(manifest, bytes) else path.write_text)(manifest)
    other = make_items(6, seed=5)
    fix = "new --out" if manifest is None else "not a logitlens study manifest"
    with pytest.raises(InputError, match=fix):
        run_study(shared_tiny, other, out_dir=out, batch_size=4, progress=False)
    data = write_items(other, tmp_path / "other.jsonl")
    _assert_one_line(*_cli(capsys, *_study_args(data, tiny_dir, out))[::2], fix)
    for command in (["summary", str(out)], ["compare", str(out), str(out)]):
        code, _, err = _cli(capsys, "study", *command)
        expected = "not a study directory" if manifest is None else fix
        _assert_one_line(code, err, expected)
    assert sorted(p.name for p in (out / "items").iterdir()) == before


DAMAGE = {
    "truncated": lambda data: data[: len(data) // 2],
    "empty": lambda data: b"",
    "garbage": lambda data: b"not parquet at all" * 10,
    "another table": None,
}


@pytest.mark.parametrize("where", ["items", "layers"])
@pytest.mark.parametrize("damage", DAMAGE.values(), ids=list(DAMAGE))
def test_a_damaged_part_is_named_then_set_aside_and_recomputed(
    shared_tiny, tiny_dir, tmp_path, capsys, damage, where
):
    items = make_items(12)
    reference = run_study(
        shared_tiny, items, out_dir=tmp_path / "ref", batch_size=4, progress=False
    )
    out = tmp_path / "s"
    run_study(shared_tiny, items, out_dir=out, batch_size=4, progress=False)
    part = out / where / "part-00001.parquet"
    if damage is None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"x": [1, 2]}), part)
    else:
        part.write_bytes(damage(part.read_bytes()))
    for command in (["summary", str(out)], ["compare", str(out), str(out)]):
        _assert_one_line(*_cli(capsys, "study", *command)[::2], str(part), "rerun")
    with pytest.raises(InputError, match=r"part-00001\.parquet is damaged"):
        StudyResult.load(out)
    with pytest.warns(UserWarning, match=r"1 damaged batch\(es\) .*part-00001.parquet.rejected"):
        resumed = run_study(shared_tiny, items, out_dir=out, batch_size=4, progress=False)
    assert resumed.complete and part.with_name("part-00001.parquet.rejected").exists()
    pd.testing.assert_frame_equal(resumed.items, reference.items)
    pd.testing.assert_frame_equal(resumed.layers, reference.layers)


def test_summary_and_compare_say_when_a_study_is_partial(shared_tiny, tmp_path, capsys):
    out = tmp_path / "s"
    run_study(shared_tiny, make_items(12), out_dir=out, batch_size=4, progress=False)
    (out / "items" / "part-00002.parquet").unlink()  # as if stopped before the last batch
    for command in (["summary", str(out), "--n-boot", "50"], ["compare", str(out), "--json"]):
        code, _, err = _cli(capsys, "study", *command)
        assert code == 0, err
        assert f"{out} is a partial study: 8 of 12 items" in err, err
    (out / "items" / "part-00002.parquet").unlink(missing_ok=True)
    run_study(shared_tiny, make_items(12), out_dir=out, batch_size=4, progress=False)
    code, _, err = _cli(capsys, "study", "summary", str(out), "--n-boot", "50")
    assert code == 0 and "partial" not in err


def _ctrl_c_at_batch(monkeypatch, number: int) -> None:
    """Make the study's ``number``-th batch (from 1) end with a Ctrl-C."""
    real, calls = study_run._run_batch, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == number:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(study_run, "_run_batch", interrupted)


def test_ctrl_c_says_how_many_items_are_on_disk(tiny_dir, tmp_path, capsys, monkeypatch):
    data = write_items(make_items(20), tmp_path / "items.jsonl")
    out = tmp_path / "s"
    _ctrl_c_at_batch(monkeypatch, 4)
    code, _, err = _cli(capsys, *_study_args(data, tiny_dir, out))
    assert code == 130, err
    assert f"Interrupted. 12 of 20 items are kept in {out}; run the same command" in err, err
    first = tmp_path / "first"
    _ctrl_c_at_batch(monkeypatch, 1)
    code, _, err = _cli(capsys, *_study_args(data, tiny_dir, first))
    assert code == 130 and f"Interrupted. No item was finished ({first} holds no" in err, err
    assert study_run.kept_in(tmp_path / "never") == "Nothing was written."


@pytest.mark.slow  # two command lines in child processes; the fast tier has test_runs' pair
@pytest.mark.parametrize("signum", ["SIGKILL", "SIGINT"])
def test_a_study_stopped_inside_a_part_rewrite_keeps_every_item(
    shared_tiny, tiny_dir, tmp_path, monkeypatch, signum
):
    """kill -9 or Ctrl-C while a part is between its temporary and its rename: the
    committed items are all there, Ctrl-C counts them, and the rerun completes."""
    from rewrite_window import signal_inside_rewrite

    items = make_items(20)
    data = write_items(items, tmp_path / "items.jsonl")
    out = tmp_path / "s"
    from logitlens.cli import main

    _ctrl_c_at_batch(monkeypatch, 3)
    with pytest.raises(SystemExit):
        main(_study_args(data, tiny_dir, out))
    monkeypatch.undo()
    assert len(StudyResult.load(out).items) == 8
    stopped = signal_inside_rewrite(
        _study_args(data, tiny_dir, out), tmp_path / "marker", getattr(signal, signum)
    )
    assert len(StudyResult.load(out).items) == 8
    if signum == "SIGINT":
        assert stopped.returncode == 130, stopped.stderr
        assert f"Interrupted. 8 of 20 items are kept in {out}" in stopped.stderr
        assert "Unexpected" not in stopped.stderr
    with pytest.raises(SystemExit):
        main(_study_args(data, tiny_dir, out))
    resumed = StudyResult.load(out)
    reference = run_study(
        shared_tiny, items, out_dir=tmp_path / "ref", batch_size=4, progress=False
    )
    assert not list(out.rglob(".*.tmp"))
    pd.testing.assert_frame_equal(resumed.items, reference.items)


def test_attribution_columns_equal_the_plain_pytorch_reference(tmp_path):
    from reference import direct_logit_attribution
    from tiny_models import tiny_model

    hf_model, tokenizer = tiny_model("gpt2")
    model = logitlens.load_model(hf_model, tokenizer=tokenizer)
    items = make_items(8)
    study = run_study(
        model, items, out_dir=tmp_path / "s", batch_size=3, attribution=True, progress=False
    )
    n_layers = study.n_layers
    for item in items:
        rows = study.layers[study.layers.id == item.id].sort_values("layer")
        ids = torch.tensor([model.tokenizer(item.prompt)["input_ids"]])
        target_id = model.tokenizer.encode(item.target, add_special_tokens=False)[0]
        expected = direct_logit_attribution(hf_model, ids, target_id)
        np.testing.assert_allclose(rows.attention_target, expected["attention"][:, -1], atol=1e-4)
        np.testing.assert_allclose(rows.mlp_target, expected["mlp"][:, -1], atol=1e-4)
        if item.alternative is None:
            assert rows.attention_diff.isna().all() and rows.mlp_diff.isna().all()
            continue
        alternative_id = model.tokenizer.encode(item.alternative, add_special_tokens=False)[0]
        other = direct_logit_attribution(hf_model, ids, alternative_id)
        np.testing.assert_allclose(
            rows.mlp_diff, expected["mlp"][:, -1] - other["mlp"][:, -1], atol=1e-4
        )
    assert len(study.layers) == len(items) * n_layers
    # Without --attribution the columns are there, and null.
    plain = run_study(model, items[:2], out_dir=tmp_path / "p", progress=False)
    assert plain.layers.mlp_target.isna().all()


def test_cli_attribution_is_recorded_and_summarised(tiny_dir, tmp_path):
    data = write_items(make_items(24), tmp_path / "items.jsonl")
    out = tmp_path / "out"
    runner = CliRunner()
    args = ["study", str(data), "--model", str(tiny_dir), "--out", str(out), "--no-progress"]
    result = runner.invoke(app, [*args, "--attribution", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    parts = {(c["group"], c["part"], c["measure"]) for c in payload["components"]}
    assert ("pun", "mlp", "target - alternative") in parts
    assert any(t["metric"].startswith("pun: MLP vs attention") for t in payload["component_tests"])
    layers = StudyResult.load(out).layers
    assert layers.mlp_target.notna().all() and layers.attention_target.notna().all()
    result = runner.invoke(app, ["study", "summary", str(out)])
    assert result.exit_code == 0, result.output
    assert "Direct logit attribution" in result.stdout and "MLP against attention" in result.stdout
    # The option is part of the setup: resuming without it is refused.
    result = runner.invoke(app, args)
    assert result.exit_code != 0 and "attribution" in str(result.exception)
