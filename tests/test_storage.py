"""The storage layer: atomic writes with the user's umask, locks that follow a rename,
the never-overwrite-a-foreign-file rule, and the manifest differences in words."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from logitlens import storage
from logitlens.errors import InputError, OutputError


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


CONTENTS = {
    "bytes": (b"bytes\n", b"bytes\n"),
    "text": ("text \u2028 é\n", "text \u2028 é\n".encode()),
    "a function": (lambda p: p.write_bytes(b"by a function\n"), b"by a function\n"),
}


@pytest.mark.parametrize("content, expected", CONTENTS.values(), ids=list(CONTENTS))
def test_new_files_follow_the_umask_and_hold_the_content(tmp_path, umask_022, content, expected):
    path = storage.write_atomic(tmp_path / "out.bin", content)
    assert _mode(path) == 0o644  # not mkstemp's 0600
    assert path.read_bytes() == expected
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_a_stricter_umask_and_a_replaced_files_own_mode_are_kept(tmp_path):
    previous = os.umask(0o077)
    try:
        assert _mode(storage.write_atomic(tmp_path / "private", b"x")) == 0o600
    finally:
        os.umask(previous)
    shared = tmp_path / "shared"
    shared.write_bytes(b"old")
    shared.chmod(0o664)
    storage.write_atomic(shared, b"new")
    assert _mode(shared) == 0o664 and shared.read_bytes() == b"new"


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, failure):
    path = tmp_path / "lens.safetensors"
    path.write_bytes(b"the old file")

    def fail(temporary):
        temporary.write_bytes(b"half")
        raise failure

    expected = OutputError if isinstance(failure, OSError) else KeyboardInterrupt
    with pytest.raises(expected) as raised:
        storage.write_atomic(path, fail)
    assert path.read_bytes() == b"the old file"
    assert [p.name for p in tmp_path.iterdir()] == ["lens.safetensors"]
    if expected is OutputError:
        assert str(raised.value) == (
            f"Could not write {str(path)!r}: the disk is full: free some space or choose "
            f"another directory. {str(path)!r} was left as it was."
        )


def test_a_failed_new_file_says_nothing_was_written(tmp_path):
    with pytest.raises(OutputError, match=r"read-only.*Nothing was written\.$"):
        storage.write_atomic(tmp_path / "new", lambda p: (_ for _ in ()).throw(OSError(30, "x")))


def test_short_writes_are_completed():
    class Trickle:
        def __init__(self):
            self.data = b""

        def write(self, view):
            self.data += bytes(view[:3])
            return min(3, len(view))

    stream = Trickle()
    storage.write_all(stream, b"0123456789")
    assert stream.data == b"0123456789"


def test_the_lock_follows_the_file_through_a_rewrite(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"old\n")
    first = storage.open_locked(path, "busy")
    with pytest.raises(OutputError, match="busy"):
        storage.open_locked(path, "busy")
    rewritten = storage.rewrite_locked(path, b"new\n")
    first.close()  # the old file's lock is gone; the new file's is held
    with pytest.raises(InputError, match="busy"):
        storage.open_locked(path, "busy", InputError)
    rewritten.close()
    again = storage.open_locked(path, "busy")
    again.seek(0)
    assert again.read() == b"new\n"
    again.close()


def test_stale_temporaries_of_one_file_only_are_removed(tmp_path):
    for name in (".out.jsonl.abc.tmp", ".out.jsonl.rejected", ".other.abc.tmp", "out.jsonl"):
        (tmp_path / name).write_bytes(b"")
    storage.remove_stale_temporaries(tmp_path / "out.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".other.abc.tmp",
        ".out.jsonl.rejected",
        "out.jsonl",
    ]


def test_a_foreign_file_is_never_replaced_unless_forced(tmp_path):
    theirs = tmp_path / "model.safetensors"
    theirs.write_bytes(b"someone's weights")
    with pytest.raises(InputError) as refused:
        storage.refuse_foreign(theirs, lambda p: False, "lens file")
    assert str(refused.value) == (
        f"{str(theirs)!r} exists and is not a lens file written by logitlens; logitlens will "
        "not overwrite it. Choose another path, or pass --force (library: force=True) to "
        "replace it."
    )
    storage.refuse_foreign(theirs, lambda p: False, "lens file", force=True)
    storage.refuse_foreign(theirs, lambda p: True, "lens file")
    storage.refuse_foreign(tmp_path / "missing", lambda p: False, "lens file")


DIFFERENCES = {
    "same": ({"k": 1}, {"k": 1}, []),
    "one key": ({"k": 10}, {"k": 3}, ["options (k): 10 -> 3"]),
    "two keys": (
        {"k": 10, "m": "a"},
        {"k": 3, "m": "b"},
        ["options (k, m): k 10 -> 3, m 'a' -> 'b'"],
    ),
    "added since": ({}, {"k": 1}, ["options (k): None -> 1"]),
    "default fills": ({}, {"g": 0}, []),
    "remote hash": ({"weights_sha256": None}, {"weights_sha256": "a" * 64}, []),
    "hash shortened": (
        {"weights_sha256": "a" * 64},
        {"weights_sha256": "b" * 64},
        ["options (weights_sha256): aaaaaaaaaaaa -> bbbbbbbbbbbb"],
    ),
    "not a dict": ("x", {"k": 1}, ["options: 'x' -> {'k': 1}"]),
}


@pytest.mark.parametrize("old, new, expected", DIFFERENCES.values(), ids=list(DIFFERENCES))
def test_manifest_differences_in_words(old, new, expected):
    found = storage.manifest_differences(
        {"options": old}, {"options": new}, ["options"], defaults={"options": {"g": 0}}
    )
    assert found == expected


# ----- every writer keeps the rule ----------------------------------------------------------


def _foreign_files(directory):
    """Files logitlens did not write, at paths its writers might be pointed at."""
    from safetensors.torch import save_file

    model = directory / "model.safetensors"
    save_file({"lm_head.weight": torch.ones(2, 2)}, str(model))  # someone's model weights
    notes = directory / "notes.safetensors"
    notes.write_text("my precious notes\n")
    return {"model weights": model, "notes": notes}


def _jacobian_file(model, path, seed: int) -> str:
    from logitlens.lenses import JacobianLens
    from logitlens.lenses.files import model_fingerprint

    fingerprint = model_fingerprint(model)
    slots, d_model = fingerprint["n_layers"] + 1, fingerprint["d_model"]
    noise = torch.randn(slots, d_model, d_model, generator=torch.Generator().manual_seed(seed))
    lens = JacobianLens.from_jacobians(torch.eye(d_model) + 0.01 * noise, fingerprint)
    lens.info["n_prompts"] = 3
    return str(lens.save(path))


CLI_WRITERS = {
    "lens import": ["lens", "import", "{lens}", "--out", "{out}"],
    "tuned train": ["tuned", "train", "--tokens", "64", "--seq-len", "16", "-o", "{out}"],
    "jlens fit": ["jlens", "fit", "--n-texts", "1", "--seq-len", "32", "-o", "{out}"],
    "jlens merge": ["jlens", "merge", "{lens}", "{other}", "--out", "{out}"],
}


@pytest.mark.parametrize("target", ["model weights", "notes"])
@pytest.mark.parametrize("args", CLI_WRITERS.values(), ids=list(CLI_WRITERS))
def test_cli_writers_never_replace_a_foreign_file(wrap_tiny, tmp_path, capsys, args, target):
    from logitlens.cli import main

    model = wrap_tiny("llama")
    foreign = _foreign_files(tmp_path)[target]
    before = foreign.read_bytes()
    lens = _jacobian_file(model, tmp_path / "a.safetensors", 0)
    other = _jacobian_file(model, tmp_path / "b.safetensors", 1)
    filled = [a.format(lens=lens, other=other, out=foreign) for a in args]
    with pytest.raises(SystemExit) as stopped:
        main(filled)
    err = capsys.readouterr().err
    assert stopped.value.code == 2, err
    assert err.strip().splitlines()[-1] == (
        f"Error: {str(foreign)!r} exists and is not a lens file written by logitlens; "
        "logitlens will not overwrite it. Choose another path, or pass --force (library: "
        "force=True) to replace it."
    )
    assert "Unexpected" not in err and foreign.read_bytes() == before


def test_jlens_merge_with_force_replaces_and_refuses_pt_and_twins(wrap_tiny, tmp_path, capsys):
    from logitlens.cli import main
    from logitlens.lenses import load_lens

    model = wrap_tiny("llama")
    foreign = _foreign_files(tmp_path)["model weights"]
    lens = _jacobian_file(model, tmp_path / "a.safetensors", 0)
    other = _jacobian_file(model, tmp_path / "b.safetensors", 1)
    with pytest.raises(SystemExit) as stopped:
        main(["jlens", "merge", lens, other, "--out", str(foreign), "--force"])
    assert stopped.value.code in (0, None), capsys.readouterr().err
    assert load_lens(str(foreign)).n_prompts == 6
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes((tmp_path / "a.safetensors").read_bytes())
    cases = {
        ".pt output": ([lens, other, "--out", str(tmp_path / "x.pt")], "Write the lens as a"),
        "one file twice": ([lens, lens, "--out", str(tmp_path / "m.safetensors")], "same fit"),
        "a copy": ([lens, str(copy), "--out", str(tmp_path / "m.safetensors")], "same fit"),
    }
    for arguments, fragment in cases.values():
        capsys.readouterr()
        with pytest.raises(SystemExit) as stopped:
            main(["jlens", "merge", *arguments])
        err = capsys.readouterr().err
        assert stopped.value.code == 2 and fragment in err.strip().splitlines()[-1], err
        assert "Unexpected" not in err
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "m.safetensors").exists()


def test_library_writers_never_replace_a_foreign_file(wrap_tiny, tmp_path):
    from logitlens.errors import LensFileError
    from logitlens.lenses import TunedLens, load_lens
    from logitlens.training import train_tuned_lens
    from logitlens.training.jacobian import fit_jacobian_lens, merge_jacobian_lenses

    model = wrap_tiny("llama")
    foreign = _foreign_files(tmp_path)["model weights"]
    before = foreign.read_bytes()
    lens = TunedLens.identity(model)
    writers = {
        "save": lambda: lens.save(foreign),
        "train": lambda: train_tuned_lens(model, foreign, documents=["a b c"] * 50),
        "fit": lambda: fit_jacobian_lens(model, ["a b c"] * 50, output=foreign),
        "checkpoint": lambda: train_tuned_lens(
            model, foreign.with_suffix(".x.safetensors"), documents=["a b c"] * 50
        ),
    }
    checkpoint = foreign.with_suffix(".x.safetensors.checkpoint")
    checkpoint.write_text("my notes, named like a checkpoint\n")
    for write in writers.values():
        with pytest.raises(InputError, match=r"not a (lens file|training checkpoint) written by"):
            write()
    assert foreign.read_bytes() == before
    lens.save(foreign, force=True)
    assert load_lens(str(foreign)).name == "tuned"
    lens.save(foreign)  # now logitlens's own file: replacing it needs no force
    a = _jacobian_file(model, tmp_path / "a.safetensors", 0)
    with pytest.raises(LensFileError, match="same fit"):
        merge_jacobian_lenses([a, a])


PICTURE_WRITERS = {
    "top --plot": ["top", "hello", "--plot", "{png}"],
    "track --plot": ["track", "hello", "-t", " x", "--plot", "{png}"],
    "compare --plot": ["compare", "-p", "hello=> x", "--plot", "{png}"],
    "heatmap": ["heatmap", "hello", "-t", " x", "-o", "{png}"],
    "grid": ["grid", "hello", "-o", "{png}"],
    "report": ["report", "hello", "-o", "{html}"],
    "generate --plot": ["generate", "hello", "--plot", "{png}"],
    "attribute --plot": ["attribute", "hello", "-t", " x", "--plot", "{png}"],
    "lens eval --plot": ["lens", "eval", "--plot", "{png}"],
    "tuned eval --plot": ["tuned", "eval", "--plot", "{png}"],
    "study summary --plot": ["study", "summary", "{dir}", "--plot", "{png}"],
    "study summary --report": ["study", "summary", "{dir}", "--report", "{html}"],
    "study compare --plot": ["study", "compare", "{dir}", "--plot", "{png}"],
}


@pytest.mark.parametrize("args", PICTURE_WRITERS.values(), ids=list(PICTURE_WRITERS))
def test_pictures_and_reports_never_replace_a_foreign_file(tmp_path, capsys, args):
    """Refused before any model is loaded: one line, exit 2, the file untouched."""
    from logitlens.cli import main

    photo = tmp_path / "holiday.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n someone's photo")
    page = tmp_path / "index.html"
    page.write_text("<html>my home page</html>")
    filled = [a.format(png=photo, html=page, dir=tmp_path) for a in args]
    target = photo if "{png}" in args else page
    with pytest.raises(SystemExit) as stopped:
        main(filled)
    err = capsys.readouterr().err
    assert stopped.value.code == 2, err
    what = "picture" if target == photo else "report"
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith(f"Error: {str(target)!r} exists and is not a {what} written by logitlens")
    ), err
    assert "Unexpected" not in err
    assert photo.read_bytes().endswith(b"someone's photo") and "my home" in page.read_text()


@pytest.mark.parametrize("suffix", [".png", ".svg", ".pdf"])
def test_a_picture_logitlens_wrote_is_replaced_a_foreign_one_only_by_force(tmp_path, suffix):
    import matplotlib.pyplot as plt

    from logitlens.pictures.plots import save_figure

    path = tmp_path / f"figure{suffix}"
    path.write_bytes(b"not ours")
    with pytest.raises(InputError, match="is not a picture written by logitlens"):
        save_figure(plt.figure(), path)
    assert path.read_bytes() == b"not ours"
    save_figure(plt.figure(), path, force=True)
    assert storage.carries_marker(path)
    save_figure(plt.figure(), path)  # ours now: replaced without force


def test_results_and_reports_from_the_library_keep_the_rule(wrap_tiny, tmp_path):
    import logitlens
    from logitlens.pictures.report import write_report

    result = logitlens.analyze(wrap_tiny("llama"), "hello there", k=3)
    notes = tmp_path / "notes.json"
    notes.write_text('{"my": "notes"}')
    with pytest.raises(InputError, match="is not a result file written by logitlens"):
        result.to_json(notes)
    result.to_json(notes, force=True)
    result.to_json(notes)
    assert logitlens.LensResult.from_json(notes).prompts == ["hello there"]
    page = tmp_path / "page.html"
    page.write_text("<html>mine</html>")
    with pytest.raises(InputError, match="is not a report written by logitlens"):
        write_report(result, page)
    write_report(result, page, force=True)
    write_report(result, page)
    assert '<meta name="generator" content="logitlens">' in page.read_text()


def test_files_of_every_writer_follow_the_umask(wrap_tiny, tmp_path, umask_022):
    """Lens files, study manifests and parts, results files: 0644 under umask 022."""
    from study_items import make_items

    from logitlens.lenses import TunedLens
    from logitlens.runs import analyze_to_jsonl
    from logitlens.studies import run_study

    model = wrap_tiny("llama")
    TunedLens.identity(model).save(tmp_path / "lens.safetensors")
    run_study(model, make_items(4), out_dir=tmp_path / "study", progress=False)
    analyze_to_jsonl(model, ["hello"], tmp_path / "out.jsonl", progress=False)
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != ".lock"]
    assert len(files) >= 5
    assert {p.name: _mode(p) for p in files} == {p.name: 0o644 for p in files}


def test_a_damaged_remote_weight_cache_is_fetched_again(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from logitlens.remote import weights

    cache = tmp_path / "head.safetensors"
    monkeypatch.setattr(weights, "cache_path", lambda repo_id: cache)
    fetched = []

    def fetch(repo_id, names):
        fetched.append(repo_id)
        return {"lm_head.weight": torch.arange(6.0).reshape(2, 3)}

    monkeypatch.setattr(weights, "fetch_tensors", fetch)
    cache.write_bytes(b"torn")
    tensors = weights.cached_tensors("org/model", ["lm_head.weight"])
    assert fetched == ["org/model"] and torch.equal(
        load_file(cache)["lm_head.weight"], tensors["lm_head.weight"]
    )
    weights.cached_tensors("org/model", ["lm_head.weight"])
    assert fetched == ["org/model"]  # read from the cache the second time


@pytest.mark.parametrize("stop", ["during training", "before training"])
def test_ctrl_c_in_training_says_what_is_on_disk(wrap_tiny, tmp_path, capsys, monkeypatch, stop):
    from logitlens.cli import main, runners
    from logitlens.training import tuned

    model = wrap_tiny("llama")
    monkeypatch.setattr(runners, "open_model", lambda *args, **kwargs: model)
    real, calls = tuned.lens_loss, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    def no_text(*args, **kwargs):
        raise KeyboardInterrupt

    if stop == "during training":
        monkeypatch.setattr(tuned, "lens_loss", interrupted)
    else:
        monkeypatch.setattr(tuned, "load_documents", no_text)
    out = tmp_path / "lens.safetensors"
    args = ["tuned", "train", "--tokens", "256", "--seq-len", "16", "--batch-size", "2"]
    with pytest.raises(SystemExit) as stopped:
        main([*args, "-o", str(out)])
    err = capsys.readouterr().err
    assert stopped.value.code == 130, err
    checkpoint = tmp_path / "lens.safetensors.checkpoint"
    if stop == "during training":
        assert checkpoint.is_file()
        assert f"Interrupted. The training so far is kept in {checkpoint}; run again" in err
    else:
        assert not checkpoint.exists() and "Interrupted. Nothing was written." in err
