"""Whether the Hugging Face hub (or the mirror ``HF_ENDPOINT`` names) can be reached.

Loading a hub id here and opening a model on NDIF (which needs its config and
tokenizer from the hub) both read only the local HF cache when it cannot: one clear
line at once instead of minutes of retries.
"""

from __future__ import annotations

import os


def hub_unreachable() -> bool:
    """No route to the hub: HF_HUB_OFFLINE set, or no TCP connection within 1.5 s."""
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return True
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    endpoint = urlsplit(constants.ENDPOINT)  # HF_ENDPOINT: a mirror, or huggingface.co
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=1.5).close()
    except OSError:
        return True
    return False
