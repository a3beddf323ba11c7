"""Development: debugpy listening in a replica before its handler is imported.

Only a replica of a function in debug mode (`debug: true`, `faas up --debug`) is
given a debug port; the gateway mounts debugpy, resolved on the host for the
image's Python, read-only at wire.DEBUGGER_DIR. debugpy starts its adapter as a
subprocess listening on the port; the gateway relays a port on the host's
loopback to it. Whoever connects can run any code in the replica (that is what a
debugger does), which is why only `faas up` in development asks for it.
"""

from __future__ import annotations

import logging
import os
import sys

from . import wire

log = logging.getLogger("faas.watchdog")


def start_debugger(port: int, directory: str = wire.DEBUGGER_DIR) -> bool:
    """Have debugpy listen on `port` (all interfaces of the replica); True once it does.

    A failure is logged and the function serves without a debugger: a replica that
    fails to start would only hide why.
    """
    if directory not in sys.path:
        sys.path.insert(0, directory)
    # Its check for frozen standard-library modules warns at every start; they only
    # matter to breakpoints in the standard library, and -X options cannot be set now.
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    try:
        import debugpy  # type: ignore[import-not-found,unused-ignore]

        host, bound = debugpy.listen(("0.0.0.0", port))
    except Exception as exc:  # ImportError, or the adapter failed to start
        log.error(f"debugger not started: {type(exc).__name__}: {exc}")
        return False
    log.info("debugger listening", extra={"host": host, "port": bound})
    return True
