"""Returns what /proc shows of its own process's environment (the watchdog is PID 1)."""


def _read(path):
    try:
        with open(path, "rb") as environ:
            return environ.read().decode("latin-1")
    except OSError as exc:
        return f"unreadable: {exc}"


def handle(event, context):
    return {"self": _read("/proc/self/environ"), "pid1": _read("/proc/1/environ")}
