"""The in-container watchdog: loads the user's handler and serves invocations over HTTP/1.1.

Standard library only, and only relative imports inside the package: images copy it to
/opt/faas/faas_watchdog/ and run `python3 -m faas_watchdog`.
"""

from __future__ import annotations

from faas.handler import Context, Event, Response

__all__ = ["Context", "Event", "Response"]
