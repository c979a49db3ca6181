"""The command line's front door: ``--help``, an argument error and a warm ``top``.

Each contender is a fresh subprocess (what a user waits for), timed in interleaved
rounds in random order; medians are reported with their ratios to two floors measured
in the same rounds:

- ``python -c pass``: the interpreter alone;
- a bare model load: ``AutoTokenizer`` + ``AutoModelForCausalLM.from_pretrained`` of the
  cached fp32 bundled model, which is what any transformers script pays before its
  first forward pass.

``--help`` and the argument error (``top x --k 0``) must not load torch; a warm ``top``
loads the model, runs one traced forward pass, unembeds all 30 layers and prints the
table. ``--baseline-src DIR`` times the same three commands with another checkout's
``src`` (e.g. before a change) in the same rounds.

Run:  .venv/bin/python benchmarks/bench_cli.py [--rounds 7] [--baseline-src ../main/src]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PROMPT = "The capital of France is"
BARE_LOAD = (
    "import sys, torch\n"
    "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
    "AutoTokenizer.from_pretrained(sys.argv[1])\n"
    "AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)\n"
)


def bundled_dir() -> str:
    """The cached fp32 copy of the bundled model (converted first if needed)."""
    code = "from logitlens.loading import bundled_model_dir; print(bundled_model_dir())"
    return subprocess.run(
        [sys.executable, "-c", code], env=environment(SRC), capture_output=True, text=True
    ).stdout.strip()


def environment(src: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = str(src)
    return env


def commands(src: Path, label: str) -> dict[str, tuple[list[str], dict[str, str], int]]:
    """name -> (argv, environment, expected exit code) of the three timed commands."""
    cli = [sys.executable, "-m", "logitlens"]
    env = environment(src)
    return {
        f"--help{label}": ([*cli, "--help"], env, 0),
        f"argument error (top x --k 0){label}": ([*cli, "top", "x", "--k", "0"], env, 2),
        f"warm top{label}": ([*cli, "top", PROMPT], env, 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--baseline-src", type=Path, help="another checkout's src/ to compare")
    args = parser.parse_args()

    model_dir = bundled_dir()
    contenders = {
        "python -c pass": ([sys.executable, "-c", "pass"], environment(SRC), 0),
        "bare model load": ([sys.executable, "-c", BARE_LOAD, model_dir], environment(SRC), 0),
        **commands(SRC, ""),
    }
    if args.baseline_src:
        contenders |= commands(args.baseline_src.resolve(), " (baseline)")
    for argv, env, expected in contenders.values():  # warm the page cache; check exit codes
        code = subprocess.run(argv, env=env, capture_output=True).returncode
        if code != expected:
            sys.exit(f"{argv} exited {code}, expected {expected}")

    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for _ in range(args.rounds):
        random.shuffle(names)
        for name in names:
            argv, env, _ = contenders[name]
            start = time.perf_counter()
            subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}

    floor, load = medians["python -c pass"], medians["bare model load"]
    print(f"medians of {args.rounds} interleaved rounds ({os.cpu_count()} CPUs)")
    print(f"{'command':<44} {'seconds':>8} {'/ pass':>8} {'/ load':>8}")
    for name, seconds in medians.items():
        print(f"{name:<44} {seconds:8.3f} {seconds / floor:7.1f}x {seconds / load:7.2f}x")


if __name__ == "__main__":
    main()
