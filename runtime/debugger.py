"""debugpy for debugged replicas, resolved on the host like any requirement.

The wheel is installed for the image's Python and platform (runtime/requirements.py)
into the requirements cache, once; a debugged replica mounts that directory read-only
at wire.DEBUGGER_DIR. No image holds it, so debug mode changes no image and nothing
built for production can contain a debugger.
"""

from __future__ import annotations

import compileall
import os
import py_compile
import sys
from pathlib import Path

from runtime import requirements
from runtime.images import COMPILED_MARKER, RequirementsResolver
from runtime.watchdog import wire

DEBUGPY_VERSION = "1.8.22"
"""Pinned, so every debugged replica runs the same debugpy. The host needs none: the
replicas get it from here, resolved for their Python, not from the gateway's venv."""


def resolve_debugger(resolve: RequirementsResolver = requirements.resolve) -> Path:
    """The host directory holding debugpy for the replicas' Python (resolved once)."""
    listing = requirements.cache_root().parent / "debugger" / f"debugpy-{DEBUGPY_VERSION}.txt"
    wanted = f"debugpy=={DEBUGPY_VERSION}\n"
    if not listing.is_file() or listing.read_text() != wanted:
        listing.parent.mkdir(parents=True, exist_ok=True)
        staging = listing.with_name(f".{listing.name}.{os.getpid()}")  # gateways side by side
        staging.write_text(wanted)
        staging.replace(listing)
    found = resolve(listing)
    found.chmod(0o755)  # made by mkdtemp (0700); the replica's user reads it through the mount
    _compile(found)
    return found


def _compile(directory: Path) -> None:
    """Bytecode for the replica's Python, made once, when this Python makes the same: the
    mount is read-only, and debugpy compiled at each start took 1.1-1.3 s to listen here
    against 0.5 s. Unchecked-hash .pyc files (PEP 552): valid whatever the files' times."""
    marker = directory / COMPILED_MARKER
    if (
        marker.exists()
        or sys.implementation.cache_tag != requirements.default_interpreter().cache_tag
    ):
        return
    compileall.compile_dir(
        directory,
        ddir=f"{wire.DEBUGGER_DIR}/",
        quiet=2,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    marker.touch()
