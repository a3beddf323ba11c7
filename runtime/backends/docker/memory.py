"""How much memory a container uses: its cgroup's charge, less the file cache it could give back.

That is what `docker stats` shows (and what the kernel's OOM killer weighs): the
cgroup's usage minus its inactive file pages. Read from the cgroup's own files
when the engine runs on this host (instant, whichever cgroup version and
driver: the path comes from /proc/<pid>/cgroup), else from the engine's stats
API, which takes about a second for each container.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

CGROUP_ROOT = Path("/sys/fs/cgroup")


def working_set(usage: int, stat: Mapping[str, int]) -> int:
    """`usage` less inactive file pages: `total_inactive_file` (cgroup v1) or
    `inactive_file` (v2), as `docker stats` computes it."""
    inactive = stat.get("total_inactive_file", stat.get("inactive_file", 0))
    return usage - inactive if inactive < usage else usage


def from_stats(memory_stats: Mapping[str, Any]) -> int | None:
    """The working set from the `memory_stats` of the engine's stats API."""
    usage = memory_stats.get("usage")
    if not isinstance(usage, int):
        return None
    stat = memory_stats.get("stats") or {}
    return working_set(usage, {k: v for k, v in stat.items() if isinstance(v, int)})


def cgroup_memory(
    pid: int,
    root: Path = CGROUP_ROOT,
    proc: Path = Path("/proc"),
    *,
    container_id: str | None = None,
) -> int | None:
    """The working set of the cgroup process `pid` is in; None when it cannot be read
    (the process is gone, or its cgroup is not visible from here). With `container_id`,
    only a cgroup named after that container counts: an engine without cgroups of its
    own (rootless Docker without systemd) leaves its containers in a shared one, whose
    charge is not the container's."""
    try:
        membership = (proc / str(pid) / "cgroup").read_text()
    except OSError:
        return None
    for line in membership.splitlines():
        _, controllers, path = line.split(":", 2)
        if container_id is not None and container_id not in path:
            continue
        if controllers == "":  # cgroup v2: one unified hierarchy
            directory, usage_file = root / path.lstrip("/"), "memory.current"
        elif "memory" in controllers.split(","):
            directory, usage_file = root / "memory" / path.lstrip("/"), "memory.usage_in_bytes"
        else:
            continue
        try:
            usage = int((directory / usage_file).read_text())
            stat = _read_stat(directory / "memory.stat")
        except (OSError, ValueError):
            continue
        return working_set(usage, stat)
    return None


def _read_stat(path: Path) -> dict[str, int]:
    stat: dict[str, int] = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if value.isdigit():
            stat[key] = int(value)
    return stat
