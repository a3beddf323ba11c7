"""`faas test`: run a project's function tests (those `faas new` writes) with pytest."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from runtime.errors import FaasError

TESTS_DIR = "tests"


def pytest_command(root: Path, args: Sequence[str]) -> list[str]:
    """pytest on the project's tests/ (or on what `args` name), from the project's root."""
    names_a_path = any(not arg.startswith("-") and (root / arg.split("::")[0]).exists()
                       for arg in args)  # fmt: skip
    targets = [] if names_a_path else [TESTS_DIR]
    return [sys.executable, "-m", "pytest", *targets, *args]


def environment_for(root: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The project's root first on PYTHONPATH, so tests import `functions.<module>` too."""
    path = os.pathsep.join(p for p in (str(root), environ.get("PYTHONPATH", "")) if p)
    return {**environ, "PYTHONPATH": path}


def run(root: Path, args: Sequence[str]) -> int:
    """Run the tests and return pytest's exit status."""
    if importlib.util.find_spec("pytest") is None:
        raise FaasError("pytest is not installed here: `pip install pytest`, then `faas test`")
    command = pytest_command(root, args)
    if TESTS_DIR in command and not (root / TESTS_DIR).is_dir():
        raise FaasError(
            f"no {root / TESTS_DIR} directory: `faas new NAME` writes tests/test_NAME.py"
        )
    return subprocess.call(command, cwd=root, env=environment_for(root, os.environ))
