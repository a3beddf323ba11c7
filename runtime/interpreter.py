"""The Python a base image runs, and which wheels fit it (pure).

A function's requirements are resolved on the host for the interpreter of its
base image, not for the host's: the base image is run once (`PROBE`, with no
network) and what it prints becomes an `Interpreter`, cached per image id
(runtime/backends/docker/probe.py). Here are the decisions made from those facts:
the tags pip is told to accept (`pip_target_args`), and the key that names them
in caches and image tags.

pip does not widen `--platform manylinux_2_36_x86_64` to older glibc versions by
itself, so every manylinux tag the image's glibc can load is listed (and the
legacy aliases manylinux1/2010/2014); musl images get the musllinux tags. The
last tag, `linux_<machine>`, accepts the wheels built from source distributions
in a container of the base image itself (runtime/builds.py): PyPI accepts no
`linux_*` uploads, so it lets in nothing else from an index.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

PROBE = """\
import json, os, platform, shutil, sys, sysconfig
from importlib.util import find_spec
libc, version = platform.libc_ver()
print(json.dumps({
    "implementation": sys.implementation.name,
    "version": list(sys.version_info[:2]),
    "soabi": sysconfig.get_config_var("SOABI") or "",
    "machine": platform.machine(),
    "libc": libc,
    "libc_version": version,
    "has_pip": find_spec("pip") is not None,
    "has_compiler": any(shutil.which(c) for c in ("cc", "gcc", "clang")),
    "has_apt": shutil.which("apt-get") is not None,
}))
"""
"""Run as `python3 -c PROBE` in the base image; prints one JSON line (`parse_probe`)."""

IMPLEMENTATIONS = {"cpython": "cp", "pypy": "pp"}
MACHINES = {"amd64": "x86_64", "arm64": "aarch64"}
LEGACY_MANYLINUX = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}
"""Old names of manylinux_2_17 / 2_12 / 2_5 that wheels still carry alone."""


@dataclass(frozen=True)
class Interpreter:
    """What wheel resolution needs to know of a base image's `python3`."""

    implementation: str
    """`sys.implementation.name`: cpython, pypy."""
    version: tuple[int, int]
    soabi: str
    """`sysconfig`'s SOABI, e.g. cpython-313-x86_64-linux-gnu, cpython-313t-... (free-threaded)."""
    machine: str
    """x86_64, aarch64, ..."""
    libc: str
    """glibc, musl, or "" when unknown."""
    libc_version: tuple[int, int]
    has_pip: bool = False
    has_compiler: bool = False
    has_apt: bool = False

    @property
    def python_version(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"

    @property
    def cache_tag(self) -> str:
        """`sys.implementation.cache_tag` of the image: names its bytecode (cpython-311)."""
        return f"{self.implementation}-{self.version[0]}{self.version[1]}"

    @property
    def abi(self) -> str:
        """The ABI tag wheels for it carry (cp313, cp313t, pypy310_pp73)."""
        if self.implementation == "cpython":
            threaded = self.soabi.split("-")[1:2] == [f"{self.version[0]}{self.version[1]}t"]
            return f"cp{self.version[0]}{self.version[1]}{'t' if threaded else ''}"
        return "_".join(self.soabi.split("-")[:2])

    @property
    def key(self) -> str:
        """Names what the wheels chosen for it depend on, in caches and image tags."""
        facts = (self.implementation, self.version, self.abi, platform_tags(self))
        return hashlib.sha256(repr(facts).encode()).hexdigest()[:16]

    def describe(self) -> str:
        libc = f"{self.libc} {self.libc_version[0]}.{self.libc_version[1]}" if self.libc else "?"
        return f"{self.implementation} {self.python_version} ({self.abi}, {self.machine}, {libc})"


def parse_probe(output: str) -> Interpreter:
    """The facts `PROBE` printed (its last line); ValueError says what is wrong."""
    lines = output.strip().splitlines()
    if not lines:
        raise ValueError("python3 printed nothing")
    try:
        raw = json.loads(lines[-1])
        version = tuple(int(part) for part in raw["version"])
        libc_version = _major_minor(str(raw["libc_version"])) if raw["libc"] else (0, 0)
        interpreter = Interpreter(
            implementation=str(raw["implementation"]),
            version=(version[0], version[1]),
            soabi=str(raw["soabi"]),
            machine=MACHINES.get(str(raw["machine"]).lower(), str(raw["machine"]).lower()),
            libc=str(raw["libc"] or ""),
            libc_version=libc_version,
            has_pip=bool(raw["has_pip"]),
            has_compiler=bool(raw["has_compiler"]),
            has_apt=bool(raw["has_apt"]),
        )
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"unexpected answer {lines[-1][:200]!r} ({exc})") from None
    if interpreter.implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"{interpreter.implementation} is not supported (cpython or pypy): its wheels "
            "have no platform tags pip can be told to choose"
        )
    if not interpreter.machine.replace("_", "").isalnum():
        raise ValueError(f"unexpected machine {interpreter.machine!r}")
    return interpreter


def to_dict(interpreter: Interpreter) -> dict[str, object]:
    """What the probe's cache stores; `parse_probe(json.dumps(...))` reads it back."""
    raw = asdict(interpreter)
    raw["libc_version"] = ".".join(str(part) for part in interpreter.libc_version)
    return raw


def _major_minor(text: str) -> tuple[int, int]:
    major, _, rest = text.partition(".")
    minor = rest.partition(".")[0]
    return int(major), int(minor or 0)


def platform_tags(interpreter: Interpreter) -> tuple[str, ...]:
    """Every platform tag a wheel for this image may carry, most specific first."""
    machine = interpreter.machine
    major, minor = interpreter.libc_version
    tags: list[str] = []
    if interpreter.libc == "glibc" and major == 2:
        oldest = 5 if machine in ("x86_64", "i686") else 17
        for glibc in range(minor, oldest - 1, -1):
            tags.append(f"manylinux_2_{glibc}_{machine}")
            legacy = LEGACY_MANYLINUX.get((2, glibc))
            if legacy is not None:
                tags.append(f"{legacy}_{machine}")
    elif interpreter.libc == "musl" and major == 1:
        tags.extend(f"musllinux_1_{musl}_{machine}" for musl in range(minor, 0, -1))
    tags.append(f"linux_{machine}")
    return tuple(tags)


def pip_target_args(interpreter: Interpreter) -> list[str]:
    """The pip options (`install`/`download`) that choose wheels for `interpreter`.

    pip adds `abi3` and `none` to the given ABI itself; with these options it accepts
    wheels only (`--only-binary=:all:`), which the caller passes.
    """
    args = [
        "--implementation", IMPLEMENTATIONS[interpreter.implementation],
        "--python-version", interpreter.python_version,
        "--abi", interpreter.abi,
    ]  # fmt: skip
    for tag in platform_tags(interpreter):
        args += ["--platform", tag]
    return args
