"""Secrets (API keys) never reach a log, a tracker, a saved config or a record: `redact` removes them."""

from __future__ import annotations

import os
from typing import Any

# The environment variables that hold secrets; a value shorter than 4 characters is not redacted.
SECRET_ENV_VARS = ("UPSTAGE_API_KEY", "WANDB_API_KEY", "OPENAI_API_KEY", "HF_TOKEN")


def redact(value: Any) -> Any:
    """The value with every secret from the environment replaced by `***` (strings, dicts, lists)."""
    secrets = [os.environ[name] for name in SECRET_ENV_VARS if len(os.environ.get(name, "")) >= 4]
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "***")
        return value
    if isinstance(value, dict):
        return {key: redact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value
