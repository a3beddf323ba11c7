"""`faas ls` stays readable at 80 columns: every line fits and no header is broken."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console, RenderableType

from faas.listing import functions_table, warm_table

ROWS: list[dict[str, Any]] = [
    {
        "name": "thumbnail-generator",
        "state": "ready",
        "replicas": 2,
        "starting": 1,
        "queue_depth": 14,
        "in_flight": 16,
        "last_cold_start_ms": 18.4,
        "routes": [
            {"path": "/images/thumbnail", "methods": ["GET", "POST"]},
            {"path": "/images/thumbnail", "methods": ["PUT"]},
            {"path": "/thumbs", "methods": ["GET"]},
        ],
        "error": None,
    },
    {
        "name": "broken",
        "state": "failed",
        "replicas": 0,
        "routes": [],
        "error": "SyntaxError: invalid syntax (functions/broken.py, line 3)",
    },
]
WARM = {
    "memory": 40 * 2**20,
    "memory_budget": 512 * 2**20,
    "maximum": 8,
    "pools": [
        {
            "pool": "numpy-4bf1da",
            "ready": 2,
            "target": 2,
            "memory": 25 * 2**20,
            "per_watchdog": 25 * 2**20,
            "preload": ["numpy", "scipy", "pandas", "dateutil", "pytz"],
            "functions": ["stats", "report", "forecast"],
        }
    ],
}


def render(renderable: RenderableType, width: int) -> list[str]:
    console = Console(width=width, record=True, color_system=None, force_terminal=False)
    console.print(renderable)
    return console.export_text().splitlines()


@pytest.mark.parametrize("width", [80, 72])
def test_narrow_terminals_get_a_compact_layout_that_fits(width: int) -> None:
    lines = render(functions_table(ROWS, "project demo", width), width)
    assert max(map(len, lines)) <= width
    header = next(line for line in lines if "FUNCTION" in line)
    assert header.split() == ["FUNCTION", "STATE", "READY", "QUEUE", "BUSY", "COLD", "ROUTES"]
    text = "\n".join(lines)
    assert "2+1" in text and "18 ms" in text  # two ready, one starting
    assert "GET" not in text  # routes as paths, each once
    assert "".join(text.split()).count("/thumbs") == 1
    assert "thumbnail-generator" in text  # names are never folded
    assert "broken: SyntaxError: invalid syntax" in text.replace("\n", " ")
    warm = render(warm_table(WARM, width), width)
    assert max(map(len, warm)) <= width
    assert "PRELOADS" not in "\n".join(warm) and "numpy-4bf1da" in "\n".join(warm)


def test_wide_terminals_get_every_column() -> None:
    lines = render(functions_table(ROWS, "project demo", 160), 160)
    header = next(line for line in lines if "FUNCTION" in line)
    for column in ("STARTING", "IN FLIGHT", "COLD START", "ROUTES", "ERROR"):
        assert column in header
    assert "GET POST /images/thumbnail" in "\n".join(lines)
    assert "PRELOADS" in "\n".join(render(warm_table(WARM, 160), 160))
