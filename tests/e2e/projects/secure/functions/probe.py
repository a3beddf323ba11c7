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


def _no_new_privs():
    """prctl(PR_GET_NO_NEW_PRIVS): gVisor's /proc/self/status has no NoNewPrivs line."""
    import ctypes

    return str(ctypes.CDLL(None, use_errno=True).prctl(39, 0, 0, 0, 0))


def _can_chmod(path):
    try:
        os.chmod(path, 0o777)
        return True
    except OSError:
        return False


def _code_files():
    root = os.environ.get("FAAS_CODE_DIR", "/app")
    found = []
    for directory, _, files in os.walk(root):
        found += [os.path.relpath(os.path.join(directory, f), root) for f in files]
    return sorted(found)


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
        "cap_prm": _status("CapPrm"),
        "chmod_own_code": {p: _can_chmod(p) for p in (__file__, os.path.dirname(__file__))},
        "code_files": _code_files(),
        "no_new_privs": _no_new_privs(),
        "writable": {p: _writable(p) for p in ("/app/x", "/etc/x", "/opt/faas/x", "/run/x", "/tmp/x")},
        "reaches_peer": _reaches(peer) if peer else None,
        "secrets": secrets,
        "environment": dict(os.environ),
    }
