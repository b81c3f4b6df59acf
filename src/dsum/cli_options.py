"""The options several `dsum` verbs share: the recipe (-c) and its overrides (--set)."""

from __future__ import annotations

from pathlib import Path

import typer

ConfigOption = typer.Option(..., "--config", "-c", help="YAML recipe, e.g. configs/demo.yaml.")
SetOption = typer.Option([], "--set", help="Override a key: --set training.learning_rate=3e-5 (repeatable).")


def load(config: Path, overrides: list[str]):
    """The validated config of a recipe with its --set overrides."""
    from dsum.config import load_config

    return load_config(config, overrides)
