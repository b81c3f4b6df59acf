"""End-to-end runs (training, tuning, folds, the notebook): every test here is marked `slow`.

`make test-fast` (pytest tests/unit) leaves them out; `make test` runs them all.
"""

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if "/recipes/" in str(item.path):
            item.add_marker(pytest.mark.slow)
