"""What NDIF hosts, and building the local (meta) copy of a hosted model.

The list comes from NDIF's ``/status`` endpoint through nnsight's own client
(``nnsight.ndif``); a model is usable when one of its deployments is HOT or WARM and
RUNNING. The meta copy of the model is built with the tokenizer passed explicitly:
from transformers 5.23 on, nnsight 0.8.1 no longer finds one by itself for a hub
id ("Impossible to guess which tokenizer to use").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ModelLoadError, RemoteError
from . import failures

SHOWN_HOSTED = 6
"""How many hosted models a "not hosted" message lists."""


@dataclass(frozen=True)
class HostedModel:
    """One model deployment NDIF reports."""

    repo_id: str
    state: str
    level: str
    revision: str

    @property
    def usable(self) -> bool:
        return self.state == "RUNNING" and self.level in ("HOT", "WARM")


def hosted_models(timeout: float = 30.0) -> list[HostedModel]:
    """NDIF's deployments (one per repo id, healthiest first), from its status API."""
    import httpx
    from nnsight import CONFIG, ndif

    host = CONFIG.API.HOST
    try:
        status = ndif._get("/status", timeout=(min(timeout, 10.0), timeout))
    except httpx.HTTPStatusError as error:
        code = error.response.status_code
        raise failures.http_failure(host, code, error.response.text[:200], None) from None
    except httpx.HTTPError as error:
        reason = "connection refused" if isinstance(error, httpx.ConnectError) else str(error)
        raise failures.unreachable(host, reason or type(error).__name__) from None
    best: dict[str, HostedModel] = {}
    for name, value in (status.get("deployments") or {}).items():
        model = HostedModel(
            repo_id=value.get("repo_id", name),
            state=value.get("application_state", "UNHEALTHY"),
            level=value.get("deployment_level", "COLD"),
            revision=value.get("revision") or "main",
        )
        held = best.get(model.repo_id)
        if held is None or (model.usable and not held.usable):
            best[model.repo_id] = model
    return sorted(best.values(), key=lambda m: (not m.usable, m.repo_id))


def check_hosted(repo_id: str, timeout: float = 30.0) -> None:
    """Raise a RemoteError naming a few hosted models unless ``repo_id`` runs on NDIF."""
    models = hosted_models(timeout)
    if any(m.repo_id == repo_id and m.usable for m in models):
        return
    usable = [m.repo_id for m in models if m.usable]
    listed = ", ".join(usable[:SHOWN_HOSTED]) + (", ..." if len(usable) > SHOWN_HOSTED else "")
    raise RemoteError(
        f"{repo_id!r} is not running on NDIF right now"
        + (f"; hosted: {listed}" if usable else "; NDIF reports no running model")
        + ". `logitlens remote status` prints the full list."
    )


def build_remote_model(repo_id: str) -> Any:
    """nnsight's meta-device wrapper of a hosted model, with its tokenizer set explicitly."""
    from nnsight import TransformersModel
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(repo_id)
        return TransformersModel(repo_id, tokenizer=tokenizer)
    except Exception as error:  # hub unreachable, gated, unknown files
        reason = " ".join(str(error).split())[:300]
        raise ModelLoadError(
            f"Could not fetch the config and tokenizer of {repo_id!r} from the Hugging Face "
            f"hub ({type(error).__name__}: {reason}). A remote run needs them here (never the "
            "weights): check the network, and for a gated model accept its license and set "
            "HF_TOKEN."
        ) from error
