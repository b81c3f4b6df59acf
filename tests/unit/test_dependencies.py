"""Dependencies are honest: every import of src/ declared, every declared package used; uv uses the system Python."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO


def test_every_import_is_declared_and_every_dependency_used():
    deptry = Path(sys.executable).with_name("deptry")
    result = subprocess.run([str(deptry), "src"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No dependency issues found" in result.stdout + result.stderr


def test_undeclared_import_is_caught(tmp_path):
    """The check is real: a module importing a package dsum does not declare (jinja2 comes in only
    through other packages) fails it."""
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "src" / "dsum").mkdir(parents=True)
    (tmp_path / "src" / "dsum" / "probe.py").write_text("import markupsafe\n")
    deptry = Path(sys.executable).with_name("deptry")
    result = subprocess.run([str(deptry), "src"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "DEP003 'markupsafe' imported but it is a transitive dependency" in _plain(result.stdout + result.stderr)


def _plain(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)  # deptry colours its output


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not on PATH")
def test_uv_uses_the_system_python_when_it_fits():
    """Where a Python that fits requires-python is installed (3.11 here), uv takes it and downloads none."""
    result = subprocess.run(["uv", "python", "find", "--project", str(REPO)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    found = Path(result.stdout.strip())
    managed = subprocess.run(["uv", "python", "dir"], capture_output=True, text=True, timeout=60).stdout.strip()
    assert not str(found).startswith(managed), f"uv chose a managed Python: {found}"
