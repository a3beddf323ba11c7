"""The hardening every replica gets, checked on the pure translation."""

from __future__ import annotations

from runtime.backends.base import ReplicaSpec
from runtime.backends.docker import containers


def spec() -> ReplicaSpec:
    return ReplicaSpec(
        function="hello",
        image="faas-hello:abc",
        token="t0ken",
        handler_file="functions/hello.py",
        environment={"GREETING": "hi"},
        memory=64 * 1024 * 1024,
        cpus=0.5,
    )


def test_host_config_is_hardened_and_limited() -> None:
    host = containers.host_config_args(spec(), "demo")
    assert host["read_only"] is True
    assert host["cap_drop"] == ["ALL"]
    assert host["security_opt"] == ["no-new-privileges"]
    assert host["tmpfs"]["/tmp"].startswith("rw,noexec,nosuid")
    assert host["mem_limit"] == 64 * 1024 * 1024
    assert host["memswap_limit"] == host["mem_limit"]
    assert host["nano_cpus"] == 500_000_000
    assert host["pids_limit"] > 0
    assert host["network_mode"] == "faas-demo"
    assert "port_bindings" not in host


def test_container_is_labelled_non_root_and_gets_its_token() -> None:
    args = containers.container_args(spec(), "demo", "faas-demo-hello-1", "r1")
    assert args["user"] == "10001:10001"
    assert args["labels"] == {
        "faas.project": "demo",
        "faas.function": "hello",
        "faas.replica": "r1",
    }
    assert args["environment"]["FAAS_TOKEN"] == "t0ken"
    assert args["environment"]["GREETING"] == "hi"
    assert args["environment"]["FAAS_HANDLER_FILE"] == "functions/hello.py"
    assert args["use_config_proxy"] is False


def test_network_disables_inter_container_traffic() -> None:
    network = containers.network_args("demo")
    assert network["options"]["com.docker.network.bridge.enable_icc"] == "false"
    assert network["labels"] == {"faas.project": "demo"}
