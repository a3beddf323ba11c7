"""The dashboard's routes in the gateway app, in process: no engine, no replica."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from starlette.applications import Starlette

from gateway.app import Gateway, Security, create_gateway
from gateway.dashboard import dashboard_url
from gateway.keys import KeyStore
from runtime.backends.base import AnyBackend
from runtime.platform import Platform
from runtime.secrets import SecretStore
from runtime.spec import load_project
from runtime.supply.memory import MemorySupply

TOKEN = "admin-token-for-tests"
SPEC = """\
version: 1
project: dash
functions:
  public-fn:
    handler: functions/a.py
  hidden:
    handler: functions/a.py
    public: false
"""


class Client:
    """Requests straight into the ASGI app (the admin listener's), each on its own event loop."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
                return await c.request(method, url, **kwargs)

        return asyncio.run(send())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)


@pytest.fixture
def gateway(tmp_path: Path) -> Gateway:
    (tmp_path / "functions").mkdir()
    (tmp_path / "functions" / "a.py").write_text("def handle(event, context):\n    return 'a'\n")
    (tmp_path / "functions.yaml").write_text(SPEC)
    project = load_project(tmp_path / "functions.yaml")
    state = tmp_path / ".faas"
    state.mkdir()
    security = Security(KeyStore(state), SecretStore(state), TOKEN)
    # nothing here reaches the backend: no function is built
    platform = Platform(project, cast(AnyBackend, object()), supply=MemorySupply())
    return create_gateway(platform, security)


@pytest.fixture
def client(gateway: Gateway) -> Client:
    """The admin listener's app, where the dashboard is."""
    return Client(gateway.admin)


@pytest.fixture
def caller(gateway: Gateway) -> Client:
    """The function listener's app."""
    return Client(gateway.functions)


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def test_the_page_is_served_without_the_token_and_loads_only_its_own_files(
    client: Client,
) -> None:
    page = client.get("/ui")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "connect-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "http://" not in page.text and "https://" not in page.text
    for asset, media in [
        ("dashboard.js", "text/javascript"),
        ("dashboard.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ]:
        assert f"/ui/{asset}" in page.text
        answer = client.get(f"/ui/{asset}")
        assert answer.status_code == 200, asset
        assert answer.headers["content-type"].startswith(media)
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert client.get("/ui/../app.py").status_code == 404
    assert client.get("/ui/secrets.json").status_code == 404


def test_the_page_holds_no_data(client: Client) -> None:
    page = client.get("/ui").text + client.get("/ui/dashboard.js").text
    assert TOKEN not in page
    assert "public-fn" not in page


def test_stats_need_the_admin_token(client: Client) -> None:
    assert client.get("/system/stats").status_code == 401
    refused = client.get("/system/stats", headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 401
    answer = client.get("/system/stats", headers=admin())
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    assert list(body["functions"]) == ["public-fn", "hidden"]
    assert (body["window"], body["interval"]) == (60, 2.0)
    series = body["functions"]["public-fn"]["series"]
    assert series["ready"] == [0]  # sampled on read
    assert set(series) == {"t", "ready", "starting", "queue_depth", "in_flight", "calls"}


def test_every_call_feeds_the_stats(client: Client, caller: Client) -> None:
    # auth: key by default, so a call without a key is answered 401 by the gateway
    for _ in range(3):
        assert caller.get("/function/public-fn").status_code == 401
    stats = client.get("/system/stats", headers=admin()).json()["functions"]["public-fn"]
    assert (stats["calls"], stats["errors"], stats["error_rate"]) == (3, 0, 0.0)
    assert stats["p50_ms"] is not None and stats["p50_ms"] >= 0
    assert stats["rate"] == pytest.approx(3 / 60, abs=1e-3)


def test_invoke_needs_the_admin_token(client: Client) -> None:
    assert client.post("/system/functions/public-fn/invoke", content=b"x").status_code == 401
    wrong = client.post(
        "/system/functions/public-fn/invoke", content=b"x", headers={"X-API-Key": TOKEN}
    )
    assert wrong.status_code == 401


def test_invoke_bypasses_the_functions_auth_and_visibility(client: Client, caller: Client) -> None:
    # not built here: reaching "still being built" (503) means auth and `public` were passed
    assert caller.get("/function/hidden").status_code == 404
    for url in ("/system/functions/hidden/invoke", "/system/functions/public-fn/invoke/a/b"):
        answer = client.post(url, content=b"{}", headers=admin())
        assert answer.status_code == 503, answer.text
        assert "being built" in answer.json()["error"]
        assert answer.headers["content-security-policy"].startswith("sandbox")
    missing = client.post("/system/functions/nope/invoke", headers=admin())
    assert missing.status_code == 404
    stats = client.get("/system/stats", headers=admin()).json()["functions"]["hidden"]
    assert (stats["calls"], stats["errors"], stats["error_rate"]) == (1, 1, 1.0)


@pytest.mark.parametrize(
    ("base", "token", "expected"),
    [
        ("http://127.0.0.1:8080", "abc", "http://127.0.0.1:8080/ui#token=abc"),
        ("http://0.0.0.0:9000/", "a-b_c", "http://127.0.0.1:9000/ui#token=a-b_c"),
        ("https://[::]:443", "x/y=", "https://127.0.0.1:443/ui#token=x%2Fy%3D"),
        ("http://example.test:80", None, "http://example.test:80/ui"),
    ],
)
def test_dashboard_url(base: str, token: str | None, expected: str) -> None:
    assert dashboard_url(base, token) == expected
