"""What NDIF hosts, as its server sees it, and building the local (meta) copy of a model.

The list comes from NDIF's ``/status`` endpoint through nnsight's own client
(``nnsight.ndif``). Its entries are the controller's
(``ndif/services/ray/deployments/controller/controller.py``, ``status()``): a replica
on GPUs is ``HOT`` with an ``application_state`` (RUNNING, DEPLOYING, UNHEALTHY); a
replica parked in CPU memory is ``WARM``, with no state; a model downloaded but not
deployed is ``COLD``, keyed by its repo id. NDIF restores a WARM replica when a job
asks for it and deploys a COLD model for keys allowed to, so logitlens refuses none
of them: it says in one line what to expect and sends the job; NDIF answers.

The meta copy of the model is built with the tokenizer passed explicitly: from
transformers 5.23 on, nnsight 0.8.1 no longer finds one by itself for a hub id
("Impossible to guess which tokenizer to use").
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from ..errors import ModelLoadError
from ..hub import hub_unreachable
from . import failures

SHOWN_HOSTED = 6
"""How many hosted models a "not listed" note names."""

ASK_URL = "https://discuss.ndif.us"


class HostingWarning(UserWarning):
    """The model is WARM, COLD or not listed on NDIF: the job is sent anyway."""


@dataclass(frozen=True)
class HostedModel:
    """One model NDIF reports: its healthiest deployment."""

    repo_id: str
    state: str
    level: str
    revision: str

    @property
    def usable(self) -> bool:
        """Serves a job now (HOT and RUNNING) or after restoring it (WARM, HOT deploying)."""
        return self.level == "WARM" or (self.level == "HOT" and self.state != "UNHEALTHY")

    @property
    def rank(self) -> int:
        order = {("HOT", "RUNNING"): 0, ("HOT", "DEPLOYING"): 1, ("WARM", "-"): 2}
        return order.get((self.level, self.state), 3 if self.level == "COLD" else 4)


def hosted_models(timeout: float = 30.0) -> list[HostedModel]:
    """NDIF's models (one per repo id, its healthiest deployment), running ones first."""
    import httpx
    from nnsight import CONFIG, ndif

    host = CONFIG.API.HOST
    try:
        status = ndif._get("/status", timeout=(min(timeout, 10.0), timeout))
    except httpx.HTTPStatusError as error:
        code = error.response.status_code
        detail = " ".join(error.response.text.split())[:200]
        raise failures.http_failure(host, code, detail, None) from None
    except httpx.HTTPError as error:
        reason = "connection refused" if isinstance(error, httpx.ConnectError) else str(error)
        raise failures.unreachable(host, reason or type(error).__name__) from None
    except ValueError:
        raise failures.not_ndif(host, "/status", "the answer is not JSON") from None
    deployments = status.get("deployments") if isinstance(status, dict) else None
    if not isinstance(deployments, dict):
        raise failures.not_ndif(host, "/status", "no 'deployments' object in the answer")
    best: dict[str, HostedModel] = {}
    for name, value in deployments.items():
        if not isinstance(value, dict):
            continue
        level = value.get("deployment_level") or "COLD"
        model = HostedModel(
            repo_id=value.get("repo_id") or name,
            state=value.get("application_state") or ("UNHEALTHY" if level == "HOT" else "-"),
            level=level,
            revision=value.get("revision") or "main",
        )
        held = best.get(model.repo_id)
        if held is None or model.rank < held.rank:
            best[model.repo_id] = model
    return sorted(best.values(), key=lambda m: (m.rank, m.repo_id))


def hosting_note(repo_id: str, models: list[HostedModel]) -> str | None:
    """One line on what to expect when ``repo_id`` is not HOT and RUNNING, else None."""
    found = next((m for m in models if m.repo_id == repo_id), None)
    if found is not None and found.level == "HOT" and found.state == "RUNNING":
        return None
    if found is not None and found.level == "WARM":
        return (
            f"{repo_id} is WARM on NDIF (parked in CPU memory): the first job waits while "
            "NDIF moves it back onto a GPU, which may take a moment."
        )
    if found is not None and found.level == "HOT":
        return (
            f"{repo_id} is {found.state} on NDIF: the job may wait for it, or fail if it "
            f"does not come up; {failures.STATUS_HINT}."
        )
    running = [m.repo_id for m in models if m.level == "HOT" and m.state == "RUNNING"]
    listed = ", ".join(running[:SHOWN_HOSTED]) + (", ..." if len(running) > SHOWN_HOSTED else "")
    where = "is COLD on NDIF (downloaded, not deployed)" if found else "is not listed by NDIF"
    return (
        f"{repo_id} {where}: NDIF deploys it on request only for keys allowed to; to ask "
        f"for it, post at {ASK_URL}"
        + (f" (running now: {listed})" if running else "")
        + ". Sending the job anyway; NDIF answers if it cannot serve it."
    )


def check_hosted(repo_id: str, timeout: float = 30.0) -> None:
    """Warn (HostingWarning, one line) unless ``repo_id`` is HOT and RUNNING on NDIF.

    Refuses nothing NDIF might serve; raises a RemoteError only when the status
    endpoint cannot be reached or is not NDIF's.
    """
    note = hosting_note(repo_id, hosted_models(timeout))
    if note is not None:
        warnings.warn(note, HostingWarning, stacklevel=2)


def build_remote_model(repo_id: str) -> Any:
    """nnsight's meta-device wrapper of a hosted model, with its tokenizer set explicitly.

    With the hub unreachable (no TCP connection within 1.5 s) only the local HF
    cache is read: one line at once instead of a page of retries.
    """
    from nnsight import TransformersModel
    from transformers import AutoConfig, AutoTokenizer

    if hub_unreachable():
        from huggingface_hub import constants

        try:
            AutoConfig.from_pretrained(repo_id, local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(repo_id, local_files_only=True)
        except Exception:
            raise ModelLoadError(
                f"Cannot reach the Hugging Face hub at {constants.ENDPOINT}, and the local HF "
                f"cache has no copy of {repo_id!r}: a remote run needs its config and "
                "tokenizer here (never the weights). Check the network (or HF_ENDPOINT)."
            ) from None
        previous = constants.HF_HUB_OFFLINE
        constants.HF_HUB_OFFLINE = True  # from the cache only: no retries
        try:
            return TransformersModel(repo_id, tokenizer=tokenizer)
        finally:
            constants.HF_HUB_OFFLINE = previous
    try:
        tokenizer = AutoTokenizer.from_pretrained(repo_id)
        return TransformersModel(repo_id, tokenizer=tokenizer)
    except Exception as error:  # gated, unknown files
        reason = " ".join(str(error).split())[:300]
        raise ModelLoadError(
            f"Could not fetch the config and tokenizer of {repo_id!r} from the Hugging Face "
            f"hub ({type(error).__name__}: {reason}). A remote run needs them here (never the "
            "weights): check the network, and for a gated model accept its license and set "
            "HF_TOKEN."
        ) from error
