"""Every writer on a real full disk and a real read-only file system.

A 64 KiB tmpfs is mounted for each test (we need root: the test skips, saying why, where
mounting is not permitted) and filled to the last byte, or remounted read-only. Each
writer must stop with one line naming the problem (exit code 2 on the command line) and
leave no partial file behind.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest

import logitlens
from logitlens.cli import analysis_commands, main, runners, tuned_commands
from logitlens.errors import LogitLensError

PUN = "Why do electricians make good swimmers? Because they know the"


def _mount(directory: Path, *options: str) -> None:
    completed = subprocess.run(
        ["mount", *options, str(directory)], capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({completed.stderr.strip()}): needs root")


def _fill(directory: Path) -> None:
    """Write until the file system is full, to the last block."""
    with open(directory / "filler", "wb", buffering=0) as filler:
        for size in (1 << 12, 1):
            while True:
                try:
                    filler.write(b"\0" * size)
                except OSError as error:
                    assert error.errno == errno.ENOSPC
                    break


@pytest.fixture(params=["full", "read-only"])
def place(request, tmp_path):
    """A directory on a full or a read-only file system; unmounted afterwards."""
    directory = tmp_path / "small"
    directory.mkdir()
    _mount(directory, "-t", "tmpfs", "-o", "size=64k", "tmpfs")
    try:
        if request.param == "full":
            _fill(directory)
        else:
            _mount(directory, "-o", "remount,ro")
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


@pytest.fixture
def commands_open_tiny(tiny, monkeypatch):
    """The CLI's commands open the test's tiny model instead of loading one."""
    for module in (runners, analysis_commands, tuned_commands):
        if hasattr(module, "open_model"):
            monkeypatch.setattr(module, "open_model", lambda *a, **k: tiny)


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != "filler")


CLI_WRITERS = {
    "results": ["compare", "-p", f"{PUN}=> current", "--out", "{dir}/results.jsonl"],
    "plot": ["top", PUN, "--plot", "{dir}/top.png"],
    "grid": ["grid", PUN, "-o", "{dir}/grid.png"],
    "report": ["report", PUN, "-o", "{dir}/report.html"],
    "tuned train (lens and checkpoints)": [
        "tuned", "train", "--tokens", "64", "--seq-len", "16", "--batch-size", "2",
        "--checkpoint-every", "1", "-o", "{dir}/lens.safetensors",
    ],
}  # fmt: skip


@pytest.mark.parametrize("args", CLI_WRITERS.values(), ids=list(CLI_WRITERS))
def test_cli_writers_stop_with_one_line_and_leave_nothing(args, place, commands_open_tiny, capsys):
    with pytest.raises(SystemExit) as stopped:
        main([arg.replace("{dir}", str(place)) for arg in args])
    err = capsys.readouterr().err
    assert stopped.value.code == 2, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("Error:") and "Traceback" not in err, err
    assert any(word in lines[-1] for word in ("full", "read-only")), err
    assert _leftovers(place) == []


def test_library_writers_raise_one_line_and_leave_nothing(place, tiny):
    from logitlens.lenses import TunedLens

    result = logitlens.analyze(tiny, PUN)
    writers = [
        lambda: result.to_json(place / "result.json"),
        lambda: TunedLens.identity(tiny).save(place / "lens.safetensors"),
    ]
    for write in writers:
        with pytest.raises(LogitLensError) as raised:
            write()
        message = str(raised.value)
        assert "\n" not in message and ("full" in message or "read-only" in message), message
        assert _leftovers(place) == []


@pytest.mark.bundled
def test_model_cache_conversion_stops_with_one_line(place, monkeypatch):
    """The first load of a bundled model converts it into the cache; here the cache is
    on the small file system (only the cache directory is moved)."""
    from logitlens import loading

    monkeypatch.setattr(loading, "cache_dir", lambda: place / "cache")
    with pytest.raises(logitlens.OutputError) as raised:
        loading.bundled_model_dir()
    message = str(raised.value)
    assert "\n" not in message and ("full" in message or "read-only" in message), message
    assert _leftovers(place) in ([], ["cache"])
    if (place / "cache").exists():
        assert list((place / "cache").rglob("*")) in ([], [place / "cache" / "models"])


def test_the_fixture_really_fills_and_protects(place):
    with pytest.raises(OSError) as raised:
        (place / "probe").write_bytes(b"x" * 8192)
    assert raised.value.errno in (errno.ENOSPC, errno.EROFS)
    if raised.value.errno == errno.ENOSPC:
        os.remove(place / "probe")


def test_a_results_file_that_fills_the_disk_says_what_it_kept(tmp_path, tiny, capsys):
    """The disk fills up after a few batches: the message counts the records on disk,
    every one of them is whole, and no torn line is left."""
    directory = tmp_path / "small"
    directory.mkdir()
    _mount(directory, "-t", "tmpfs", "-o", "size=64k", "tmpfs")
    try:
        out = directory / "results.jsonl"
        pairs = [arg for i in range(400) for arg in ("--pair", f"{PUN} {i}=> current")]
        with pytest.raises(SystemExit) as stopped:
            main(["compare", *pairs, "--out", str(out), "--batch-size", "4"])
        err = capsys.readouterr().err
        assert stopped.value.code == 2, err
        lines = out.read_bytes().splitlines(keepends=True)
        assert all(line.endswith(b"\n") for line in lines)
        records = [json.loads(line) for line in lines[1:]]
        assert records and all("key" in record for record in records)
        last = err.strip().splitlines()[-1]
        assert last.startswith("Error: Could not write") and "disk is full" in last, err
        assert f"{len(records)} finished prompt(s) are kept in {out}" in last, err
        assert "Nothing was written" not in last
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)
