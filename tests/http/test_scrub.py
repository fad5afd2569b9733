"""Scrubbing before any cut: an echoed token, cut by the server at any offset or by us at any length,
leaves no piece of 4 or more of its first characters behind."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from edge_agent.http import REDACTED, Scrubber

TOKEN = "Zq7vK2mP9xR4tW8yB3nL6cF1hJ5dG0sA"  # random-looking, like a real one
MIN_LEAK = 4


def leaked(text: str, secret: str = TOKEN) -> list[str]:
    """Every prefix of `secret` of MIN_LEAK+ characters present in `text`."""
    return [secret[:n] for n in range(MIN_LEAK, len(secret) + 1) if secret[:n] in text]


PAGES = [
    # (text before the echoed token, text after it): a proxy page, a JSON echo, a bare echo.
    ("<html><body><h1>400 Bad Request</h1><pre>Authorization: Bearer ", "</pre></body></html>"),
    ('{"detail": "invalid credentials", "echo": {"headers": {"authorization": "Bearer ', '"}}}'),
    ("rejected key ", " (expired)"),
    ("key=", "&x=1"),
    ("token:", ""),
]


def test_every_cut_of_an_echo_by_the_server() -> None:
    scrubber = Scrubber([TOKEN])
    for before, after in PAGES:
        for cut in range(len(TOKEN) + 1):
            # The server (or a proxy) cut its page inside the token: the body ends with its start.
            body = before + TOKEN[:cut]
            clean = scrubber.scrub(body)
            assert leaked(clean) == [], (before, cut, clean)
            # ... or the page goes on after a cut token.
            clean = scrubber.scrub(body + after)
            assert leaked(clean) == [], (before, cut, clean)


def test_every_cut_by_us_after_scrubbing() -> None:
    scrubber = Scrubber([TOKEN])
    for before, after in PAGES:
        page = before + TOKEN + after
        for limit in range(len(page) + 2):
            cut = scrubber.scrub_and_cut(page, limit)
            assert len(cut) <= max(limit, 0) or limit == 0
            assert leaked(cut) == [], (before, limit, cut)


def test_short_prefixes_are_allowed_and_other_text_is_kept() -> None:
    scrubber = Scrubber([TOKEN])
    assert scrubber.scrub("ends with Zq7") == "ends with Zq7"  # 3 characters: below the bar
    assert scrubber.scrub(f"a {TOKEN} b {TOKEN[:10]}") == f"a {REDACTED} b {REDACTED}"
    assert scrubber.scrub("Not authenticated") == "Not authenticated"


def test_bearer_and_secret_fields_without_a_known_secret() -> None:
    scrubber = Scrubber()
    assert scrubber.scrub("Authorization: Bearer abc.def-ghi") == "Authorization: Bearer ***"
    text = scrubber.scrub('{"api_key": "k-123456", "apiKey":"k2", "token" : "t-9"}')
    assert "k-123456" not in text and "k2" not in text and "t-9" not in text


def test_decoded_json_values() -> None:
    scrubber = Scrubber([TOKEN])
    value = {"api_key": "whatever", "detail": [{"input": TOKEN[:12], "msg": "bad"}], "n": 3}
    clean = scrubber.scrub_value(value)
    assert clean["api_key"] == REDACTED and clean["n"] == 3
    assert leaked(json.dumps(clean)) == []


def test_short_secrets_are_not_registered() -> None:
    assert Scrubber(["ab"]).scrub("abacus") == "abacus"


def test_several_secrets_and_a_learnt_one() -> None:
    scrubber = Scrubber([TOKEN])
    echoed = "lens-key-7f3e9a1b"
    scrubber.add(echoed)
    text = scrubber.scrub(f"{TOKEN[:20]} and {echoed[:9]}")
    assert leaked(text) == [] and leaked(text, echoed) == []


# Printable ASCII without "*", the mask itself (a secret made of stars could re-form around a mask).
token_chars = st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="*")


@given(
    secret=st.text(token_chars, min_size=4, max_size=48),
    before=st.text(max_size=40),
    after=st.text(max_size=40),
    cut=st.integers(0, 48),
    limit=st.integers(0, 200),
)
def test_property_no_prefix_survives(secret: str, before: str, after: str, cut: int, limit: int) -> None:
    scrubber = Scrubber([secret])
    body = before + secret[:cut] + after
    for text in (
        scrubber.scrub(body),
        scrubber.scrub_and_cut(body, limit),
        scrubber.scrub(before + secret[:cut]),
    ):
        assert leaked(text, secret) == [], (secret, text)
