"""Which requests may reach the control API's handlers at all: the defence against web pages.

Any page open in a browser on the bench PC can send requests to 127.0.0.1:8321. Two attacks follow,
and both work without a token (the default on loopback):

- cross-site requests: a "simple" POST (`text/plain`, no preflight) from http://evil.example ends a
  step as FAIL. Refused three ways: a browser always sends `Origin` on a cross-origin POST, and an
  `Origin` that is not the API's own is refused (403); a POST must be `application/json`, which a
  page can only send to another origin after a CORS preflight this API never grants (415); and no
  response carries CORS headers, so a page can never read an answer.
- DNS rebinding: evil.example first resolves to the attacker, then to 127.0.0.1, and the page's
  requests become same-origin. The browser still sends `Host: evil.example`, so a `Host` that is not
  a name of this API is refused (403) on every route.

Accepted `Host` names: any IP address literal (a rebinding attack needs a name: a page whose URL is
an IP address is that address's origin, and the Origin rule covers it), `localhost` (browsers resolve
it themselves, never through DNS), the listen host, and `control.allowed_hosts`. The port is not
compared: behind a port mapping (`docker -p 9000:8321`) clients rightly use another one, and a port
does not make a rebinding attack. A request without `Host` (HTTP/1.0 tools) or without `Origin`
(curl, Prometheus, a test sequencer) is not a browser's and is let through; the token, when one is
configured, is still required after these checks. A page served by this API itself (same origin:
`Origin` equals `http://` + `Host`) passes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
JSON_TYPE = "application/json"


def split_host(value: str) -> tuple[str, int | None] | None:
    """`Host` header -> (lower-case host without brackets or trailing dot, port or None); None when it
    is not a host[:port] at all."""
    value = value.strip()
    port_text = ""
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:]
    else:
        host, _, port_text = value.partition(":") if value.count(":") == 1 else (value, "", "")
        if ":" in host:
            return None  # an IPv6 address must be bracketed in a Host header
    if port_text and not (port_text.isascii() and port_text.isdigit() and int(port_text) <= 65535):
        return None
    host = host.lower().rstrip(".")
    if not host:
        return None
    return host, int(port_text) if port_text else None


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """The host names (lower case) accepted besides IP literals and `localhost`."""

    names: frozenset[str]

    @classmethod
    def of(cls, listen_host: str, allowed_hosts: Iterable[str] = ()) -> HostPolicy:
        names = {name.lower().rstrip(".") for name in (listen_host, *allowed_hosts) if name}
        return cls(frozenset(names | {"localhost"}))

    def host_ok(self, header: str | None) -> bool:
        if header is None:
            return True
        parsed = split_host(header)
        if parsed is None:
            return False
        host = parsed[0]
        return is_ip_literal(host) or host in self.names

    @staticmethod
    def same_origin(origin: str, host_header: str | None) -> bool:
        """Whether `Origin` names the origin the request was sent to (scheme http or https, the
        `Host` header's host and port, default ports filled in)."""
        if host_header is None:
            return False
        target = split_host(host_header)
        try:
            parts = urlsplit(origin.strip())
            origin_port = parts.port
        except ValueError:
            return False
        if target is None or parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        if parts.path or parts.query or parts.fragment or parts.username is not None:
            return False  # an Origin is scheme://host[:port], nothing else
        default = 443 if parts.scheme == "https" else 80
        host, port = target
        return parts.hostname.rstrip(".") == host and (origin_port or default) == (port or default)


def refuse(status: int, error: str) -> web.Response:
    return web.json_response({"error": error}, status=status)


def guard_middleware(policy: HostPolicy) -> Middleware:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host")
        if not policy.host_ok(host):
            return refuse(
                403,
                "Host is not a name of this API (add it to control.allowed_hosts if it is one of yours)",
            )
        origin = request.headers.get("Origin")
        if origin is not None and not policy.same_origin(origin, host):
            return refuse(403, "cross-origin requests are refused")
        if request.method not in SAFE_METHODS:
            charset = (request.charset or "utf-8").lower()
            if request.content_type != JSON_TYPE or charset not in ("utf-8", "utf8"):
                return refuse(415, "the body must be application/json (UTF-8)")
        return await handler(request)

    return guard
