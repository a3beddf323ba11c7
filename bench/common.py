"""What the benchmarks share: a `faas up` subprocess on a free port."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def gateway(spec: Path, project: str) -> Iterator[str]:
    """Serve `spec` as `project`; yields the gateway's URL and stops it (cleaning up) after.

    Admin calls (`function_info`) read the token `faas up` writes next to `spec`.
    """
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "faas", "up", "-f", str(spec), "--project", project,
         "--port", str(port), "--log-level", "warning"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"faas up -f {spec} did not come up; run it by hand to see why")
            time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)


def admin_headers(spec: Path) -> dict[str, str]:
    token = (spec.parent / ".faas" / "admin-token").read_text().strip()
    return {"Authorization": f"Bearer {token}"}


def function_info(url: str, name: str, spec: Path) -> dict[str, object]:
    functions = httpx.get(
        f"{url}/system/functions", headers=admin_headers(spec), timeout=10
    ).json()["functions"]
    return next(f for f in functions if f["name"] == name)  # type: ignore[no-any-return]
