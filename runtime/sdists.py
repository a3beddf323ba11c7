"""Requirements published without a wheel for the target: what to fetch and build (pure).

Resolution on the host takes wheels only (pip cannot choose source distributions
for another interpreter than its own). When it stops at a requirement that has
no wheel for the base image's interpreter, its source distribution is downloaded
on the host (from the same indexes the requirements file names), together with
wheels of its build requirements for the target, and built into a wheel in a
container of the base image with no network (runtime/requirements.py); the
resolution is then run again with the built wheel offered to it.
"""

from __future__ import annotations

import io
import itertools
import re
import shlex
import tarfile
import tomllib
import zipfile
from pathlib import Path, PurePosixPath

NO_VERSION = re.compile(
    r"Could not find a version that satisfies the requirement (?P<requirement>.+?)"
    r" \(from versions: [^)]*\)"
)
DEFAULT_BUILD_REQUIRES = ("setuptools>=40.8.0",)
"""PEP 518: what a source distribution without [build-system] builds with."""
INDEX_OPTIONS = frozenset(
    {"-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--trusted-host"}
)
INDEX_FLAGS = frozenset({"--no-index", "--pre"})
MAX_BUILDS = 20
"""Source distributions built for one requirements file at most (each needs a pip run)."""


def missing_requirement(pip_output: str) -> str | None:
    """The requirement pip found no wheel for (`foo[bar]>=1.2`), from its error output."""
    match = NO_VERSION.search(pip_output)
    if match is None:
        return None
    requirement = re.sub(r" \(from [^)]*\)$", "", match["requirement"]).strip()
    return requirement or None


def index_options(requirements_text: str, base: Path) -> list[str]:
    """The options of a requirements file that say where packages come from, as pip
    arguments; local `--find-links` paths made absolute against the file's directory."""
    args: list[str] = []
    for raw in requirements_text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line.startswith("-"):
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        option, _, inline = words[0].partition("=")
        if option in INDEX_FLAGS:
            args.append(option)
        elif option in INDEX_OPTIONS:
            value = inline or (words[1] if len(words) > 1 else "")
            if not value:
                continue
            if option in ("-f", "--find-links") and "://" not in value:
                value = str((base / value).resolve())
            args += [option, value]
    return args


def build_requires(sdist_name: str, content: bytes) -> tuple[str, ...]:
    """`[build-system] requires` of a source distribution (.tar.gz or .zip); PEP 518's
    default when it has no pyproject.toml or no such table."""
    text = _top_level_file(sdist_name, content, "pyproject.toml")
    if text is None:
        return DEFAULT_BUILD_REQUIRES
    try:
        table = tomllib.loads(text.decode("utf-8")).get("build-system")
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{sdist_name}: unreadable pyproject.toml ({exc})") from None
    if not isinstance(table, dict) or "requires" not in table:
        return DEFAULT_BUILD_REQUIRES
    requires = table["requires"]
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        raise ValueError(f"{sdist_name}: [build-system] requires is not a list of strings")
    return tuple(requires)


def _top_level_file(sdist_name: str, content: bytes, name: str) -> bytes | None:
    """A file at the top of the archive's single directory (`pkg-1.0/pyproject.toml`)."""
    if sdist_name.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            for entry in archive.namelist():
                if _at_top(entry, name):
                    return archive.read(entry)
        return None
    with tarfile.open(fileobj=io.BytesIO(content), mode="r:*") as archive:
        for member in archive.getmembers():
            if member.isfile() and _at_top(member.name, name):
                handle = archive.extractfile(member)
                return handle.read() if handle is not None else None
    return None


def _at_top(entry: str, name: str) -> bool:
    parts = PurePosixPath(entry).parts
    return len(parts) == 2 and parts[1] == name


def wheel_command(sdist: str) -> list[str]:
    """What the builder container runs: pip (mounted from the host, PIP_DIR) builds one
    wheel from /in/<sdist>, its build requirements from /in and nowhere else."""
    return [
        "python3", "-m", "pip", "wheel", "--no-deps", "--no-index", "--find-links", "/in",
        "--disable-pip-version-check", "--no-cache-dir", "--wheel-dir", "/out", f"/in/{sdist}",
    ]  # fmt: skip


def build_failure(sdist: str, output: str, *, has_compiler: bool) -> str:
    """Why a build failed, in a sentence the user can act on, then the tail of pip's output."""
    tail = "\n".join(output.strip().splitlines()[-12:])
    hint = ""
    if not has_compiler and re.search(r"\b(gcc|cc|c\+\+|clang)\b|compiler", output):
        hint = (
            " The base image has no C compiler (cc/gcc): use a base image with build tools, "
            "or a version of the package that publishes a wheel for it."
        )
    return f"building {sdist} in a container of the base image failed.{hint}\n{tail}"


def configured_index_options(pip_config_list: str) -> list[str]:
    """Index options from `pip config list` output (`global.extra-index-url='a b'`):
    where pip itself looks when the requirements file does not say."""
    args: list[str] = []
    for line in pip_config_list.splitlines():
        key, _, value = line.partition("=")
        option = key.rpartition(".")[2].strip()
        values = value.strip().strip("'\"").split()
        if option == "no-index" and values and values[0].lower() in ("1", "true", "yes", "on"):
            args.append("--no-index")
        elif option in ("index-url", "extra-index-url", "find-links"):
            for item in values:
                args += [f"--{option}", item]
    return args


def indexes(options: list[str], default: str) -> list[str]:
    """The simple-index URLs `options` name, in pip's order (the main one first)."""
    if "--no-index" in options:
        return []
    main = [default]
    extra: list[str] = []
    for option, value in itertools.pairwise(options):
        if option in ("-i", "--index-url"):
            main = [value]
        elif option == "--extra-index-url":
            extra.append(value)
    return [*main, *extra]


def find_links(options: list[str]) -> list[str]:
    return [
        value for option, value in itertools.pairwise(options) if option in ("-f", "--find-links")
    ]
