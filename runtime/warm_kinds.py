"""Which warm watchdogs a function can start on: its kind (pure).

A warm watchdog is made for a kind of function, not for one function: the same
base image, the same isolation (and, where the runtime cannot change a running
container's limits, the same limits), the same system packages (installed into
its image: a function that needs libpq5 never starts on a watchdog whose image
lacks it), and the same requirements, which its
image already holds and which it has already imported (`preload`). Functions of
one kind share one warm pool; a function with no requirements shares the plain
kind of its base image with every other such function.

Requirements are known by the digest of their installed files, so two functions
whose requirements files differ in comments or order, but install the same
thing, share a kind too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from runtime.backends.base import Limits
from runtime.watchdog import wire

FIXED_LIMITS = frozenset({"gvisor"})
"""Isolations whose runtime cannot change a running container's limits (runsc has no
`update`): their warm watchdogs are made with a function's own limits, a kind per set."""

NOT_PRELOADED = frozenset(
    {"pip", "setuptools", "pkg_resources", "wheel", "_distutils_hack", "test", "tests"}
)
"""Top-level names in requirements that are tools or tests, not what a function imports."""

DEPS_PREFIX = wire.INIT_DEPS
"""How a function's requirements are named in its image's files (`deps/<path>`)."""


@dataclass(frozen=True)
class WarmKind:
    base: str
    """The base image its watchdogs are built on."""
    isolation: str = "container"
    limits: Limits | None = None
    """Set only for FIXED_LIMITS isolations; otherwise a start gives the function's own."""
    requirements: str = ""
    """Digest of the requirements baked into its image; "" for none."""
    preload: tuple[str, ...] = ()
    """Modules its watchdogs import before they report ready."""
    system_packages: tuple[str, ...] = ()
    """Debian packages installed into its image, sorted."""

    @property
    def label(self) -> str:
        """A short, stable, readable name: what it preloads, and a digest that tells apart
        kinds that look alike (`plain-1a2b3c`, `numpy+pandas-4d5e6f`)."""
        what = "+".join(sorted(self.preload)[:3]) or ("deps" if self.requirements else "plain")
        if len(self.preload) > 3:
            what += f"+{len(self.preload) - 3}"
        digest = hashlib.sha256(repr(self).encode()).hexdigest()[:6]
        return f"{what}-{digest}"


def kind_of(
    base: str,
    isolation: str,
    limits: Limits,
    deps: Mapping[str, bytes],
    preload: tuple[str, ...] | None,
    system_packages: tuple[str, ...] = (),
) -> WarmKind:
    """The kind of a function on `base` under `isolation` and `limits`, whose requirements
    are `deps` (`deps/<path>` -> content), whose `preload` setting is given (None:
    the requirements' own top-level modules) and whose image holds `system_packages`."""
    requirements = requirements_digest(deps)
    modules = importable_modules(deps) if preload is None else preload
    return WarmKind(
        base=base,
        isolation=isolation,
        limits=limits if isolation in FIXED_LIMITS else None,
        requirements=requirements,
        preload=tuple(modules),
        system_packages=tuple(sorted(set(system_packages))),
    )


def requirements_files(code: Mapping[str, bytes]) -> dict[str, bytes]:
    """The installed requirements among an image's files, without compiled bytecode
    (which the image compiles itself, and which depends on the host's Python)."""
    return {
        name: content
        for name, content in code.items()
        if name.startswith(DEPS_PREFIX)
        and "/__pycache__/" not in name
        and PurePosixPath(name).name != ".keep"
    }


def requirements_digest(deps: Mapping[str, bytes]) -> str:
    if not deps:
        return ""
    digest = hashlib.sha256()
    for name in sorted(deps):
        digest.update(name.encode() + b"\0" + hashlib.sha256(deps[name]).digest())
    return digest.hexdigest()[:16]


def importable_modules(deps: Iterable[str]) -> tuple[str, ...]:
    """The public top-level modules installed requirements provide, from their file names.

    A directory with an `__init__.py` is a package, a `.py` file or an extension
    (`name.cpython-311-x86_64-linux-gnu.so`) at the top a module; private names
    (`_cffi_backend`), metadata (`*.dist-info`), bundled libraries (`numpy.libs`),
    namespace packages and tools (NOT_PRELOADED) are left out.
    """
    modules: set[str] = set()
    for name in deps:
        parts = PurePosixPath(name).parts
        if len(parts) < 2 or parts[0] != DEPS_PREFIX.rstrip("/"):
            continue
        top = parts[1]
        if len(parts) == 2:
            module = top.partition(".")[0] if top.endswith((".py", ".so")) else ""
        elif len(parts) == 3 and parts[2] == "__init__.py":
            module = top
        else:
            continue
        if module.isidentifier() and not module.startswith("_") and module not in NOT_PRELOADED:
            modules.add(module)
    return tuple(sorted(modules))
