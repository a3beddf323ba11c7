"""Finding a requirement's source distribution in an index, without running it (pure).

`pip download` of a source distribution prepares its metadata, which runs the
package's build backend on the host; the platform builds source only in a
container of the base image. So the file is looked up here, as pip's finder
would in the simple repository API (PEP 503 HTML pages, the `--find-links`
pages and directories): the newest version the specifier allows, not yanked,
whose `Requires-Python` admits the target interpreter. The page I/O is in
runtime/requirements.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import unquote, urljoin, urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

SDIST_SUFFIXES = (".tar.gz", ".zip")


@dataclass(frozen=True)
class Candidate:
    filename: str
    url: str
    sha256: str | None = None
    requires_python: str | None = None
    yanked: bool = False


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.anchors.append(dict(attrs))


def page_candidates(html: str, page_url: str) -> list[Candidate]:
    """The files a simple-index or find-links page links to."""
    parser = _Anchors()
    parser.feed(html)
    found: list[Candidate] = []
    for anchor in parser.anchors:
        href = anchor.get("href")
        if not href:
            continue
        url = urljoin(page_url, href)
        parts = urlsplit(url)
        filename = unquote(parts.path.rsplit("/", 1)[-1])
        digest = re.fullmatch(r"sha256=([0-9a-fA-F]{64})", parts.fragment)
        found.append(
            Candidate(
                filename=filename,
                url=url.split("#", 1)[0],
                sha256=digest[1].lower() if digest else None,
                requires_python=anchor.get("data-requires-python"),
                yanked="data-yanked" in anchor,
            )
        )
    return found


def requirement_name(requirement: str) -> tuple[str, SpecifierSet]:
    """(canonical project name, version specifier) of a requirement pip reported."""
    try:
        parsed = Requirement(requirement)
    except InvalidRequirement as exc:
        raise ValueError(f"cannot read requirement {requirement!r}: {exc}") from None
    return canonicalize_name(parsed.name), parsed.specifier


def sdist_version(filename: str, name: str) -> Version | None:
    """The version of `filename` if it is a source distribution of project `name`."""
    suffix = next((s for s in SDIST_SUFFIXES if filename.lower().endswith(s)), None)
    if suffix is None:
        return None
    stem = filename[: -len(suffix)]
    project, _, version = stem.rpartition("-")
    if not project or canonicalize_name(project) != name:
        return None
    try:
        return Version(version)
    except InvalidVersion:
        return None


def choose(candidates: list[Candidate], requirement: str, python_version: str) -> Candidate | None:
    """The source distribution pip would pick for `requirement` on that Python."""
    name, specifier = requirement_name(requirement)
    python = Version(python_version)
    best: tuple[Version, bool, Candidate] | None = None
    for candidate in candidates:
        version = sdist_version(candidate.filename, name)
        if version is None or candidate.yanked:
            continue
        # pip's rule: pre-releases only when the specifier names one (`--pre` aside)
        if version.is_prerelease and not specifier.prereleases:
            continue
        if not specifier.contains(version, prereleases=True):
            continue
        if candidate.requires_python:
            try:
                if not SpecifierSet(candidate.requires_python).contains(python):
                    continue
            except InvalidSpecifier:
                continue
        rank = (version, candidate.filename.endswith(".tar.gz"), candidate)
        if best is None or rank[:2] > best[:2]:
            best = rank
    return best[2] if best else None
