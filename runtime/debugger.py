"""debugpy for debugged replicas, resolved on the host like any requirement.

The wheel is installed for the image's Python and platform (runtime/requirements.py)
into the requirements cache, once; a debugged replica mounts that directory read-only
at wire.DEBUGGER_DIR. No image holds it, so debug mode changes no image and nothing
built for production can contain a debugger.
"""

from __future__ import annotations

from pathlib import Path

from runtime import requirements
from runtime.images import RequirementsResolver

DEBUGPY_VERSION = "1.8.22"
"""Pinned: the same in every replica, and the `debug` extra of pyproject.toml."""


def resolve_debugger(resolve: RequirementsResolver = requirements.resolve) -> Path:
    """The host directory holding debugpy for the replicas' Python (resolved once)."""
    listing = requirements.cache_root().parent / "debugger" / f"debugpy-{DEBUGPY_VERSION}.txt"
    wanted = f"debugpy=={DEBUGPY_VERSION}\n"
    if not listing.is_file() or listing.read_text() != wanted:
        listing.parent.mkdir(parents=True, exist_ok=True)
        staging = listing.with_suffix(".tmp")
        staging.write_text(wanted)
        staging.replace(listing)
    found = resolve(listing)
    found.chmod(0o755)  # made by mkdtemp (0700); the replica's user reads it through the mount
    return found
