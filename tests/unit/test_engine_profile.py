"""The engine that answers (profile.py) and the containers made for it (containers.py)."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.backends.base import Limits, ReplicaSpec, WarmSpec
from runtime.backends.docker import containers, profile
from runtime.backends.docker.containers import EngineOptions
from runtime.backends.docker.profile import (
    PODMAN_ULIMITS,
    EngineProfile,
    engine_help,
    engine_url,
    profile_of,
    replica_access,
    unsupported,
)
from runtime.spec import _values

# -- what engines answer on /version and /info (trimmed to what is read, and a little more)

DOCKER_VERSION: dict[str, Any] = {
    "Platform": {"Name": "Docker Engine - Community"},
    "Components": [
        {"Name": "Engine", "Version": "20.10.24", "Details": {"ApiVersion": "1.41"}},
        {"Name": "containerd", "Version": "1.6.20"},
        {"Name": "runc", "Version": "1.1.5"},
        {"Name": "docker-init", "Version": "0.19.0"},
    ],
    "Version": "20.10.24",
    "ApiVersion": "1.41",
    "MinAPIVersion": "1.12",
    "Os": "linux",
}
DOCKER_INFO: dict[str, Any] = {
    "OperatingSystem": "Debian GNU/Linux 12 (bookworm)",
    "SecurityOptions": ["name=seccomp,profile=default", "name=cgroupns"],
    "Runtimes": {
        "io.containerd.runc.v2": {"path": "runc"},
        "runc": {"path": "runc"},
        "runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=host"]},
    },
    "CgroupDriver": "systemd",
    "MemoryLimit": True,
}
ROOTLESS_INFO: dict[str, Any] = {
    **DOCKER_INFO,
    "SecurityOptions": ["name=seccomp,profile=default", "name=rootless", "name=cgroupns"],
    "Runtimes": {"runc": {"path": "runc"}},
}
ROOTLESS_WITHOUT_CGROUPS_INFO: dict[str, Any] = {
    **ROOTLESS_INFO,
    "CgroupDriver": "none",
    "MemoryLimit": False,
}
PODMAN_VERSION: dict[str, Any] = {
    "Platform": {"Name": "linux/amd64/debian-12"},
    "Components": [
        {"Name": "Podman Engine", "Version": "4.3.1", "Details": {"APIVersion": "4.3.1"}},
        {"Name": "Conmon", "Version": "conmon version 2.1.6"},
        {"Name": "OCI Runtime (crun)", "Version": "crun version 1.8.1"},
    ],
    "Version": "4.3.1",
    "ApiVersion": "1.41",
    "MinAPIVersion": "1.24",
}
PODMAN_INFO: dict[str, Any] = {
    "OperatingSystem": "debian",
    "SecurityOptions": ["name=seccomp,profile=/usr/share/containers/seccomp.json"],
    "Runtimes": {"crun": {"path": "/usr/bin/crun"}, "runc": {"path": "/usr/bin/runc"}},
    "CgroupDriver": "systemd",
}
DESKTOP_VERSION: dict[str, Any] = {
    **DOCKER_VERSION,
    "Platform": {"Name": "Docker Desktop 4.30.0 (149282)"},
    "Version": "26.1.1",
    "ApiVersion": "1.45",
}
DESKTOP_INFO: dict[str, Any] = {
    **DOCKER_INFO,
    "OperatingSystem": "Docker Desktop",
    "Runtimes": {"runc": {"path": "runc"}},
}

LOCAL = "unix:///var/run/docker.sock"


def docker() -> EngineProfile:
    return profile_of(DOCKER_VERSION, DOCKER_INFO, LOCAL)


def rootless() -> EngineProfile:
    return profile_of(DOCKER_VERSION, ROOTLESS_INFO, "unix:///run/user/1000/docker.sock")


def podman() -> EngineProfile:
    return profile_of(PODMAN_VERSION, PODMAN_INFO, "unix:///run/podman/podman.sock")


def desktop() -> EngineProfile:
    return profile_of(DESKTOP_VERSION, DESKTOP_INFO, "unix:///Users/me/.docker/run/docker.sock")


def remote() -> EngineProfile:
    return profile_of(DOCKER_VERSION, DOCKER_INFO, "tcp://10.0.0.5:2376")


# -- profile_of -------------------------------------------------------------------------


def test_docker_engine_is_recognised_with_its_runtimes() -> None:
    engine = docker()
    assert (engine.product, engine.version) == ("Docker Engine", "20.10.24")
    assert not (engine.rootless or engine.remote or engine.podman or engine.desktop)
    assert engine.runtimes == {"io.containerd.runc.v2", "runc", "runsc"}
    assert engine.enforces_limits
    assert engine.describe() == "Docker Engine 20.10.24"


def test_rootless_docker_is_recognised_by_its_security_option() -> None:
    engine = rootless()
    assert engine.product == "Docker Engine"
    assert engine.rootless and not engine.remote
    assert engine.enforces_limits
    assert engine.describe() == "Docker Engine 20.10.24 (rootless)"


def test_rootless_docker_without_cgroups_does_not_enforce_limits() -> None:
    engine = profile_of(DOCKER_VERSION, ROOTLESS_WITHOUT_CGROUPS_INFO, LOCAL)
    assert engine.rootless and not engine.enforces_limits


def test_podman_is_recognised_by_its_engine_component() -> None:
    engine = podman()
    assert engine.podman and engine.product == "Podman"
    assert engine.version == "4.3.1"
    assert engine.runtimes == {"crun", "runc"}
    assert not engine.rootless and not engine.remote


def test_rootless_podman_is_rootless_podman() -> None:
    info = {**PODMAN_INFO, "SecurityOptions": ["name=rootless", "name=seccomp,profile=x"]}
    engine = profile_of(PODMAN_VERSION, info, "unix:///run/user/1000/podman/podman.sock")
    assert engine.podman and engine.rootless


def test_docker_desktop_is_recognised_by_its_operating_system() -> None:
    engine = desktop()
    assert engine.desktop and engine.product == "Docker Desktop"
    assert not engine.remote and not engine.rootless


@pytest.mark.parametrize(
    ("url", "is_remote"),
    [
        ("unix:///var/run/docker.sock", False),
        ("http+unix://%2Fvar%2Frun%2Fdocker.sock", False),
        ("npipe:////./pipe/docker_engine", False),
        ("tcp://10.0.0.5:2376", True),
        ("ssh://me@build-host", True),
    ],
)
def test_an_engine_over_the_network_is_remote(url: str, is_remote: bool) -> None:
    assert profile_of(DOCKER_VERSION, DOCKER_INFO, url).remote is is_remote


def test_empty_answers_give_a_plain_docker_engine() -> None:
    engine = profile_of({}, {}, LOCAL)
    assert (engine.product, engine.version, engine.runtimes) == ("Docker Engine", "?", frozenset())
    assert not engine.rootless and engine.enforces_limits


# -- replica_access ---------------------------------------------------------------------


def test_auto_dials_the_address_on_a_local_rootful_engine() -> None:
    assert replica_access("auto", docker(), gateway_is_local=True) == "address"
    assert replica_access("auto", podman(), gateway_is_local=True) == "address"


@pytest.mark.parametrize("engine", [rootless, desktop, remote], ids=lambda f: f.__name__)
def test_auto_publishes_where_the_host_cannot_route_to_the_bridge(engine: Any) -> None:
    assert replica_access("auto", engine(), gateway_is_local=True) == "published"


def test_auto_publishes_when_the_network_gateway_is_not_a_local_address() -> None:
    assert replica_access("auto", docker(), gateway_is_local=False) == "published"


def test_an_explicit_setting_wins_over_the_engine() -> None:
    assert replica_access("address", rootless(), gateway_is_local=False) == "address"
    assert replica_access("address", remote(), gateway_is_local=False) == "address"
    assert replica_access("published", docker(), gateway_is_local=True) == "published"


# -- engine_url, engine_help, unsupported -----------------------------------------------


def test_docker_honours_docker_host_else_the_default_socket() -> None:
    assert engine_url("docker", {"DOCKER_HOST": "tcp://10.0.0.5:2376"}, uid=1000) == (
        "tcp://10.0.0.5:2376"
    )
    assert engine_url("docker", {}, uid=1000) == "unix:///var/run/docker.sock"
    assert engine_url("docker", {"DOCKER_HOST": ""}, uid=0) == "unix:///var/run/docker.sock"
    assert engine_url("docker", {"CONTAINER_HOST": "unix:///x.sock"}, uid=0) == (
        "unix:///var/run/docker.sock"
    )


def test_podman_honours_container_host() -> None:
    environ = {"CONTAINER_HOST": "unix:///srv/podman.sock", "DOCKER_HOST": "tcp://elsewhere:1"}
    assert engine_url("podman", environ, uid=1000) == "unix:///srv/podman.sock"


def test_podman_defaults_to_the_system_socket_for_root() -> None:
    environ = {"XDG_RUNTIME_DIR": "/run/user/0"}
    assert engine_url("podman", environ, uid=0) == "unix:///run/podman/podman.sock"


def test_podman_defaults_to_the_users_runtime_directory_otherwise() -> None:
    assert engine_url("podman", {"XDG_RUNTIME_DIR": "/run/user/1000"}, uid=1000) == (
        "unix:///run/user/1000/podman/podman.sock"
    )
    assert engine_url("podman", {}, uid=1234) == "unix:///run/user/1234/podman/podman.sock"


def test_engine_help_names_the_url_and_the_script() -> None:
    docker_help = engine_help("docker", "unix:///var/run/docker.sock")
    assert "unix:///var/run/docker.sock" in docker_help
    assert "scripts/ensure-docker.sh" in docker_help and "DOCKER_HOST" in docker_help
    podman_help = engine_help("podman", "unix:///run/podman/podman.sock")
    assert "unix:///run/podman/podman.sock" in podman_help
    assert "scripts/ensure-podman.sh" in podman_help and "CONTAINER_HOST" in podman_help


def test_an_engine_older_than_api_1_40_is_unsupported() -> None:
    reason = unsupported({"ApiVersion": "1.24"})
    assert reason is not None and "1.24" in reason and "1.40" in reason


@pytest.mark.parametrize("api", ["1.40", "1.41", "1.45"])
def test_a_recent_engine_is_supported(api: str) -> None:
    assert unsupported({"ApiVersion": api}) is None


def test_an_api_version_that_is_not_one_is_unsupported() -> None:
    reason = unsupported({"ApiVersion": "garbage"})
    assert reason is not None and "'garbage'" in reason
    assert unsupported({}) is not None


def test_the_specs_values_agree_with_the_engine_types() -> None:
    assert _values.ENGINES == profile.ENGINES
    assert _values.REPLICA_ACCESS == profile.REPLICA_ACCESS
    assert tuple(profile.ISOLATION_RUNTIMES) == _values.ISOLATIONS


# -- containers with engine options ------------------------------------------------------

PUBLISHED = EngineOptions(published=True)
PODMAN = EngineOptions(ulimits=PODMAN_ULIMITS)
WARM_LIMITS = Limits(memory=128 * 1024 * 1024, cpus=1.0, pids=256)
WARM_SPEC = WarmSpec("faas-warm:x", WARM_LIMITS)


def spec(isolation: str = "container") -> ReplicaSpec:
    return ReplicaSpec(
        function="hello",
        image="faas-hello:abc",
        token="t0ken",
        handler_file="functions/hello.py",
        isolation=isolation,
    )


def host_configs(options: EngineOptions) -> dict[str, dict[str, Any]]:
    """Every host config a container gets, by what the container is."""
    return {
        "sandbox": containers.sandbox_host_config_args("demo", options),
        "joined replica": containers.host_config_args(spec(), "demo", "faas-demo-x-net", options),
        "replica on its own": containers.host_config_args(spec(), "demo", options=options),
        "warm": containers.warm_host_config_args("demo", WARM_SPEC, options=options),
    }


def test_a_published_sandbox_exposes_the_port_and_binds_it_on_loopback() -> None:
    args = containers.sandbox_args(spec(), "demo", "faas-demo-hello-1", PUBLISHED)
    assert args["ports"] == [8080]
    host = containers.sandbox_host_config_args("demo", PUBLISHED)
    assert host["port_bindings"] == {8080: ("127.0.0.1", None)}


def test_a_replica_joined_to_its_sandbox_binds_no_port() -> None:
    # Docker refuses port bindings with network_mode container:<sandbox>
    host = containers.host_config_args(spec(), "demo", "faas-demo-hello-1-net", PUBLISHED)
    assert host["network_mode"] == "container:faas-demo-hello-1-net"
    assert "port_bindings" not in host


def test_a_replica_on_its_own_network_publishes_its_port() -> None:
    host = containers.host_config_args(spec(), "demo", options=PUBLISHED)
    assert host["network_mode"] == "faas-demo"
    assert host["port_bindings"] == {8080: ("127.0.0.1", None)}


def test_a_warm_watchdog_publishes_its_port() -> None:
    assert containers.warm_args("demo", WARM_SPEC, "t", "w", PUBLISHED)["ports"] == [8080]
    host = containers.warm_host_config_args("demo", WARM_SPEC, options=PUBLISHED)
    assert host["port_bindings"] == {8080: ("127.0.0.1", None)}


def test_without_publishing_nothing_is_exposed_or_bound() -> None:
    options = EngineOptions(published=False)
    assert "ports" not in containers.sandbox_args(spec(), "demo", "n", options)
    assert "ports" not in containers.warm_args("demo", WARM_SPEC, "t", "w", options)
    for what, host in host_configs(options).items():
        assert "port_bindings" not in host, what


def test_ulimits_from_the_options_are_in_every_host_config() -> None:
    for what, host in host_configs(PODMAN).items():
        assert host["ulimits"] == list(PODMAN_ULIMITS), what
    for what, host in host_configs(EngineOptions()).items():
        assert host["ulimits"] is None, what


def test_gvisor_isolation_selects_the_runsc_runtime() -> None:
    assert containers.host_config_args(spec("gvisor"), "demo")["runtime"] == "runsc"
    assert containers.host_config_args(spec("container"), "demo")["runtime"] is None
    warm = containers.warm_host_config_args(
        "demo", WarmSpec("faas-warm:x", WARM_LIMITS, isolation="gvisor")
    )
    assert warm["runtime"] == "runsc"


def test_a_warm_watchdog_starts_as_root_and_is_told_whom_to_become() -> None:
    args = containers.warm_args("demo", WARM_SPEC, "t0ken", "faas-demo.warm-1")
    assert args["user"] == "0:0"
    assert args["environment"]["FAAS_RUN_AS"] == "10001:10001"


def test_a_warm_watchdog_may_only_change_user_and_its_mounts_belong_to_root() -> None:
    host = containers.warm_host_config_args("demo", WARM_SPEC)
    assert host["cap_add"] == ["SETUID", "SETGID"]
    assert host["cap_drop"] == ["ALL"]
    assert host["security_opt"] == ["no-new-privileges"]
    tmpfs = host["tmpfs"]
    for directory in ("/app", "/run/secrets"):
        assert "uid=0" in tmpfs[directory].split(","), directory
    assert "noexec" in tmpfs["/app"].split(",")
    assert "noexec" in tmpfs["/run/secrets"].split(",")
    # requirements are in the kind's image (read-only), never written at a start
    assert "/opt/faas/deps" not in tmpfs


def test_a_warm_watchdog_with_mounted_code_has_no_code_tmpfs() -> None:
    mounts = [("/home/me/project/functions", "/app/functions")]
    host = containers.warm_host_config_args(
        "demo", WarmSpec("faas-warm:x", WARM_LIMITS, tuple(mounts))
    )
    assert "/app" not in host["tmpfs"]
    assert host["binds"] == {"/home/me/project/functions": {"bind": "/app/functions", "mode": "ro"}}


def test_the_published_address_is_read_from_an_inspect() -> None:
    attrs = {
        "NetworkSettings": {"Ports": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32781"}]}}
    }
    assert containers.published_address(attrs) == "127.0.0.1:32781"


@pytest.mark.parametrize(
    "ports",
    [None, {}, {"8080/tcp": None}, {"8080/tcp": []}, {"9090/tcp": [{"HostPort": "1"}]}],
)
def test_no_published_address_without_a_binding(ports: Any) -> None:
    assert containers.published_address({"NetworkSettings": {"Ports": ports}}) is None


def test_docker_follows_the_current_docker_context_unless_docker_host_says() -> None:
    desktop = "unix:///Users/ada/.docker/run/docker.sock"
    assert profile.engine_url("docker", {}, context_host=desktop) == desktop
    assert profile.engine_url("docker", {"DOCKER_HOST": "tcp://h:2376"}, context_host=desktop) == (
        "tcp://h:2376"
    )
    assert profile.engine_url("podman", {}, uid=0, context_host=desktop) == (
        "unix:///run/podman/podman.sock"
    )
