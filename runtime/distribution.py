"""Which installed distribution holds these packages, and its version.

pyproject.toml's `[project] name` (what pip installs and uninstalls) is not the name of
the command or of the import packages (`faas`, `gateway`, `runtime`): code asks the
installed metadata which distribution provides `runtime` instead of repeating the name.
"""

from __future__ import annotations

import importlib.metadata

from runtime.errors import FaasError

PACKAGES = ("faas", "gateway", "runtime")
"""The top-level import packages the distribution installs."""


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
    """The distribution's run-time requirements (no extras), as its metadata declares them."""
    found = importlib.metadata.requires(name()) or []
    return [requirement for requirement in found if "extra ==" not in requirement]
