"""`faas invoke`'s request headers: -H options and the -k key."""

from __future__ import annotations

import pytest

from faas.cli import invoke_headers


def test_headers_and_key_are_both_sent() -> None:
    headers = invoke_headers(("Content-Type: application/json", "X-A:  b "), "secret-key")
    assert headers == {
        "Content-Type": "application/json",
        "X-A": "b",
        "Authorization": "Bearer secret-key",
    }


def test_an_authorization_header_wins_over_the_key() -> None:
    headers = invoke_headers(("authorization: Bearer other",), "secret-key")
    assert headers == {"authorization": "Bearer other"}


def test_no_key_no_authorization() -> None:
    assert invoke_headers(("X-A: 1",), None) == {"X-A": "1"}


@pytest.mark.parametrize("bad", ["no colon", ": no name"])
def test_a_header_without_name_and_colon_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="is not 'Name: value'"):
        invoke_headers((bad,), None)
