"""How fast the explorer answers: ``logitlens serve`` warm, next to the library and the CLI.

The electricians prompt as the page sends it by default (the logit lens, every position,
target " current", k 10), on the bundled SmolLM2-135M:

- **serve**: one POST /api/analyze to a ``logitlens serve`` subprocess on 127.0.0.1,
  timed from the request to the parsed JSON answer (what the page waits for), after
  the model is loaded and one request has warmed it;
- **library**: the same :func:`logitlens.analyze` call in this process, model loaded;
- **CLI top**: a fresh ``logitlens top PROMPT --positions all`` subprocess (model load
  included: what a command-line user waits for each time).

CPU seconds (user + system, every thread of the process that computes) say what a run
costs apart from waiting for the cores, which a shared machine makes long.

Serve and library take turns in random order in each round (same machine state); the
CLI runs a few times after. Prints p50 and p95 and the ratio of the p50s; the goal is
serve p50 <= 1.2 x library p50 and under 0.5 s.

Run:  .venv/bin/python benchmarks/bench_serve.py [--requests 20] [--cli-runs 3]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI (and so serve) sets it

import argparse
import http.client
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

SRC = Path(__file__).resolve().parents[1] / "src"
TESTS = SRC.parent / "tests"
PUN = "Why do electricians make good swimmers? Because they know the"
REQUEST = {"prompts": [PUN], "lens": "logit", "target": " current", "positions": "all", "k": 10}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ask(host: str, port: int) -> float:
    """Seconds from the request to the parsed answer."""
    body = json.dumps(REQUEST).encode()
    start = time.perf_counter()
    connection = http.client.HTTPConnection(host, port, timeout=120)
    connection.request("POST", "/api/analyze", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    answer = json.loads(response.read())
    seconds = time.perf_counter() - start
    connection.close()
    if response.status != 200:
        sys.exit(f"serve answered {response.status}: {answer}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--cli-runs", type=int, default=3)
    args = parser.parse_args()

    sys.path.insert(0, str(SRC))
    import logitlens

    model = logitlens.load_model()

    def library() -> float:
        start = time.perf_counter()
        logitlens.analyze(
            model,
            PUN,
            targets=" current",
            positions="all",
            k=10,
            metrics=["topk", "final_rank", "target_rank"],
        )
        return time.perf_counter() - start

    sys.path.insert(0, str(TESTS))
    from page_checks import serving

    os.environ["PYTHONPATH"] = str(SRC)  # the server runs this checkout
    with serving() as (address, pid):
        host, port = urlsplit(address).hostname, urlsplit(address).port
        ask(host, port)  # warm both
        library()
        times: dict[str, list[float]] = {"serve": [], "library": []}
        cpu: dict[str, list[float]] = {"serve": [], "library": []}
        for _ in range(args.requests):
            order = ["serve", "library"]
            random.shuffle(order)
            for name in order:
                before = cpu_seconds(pid) if name == "serve" else time.process_time()
                times[name].append(ask(host, port) if name == "serve" else library())
                after = cpu_seconds(pid) if name == "serve" else time.process_time()
                cpu[name].append(after - before)

    env = {**os.environ, "PYTHONPATH": str(SRC)}
    cli = []
    for _ in range(args.cli_runs):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "logitlens", "top", PUN, "--positions", "all"],
            env=env,
            check=True,
            capture_output=True,
        )
        cli.append(time.perf_counter() - start)

    import torch

    print(
        f"electricians prompt, logit lens, all positions; torch threads: {torch.get_num_threads()}"
    )
    print(f"{'':<22}{'p50 (s)':>9}{'p95 (s)':>9}{'CPU s p50':>11}{'runs':>6}")
    rows = {
        "serve (warm)": (times["serve"], cpu["serve"]),
        "library call": (times["library"], cpu["library"]),
        "CLI top": (cli, None),
    }
    for name, (values, used) in rows.items():
        used_text = "" if used is None else f"{statistics.median(used):.3f}"
        print(
            f"{name:<22}{statistics.median(values):>9.3f}{percentile(values, 0.95):>9.3f}"
            f"{used_text:>11}{len(values):>6}"
        )
    ratio = statistics.median(times["serve"]) / statistics.median(times["library"])
    serve_p50 = statistics.median(times["serve"])
    print(
        f"serve p50 / library p50: {ratio:.2f}x (goal <= 1.2x); serve p50 "
        f"{serve_p50:.3f} s (goal < 0.5 s); CLI top / serve: "
        f"{statistics.median(cli) / serve_p50:.1f}x"
    )


if __name__ == "__main__":
    main()
