"""What the docker backend decides and builds for Podman, next to what it does for Docker:
network isolation (profile.network_isolation, containers.network_args, the iptables rule),
the libpod update body, tmpfs options, and the warm watchdog's names (all pure)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from runtime.backends.base import Limits, ReplicaSpec, WarmSpec
from runtime.backends.docker import containers
from runtime.backends.docker.containers import EngineOptions
from runtime.backends.docker.profile import (
    GVISOR_FIX,
    PODMAN_ULIMITS,
    EngineProfile,
    isolation_problems,
    network_isolation,
    profile_of,
)

ROOT = 0
USER = 1000

PODMAN_VERSION: dict[str, Any] = {
    "Components": [{"Name": "Podman Engine", "Version": "4.3.1"}],
    "Version": "4.3.1",
    "ApiVersion": "1.41",
}
PODMAN_INFO: dict[str, Any] = {
    "OperatingSystem": "debian",
    "SecurityOptions": ["name=seccomp,profile=/usr/share/containers/seccomp.json"],
    "Runtimes": {"crun": {"path": "/usr/bin/crun"}},
    "CgroupDriver": "systemd",
}
PODMAN_SOCKET = "unix:///run/podman/podman.sock"
ROOTLESS_PODMAN_SOCKET = "unix:///run/user/1000/podman/podman.sock"

DOCKER = EngineProfile(product="Docker Engine", version="24.0.5")
ROOTLESS_DOCKER = EngineProfile(product="Docker Engine", version="24.0.5", rootless=True)
REMOTE_DOCKER = EngineProfile(product="Docker Engine", version="24.0.5", remote=True)
DESKTOP = EngineProfile(product="Docker Desktop", version="26.1.1")
PODMAN = EngineProfile(product="Podman", version="4.3.1")
ROOTLESS_PODMAN = EngineProfile(product="Podman", version="4.3.1", rootless=True)
REMOTE_PODMAN = EngineProfile(product="Podman", version="4.3.1", remote=True)

DOCKER_OPTIONS = EngineOptions()
PODMAN_OPTIONS = EngineOptions(ulimits=PODMAN_ULIMITS, podman=True)

ENABLE_ICC = "com.docker.network.bridge.enable_icc"
BRIDGE_NAME = "com.docker.network.bridge.name"
ENGINE_TMPFS = "rw,noexec,nosuid,nodev,size=1m"
NETAVARK_JUMP = (
    '-A FORWARD -m comment --comment "netavark firewall plugin rules" -j NETAVARK_FORWARD'
)

WARM_LIMITS = Limits(memory=128 * 1024 * 1024, cpus=1.0, pids=256)
WARM_SPEC = WarmSpec("faas-warm:x", WARM_LIMITS)


def spec(secret_files: dict[str, str] | None = None) -> ReplicaSpec:
    return ReplicaSpec(
        function="hello",
        image="faas-hello:abc",
        token="t0ken",
        handler_file="functions/hello.py",
        secret_files=secret_files or {},
    )


def host_configs(options: EngineOptions) -> dict[str, dict[str, Any]]:
    """Every host config a container gets, by what the container is."""
    return {
        "sandbox": containers.sandbox_host_config_args("demo", options),
        "joined replica": containers.host_config_args(spec(), "demo", "faas-demo-x-net", options),
        "replica on its own": containers.host_config_args(spec(), "demo", options=options),
        "warm": containers.warm_host_config_args("demo", WARM_SPEC, options=options),
    }


def root_owned_mounts(options: EngineOptions) -> dict[str, str]:
    """The warm watchdog's tmpfs mounts that belong to root, by directory."""
    tmpfs = containers.warm_host_config_args("demo", WARM_SPEC, options=options)["tmpfs"]
    return {directory: tmpfs[directory] for directory in ("/app", "/run/secrets")}


# -- profile.network_isolation --------------------------------------------------------------


@pytest.mark.parametrize(
    "engine",
    [DOCKER, ROOTLESS_DOCKER, REMOTE_DOCKER, DESKTOP],
    ids=["docker", "rootless docker", "remote docker", "docker desktop"],
)
@pytest.mark.parametrize("euid", [ROOT, USER], ids=["root", "not root"])
def test_docker_keeps_replicas_apart_itself_whoever_the_gateway_runs_as(
    engine: EngineProfile, euid: int
) -> None:
    assert network_isolation(engine, euid) == "engine"


def test_podman_as_root_keeps_replicas_apart_with_iptables() -> None:
    assert network_isolation(PODMAN, ROOT) == "iptables"
    assert network_isolation(profile_of(PODMAN_VERSION, PODMAN_INFO, PODMAN_SOCKET), ROOT) == (
        "iptables"
    )


@pytest.mark.parametrize(
    ("engine", "euid"),
    [
        (ROOTLESS_PODMAN, ROOT),
        (ROOTLESS_PODMAN, USER),
        (REMOTE_PODMAN, ROOT),
        (REMOTE_PODMAN, USER),
        (PODMAN, USER),
    ],
    ids=["rootless as root", "rootless", "remote as root", "remote", "rootful not as root"],
)
def test_nothing_keeps_podman_replicas_apart_when_rootless_remote_or_not_root(
    engine: EngineProfile, euid: int
) -> None:
    assert network_isolation(engine, euid) == "none"


# -- profile.profile_of and PODMAN_ULIMITS ----------------------------------------------------


def test_podman_saying_it_is_rootless_is_rootless_without_a_security_option() -> None:
    info = {**PODMAN_INFO, "Rootless": True}
    assert not any("rootless" in option for option in info["SecurityOptions"])
    engine = profile_of(PODMAN_VERSION, info, ROOTLESS_PODMAN_SOCKET)
    assert engine.podman and engine.rootless
    assert engine.describe() == "Podman 4.3.1 (rootless)"
    assert network_isolation(engine, ROOT) == "none"


def test_podman_saying_it_is_not_rootless_is_rootful() -> None:
    engine = profile_of(PODMAN_VERSION, {**PODMAN_INFO, "Rootless": False}, PODMAN_SOCKET)
    assert engine.podman and not engine.rootless and not engine.remote


def test_podman_over_ssh_is_remote_podman() -> None:
    engine = profile_of(PODMAN_VERSION, PODMAN_INFO, "ssh://core@build-host/run/podman.sock")
    assert engine.podman and engine.remote
    assert network_isolation(engine, ROOT) == "none"


def test_podman_ulimits_set_nofile_and_nproc_with_soft_no_higher_than_hard() -> None:
    by_name = {limit["Name"]: limit for limit in PODMAN_ULIMITS}
    assert set(by_name) == {"nofile", "nproc"}
    assert len(PODMAN_ULIMITS) == len(by_name)
    for name, limit in by_name.items():
        assert set(limit) == {"Name", "Soft", "Hard"}, name
        assert isinstance(limit["Soft"], int) and isinstance(limit["Hard"], int), name
        assert 0 < limit["Soft"] <= limit["Hard"], name


# -- containers.bridge_name -------------------------------------------------------------------

PROJECTS = ["demo", "demo2", "Demo", "my-project", "a", "", "x" * 300, "projét", "a b/c:d"]


@pytest.mark.parametrize("project", PROJECTS)
def test_the_bridge_name_is_a_valid_linux_interface_name(project: str) -> None:
    bridge = containers.bridge_name(project)
    assert 0 < len(bridge) <= 15  # IFNAMSIZ - 1
    # no '/', ':', whitespace or '%': only what `ip link` and iptables take as they are
    assert re.fullmatch(r"[a-z0-9]+", bridge), bridge
    assert bridge.startswith("faas")


def test_the_bridge_name_is_the_same_for_a_project_every_time() -> None:
    assert containers.bridge_name("demo") == containers.bridge_name("demo")
    # pinned: a name from Python's salted hash() would differ between gateway runs
    assert containers.bridge_name("demo") == "faas2a97516c35"


def test_different_projects_get_different_bridges() -> None:
    projects = [*PROJECTS, *(f"project-{i}" for i in range(500))]
    assert len({containers.bridge_name(project) for project in projects}) == len(projects)


# -- containers.network_args ------------------------------------------------------------------


def test_a_docker_network_disables_inter_container_traffic_itself() -> None:
    for network in (
        containers.network_args("demo"),
        containers.network_args("demo", DOCKER_OPTIONS),
        containers.network_args("demo", DOCKER_OPTIONS, None),
        # a bridge name is Podman's business: Docker names its own
        containers.network_args("demo", DOCKER_OPTIONS, "faas2a97516c35"),
    ):
        assert network["options"] == {ENABLE_ICC: "false"}


def test_a_rootful_podman_network_names_its_bridge_and_not_enable_icc() -> None:
    bridge = containers.bridge_name("demo")
    network = containers.network_args("demo", PODMAN_OPTIONS, bridge)
    assert network["options"] == {BRIDGE_NAME: bridge}
    assert ENABLE_ICC not in network["options"]


def test_a_rootless_podman_network_has_no_driver_options() -> None:
    assert containers.network_args("demo", PODMAN_OPTIONS)["options"] == {}
    assert containers.network_args("demo", PODMAN_OPTIONS, None)["options"] == {}


@pytest.mark.parametrize(
    ("options", "bridge"),
    [(DOCKER_OPTIONS, None), (PODMAN_OPTIONS, "faas2a97516c35"), (PODMAN_OPTIONS, None)],
    ids=["docker", "rootful podman", "rootless podman"],
)
def test_every_engine_gets_the_same_labelled_project_bridge_network(
    options: EngineOptions, bridge: str | None
) -> None:
    network = containers.network_args("demo", options, bridge)
    assert {key: value for key, value in network.items() if key != "options"} == {
        "name": "faas-demo",
        "driver": "bridge",
        "labels": {"faas.project": "demo"},
        "check_duplicate": True,
    }


# -- containers.isolation_rule and FORWARD_RULES ----------------------------------------------


@pytest.mark.parametrize("action", ["-C", "-I", "-D"])
def test_the_isolation_rule_drops_forward_traffic_within_the_bridge(action: Any) -> None:
    assert containers.isolation_rule(action, "faas2a97516c35") == [
        "iptables",
        "-w",
        "5",
        action,
        "FORWARD",
        "-i",
        "faas2a97516c35",
        "-o",
        "faas2a97516c35",
        "-j",
        "DROP",
    ]


def test_the_isolation_rule_waits_for_the_iptables_lock() -> None:
    argv = containers.isolation_rule("-I", "faasx")
    assert argv[0] == "iptables"
    wait = argv.index("-w")
    assert wait < argv.index("-I")
    assert argv[wait + 1].isdigit() and int(argv[wait + 1]) > 0


def test_the_forward_chain_is_listed_with_the_same_wait() -> None:
    assert containers.FORWARD_RULES == ["iptables", "-w", "5", "-S", "FORWARD"]


# -- containers.isolation_comes_first ---------------------------------------------------------

BRIDGE = "faas2a97516c35"
OURS = f"-A FORWARD -i {BRIDGE} -o {BRIDGE} -j DROP"


def forward(*rules: str) -> str:
    """`iptables -S FORWARD` output with these rules (after the chain's policy)."""
    return "\n".join(["-P FORWARD ACCEPT", *rules]) + "\n"


def test_our_rule_above_netavarks_jump_comes_first() -> None:
    assert containers.isolation_comes_first(forward(OURS, NETAVARK_JUMP), BRIDGE)


def test_our_rule_below_netavarks_jump_does_not_come_first() -> None:
    assert not containers.isolation_comes_first(forward(NETAVARK_JUMP, OURS), BRIDGE)


def test_our_rule_without_netavarks_jump_comes_first() -> None:
    assert containers.isolation_comes_first(forward("-A FORWARD -j DOCKER-USER", OURS), BRIDGE)


def test_without_our_rule_nothing_comes_first() -> None:
    assert not containers.isolation_comes_first(forward(NETAVARK_JUMP), BRIDGE)
    assert not containers.isolation_comes_first(forward(), BRIDGE)
    assert not containers.isolation_comes_first("", BRIDGE)


def test_the_rule_of_another_bridge_does_not_count() -> None:
    other = "faas0000000000"
    theirs = f"-A FORWARD -i {other} -o {other} -j DROP"
    rules = forward(theirs, NETAVARK_JUMP, OURS)
    assert not containers.isolation_comes_first(rules, BRIDGE)
    assert containers.isolation_comes_first(rules, other)
    # nor one whose name only starts like ours
    longer = f"-A FORWARD -i {BRIDGE}0 -o {BRIDGE}0 -j DROP"
    assert not containers.isolation_comes_first(forward(longer, NETAVARK_JUMP), BRIDGE)


def test_another_chains_jump_to_netavark_does_not_count() -> None:
    elsewhere = "-A INPUT -j NETAVARK_FORWARD"
    assert containers.isolation_comes_first(forward(elsewhere, OURS, NETAVARK_JUMP), BRIDGE)


def test_the_rule_the_gateway_inserts_is_the_one_it_recognises() -> None:
    # what `iptables -S` prints for what isolation_rule("-I", ...) inserted
    argv = containers.isolation_rule("-I", BRIDGE)
    listed = " ".join(["-A", *argv[argv.index("-I") + 1 :]])
    assert listed == OURS
    assert containers.isolation_comes_first(forward(listed, NETAVARK_JUMP), BRIDGE)


def test_surrounding_whitespace_in_the_listing_is_ignored() -> None:
    rules = f"  {OURS}  \r\n\t{NETAVARK_JUMP}\n"
    assert containers.isolation_comes_first(rules, BRIDGE)


# -- containers.libpod_limits_update and limits_update ----------------------------------------


@pytest.mark.parametrize(
    ("limits", "quota", "nano_cpus"),
    [
        (Limits(memory=128 * 1024 * 1024, cpus=1.0, pids=256), 100_000, 1_000_000_000),
        (Limits(memory=64 * 1024 * 1024, cpus=0.5, pids=64), 50_000, 500_000_000),
        (Limits(memory=1024 * 1024 * 1024, cpus=2.0, pids=1024), 200_000, 2_000_000_000),
        (Limits(memory=256 * 1024 * 1024, cpus=0.25, pids=100), 25_000, 250_000_000),
    ],
)
def test_podmans_update_sets_the_same_limits_as_dockers(
    limits: Limits, quota: int, nano_cpus: int
) -> None:
    assert containers.libpod_limits_update(limits) == {
        "memory": {"limit": limits.memory, "swap": limits.memory},
        "cpu": {"quota": quota, "period": 100_000},
        "pids": {"limit": limits.pids},
    }
    assert containers.limits_update(limits) == {
        "Memory": limits.memory,
        "MemorySwap": limits.memory,
        "NanoCpus": nano_cpus,
        "PidsLimit": limits.pids,
    }
    # the same CPU share: quota/period CPUs, NanoCpus billionths of one
    assert quota * 1_000_000_000 == nano_cpus * containers.CPU_PERIOD


def test_the_update_bodies_hold_only_integers() -> None:
    limits = Limits(memory=96 * 1024 * 1024, cpus=1.5, pids=128)
    libpod = containers.libpod_limits_update(limits)
    for section in libpod.values():
        for value in section.values():
            assert type(value) is int
    assert all(type(value) is int for value in containers.limits_update(limits).values())


def test_the_libpod_update_is_podmans_own_versioned_api() -> None:
    assert containers.LIBPOD_API == "/v4.0.0/libpod"


def test_a_warm_podman_watchdog_gets_the_cpu_quota_a_fresh_replica_would() -> None:
    limits = Limits(memory=128 * 1024 * 1024, cpus=0.29, pids=256)
    nano_cpus = containers.host_config_args(
        ReplicaSpec(function="f", image="i", token="t", cpus=0.29), "demo"
    )["nano_cpus"]
    quota = containers.libpod_limits_update(limits)["cpu"]["quota"]
    assert quota * 1_000_000_000 == nano_cpus * containers.CPU_PERIOD


# -- tmpfs options ----------------------------------------------------------------------------


def test_podmans_root_owned_tmpfs_names_no_owner_and_is_not_copied_up() -> None:
    for directory, mount in root_owned_mounts(PODMAN_OPTIONS).items():
        options = mount.split(",")
        assert not any(o.startswith(("uid=", "gid=")) for o in options), directory
        assert "notmpcopyup" in options, directory
        assert "mode=0755" in options, directory


def test_dockers_root_owned_tmpfs_names_root_as_owner_and_knows_no_notmpcopyup() -> None:
    for directory, mount in root_owned_mounts(DOCKER_OPTIONS).items():
        options = mount.split(",")
        assert "uid=0" in options and "gid=0" in options, directory
        assert "notmpcopyup" not in options, directory
        assert "mode=0755" in options, directory


def test_the_root_owned_tmpfs_options_differ_only_in_ownership_between_engines() -> None:
    podman, docker = root_owned_mounts(PODMAN_OPTIONS), root_owned_mounts(DOCKER_OPTIONS)
    engine_specific = {"uid=0", "gid=0", "notmpcopyup"}
    for directory in docker:
        assert set(podman[directory].split(",")) - engine_specific == (
            set(docker[directory].split(",")) - engine_specific
        ), directory


def test_podman_gets_small_noexec_run_and_var_tmp_in_every_host_config() -> None:
    assert containers.ENGINE_TMPFS_OPTIONS == ENGINE_TMPFS
    for what, host in host_configs(PODMAN_OPTIONS).items():
        assert host["tmpfs"]["/run"] == ENGINE_TMPFS, what
        assert host["tmpfs"]["/var/tmp"] == ENGINE_TMPFS, what


def test_docker_gets_no_run_or_var_tmp_tmpfs() -> None:
    configs = host_configs(DOCKER_OPTIONS)
    assert "tmpfs" not in configs.pop("sandbox")
    for what, host in configs.items():
        assert "/run" not in host["tmpfs"], what
        assert "/var/tmp" not in host["tmpfs"], what


def test_podman_replicas_keep_their_tmp_and_the_sandbox_gets_none() -> None:
    configs = host_configs(PODMAN_OPTIONS)
    assert set(configs.pop("sandbox")["tmpfs"]) == {"/run", "/var/tmp"}
    for what, host in configs.items():
        assert host["tmpfs"]["/tmp"] == host_configs(DOCKER_OPTIONS)[what]["tmpfs"]["/tmp"], what


def test_podman_secrets_lie_over_the_run_tmpfs() -> None:
    host = containers.host_config_args(
        spec({"db": "/srv/secrets/db"}), "demo", "faas-demo-x-net", PODMAN_OPTIONS
    )
    assert host["tmpfs"]["/run"] == ENGINE_TMPFS
    assert host["binds"] == {"/srv/secrets/db": {"bind": "/run/secrets/db", "mode": "ro"}}
    warm = containers.warm_host_config_args("demo", WARM_SPEC, options=PODMAN_OPTIONS)
    assert {"/run", "/run/secrets"} <= set(warm["tmpfs"])


# -- containers.assigned_name and serving_function --------------------------------------------


@pytest.mark.parametrize("function", ["hello", "my-fn", "a-b-c"])
def test_an_assigned_warm_watchdog_keeps_its_hex_and_is_known_by_its_name(function: str) -> None:
    warm = containers.warm_name("my-project")
    hex_part = warm.rpartition("-")[2]
    assert re.fullmatch(r"faas-my-project\.warm-[0-9a-f]{6}", warm)
    name = containers.assigned_name("my-project", function, warm)
    assert name == f"faas-my-project-{function}-{hex_part}"
    labels = {"faas.project": "my-project", "faas.role": "warm"}
    assert containers.serving_function(labels, name, "my-project") == function


def test_an_unassigned_warm_watchdog_serves_no_function() -> None:
    labels = {"faas.project": "demo", "faas.role": "warm"}
    assert containers.serving_function(labels, containers.warm_name("demo"), "demo") is None


def test_a_sandbox_serves_no_function_and_a_replica_the_one_it_is_labelled_with() -> None:
    sandbox = {"faas.project": "demo", "faas.function": "hello", "faas.role": "sandbox"}
    assert containers.serving_function(sandbox, "faas-demo-hello-abc123-net", "demo") is None
    replica = {"faas.project": "demo", "faas.function": "hello", "faas.replica": "r1"}
    assert containers.serving_function(replica, "faas-demo-hello-abc123", "demo") == "hello"


# -- profile.isolation_problems ---------------------------------------------------------------

WITH_RUNSC = EngineProfile(product="Docker Engine", version="24.0.5", runtimes=frozenset({"runsc"}))


def test_container_isolation_runs_anywhere() -> None:
    isolations = {"hello": "container"}
    assert isolation_problems("docker", DOCKER, isolations) == []
    assert isolation_problems("docker", None, isolations) == []
    assert isolation_problems("swarm", None, isolations) == []


def test_gvisor_runs_where_the_engine_has_runsc() -> None:
    assert isolation_problems("docker", WITH_RUNSC, {"hello": "gvisor"}) == []


def test_gvisor_without_runsc_names_the_function_the_engine_and_the_fix() -> None:
    [problem] = isolation_problems("docker", PODMAN, {"hello": "gvisor", "other": "container"})
    assert problem.startswith("function hello: isolation: gvisor needs the runsc runtime")
    assert "Podman 4.3.1" in problem and GVISOR_FIX in problem


def test_gvisor_on_another_backend_is_named_per_function_in_order() -> None:
    problems = isolation_problems("kubernetes", None, {"zeta": "gvisor", "alpha": "gvisor"})
    assert [problem.split(":")[0] for problem in problems] == ["function alpha", "function zeta"]
    assert all("docker backend only" in problem and "kubernetes" in problem for problem in problems)
