"""Reports what a replica can see and do, for the isolation tests."""

import os
import socket


def _status(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return line.split()[1]
    return None


def _writable(path):
    try:
        with open(path, "w") as handle:
            handle.write("probe")
        return True
    except OSError:
        return False


def _reaches(target):
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1.5):
            return True
    except OSError:
        return False


def handle(event, context):
    secrets = {}
    if os.path.isdir("/run/secrets"):
        for name in os.listdir("/run/secrets"):
            with open(os.path.join("/run/secrets", name)) as handle:
                secrets[name] = handle.read()
    peer = event.query.get("peer")
    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "cap_eff": _status("CapEff"),
        "no_new_privs": _status("NoNewPrivs"),
        "writable": {p: _writable(p) for p in ("/app/x", "/etc/x", "/opt/faas/x", "/run/x", "/tmp/x")},
        "reaches_peer": _reaches(peer) if peer else None,
        "secrets": secrets,
        "environment": dict(os.environ),
    }
