from __future__ import annotations

import pytest

from runtime.spec.allowlist import entry_problem, url_problem

ALLOW = ["127.0.0.1", "*.example.com", "https://hooks.partner.io/faas", "localhost:9000", "[::1]"]


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:8123/cb", True),  # a host entry: any port, any path
        ("https://127.0.0.1/cb", True),
        ("http://a.example.com/x", True),
        ("https://a.b.example.com/x", True),
        ("https://example.com/x", False),  # *. is for subdomains only
        ("https://example.com.evil.net/x", False),
        ("https://hooks.partner.io/faas", True),
        ("https://hooks.partner.io/faas/orders?x=1", True),
        ("https://hooks.partner.io/faasx", False),  # a / boundary
        ("https://hooks.partner.io/other", False),
        ("http://hooks.partner.io/faas", False),  # scheme of the prefix
        ("https://hooks.partner.io:8443/faas", False),  # port of the prefix (443)
        ("https://HOOKS.partner.io/faas/x", True),  # host names are case-insensitive
        ("http://localhost:9000/", True),
        ("http://localhost:9001/", False),
        ("http://[::1]:5000/cb", True),
        ("http://127.0.0.2/", False),
    ],
)
def test_allow_list(url: str, allowed: bool) -> None:
    assert (url_problem(url, ALLOW) is None) is allowed


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://127.0.0.1/", "http:// or https://"),
        ("127.0.0.1/cb", "http:// or https://"),
        ("http://user:pw@127.0.0.1/", "credentials"),
        ("http://127.0.0.1@evil.net/", "credentials"),
        ("https://hooks.partner.io/faas/../admin", "'..'"),
        ("https://hooks.partner.io/faas/%2e%2e/admin", "'..'"),
        ("http://127.0.0.1:99999/", "not a valid URL"),
        ("https://evil.net/", "not in gateway.callback_allow"),
    ],
)
def test_refused_urls(url: str, fragment: str) -> None:
    problem = url_problem(url, ALLOW)
    assert problem is not None and fragment in problem


def test_empty_allow_list_refuses_everything() -> None:
    problem = url_problem("http://127.0.0.1/cb", [])
    assert problem is not None and "callback_allow" in problem


@pytest.mark.parametrize(
    ("entry", "valid"),
    [
        ("127.0.0.1", True),
        ("127.0.0.1:8080", True),
        ("*.example.com", True),
        ("[::1]:8080", True),
        ("https://hooks.example.com/faas/", True),
        ("http://localhost:9000", True),
        ("ftp://x.example.com/", False),
        ("https://user@x.example.com/", False),
        ("https://x.example.com/?a=1", False),
        ("exa mple.com", False),
        ("*", False),
        ("example.com:70000", False),
    ],
)
def test_entries(entry: str, valid: bool) -> None:
    assert (entry_problem(entry) is None) is valid
