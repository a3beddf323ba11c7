from __future__ import annotations

from gateway import headers


def test_inbound_drops_hop_by_hop_internal_and_connection_listed() -> None:
    raw = [
        (b"host", b"example"),
        (b"connection", b"keep-alive, x-drop-me"),
        (b"x-drop-me", b"1"),
        (b"transfer-encoding", b"chunked"),
        (b"x-faas-token", b"forged"),
        (b"x-faas-call-id", b"forged"),
        (b"content-type", b"application/json"),
        (b"accept", b"*/*"),
        (b"accept", b"text/plain"),
    ]
    assert headers.inbound(raw) == [
        (b"content-type", b"application/json"),
        (b"accept", b"*/*"),
        (b"accept", b"text/plain"),
    ]


def test_outbound_keeps_repeated_headers_and_drops_internal_and_framing() -> None:
    raw = [
        (b"Set-Cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
        (b"X-Faas-Debug", b"x"),
        (b"X-Call-Id", b"from-replica"),
        (b"Keep-Alive", b"timeout=5"),
        (b"Content-Length", b"3"),
        (b"Transfer-Encoding", b"chunked"),
    ]
    assert headers.outbound(raw) == [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]
