"""Shell completion (README "The CLI"): commands, and function names from functions.yaml."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FAAS = str(Path(sys.executable).parent / "faas")
"""The installed command: completion is keyed to the program's name, `faas`."""


def complete(words: str, cwd: Path, shell: str = "bash") -> list[str]:
    env = {
        **os.environ,
        "_FAAS_COMPLETE": f"{shell}_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split(" ")) - 1),
    }
    run = subprocess.run([FAAS], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return [line.split(",", 1)[1] for line in run.stdout.splitlines() if line]


def test_commands_and_function_names_complete(tmp_path: Path) -> None:
    (tmp_path / "functions.yaml").write_text(
        "version: 1\nfunctions:\n  hello: {handler: a.py}\n  help-desk: {handler: b.py}\n"
        "  echo: {handler: c.py}\n"
    )
    assert "test" in complete("faas te", tmp_path)
    assert complete("faas invoke he", tmp_path) == ["hello", "help-desk"]
    assert complete("faas logs ", tmp_path) == ["hello", "help-desk", "echo"]


@pytest.mark.parametrize("text", ["functions: [unclosed", "just a string"])
def test_a_broken_functions_yaml_completes_nothing_and_does_not_fail(
    tmp_path: Path, text: str
) -> None:
    (tmp_path / "functions.yaml").write_text(text)
    assert complete("faas scale ", tmp_path) == []


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_each_shell_gets_a_completion_script(tmp_path: Path, shell: str) -> None:
    env = {**os.environ, "_FAAS_COMPLETE": f"{shell}_source"}
    run = subprocess.run([FAAS], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0 and "_FAAS_COMPLETE" in run.stdout
