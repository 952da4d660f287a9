"""The arrows between the apps (docs/architecture.md) are import-linter contracts in
pyproject.toml, which `make test` runs. These tests show the check passes on the tree as it is
and fails, naming the contract and the import, when a module breaks an arrow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("medcot", "generation", "review", "llmsim")


def _lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(tree / "pyproject.toml")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    """The three packages and pyproject.toml, copied, so a test can add a bad import."""
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_every_contract():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("medcot/stray.py", "from review.models import Panel", "The core imports no app"),
        (
            "medcot/stray.py",
            "def f():\n    from generation.models import Run\n",
            "The core imports no app",
        ),
        (
            "generation/stray.py",
            "from review import selectors",
            "Generation imports the core only, never review",
        ),
        (
            "review/stray.py",
            "from generation.services import run_start",
            "Review reaches generation only through generation.public",
        ),
        (
            "generation/services/stray.py",
            "def f():\n    from generation.tasks import job_execute_task\n",
            "Generation's services never import the tasks or the pipeline (no dispatch loop)",
        ),
        (
            "generation/stray.py",
            "from llmsim.server import SimulatorConfig",
            "Production code never imports the simulator",
        ),
    ],
)
def test_a_forbidden_import_fails_the_check(tree_copy: Path, module, line, contract):
    (tree_copy / module).write_text(line + "\n")
    result = _lint(tree_copy)
    assert result.returncode != 0, result.stdout
    assert f"{contract} BROKEN" in result.stdout
    assert module.removesuffix(".py").replace("/", ".") in result.stdout


def test_the_published_module_is_the_allowed_door(tree_copy: Path):
    (tree_copy / "review/stray.py").write_text("from generation.public import parse_answer\n")
    result = _lint(tree_copy)
    assert result.returncode == 0, result.stdout + result.stderr
