"""The documentation stays true: the site builds strictly, every Python example in the
README and docs/ runs, and every ``logitlens`` command in their bash blocks names real
commands and options.

A Python block that needs the network or an NDIF key is preceded by a line
``<!-- no-run: why -->`` and is only compiled. The blocks of one page run in order in one
fresh interpreter (a page builds on its own earlier blocks, as a reader would), in a
temporary directory, so files the examples write land there.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
FENCE = re.compile(r"^```(\w*)\s*$")
NO_RUN = re.compile(r"^<!--\s*no-run:\s*(?P<why>.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown page."""

    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    no_run: str | None  # the reason given in a preceding <!-- no-run: ... --> line


def code_blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page`` (top-level fences only, as MkDocs renders them)."""
    blocks, lines = [], page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        start, body = index, []
        index += 1
        while index < len(lines) and lines[index].strip() != "```":
            body.append(lines[index])
            index += 1
        previous = next((line for line in reversed(lines[:start]) if line.strip()), "")
        marker = NO_RUN.match(previous)
        blocks.append(
            Block(page, start + 1, match[1], "\n".join(body), marker["why"] if marker else None)
        )
        index += 1
    return blocks


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


PYTHON_PAGES = [
    page
    for page in PAGES
    if any(b.language == "python" and b.no_run is None for b in code_blocks(page))
]

# Runs each block in turn in one namespace and names the block that failed.
RUNNER = textwrap.dedent(
    """
    import json, sys, traceback
    namespace = {"__name__": "__main__"}
    for where, code in json.load(open(sys.argv[1], encoding="utf-8")):
        try:
            exec(compile(code, where, "exec"), namespace)
        except BaseException:
            traceback.print_exc()
            sys.exit(f"the example at {where} failed")
    """
)


def python(arguments: list[str], cwd: Path, **env: str) -> None:
    """Run this interpreter on the worktree's package; fail with the end of its stderr."""
    done = subprocess.run(
        [sys.executable, *arguments],
        cwd=cwd,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]


def test_the_pages_have_examples_and_no_run_gives_a_reason():
    blocks = [block for page in PAGES for block in code_blocks(page)]
    assert len([b for b in blocks if b.language == "python"]) >= 15
    assert {page_id(p) for p in PYTHON_PAGES} >= {"README.md", "docs/tutorials/first-steps.md"}
    for block in blocks:
        if block.no_run is not None:
            assert block.no_run, f"{page_id(block.page)}:{block.line}: say why it cannot run"
            assert block.language == "python", f"{page_id(block.page)}:{block.line}"


def test_no_run_examples_compile():
    """An example that cannot run here (network, NDIF) is still valid Python."""
    for page in PAGES:
        for block in code_blocks(page):
            if block.language == "python":
                compile(block.code, f"{page_id(page)}:{block.line}", "exec")


@pytest.mark.bundled
@pytest.mark.parametrize("page", PYTHON_PAGES, ids=page_id)
def test_python_examples_run(page, tmp_path):
    blocks = [
        (f"{page_id(page)}:{block.line}", block.code)
        for block in code_blocks(page)
        if block.language == "python" and block.no_run is None
    ]
    (tmp_path / "blocks.json").write_text(json.dumps(blocks), encoding="utf-8")
    python(["-c", RUNNER, str(tmp_path / "blocks.json")], tmp_path, MPLBACKEND="Agg")


# ----- the command line in bash blocks ------------------------------------------------------


def cli_lines(page: Path) -> list[tuple[str, list[str]]]:
    """Each ``logitlens ...`` command of the page's bash blocks: (where, arguments)."""
    found = []
    for block in code_blocks(page):
        if block.language not in ("bash", "sh", "console"):
            continue
        text = re.sub(r"\\\n\s*", " ", block.code)  # join continuation lines
        for offset, line in enumerate(text.splitlines()):
            line = line.strip().removeprefix("$ ")
            if not line.startswith(("logitlens ", ".venv/bin/logitlens ", "python -m logitlens ")):
                continue
            words = shlex.split(line, comments=True)
            for prefix in (["logitlens"], [".venv/bin/logitlens"], ["python", "-m", "logitlens"]):
                if words[: len(prefix)] == prefix:
                    arguments = []
                    for word in words[len(prefix) :]:
                        if word in ("|", ">", ">>", "&&", ";", "2>&1"):
                            break
                        arguments.append(word)
                    found.append((f"{page_id(page)}:{block.line + offset + 1}", arguments))
    return found


def check_command_line(arguments: list[str]) -> str | None:
    """Why ``logitlens ARGUMENTS`` names a command or option that does not exist, or None."""
    import typer

    from logitlens.cli import app

    command, path = typer.main.get_command(app), ["logitlens"]
    index = 0
    while index < len(arguments):
        word = arguments[index]
        subcommands = getattr(command, "commands", None)
        if subcommands and word not in (*subcommands, "--help") and runs_by_default(command):
            command, path = subcommands["run"], [*path, "run"]  # `study DATA` is `study run DATA`
        index += 1
        if word.startswith("-") and word != "-":
            name = word.split("=", 1)[0]
            param = next(
                (p for p in command.params if name in (*p.opts, *getattr(p, "secondary_opts", []))),
                None,
            )
            if param is None and name not in ("--help", "-h"):
                return f"{' '.join(path)} has no option {name}"
            takes_value = param is not None and not param.is_flag and not param.count
            if takes_value and "=" not in word:
                index += 1
            continue
        subcommands = getattr(command, "commands", None)
        if subcommands is not None and word in subcommands:
            command, path = subcommands[word], [*path, word]
        elif subcommands is not None and not any(
            p.param_type_name == "argument" for p in command.params
        ):
            return f"{' '.join(path)} has no command {word!r}"
    if getattr(command, "commands", None) and not getattr(command, "invoke_without_command", False):
        return f"{' '.join(path)} needs a command"
    return None


def runs_by_default(group) -> bool:
    """A group whose own ``parse_args`` sends unknown words to its ``run`` command."""
    import typer.core

    return (
        "run" in group.commands and type(group).parse_args is not typer.core.TyperGroup.parse_args
    )


def test_cli_examples_name_real_commands_and_options():
    lines = [found for page in PAGES for found in cli_lines(page)]
    assert len(lines) >= 40
    problems = [
        f"{where}: {why}" for where, arguments in lines if (why := check_command_line(arguments))
    ]
    assert not problems, "\n".join(problems)


def test_the_cli_check_can_fail():
    assert check_command_line(["top", "x", "--k", "3"]) is None
    assert "no option --kk" in check_command_line(["top", "x", "--kk", "3"])
    assert "no command 'nonsense'" in check_command_line(["lens", "nonsense"])
    assert check_command_line(["study", "items.jsonl", "--out", "d"]) is None
    assert "no option --nope" in check_command_line(["study", "--nope"])


# ----- the site -----------------------------------------------------------------------------


@pytest.mark.slow
def test_the_site_builds_strictly(tmp_path):
    """``mkdocs build --strict``: no broken link or anchor, no page outside the nav, every
    docstring parsed, the generated CLI, metrics and API pages written."""
    site = tmp_path / "site"
    python(
        ["-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        ROOT,
        NO_MKDOCS_2_WARNING="1",
    )
    cli = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    import typer

    from logitlens.cli import app

    root = typer.main.get_command(app)
    for name, command in root.commands.items():
        assert f"logitlens {name}" in cli
        for sub in getattr(command, "commands", {}):
            assert f"logitlens {name} {sub}" in cli
    metrics = (site / "reference" / "metrics" / "index.html").read_text(encoding="utf-8")
    from logitlens.metrics import REGISTRY

    for metric in REGISTRY:
        assert f"<code>{metric}</code>" in metrics
    missing = []
    for module_name, name in public_functions():
        page = site / "reference" / "api" / module_name / "index.html"
        if f'id="{module_name}.{name}"' not in page.read_text(encoding="utf-8"):
            missing.append(f"{module_name}.{name}")
    assert not missing, f"not in the API reference: {missing}"


def public_functions() -> list[tuple[str, str]]:
    """(module, name) of every public function and class defined in a module of the
    package outside the command line."""
    import importlib
    import inspect
    import pkgutil

    import logitlens

    found = []
    for info in pkgutil.walk_packages(logitlens.__path__, "logitlens."):
        if info.name.startswith("logitlens.cli") or info.name == "logitlens.__main__":
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if name.startswith("_") or not (inspect.isfunction(value) or inspect.isclass(value)):
                continue
            if value.__module__ == info.name:
                found.append((info.name, name))
    assert len(found) > 100
    return found
