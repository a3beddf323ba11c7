"""Which installed distribution holds these packages: its name, version, requirements,
and where its packages are.

pyproject.toml's `[project] name` (what pip installs and uninstalls) is not the name of
the command or of the import packages (`faas`, `gateway`, `runtime`): code asks the
installed metadata which distribution provides `runtime` instead of repeating the name.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import tomllib
from pathlib import Path

from runtime.errors import FaasError

PACKAGES = ("faas", "gateway", "runtime")
"""The top-level import packages the distribution installs."""
ENTRY_POINT = "faas.cli:main"
"""What `faas` runs: tells this project's pyproject.toml from another one."""


def name() -> str:
    """The distribution that provides `runtime` (from a wheel, or an editable install)."""
    found = importlib.metadata.packages_distributions().get("runtime", [])
    if not found:
        raise FaasError("no installed distribution provides the runtime package (pip install it)")
    # one, unless an install under an older name was left beside it: either describes us
    return sorted(set(found))[0]


def version() -> str:
    return importlib.metadata.version(name())


def requirements() -> list[str]:
    """The run-time requirements (no extras): the installed metadata's, or, when the
    packages are imported from a checkout, its pyproject.toml's (an editable install's
    metadata is as old as its last `pip install -e`)."""
    declared = _checkout_requirements()
    if declared is not None:
        return declared
    found = importlib.metadata.requires(name()) or []
    return [requirement for requirement in found if "extra ==" not in requirement]


def package_directory(package: str) -> Path:
    """Where a top-level package's files are, found as imports find it (an installed
    wheel, or a checkout on sys.path) without importing it."""
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise FaasError(f"package {package} is not installed here")
    return Path(next(iter(found.submodule_search_locations)))


def _checkout_requirements() -> list[str] | None:
    pyproject = package_directory("runtime").parent / "pyproject.toml"
    if not pyproject.is_file():
        return None  # installed: site-packages holds no pyproject.toml of ours
    try:
        project = tomllib.loads(pyproject.read_text()).get("project", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    declared = project.get("dependencies")
    if project.get("scripts", {}).get("faas") != ENTRY_POINT or not isinstance(declared, list):
        return None  # some other project's file
    return [str(requirement) for requirement in declared]
