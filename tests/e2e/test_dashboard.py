"""The dashboard at /ui, driven in a real headless Chromium against a real gateway.

Debian's chromium (scripts/setup.sh installs it) driven by Playwright, with no
browser download: a fresh profile per run, no network but the gateway's.
FAAS_UPDATE_SCREENSHOT=1 also copies the screenshot to docs/dashboard.png.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import docker
import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, Route, expect, sync_playwright

from tests.conftest import REPO, Gateway, running_gateway

pytestmark = pytest.mark.docker

SPEC = Path(__file__).parent / "projects" / "dashboard" / "functions.yaml"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def gateway(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    with running_gateway(docker_client, SPEC, "dash", tmp_path_factory.mktemp("logs")) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    if not CHROMIUM.exists():
        pytest.fail(f"these tests need Debian's chromium at {CHROMIUM} (scripts/setup.sh)")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1440, "height": 900},
            timeout=60_000,
        )
        context.set_default_timeout(WAIT_MS)
        try:
            yield context
        finally:
            context.close()


def token_of(gateway: Gateway) -> str:
    return gateway.admin_headers["Authorization"].removeprefix("Bearer ")


class Watched:
    """A page with its uncaught script errors and every URL it requested."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.requests: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("request", lambda request: self.requests.append(request.url))

    def assert_clean(self, gateway: Gateway) -> None:
        assert self.errors == []
        foreign = [url for url in self.requests if not url.startswith(gateway.admin_url + "/")]
        assert foreign == [], "the page loaded something from elsewhere"


def test_dashboard_shows_functions_and_a_scale_from_zero(
    gateway: Gateway, browser: BrowserContext, tmp_path: Path
) -> None:
    watched = Watched(browser.new_page())
    page = watched.page
    page.goto(f"{gateway.admin_url}/ui#token={token_of(gateway)}")

    greet = page.locator('.card[data-function="greet"]')
    report = page.locator('.card[data-function="report"]')
    expect(greet).to_be_visible()
    expect(report).to_be_visible()
    expect(page.locator("#project")).to_have_text(gateway.project)
    expect(greet.locator('[data-field="state"]')).to_have_text("idle")
    expect(greet.locator('[data-field="ready"]')).to_have_text("0")
    expect(report.locator('[data-field="ready"]')).to_have_text("1")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    assert "token" not in page.url, "the token stays in the address bar"

    # a call through the page's form: greet scales from zero to one
    page.select_option("#invoke-function", "greet")
    page.select_option("#invoke-method", "POST")
    page.fill("#invoke-query", "name=Ada")
    page.fill("#invoke-body", '{"from": "the dashboard"}')
    page.click("#invoke-send")
    expect(page.locator("#result-status")).to_have_text(re.compile(r"^200\b"))
    result = page.locator("#result-body")
    expect(result).to_contain_text('"greeting": "Hello, Ada!"')
    expect(result).to_contain_text('"body": "{\\"from\\": \\"the dashboard\\"}"')
    expect(result).to_contain_text('"authorization": null')  # the admin token stays behind
    expect(page.locator("#result-headers")).to_contain_text("x-call-id")

    expect(greet.locator('[data-field="ready"]')).to_have_text("1")
    expect(greet.locator('[data-field="state"]')).to_have_text("ready")
    expect(greet.locator('[data-field="cold_start"]')).to_have_text(re.compile(r"^\d.* m?s$"))
    expect(greet.locator('[data-field="p50"]')).to_have_text(re.compile(r"^\d.* m?s$"))
    event = page.locator('#events li[data-function="greet"]').first
    expect(event).to_contain_text("0 → 1")

    # calls from elsewhere show up too: one of four answers 500
    with httpx.Client(base_url=gateway.url, timeout=30, trust_env=False) as client:
        statuses = [client.get("/function/report").status_code for _ in range(3)]
        statuses.append(client.get("/function/report", params={"fail": "1"}).status_code)
    assert statuses == [200, 200, 200, 500]
    expect(report.locator('[data-field="error_rate"]')).to_have_text("25%")
    expect(page.locator("#total-errors")).to_have_text(re.compile(r"%$"))

    # the charts have drawn greet's replicas rising (series are sampled every 2 s)
    line = greet.locator('[data-chart="replicas"] path.line.ready')
    expect(line).to_have_count(1)
    expect(greet.locator('[data-field="replicas-max"]')).to_have_text("max 2")

    updating = bool(os.environ.get("FAAS_UPDATE_SCREENSHOT"))
    shot = tmp_path / "dashboard.png"
    with ThreadPoolExecutor(max_workers=48) as pool:
        # for the README: some history in the charts, calls in flight and queued
        busy = busy_for_a_while(gateway, pool) if updating else []
        page.screenshot(path=str(shot), full_page=True)
        assert [f.result() for f in busy] == [200] * len(busy)
    assert shot.stat().st_size > 10_000
    if updating:
        (REPO / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shot, REPO / "docs" / "dashboard.png")
    watched.assert_clean(gateway)
    page.close()


def busy_for_a_while(
    gateway: Gateway, pool: ThreadPoolExecutor, waves: int = 8
) -> list[Future[int]]:
    """Growing waves of slow calls to greet, two seconds apart; returns with some in flight."""

    def call() -> int:
        url = f"{gateway.url}/function/greet"
        return httpx.get(url, params={"ms": "1500"}, timeout=60, trust_env=False).status_code

    futures: list[Future[int]] = []
    for wave in range(waves):
        if wave:
            time.sleep(2.0)
        futures += [pool.submit(call) for _ in range(12 + 3 * wave)]
    time.sleep(0.8)
    return futures


def test_dashboard_shows_the_warm_pools(gateway: Gateway, browser: BrowserContext) -> None:
    watched = Watched(browser.new_page())
    page = watched.page
    page.goto(f"{gateway.admin_url}/ui#token={token_of(gateway)}")
    panel = page.locator("#warm")
    expect(panel).to_be_visible()
    # one kind of function here (no requirements, same base image): a plain pool greet uses
    row = page.locator("#warm-pools tr").filter(has_text="greet")
    expect(row).to_have_count(1)
    cells = row.locator("td")
    expect(cells.nth(0)).to_have_text(re.compile(r"^plain-[0-9a-f]{6}$"))
    expect(cells.nth(1)).to_have_text(re.compile(r"^\d+ / \d+$"))
    expect(cells.nth(2)).to_have_text(re.compile(r"^(\N{EN DASH}|[\d.]+ MiB)$"))
    expect(cells.nth(3)).to_have_text("\N{EN DASH}")  # no requirements: nothing preloaded
    expect(cells.nth(4)).to_contain_text("greet")
    expect(page.locator("#warm-memory")).to_have_text(re.compile(r"^[\d.]+ MiB of 512 MiB$"))

    # a backend without warm pools answers no `warm`: the panel goes away
    def without_warm(route: Route) -> None:
        answer = route.fetch()
        listing = answer.json()
        del listing["warm"]
        route.fulfill(response=answer, json=listing)

    page.route("**/system/functions", without_warm)
    expect(panel).to_be_hidden()
    expect(page.locator('.card[data-function="greet"]')).to_be_visible()
    watched.assert_clean(gateway)
    page.close()


def test_the_invoke_form_shows_a_streamed_answer_as_it_arrives(
    gateway: Gateway, browser: BrowserContext
) -> None:
    watched = Watched(browser.new_page())
    page = watched.page
    page.goto(f"{gateway.admin_url}/ui#token={token_of(gateway)}")
    page.select_option("#invoke-function", "ticker")
    page.select_option("#invoke-method", "GET")
    page.click("#invoke-send")
    result = page.locator("#result-body")
    expect(result).to_have_text("first line")  # while the handler waits to write the rest
    expect(page.locator("#result-meta")).to_contain_text("receiving")
    with httpx.Client(base_url=gateway.url, timeout=30, trust_env=False) as client:
        assert client.get("/function/ticker", params={"release": "1"}).text == "released"
    expect(result).to_have_text("first line\nlast line")
    expect(page.locator("#result-meta")).not_to_contain_text("receiving")
    watched.assert_clean(gateway)
    page.close()


def test_dashboard_asks_for_the_token_and_shows_when_it_is_refused(
    gateway: Gateway, browser: BrowserContext
) -> None:
    watched = Watched(browser.new_page())  # a new tab: nothing in its sessionStorage
    page = watched.page
    page.goto(f"{gateway.admin_url}/ui")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#dashboard")).to_be_hidden()
    expect(page.locator("#login-message")).to_contain_text("needs the admin token")

    page.goto(f"{gateway.admin_url}/ui#token=not-the-admin-token")
    message = page.locator("#login-message")
    expect(message).to_contain_text("refused this admin token (401")
    expect(message).to_have_attribute("data-kind", "error")
    expect(page.locator("#dashboard")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('faas.adminToken')") is None

    page.fill("#token-input", token_of(gateway))
    page.click("#login-form button[type=submit]")
    expect(page.locator('.card[data-function="greet"]')).to_be_visible()
    page.reload()  # kept for the tab
    expect(page.locator('.card[data-function="greet"]')).to_be_visible()
    page.click("#forget")
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('faas.adminToken')") is None
    watched.assert_clean(gateway)
    page.close()


def test_faas_ui_prints_the_link(gateway: Gateway) -> None:
    result = gateway.cli("ui")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{gateway.admin_url}/ui#token={token_of(gateway)}"
    assert token_of(gateway) not in gateway.log(), "faas up wrote the admin token to its log"
    assert f"dashboard: {gateway.admin_url}/ui" in gateway.log()
