"""NDIF's compute side for the test suite, on CPU, in one process, without a Ray cluster.

Run by ``tests/ndif_stack.py`` with the ``.venv-ndif`` interpreter (where the ``ndif``
package, NDIF's own server code, is installed). What runs here is NDIF's, except
two small seams of ours:

- NDIF's :class:`~ndif.services.api.queue.dispatcher.Dispatcher`, unchanged: it pops
  the pickled ``BackendRequestModel`` from the Redis queue the API pushed it on,
  keeps the ``ray:connected`` flag the API checks, and serves the coalesced
  ``/status`` and ``/env`` refreshes (its ``status_worker`` / ``env_worker``).
- NDIF's model actor, :class:`~ndif.services.ray.deployments.modeling.base.BaseModelDeployment`:
  its ``run`` (RUNNING, ``prepare_traced_block`` / ``execute_traced_block``,
  ``torch.save`` with NDIF's pickler, zstd, the result inline on the socket or
  staged in the object store with a presigned url, COMPLETED or ERROR through
  ``BackendRequestModel.respond``) runs unchanged.
- The ``env`` the API serves is NDIF's controller's own ``env()``.

Ours (``LocalProcessor``, ``CpuModelDeployment``, ``LocalController``): the parts that
place replicas on GPUs through Ray — one in-process queue per model instead of
Ray actors, weights loaded on CPU from a local directory instead of the hub onto
GPUs, and a ``/status`` document built in the controller's format (from the list
of models given on the command line) instead of from Ray's actor table.
A ``--warm`` model is listed WARM and a ``--cold`` one COLD, and both are served
when asked for (NDIF restores a WARM replica on request and deploys a COLD model
for keys allowed to), so the client's hosting check can be tested against both.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
from pathlib import Path


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="HUB_ID=DIRECTORY (HOT)")
    parser.add_argument("--warm", action="append", default=[], help="HUB_ID=DIRECTORY (WARM)")
    parser.add_argument("--cold", action="append", default=[], help="HUB_ID=DIRECTORY (COLD)")
    parser.add_argument("--execution-timeout", type=float, default=None)
    return parser.parse_args()


def main() -> None:
    args = _parse()
    import torch

    torch.set_num_threads(1)
    from ndif.common.providers.ray import RayProvider
    from ndif.services.api.queue import dispatcher as dispatching

    levels = {}
    for level, specs in (("HOT", args.model), ("WARM", args.warm), ("COLD", args.cold)):
        for spec in specs:
            repo_id, _, directory = spec.partition("=")
            levels[repo_id] = (level, Path(directory))
    hosted = Hosted(levels, args.execution_timeout)
    # Ours in place of Ray: the dispatcher's connection check, its controller
    # handle and its per-model processor.
    RayProvider.connected = classmethod(lambda cls: True)
    dispatching.controller_handle = lambda: LocalController(hosted)
    dispatching.Processor = lambda model_key, error_queue: LocalProcessor(
        model_key, error_queue, hosted
    )
    print("READY", flush=True)
    dispatching.Dispatcher.start()


class Hosted:
    """The models this worker serves: repo id -> (level, directory), loaded on first use."""

    def __init__(self, levels: dict, execution_timeout: float | None) -> None:
        self.levels = levels
        self.execution_timeout = execution_timeout
        self.deployments: dict[str, CpuModelDeployment] = {}

    @staticmethod
    def repo_id(model_key: str) -> str | None:
        try:
            return json.loads(model_key.split(":", 1)[1]).get("repo_id")
        except (IndexError, ValueError, AttributeError):
            return None

    def deployment(self, model_key: str):
        repo_id = self.repo_id(model_key)
        if repo_id not in self.levels:
            return None
        if model_key not in self.deployments:
            directory = self.levels[repo_id][1]
            self.deployments[model_key] = CpuModelDeployment(
                model_key, directory, self.execution_timeout
            )
        return self.deployments[model_key]

    def status(self) -> dict:
        """The controller's ``status()`` document (controller.py), for these models."""
        from transformers import AutoConfig

        deployments = {}
        for repo_id, (level, directory) in self.levels.items():
            key = json.dumps({"repo_id": repo_id, "revision": "main"}, separators=(", ", ": "))
            model_key = f"nnsight.modeling.transformers.TransformersModel:{key}"
            if level == "COLD":  # downloaded, not deployed: a bare entry
                deployments[repo_id] = {"deployment_level": "COLD", "repo_id": repo_id}
                continue
            config = AutoConfig.from_pretrained(directory)
            entry = {
                "deployment_level": level,
                "model_key": model_key,
                "replica_id": 0,
                "repo_id": repo_id,
                "task": None,
                "revision": "main",
                "config": config.to_json_string(),
                "n_params": None,
            }
            if level == "HOT":
                entry = {
                    "application_state": "RUNNING",
                    **entry,
                    "pinned": True,
                    "trusted": True,
                    "dtype": "float32",
                    "execution_timeout_seconds": self.execution_timeout,
                    "size_bytes": None,
                    "actor_class": f"{__name__}.CpuModelDeployment",
                    "gpus": None,
                }
            deployments[f"0:ModelActor:{model_key}"] = entry
        return {"deployments": deployments, "cluster": {"nodes": {}}}


class _Remote:
    """``handle.method.remote()`` as an awaitable, like a Ray actor method."""

    def __init__(self, function) -> None:
        self.function = function

    async def remote(self, *args, **kwargs):
        return self.function(*args, **kwargs)


class LocalController:
    """The two controller calls the dispatcher makes: ``status`` and ``env``."""

    def __init__(self, hosted: Hosted) -> None:
        from ndif.services.ray.deployments.controller.controller import _ControllerActor

        self.status = _Remote(hosted.status)
        # NDIF's own env(): this interpreter's Python and packages.
        self.env = _Remote(lambda: _ControllerActor.env(None))


class LocalProcessor:
    """One model's queue, run one request at a time on its CPU deployment."""

    def __init__(self, model_key: str, error_queue, hosted: Hosted) -> None:
        self.model_key = model_key
        self.error_queue = error_queue
        self.hosted = hosted
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self.work())

    async def enqueue(self, request) -> None:
        from ndif.common.schema import Status

        self.queue.put_nowait(request)
        await request.arespond(Status.QUEUED, f"Added to Queue at position {self.queue.qsize()}.")

    async def work(self) -> None:
        from ndif.common.schema import Status

        while True:
            request = await self.queue.get()
            try:
                deployment = await asyncio.to_thread(self.hosted.deployment, self.model_key)
                if deployment is None:
                    await request.arespond(
                        Status.ERROR,
                        "Could not deploy this model. It is not hosted by this test server.",
                    )
                    continue
                await deployment.run(request)
            except Exception as error:  # as the processor: tell the user, keep serving
                self.error_queue.put_nowait((self.model_key, error))
                await request.arespond(
                    Status.ERROR,
                    "Critical server error occurred. Please try again later. "
                    "Sorry for the inconvenience.",
                )

    # What the dispatcher's events worker may ask of a processor.
    async def purge(self, message: str) -> None:
        pass

    def snapshot(self) -> dict:
        return {"queued": self.queue.qsize()}

    def pop_queued(self, request_id: str):
        return None

    def executing_replica(self, request_id: str):
        return None

    async def reconcile(self) -> None:
        pass


def _deployment_class():
    from ndif.services.ray.deployments.modeling.base import BaseModelDeployment
    from ndif.services.ray.deployments.modeling.util import resolve_dtype

    class CpuModelDeployment(BaseModelDeployment):
        """NDIF's model actor on CPU: only loading and per-request clean-up differ.

        ``BaseModelDeployment.__init__`` takes the Ray runtime context and places
        the weights on the GPUs the controller assigned; here the weights load
        on CPU in float32 from a local directory (no GPU, no Ray, no hub).
        """

        def __init__(self, model_key: str, directory: Path, timeout: float | None) -> None:
            self.model_key = model_key
            self.directory = directory
            self.execution_timeout = timeout
            self.gpu_mem_bytes_by_id = {}
            self.dtype_name = "float32"
            self.dtype = resolve_dtype("float32")
            self.kwargs = {}
            self.cached = False
            self.kill_switch = asyncio.Event()
            self.kill_reason = None
            self.execution_ident = None
            self.model = self.load_from_disk()

        def load_from_disk(self):
            import torch
            from nnsight import TransformersModel
            from transformers import AutoModelForCausalLM, AutoTokenizer

            module = AutoModelForCausalLM.from_pretrained(self.directory, dtype=torch.float32)
            module.eval().requires_grad_(False)
            tokenizer = AutoTokenizer.from_pretrained(self.directory)
            return TransformersModel(module, tokenizer=tokenizer)

        def cleanup(self) -> None:  # the base's, less the CUDA calls
            self.kill_switch.clear()
            self.kill_reason = None
            self.execution_ident = None
            self.model.interleaver.cancel()
            gc.collect()

        def restart(self) -> None:
            os._exit(1)

    return CpuModelDeployment


def __getattr__(name: str):
    if name == "CpuModelDeployment":
        return _deployment_class()
    raise AttributeError(name)


if __name__ == "__main__":
    sys.modules.setdefault("ndif_worker", sys.modules[__name__])
    CpuModelDeployment = _deployment_class()
    main()
