"""Configs as flat dotted keys, and what differs between two (`dsum runs compare`, record.md, folds)."""

from __future__ import annotations

from typing import Any

MISSING = object()  # a key one config has and the other lacks


def flatten(mapping: dict, prefix: str = "") -> dict[str, Any]:
    """{"training": {"learning_rate": 1e-5}} → {"training.learning_rate": 1e-5}; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def config_diff(a: dict, b: dict) -> list[tuple[str, Any, Any]]:
    """(dotted key, value in a, value in b) for every key whose values differ; MISSING where absent.

    A section only one config has (a newer dsum added it) is one row, not one row per key.
    """
    flat_a, flat_b = flatten(fold_sections_only_in(a, b)), flatten(fold_sections_only_in(b, a))
    keys = list(flat_a) + [k for k in flat_b if k not in flat_a]
    return [
        (key, flat_a.get(key, MISSING), flat_b.get(key, MISSING))
        for key in keys
        if flat_a.get(key, MISSING) != flat_b.get(key, MISSING)
    ]


def fold_sections_only_in(config: dict, other: dict) -> dict:
    """The config with each section `other` lacks replaced by one line: "(section of N keys)"."""
    return {
        key: f"(section of {len(flatten(value))} keys)" if isinstance(value, dict) and key not in other else value
        for key, value in config.items()
    }
