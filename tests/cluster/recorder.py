"""A recorder of runs, in a process of its own: `python -m tests.cluster.recorder HOST FILE`.

Every POST's JSON body is appended to FILE as one line, with the sender's address
and the time it arrived. It prints its port once listening. It runs apart from
the tests' own process, whose load generator would otherwise starve it.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    host, path = sys.argv[1], sys.argv[2]
    lock = threading.Lock()
    out = open(path, "a", buffering=1)  # noqa: SIM115 - open for the server's life

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            body.update(node=self.client_address[0], at=time.time())
            with lock:
                out.write(json.dumps(body) + "\n")
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    server.request_queue_size = 1024
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
