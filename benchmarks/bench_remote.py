"""Bytes over the wire and wall time, NDIF (its own server at loopback) vs local, bundled model.

Starts NDIF's server (tests/ndif_stack.py) on 127.0.0.1 hosting the bundled
SmolLM2-135M and the test hub for its files, runs each analysis locally and over the
socket side by side, and prints bytes sent (request bodies as nnsight uploads them)
and received (status frames and results) per analysis, and the remote wall time
relative to local.

    PYTHONPATH=src:tests python benchmarks/bench_remote.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import torch
from bench_ndif_study import Meter, bundled_on_ndif

import logitlens
from logitlens.lenses.tuned import TunedLens
from logitlens.remote import weights

REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
PUN = "Why do electricians make good swimmers? Because they know the"


def main() -> None:
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    weights.cache_path = lambda repo_id: work / "head.safetensors"
    with bundled_on_ndif(work):
        local = logitlens.load_model()
        remote = logitlens.load_model(REPO, remote=True)
        lens = TunedLens.identity(local)
        lens_path = lens.save(work / "tuned.safetensors")
        cases = {
            "track (1 target, last position)": {"prompts": PUN, "targets": " current"},
            "top (k=10, last position)": {"prompts": PUN, "k": 10},
            "compare (4 prompts, 1 batch)": {"prompts": [PUN] * 4, "targets": " current"},
            "all positions (13 tokens)": {"prompts": PUN, "positions": "all", "k": 5},
            "attribute (target vs alternative)": {
                "prompts": PUN,
                "targets": " current",
                "alternatives": " water",
                "layers": [-1],
                "metrics": ["target"],
                "attribution": True,
            },
            "attribute --heads": {
                "prompts": PUN,
                "targets": " current",
                "alternatives": " water",
                "layers": [-1],
                "metrics": ["target"],
                "attribution": True,
                "heads": True,
            },
            "track + attribution, one trace": {
                "prompts": PUN,
                "targets": " current",
                "attribution": True,
            },
            "tuned lens, track": {
                "prompts": PUN,
                "targets": " current",
                "lens": "tuned",
                "tuned_path": str(lens_path),
            },
        }
        logitlens.analyze(remote, PUN, lens="tuned", tuned_path=str(lens_path))  # head cached
        meter = Meter()
        print(f"tuned-lens file: {lens_path.stat().st_size:,} bytes (never sent)")
        print(
            f"{'analysis':34} {'up':>10} {'down':>10} {'local s':>8} {'remote s':>9} {'ratio':>6}"
        )
        for name, options in cases.items():
            options = dict(options)
            prompts = options.pop("prompts")
            started = time.perf_counter()
            logitlens.analyze(local, prompts, **options)
            local_seconds = time.perf_counter() - started
            meter.reset()
            started = time.perf_counter()
            logitlens.analyze(remote, prompts, **options)
            remote_seconds = time.perf_counter() - started
            up, down = meter.up, meter.down
            print(
                f"{name:34} {up:>10,} {down:>10,} {local_seconds:>8.2f} {remote_seconds:>9.2f} "
                f"{remote_seconds / local_seconds:>5.1f}x"
            )


if __name__ == "__main__":
    main()
