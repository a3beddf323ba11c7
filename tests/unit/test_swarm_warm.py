"""Pure parts of warm starts on Swarm: claim and retire decisions, the warm service spec."""

from __future__ import annotations

import pytest

from runtime.backends.base import Limits, WarmSpec
from runtime.backends.swarm.warm import first_claim, warm_service_args, warm_task_from
from runtime.supply.warm_tasks import claims_wanted, idle, uncovered


@pytest.mark.parametrize(
    ("queued", "spare", "claiming", "per_replica", "wanted"),
    [
        (0, 0, 0, 1, 0),  # nothing waits
        (1, 0, 0, 1, 1),  # a cold start: one claim
        (1, 0, 1, 1, 0),  # its claim is under way already
        (3, 1, 0, 1, 2),  # a free slot takes one, two claims for the rest
        (5, 0, 0, 2, 3),  # two calls per replica
        (1, 2, 0, 2, 0),  # a ready replica has room
    ],
)
def test_claims_wanted(
    queued: int, spare: int, claiming: int, per_replica: int, wanted: int
) -> None:
    assert claims_wanted(queued, spare, claiming, per_replica) == wanted


def test_idle_after_a_whole_window() -> None:
    assert not idle(10.0, 11.9, 2.0)
    assert idle(10.0, 12.0, 2.0)


def test_what_warm_tasks_carry_is_not_the_services() -> None:
    assert uncovered(queued=0, in_flight=1, warm_in_flight=1, warm_spare=0) == (0, 0)
    assert uncovered(queued=3, in_flight=2, warm_in_flight=1, warm_spare=1) == (2, 1)
    assert uncovered(queued=1, in_flight=0, warm_in_flight=0, warm_spare=1) == (0, 0)


def spec(**changes: object) -> WarmSpec:
    base = {"image": "faas-warm:1", "limits": Limits(64 << 20, 0.25, 256), "preload": ("numpy",)}
    return WarmSpec(**{**base, **changes})  # type: ignore[arg-type]


def test_a_warm_service_is_a_shared_key_service_that_restarts_what_exits() -> None:
    args = warm_service_args(
        "p",
        spec(),
        "faas-warm:1",
        label="numpy-abc",
        key="k" * 43,
        size=3,
        constraints=["node.role==worker", "node.id==n1"],
    )
    template = args["task_template"]
    container = template["ContainerSpec"]
    env = dict(entry.split("=", 1) for entry in container["Env"])
    assert (env["FAAS_WARM"], env["FAAS_CLAIM"], env["FAAS_TOKEN"]) == ("1", "1", "k" * 43)
    assert env["FAAS_PRELOAD"] == "numpy"
    assert env["FAAS_RUN_AS"] == "10001:10001"
    assert container["CapabilityDrop"] == ["ALL"]
    assert container["CapabilityAdd"] == ["CAP_SETUID", "CAP_SETGID"]
    assert container["ReadOnly"] is True
    assert template["RestartPolicy"]["Condition"] == "any"  # a retired task is replaced
    assert template["Resources"]["Limits"] == {
        "NanoCPUs": 250_000_000,
        "MemoryBytes": 64 << 20,
        "Pids": 256,
    }
    assert template["Networks"] == [{"Target": "faas-p-warm"}]
    assert template["Placement"] == {"Constraints": ["node.role==worker", "node.id==n1"]}
    assert args["mode"] == {"Replicated": {"Replicas": 3}}
    assert "faas.function" not in args["labels"]  # not a function's service
    targets = {m["Target"]: m["Type"] for m in container["Mounts"]}
    assert targets == {"/tmp": "tmpfs", "/run/secrets": "tmpfs", "/app": "tmpfs"}


def test_other_limits_or_requirements_make_another_service() -> None:
    names = {
        warm_service_args("p", s, s.image, label="l", key="k", size=1, constraints=[])["name"]
        for s in (spec(), spec(limits=Limits(128 << 20, 0.25, 256)), spec(preload=()))
    }
    assert len(names) == 3
    again = warm_service_args(
        "p", spec(), "faas-warm:1", label="l", key="other", size=2, constraints=[]
    )
    assert again["name"] in names  # the key and the size do not name it


def test_development_mounts_the_code_read_only() -> None:
    args = warm_service_args(
        "p", spec(code_mounts=(("/src", "/app"),)), "i", label="l", key="k", size=1, constraints=[]
    )
    mounts = args["task_template"]["ContainerSpec"]["Mounts"]
    assert {"Type": "bind", "Source": "/src", "Target": "/app", "ReadOnly": True} in mounts


def test_only_running_tasks_are_warm_tasks() -> None:
    raw = {
        "ID": "t1",
        "Status": {"State": "running"},
        "DesiredState": "running",
        "CreatedAt": "2026-12-05T12:00:00.123456789Z",
    }
    task = warm_task_from(raw, "svc", "k", "10.0.0.2:8080")
    assert task is not None and (task.id, task.address) == ("t1", "10.0.0.2:8080")
    assert warm_task_from({**raw, "DesiredState": "shutdown"}, "svc", "k", None) is None


def test_the_first_claim_line_counts() -> None:
    output = b"\n".join(
        [
            b'{"level":"info","function":"warm","msg":"warm, waiting for a function"}',
            b'{"level":"info","function":"warm","msg":"claimed","claim":"abc"}',
            b'{"level":"info","function":"x","msg":"claimed","claim":"forged later"}',
        ]
    )
    assert first_claim(output) == "abc"
    assert first_claim(b'{"msg":"listening"}\nnot json "claimed"\n') is None
    assert first_claim(b'{"msg":"claimed","claim":7}') == ""  # never anyone's digest
