"""The pure translation between functions and Swarm services."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from runtime.backends.base import ReplicaSpec
from runtime.backends.swarm import services

SPEC = ReplicaSpec(
    function="hello",
    image="faas-function:abc",
    token="secret-token",
    handler_file="hello.py",
    environment={"GREETING": "hi"},
    memory=128 * 1024 * 1024,
    cpus=0.5,
    pids=64,
    timeout=10.0,
    secret_files={"db": "/tmp/db"},
)


def args(**overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"secrets": {"db": ("id1", "faas-p-db-1234")}, "grace": 10.0}
    options["constraints"] = overrides.pop("constraints", [])
    spec = dataclasses.replace(SPEC, **overrides)
    return services.service_args(spec, "p", "reg:5000/faas-function:abc", **options)


def test_service_is_hardened_like_a_container() -> None:
    template = args()["task_template"]
    container = template["ContainerSpec"]
    assert container["User"] == "10001:10001"
    assert container["ReadOnly"] is True
    assert container["CapabilityDrop"] == ["ALL"]
    assert container["Image"] == "reg:5000/faas-function:abc"
    assert template["Resources"]["Limits"] == {
        "NanoCPUs": 500_000_000,
        "MemoryBytes": 128 * 1024 * 1024,
        "Pids": 64,
    }
    assert {"Type": "tmpfs", "Target": "/tmp", "TmpfsOptions": {"SizeBytes": 64 << 20}} in (
        container["Mounts"]
    )
    assert template["Networks"] == [{"Target": "faas-p-hello"}]


def test_environment_carries_the_watchdog_settings_and_the_users() -> None:
    env = args()["task_template"]["ContainerSpec"]["Env"]
    assert "GREETING=hi" in env
    assert "FAAS_TOKEN=secret-token" in env
    assert "FAAS_HANDLER_FILE=hello.py" in env
    assert f"FAAS_DRAIN_DELAY={services.DRAIN_DELAY}" in env


def test_secrets_are_read_only_files_of_the_replica_user() -> None:
    (secret,) = args()["task_template"]["ContainerSpec"]["Secrets"]
    assert secret == {
        "SecretID": "id1",
        "SecretName": "faas-p-db-1234",
        "File": {"Name": "db", "UID": "10001", "GID": "10001", "Mode": 0o400},
    }


def test_stop_grace_covers_the_drain_and_a_call() -> None:
    grace = args()["task_template"]["ContainerSpec"]["StopGracePeriod"]
    assert grace == int((10.0 + services.DRAIN_DELAY + 1) * 1e9)


def test_placement_only_when_asked() -> None:
    assert "Placement" not in args()["task_template"]
    placed = args(constraints=["node.role==worker", "node.id==n1"])["task_template"]["Placement"]
    assert placed == {"Constraints": ["node.role==worker", "node.id==n1"]}


def test_a_new_placement_updates_the_service() -> None:
    unplaced = args()["labels"][services.LABEL_SPEC]
    placed = args(constraints=["node.role==worker"])["labels"][services.LABEL_SPEC]
    assert unplaced != placed


def test_the_holder_goes_where_the_functions_go() -> None:
    holder = services.holder_args("p", "img", ["net"], ["node.role==worker"])
    assert holder["task_template"]["Placement"] == {"Constraints": ["node.role==worker"]}
    assert "Placement" not in services.holder_args("p", "img", ["net"], [])["task_template"]


def test_updates_start_successors_first() -> None:
    assert args()["update_config"]["Order"] == "start-first"


def test_spec_hash_ignores_the_token_but_not_the_settings() -> None:
    image = "faas-function:abc"
    same = dataclasses.replace(SPEC, token="another")
    assert services.spec_hash(SPEC, image) == services.spec_hash(same, image)
    changed = dataclasses.replace(SPEC, environment={"GREETING": "hello"})
    assert services.spec_hash(SPEC, image) != services.spec_hash(changed, image)
    assert services.spec_hash(SPEC, image) != services.spec_hash(SPEC, "faas-function:def")


def test_secret_names_change_with_their_content() -> None:
    first = services.secret_name("p", "db", b"one")
    assert first.startswith("faas-p-db-")
    assert first == services.secret_name("p", "db", b"one")
    assert first != services.secret_name("p", "db", b"two")


def test_token_of_reads_the_service_environment() -> None:
    service = {"Spec": {"TaskTemplate": {"ContainerSpec": {"Env": ["A=1", "FAAS_TOKEN=t=x"]}}}}
    assert services.token_of(service) == "t=x"
    assert services.token_of({"Spec": {"TaskTemplate": {"ContainerSpec": {}}}}) is None


def raw_task(state: str = "running", desired: str = "running") -> dict[str, Any]:
    return {
        "ID": "task1234567890",
        "Slot": 2,
        "DesiredState": desired,
        "CreatedAt": "2026-11-27T10:00:01.123456789Z",
        "Status": {"State": state},
        "NetworksAttachments": [
            {"Network": {"ID": "other"}, "Addresses": ["10.0.0.5/24"]},
            {"Network": {"ID": "net1"}, "Addresses": ["10.0.1.7/24"]},
        ],
    }


def test_a_task_runs_only_while_running_and_meant_to() -> None:
    task = services.task_from(raw_task(), "hello", "tok", "172.18.0.3:8080", "p")
    assert task.running and task.address == "172.18.0.3:8080"
    assert task.name == "faas-p-hello.2"
    stopping = services.task_from(raw_task(desired="shutdown"), "hello", "tok", "a:1", "p")
    assert not stopping.running and stopping.address is None
    starting = services.task_from(raw_task(state="starting"), "hello", "tok", None, "p")
    assert not starting.running


def test_overlay_address_is_the_functions_network() -> None:
    assert services.overlay_address(raw_task(), "net1") == "10.0.1.7:8080"
    assert services.overlay_address(raw_task(), "missing") is None


def test_engine_timestamps_with_nanoseconds() -> None:
    assert services.parse_time("2026-11-27T10:00:01.123456789Z") == pytest.approx(
        services.parse_time("2026-11-27T10:00:01Z") + 0.123456
    )
    assert services.parse_time("1970-01-01T00:00:00Z") == 0.0
