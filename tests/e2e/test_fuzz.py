"""Random methods, paths, headers and bodies: the gateway never answers 500 and stays up."""

from __future__ import annotations

import string
from collections.abc import Iterator
from urllib.parse import quote

import docker
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import REPO, Gateway, running_gateway

pytestmark = pytest.mark.docker

TOKEN_CHARS = string.ascii_letters + string.digits + "-_"
VALUE_CHARS = string.ascii_letters + string.digits + " -_.,;:/=+*!~()[]{}@#$%^&|<>?'\""

methods = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE"])
segments = st.lists(st.text(min_size=0, max_size=12), max_size=4).map(
    lambda parts: "/".join(quote(p, safe="") for p in parts)
)
prefixes = st.sampled_from(
    ["/function/hello/", "/function/echo/", "/function/", "/echo", "/hello", "/", "/system/",
     "/function/countdown/", "/metrics", "/healthz/"]
)  # fmt: skip
header_maps = st.dictionaries(
    st.text(TOKEN_CHARS, min_size=1, max_size=20),
    st.text(VALUE_CHARS, max_size=60).map(str.strip),  # the client refuses edge spaces
    max_size=6,
)
bodies = st.binary(max_size=2048)


@pytest.fixture(scope="module")
def examples(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    with running_gateway(
        docker_client, REPO / "functions.yaml", "fuzz", tmp_path_factory.mktemp("logs")
    ) as gateway:
        yield gateway


def test_no_gateway_errors(examples: Gateway) -> None:
    with httpx.Client(base_url=examples.url, timeout=30, trust_env=False) as client:

        @settings(
            max_examples=150,
            deadline=None,
            derandomize=True,  # the same examples every run: CI never meets a new one by chance
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(methods, prefixes, segments, header_maps, bodies, st.text(VALUE_CHARS, max_size=30))
        def call(
            method: str, prefix: str, path: str, headers: dict[str, str], body: bytes, query: str
        ) -> None:
            # absolute: the client refuses a relative URL whose path starts with "//"
            url = examples.url + prefix + path + ("?" + quote(query, safe="=&") if query else "")
            response = client.request(method, url, headers=headers, content=body)
            assert response.status_code < 500, (method, url, headers, response.text)
            if response.status_code >= 400 and method != "HEAD":
                assert "error" in response.json()

        call()
        assert client.get("/healthz").status_code == 200
        assert client.get("/function/hello").status_code == 200
    assert "Traceback" not in examples.log()
