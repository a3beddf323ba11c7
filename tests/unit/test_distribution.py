"""runtime.distribution: the distribution's requirements, from a checkout or its metadata."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from runtime import distribution
from tests.conftest import REPO


def declared() -> list[str]:
    return list(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])


def test_in_a_checkout_the_requirements_are_pyproject_tomls() -> None:
    """An editable install's metadata lags pyproject.toml until it is reinstalled."""
    assert distribution.requirements() == declared()


def test_the_packages_are_found_where_they_are_imported_from() -> None:
    for package in distribution.PACKAGES:
        assert distribution.package_directory(package) == REPO / package


def test_another_projects_pyproject_next_to_the_packages_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "runtime").mkdir()
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "other"\ndependencies = ["left-pad"]\n'
        '[project.scripts]\nother = "other.cli:main"\n'
    )
    monkeypatch.setattr(distribution, "package_directory", lambda package: tmp_path / package)
    assert "left-pad" not in distribution.requirements()
    (tmp_path / "pyproject.toml").write_text("not toml [")
    assert "left-pad" not in distribution.requirements()
