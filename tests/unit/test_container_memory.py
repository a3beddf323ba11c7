"""A container's memory as `docker stats` shows it: from the stats API or the cgroup's files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from runtime.backends.docker.memory import cgroup_memory, from_stats, working_set

MiB = 1024 * 1024
CONTAINER_ID = "4f66ad9a0b2e" + "0123456789abcdef" * 3 + "0123"
PID = 4242

# ---------------------------------------------------------------- working_set


@pytest.mark.parametrize(
    ("usage", "stat", "expected"),
    [
        (100 * MiB, {}, 100 * MiB),
        # cgroup v1: total_inactive_file (the hierarchy's), not the cgroup's own inactive_file
        (100 * MiB, {"total_inactive_file": 30 * MiB, "inactive_file": 10 * MiB}, 70 * MiB),
        (100 * MiB, {"total_inactive_file": 30 * MiB}, 70 * MiB),
        # cgroup v2: inactive_file
        (100 * MiB, {"inactive_file": 10 * MiB, "active_file": 50 * MiB}, 90 * MiB),
        (100 * MiB, {"file": 60 * MiB, "anon": 40 * MiB}, 100 * MiB),
        # more inactive than usage (the counters are read apart): the usage
        (100 * MiB, {"inactive_file": 100 * MiB}, 100 * MiB),
        (100 * MiB, {"inactive_file": 200 * MiB}, 100 * MiB),
        (100 * MiB, {"total_inactive_file": 150 * MiB}, 100 * MiB),
        (0, {"inactive_file": 0}, 0),
    ],
)
def test_working_set(usage: int, stat: dict[str, int], expected: int) -> None:
    assert working_set(usage, stat) == expected


# ---------------------------------------------------------------- from_stats

# `memory_stats` of GET /containers/<id>/stats?stream=false on a cgroup v1 host
V1_MEMORY_STATS: dict[str, Any] = {
    "usage": 6537216 + 2 * MiB,
    "max_usage": 8 * MiB,
    "failcnt": 0,
    "limit": 67108864,
    "stats": {
        "active_anon": 6537216,
        "active_file": 0,
        "cache": 2 * MiB,
        "hierarchical_memory_limit": 67108864,
        "hierarchical_memsw_limit": 9223372036854771712,
        "inactive_anon": 0,
        "inactive_file": 512 * 1024,
        "mapped_file": 0,
        "pgfault": 964,
        "pgmajfault": 0,
        "rss": 6537216,
        "rss_huge": 6291456,
        "total_active_anon": 6537216,
        "total_active_file": 0,
        "total_cache": 2 * MiB,
        "total_inactive_anon": 0,
        "total_inactive_file": 2 * MiB,
        "total_rss": 6537216,
        "unevictable": 0,
    },
}

# the same on a cgroup v2 host
V2_MEMORY_STATS: dict[str, Any] = {
    "usage": 24 * MiB,
    "limit": 268435456,
    "stats": {
        "active_anon": 4096,
        "active_file": 3 * MiB,
        "anon": 14 * MiB,
        "anon_thp": 0,
        "file": 9 * MiB,
        "file_dirty": 0,
        "file_mapped": 2 * MiB,
        "inactive_anon": 14 * MiB,
        "inactive_file": 6 * MiB,
        "kernel_stack": 65536,
        "pgfault": 5073,
        "shmem": 0,
        "slab": 600000,
        "sock": 0,
        "unevictable": 0,
        "workingset_refault_file": 0,
    },
}


def test_from_stats_v1() -> None:
    assert from_stats(V1_MEMORY_STATS) == 6537216


def test_from_stats_v2() -> None:
    assert from_stats(V2_MEMORY_STATS) == 18 * MiB


@pytest.mark.parametrize(
    "memory_stats",
    [
        {},  # a container that is not running
        {"stats": {"inactive_file": 0}, "limit": 1},
        {"usage": None, "stats": {}},
        {"usage": "1000"},
        {"usage": 1.5},
    ],
)
def test_from_stats_without_a_usage(memory_stats: dict[str, Any]) -> None:
    assert from_stats(memory_stats) is None


@pytest.mark.parametrize("stats", [None, {}, {"inactive_file": None}, {"inactive_file": "5"}])
def test_from_stats_without_usable_stats_is_the_usage(stats: object) -> None:
    assert from_stats({"usage": 10 * MiB, "stats": stats}) == 10 * MiB
    assert from_stats({"usage": 10 * MiB}) == 10 * MiB


# ---------------------------------------------------------------- cgroup_memory


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def proc_with(proc: Path, membership: str, pid: int = PID) -> None:
    write(proc / str(pid) / "cgroup", membership)


V1_MEMBERSHIP = [
    f"12:pids:/docker/{CONTAINER_ID}",
    f"11:memory:/docker/{CONTAINER_ID}",
    f"10:cpu,cpuacct:/docker/{CONTAINER_ID}",
    f"9:blkio:/docker/{CONTAINER_ID}",
    f"1:name=systemd:/docker/{CONTAINER_ID}",
    f"0::/docker/{CONTAINER_ID}",
]

V1_STAT = """\
cache 4194304
rss 31457280
mapped_file 1048576
inactive_file 1048576
active_file 2097152
hierarchical_memory_limit 268435456
total_cache 4194304
total_rss 31457280
total_inactive_file 3145728
total_active_file 1048576
"""

V2_STAT = """\
anon 20971520
file 8388608
kernel_stack 98304
inactive_anon 20971520
active_anon 0
inactive_file 6291456
active_file 2097152
unevictable 0
slab_reclaimable 120000
pgfault 1234
"""


@pytest.mark.parametrize("unified_first", [False, True])
def test_cgroup_v1_host_in_the_hybrid_layout(tmp_path: Path, unified_first: bool) -> None:
    """v1 controllers, and an empty unified hierarchy: `0::/...` names no memory.current."""
    root, proc = tmp_path / "cgroup", tmp_path / "proc"
    lines = [V1_MEMBERSHIP[-1], *V1_MEMBERSHIP[:-1]] if unified_first else V1_MEMBERSHIP
    proc_with(proc, "\n".join(lines) + "\n")
    memory = root / "memory" / "docker" / CONTAINER_ID
    write(memory / "memory.usage_in_bytes", f"{40 * MiB}\n")
    write(memory / "memory.stat", V1_STAT)
    (root / "unified" / "docker" / CONTAINER_ID).mkdir(parents=True)  # holds no memory files
    (root / "docker" / CONTAINER_ID).mkdir(parents=True)
    write(root / "docker" / CONTAINER_ID / "cgroup.procs", f"{PID}\n")
    write(root / "pids" / "docker" / CONTAINER_ID / "pids.current", "3\n")

    assert cgroup_memory(PID, root=root, proc=proc) == 40 * MiB - 3 * MiB


def test_cgroup_v2_host(tmp_path: Path) -> None:
    root, proc = tmp_path / "cgroup", tmp_path / "proc"
    proc_with(proc, f"0::/system.slice/docker-{CONTAINER_ID}.scope\n")
    scope = root / "system.slice" / f"docker-{CONTAINER_ID}.scope"
    write(scope / "memory.current", f"{32 * MiB}\n")
    write(scope / "memory.stat", V2_STAT)
    write(root / "memory.current", "999999999\n")  # the host's own: not this one
    write(root / "memory.stat", "inactive_file 0\n")

    assert cgroup_memory(PID, root=root, proc=proc) == 32 * MiB - 6 * MiB
    assert cgroup_memory(PID + 1, root=root, proc=proc) is None


def test_cgroup_v2_with_more_inactive_than_usage(tmp_path: Path) -> None:
    root, proc = tmp_path / "cgroup", tmp_path / "proc"
    proc_with(proc, "0::/c\n")
    write(root / "c" / "memory.current", "1000\n")
    write(root / "c" / "memory.stat", "inactive_file 5000\n")
    assert cgroup_memory(PID, root=root, proc=proc) == 1000


def test_a_vanished_process(tmp_path: Path) -> None:
    root, proc = tmp_path / "cgroup", tmp_path / "proc"
    write(root / "c" / "memory.current", "1000\n")
    write(root / "c" / "memory.stat", "inactive_file 0\n")
    proc.mkdir()
    assert cgroup_memory(PID, root=root, proc=proc) is None
    (proc / str(PID)).mkdir()  # the directory outlived the process for a moment
    assert cgroup_memory(PID, root=root, proc=proc) is None


def test_a_cgroup_that_is_not_visible_here(tmp_path: Path) -> None:
    root, proc = tmp_path / "cgroup", tmp_path / "proc"
    proc_with(proc, "0::/system.slice/docker-gone.scope\n")
    root.mkdir()
    assert cgroup_memory(PID, root=root, proc=proc) is None
    proc_with(proc, "\n".join(V1_MEMBERSHIP) + "\n")
    assert cgroup_memory(PID, root=root, proc=proc) is None


@pytest.mark.parametrize(
    "spoil",
    [
        "usage is a directory",
        "stat is a directory",
        "stat is missing",
        "usage is not a number",
        "usage is empty",
        "usage is max",
    ],
)
def test_unreadable_cgroup_files(tmp_path: Path, spoil: str) -> None:
    """Files that cannot be read (as root, a directory where a file should be: no mode
    keeps root from reading a file) or that do not say a number."""
    root, proc = tmp_path / "cgroup", tmp_path / "proc"
    proc_with(proc, "0::/c\n")
    usage, stat = root / "c" / "memory.current", root / "c" / "memory.stat"
    write(usage, "1000\n")
    write(stat, "inactive_file 100\n")
    assert cgroup_memory(PID, root=root, proc=proc) == 900
    if spoil == "usage is a directory":
        usage.unlink()
        usage.mkdir()
    elif spoil == "stat is a directory":
        stat.unlink()
        stat.mkdir()
    elif spoil == "stat is missing":
        stat.unlink()
    else:
        usage.write_text(
            {"usage is not a number": "lots\n", "usage is empty": ""}.get(spoil, "max\n")
        )
    assert cgroup_memory(PID, root=root, proc=proc) is None


def test_unreadable_membership(tmp_path: Path) -> None:
    root, proc = tmp_path / "cgroup", tmp_path / "proc"
    (proc / str(PID) / "cgroup").mkdir(parents=True)
    assert cgroup_memory(PID, root=root, proc=proc) is None


def test_the_memory_controller_among_others_on_one_line(tmp_path: Path) -> None:
    root, proc = tmp_path / "cgroup", tmp_path / "proc"
    proc_with(proc, "5:cpu,memory:/lxc/box\n4:memoryless:/lxc/box\n")
    write(root / "memory" / "lxc" / "box" / "memory.usage_in_bytes", "5000\n")
    write(root / "memory" / "lxc" / "box" / "memory.stat", "total_inactive_file 1000\njunk\n")
    assert cgroup_memory(PID, root=root, proc=proc) == 4000


def test_cgroup_memory_of_this_process_on_this_host() -> None:
    """On the real files: a number or None, never an exception."""
    found = cgroup_memory(os.getpid())
    assert found is None or found > 0
