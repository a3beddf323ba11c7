"""Answers at once, then writes `bytes` (default 100 MB) to stderr from a background thread."""

import sys
import threading

progress = {"written": 0, "done": False, "started": False}


def _flood(total):
    block = ("x" * 99 + "\n") * 650  # 64 KB of 100-byte lines
    while progress["written"] < total:
        sys.stderr.write(block)
        progress["written"] += len(block)
    sys.stderr.flush()
    progress["done"] = True


def handle(event, context):
    if "check" in event.query:
        return dict(progress)
    if not progress["started"]:
        progress["started"] = True
        total = int(event.query.get("bytes", 100_000_000))
        threading.Thread(target=_flood, args=(total,), daemon=True).start()
    return "flooding"
