"""The Hugging Face hub, reachable or not, asked once: offline, a lookup fails in a second instead of retrying.

huggingface_hub retries a failed request five times with backoff (about 50 s before an answer when the machine has
no network: "Name or service not known ... Retrying in 8s"), and no setting shortens that. So before the first
lookup of a hub name, dsum tries one TCP connection to the hub (HF_ENDPOINT) for a few seconds; when it fails, the
process goes offline as HF_HUB_OFFLINE=1 would have made it: every lookup reads the local cache alone and a model
that is not there fails at once. HF_HUB_OFFLINE=1 set by the user skips the probe.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
from urllib.parse import urlparse

PROBE_SECONDS = 3.0
UNREACHABLE = "cannot reach the hub; not in the cache"


def offline_by_setting() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in ("1", "true", "yes", "on")


@functools.cache
def hub_reachable() -> bool:
    """False under HF_HUB_OFFLINE, or when the hub's host does not answer within PROBE_SECONDS (then this process
    is set offline: see the module's docstring). Asked once per process."""
    if offline_by_setting():
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    reached = connects(endpoint.hostname or "huggingface.co", port, PROBE_SECONDS)
    if not reached:
        _probe_failed.append(True)
        go_offline()
    return reached


_probe_failed: list[bool] = []  # hub_reachable's probe failed (then HF_HUB_OFFLINE is dsum's doing, not the user's)


def forget() -> None:
    """Ask again at the next lookup (tests: another endpoint, the user's HF_HUB_OFFLINE back)."""
    hub_reachable.cache_clear()
    _probe_failed.clear()


def unreachable_reason() -> str:
    """Why the hub is not asked: the probe failed, or the user set HF_HUB_OFFLINE."""
    return UNREACHABLE if _probe_failed else "HF_HUB_OFFLINE is set and it is not in the cache"


def connects(host: str, port: int, seconds: float) -> bool:
    """One TCP connection within `seconds`, name lookup included (getaddrinfo has no timeout: a thread waits for it)."""
    result: list[bool] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=seconds).close()
            result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(seconds)
    return bool(result and result[0])


def go_offline() -> None:
    """HF_HUB_OFFLINE for this process and its children, also when huggingface_hub has read its settings already."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import huggingface_hub.constants

    huggingface_hub.constants.HF_HUB_OFFLINE = True


def is_hub_name(name: str) -> bool:
    """A name the hub would be asked about: not a local folder or file."""
    from pathlib import Path

    return not Path(name).exists() and not str(name).endswith(".gguf")


def ask_hub_first(name: str) -> None:
    """Before a lookup of `name`: probe the hub once if it is a hub name (an unreachable hub sets the process offline)."""
    if is_hub_name(name):
        hub_reachable()


def load_problem(name: str, error: BaseException) -> str:
    """Why `name` did not load, in one line: the hub unreachable and nothing cached, or the library's first line."""
    if is_hub_name(name) and not hub_reachable():
        return unreachable_reason()
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
