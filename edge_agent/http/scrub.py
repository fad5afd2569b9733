"""Secrets out of server text, before anything cuts, logs, raises or stores it.

Servers echo what they were sent: a proxy's error page may print the `Authorization` header, a
validation error may quote the body, the lens create call returns the caller's key as `api_key`. And
servers (or proxies) cut their own pages: an echoed token may arrive cut in half at the end of a body.
So, in this order:
1. every run of 4 or more characters that is a prefix of a known secret (the whole secret included)
   is replaced, wherever it is: a cut token leaves no first half behind;
2. `Bearer <anything>` loses the credential (a token this process does not know, e.g. one a proxy
   added, or one shorter than 4 characters);
3. the value of an `api_key` / `token`-like field (JSON or `key=value`) is replaced.
Only then may the text be cut (`scrub_and_cut`), which then cannot expose anything.

The price of rule 1: innocent text that happens to share the first 4+ characters of a secret is
masked too. Real tokens are random, so in practice that only ever touches text that is a token.
Secrets shorter than 4 characters are not registered (masking every "ab" would destroy every text
without protecting anything; rule 2 still covers them after `Bearer`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

REDACTED = "***"
MIN_SECRET_PREFIX = 4
ELLIPSIS = "…"

_BEARER = re.compile(r"(?i)\b(bearer)(\s+|%20)[^\s'\",;<>}\])]+")
_SECRET_FIELD = re.compile(
    r"(?i)(\"?\b(?:api[_-]?key|apikey|x-api-key|access[_-]?token|token|authorization)\"?"
    r"\s*[:=]\s*\"?)(?!\*\*\*|bearer\b)([^\"\s,;&}<]+)"
)


class Scrubber:
    """Knows the secrets of one client (its token, keys learnt from answers) and cleans text of them."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        if len(secret) < MIN_SECRET_PREFIX or secret in self._secrets:
            return
        self._secrets.append(secret)
        self._secrets.sort(key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = _mask_prefix_runs(text, secret)
        text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
        return _SECRET_FIELD.sub(lambda m: m.group(1) + REDACTED, text)

    def scrub_and_cut(self, text: str, limit: int) -> str:
        """`text` scrubbed, then cut to at most `limit` characters (the cut is marked)."""
        clean = self.scrub(text)
        if len(clean) <= limit:
            return clean
        return clean[: max(0, limit - len(ELLIPSIS))] + ELLIPSIS

    def scrub_value(self, value: Any) -> Any:
        """Strings anywhere in a decoded JSON value scrubbed; a secret-named field's value replaced."""
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {
                k: REDACTED if _is_secret_key(k) and v is not None else self.scrub_value(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.scrub_value(v) for v in value]
        return value


def _is_secret_key(key: object) -> bool:
    return isinstance(key, str) and key.lower().replace("-", "_") in {
        "api_key",
        "apikey",
        "x_api_key",
        "access_token",
        "token",
        "authorization",
    }


def _mask_prefix_runs(text: str, secret: str) -> str:
    """Every run of >= MIN_SECRET_PREFIX characters equal to the start of `secret` replaced."""
    head = secret[:MIN_SECRET_PREFIX]
    start = text.find(head)
    if start < 0:
        return text
    out: list[str] = []
    done = 0
    while start >= 0:
        end = start + MIN_SECRET_PREFIX
        while end < len(text) and end - start < len(secret) and text[end] == secret[end - start]:
            end += 1
        out.append(text[done:start])
        out.append(REDACTED)
        done = end
        start = text.find(head, end)
    out.append(text[done:])
    return "".join(out)
