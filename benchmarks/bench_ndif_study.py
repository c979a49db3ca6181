"""Round trips of ``study --remote`` against NDIF's own server at loopback: jobs, bytes, time.

Starts NDIF's server (tests/ndif_stack.py: its API service gated as a public
deployment, Redis, an S3 store, its dispatcher and model actor on CPU) hosting the
bundled SmolLM2-135M, and the test hub (tests/ndif_server.py) for its config and
tokenizer. Runs ``run_study`` on the first ``--items`` bundled items remotely, several
ways, and the same study locally, in one run, and prints per way: NDIF jobs, bytes up
(request bodies as nnsight uploads them) and down (status frames and results), wall
time and its ratio to the local study, and that the rows equal the local ones.

    PYTHONPATH=src:tests .venv/bin/python benchmarks/bench_ndif_study.py [--items 48]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import huggingface_hub.constants as hub
import huggingface_hub.hf_api
import ndif_stack
import pandas as pd
import torch
import transformers.utils.hub
from ndif_server import launch
from nnsight import CONFIG
from nnsight.intervention.backends.remote import RemoteBackend

import logitlens
from logitlens.generation import generate_lens, generate_lens_many
from logitlens.remote import NdifBackend
from logitlens.studies import load_items, run_study
from logitlens.studies import run as study_run
from logitlens.studies.run import StudyResult

REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"


class Meter:
    """Counts jobs and bytes through nnsight's upload and logitlens's backend."""

    def __init__(self) -> None:
        self.jobs = self.up = self.down = 0
        post, request = RemoteBackend._post, NdifBackend.request
        meter = self

        def counting_post(self, req, blob):
            meter.jobs += 1
            meter.up += len(blob)
            return post(self, req, blob)

        def counting_request(self, req, tracer):
            try:
                return request(self, req, tracer)
            finally:
                meter.down += self.received_bytes

        RemoteBackend._post = counting_post
        NdifBackend.request = counting_request

    def reset(self) -> None:
        self.jobs = self.up = self.down = 0


def one_job_per_generation(model, prompts, max_new_tokens, **options):
    """What a study did before sessions: one NDIF job per generated continuation."""
    return [generate_lens(model, prompt, max_new_tokens, **options) for prompt in prompts]


@contextlib.contextmanager
def bundled_on_ndif(work: Path):
    """NDIF's server hosting the bundled model, the test hub, nnsight's CONFIG aimed at both."""
    bundled_dir = logitlens.loading.bundled_model_dir()
    stack = ndif_stack.start({REPO: bundled_dir}, work / "logs")
    server = launch({REPO: bundled_dir}, idle_timeout=1800)
    try:
        hub.ENDPOINT = server.url
        huggingface_hub.hf_api.api.endpoint = server.url
        transformers.utils.hub._hf_api = None
        hub.HUGGINGFACE_CO_URL_TEMPLATE = server.url + "/{repo_id}/resolve/{revision}/{filename}"
        CONFIG.API.HOST, CONFIG.API.APIKEY = stack.api("gated"), "benchmark-key"
        yield stack
    finally:
        server.stop()
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=48)
    parser.add_argument("--generate", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="bench-ndif-study-"))
    with bundled_on_ndif(work):
        items = load_items()[: args.items]
        local_model = logitlens.load_model()
        remote_model = logitlens.load_model(REPO, remote=True, timeout=1800)
        # The worker loads the model on its first job: not part of any row.
        logitlens.analyze(remote_model, items[0].prompt)
        meter = Meter()
        ways = [
            ("batch 16", {"batch_size": 16}),
            (f"batch {args.items} (one job)", {"batch_size": args.items}),
            (
                f"batch 16, --generate {args.generate}",
                {"batch_size": 16, "generate": args.generate},
            ),
            (
                f"batch 16, --generate {args.generate}, a job per generation (no session)",
                {"batch_size": 16, "generate": args.generate, "sessions": False},
            ),
        ]
        print(f"{args.items} bundled items, SmolLM2-135M, NDIF's server at loopback (CPU)")
        print("| study | NDIF jobs | up | down | remote s | local s | remote / local | equal |")
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        for index, (name, options) in enumerate(ways):
            sessions = options.pop("sessions", True)
            study_run.generate_lens_many = (
                generate_lens_many if sessions else one_job_per_generation
            )
            started = time.perf_counter()
            run_study(
                local_model, items, out_dir=work / f"local-{index}", progress=False, **options
            )
            local_seconds = time.perf_counter() - started
            meter.reset()
            started = time.perf_counter()
            run_study(
                remote_model, items, out_dir=work / f"remote-{index}", progress=False, **options
            )
            remote_seconds = time.perf_counter() - started
            local = StudyResult.load(work / f"local-{index}")
            remote = StudyResult.load(work / f"remote-{index}")
            try:
                pd.testing.assert_frame_equal(
                    remote.layers, local.layers, check_exact=False, atol=1e-5
                )
                equal = "yes"
            except AssertionError:
                equal = "NO"
            print(
                f"| {name} | {meter.jobs} | {meter.up / 1e3:.1f} KB | {meter.down / 1e3:.1f} KB "
                f"| {remote_seconds:.1f} | {local_seconds:.1f} | "
                f"{remote_seconds / local_seconds:.2f}x | {equal} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
