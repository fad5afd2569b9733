"""The agent's one TLS context, and aiohttp imported without the one it would make itself.

A verifying context holds the system's whole CA bundle (Debian's ~145 certificates: ~2 MB of RSS). Every
TLS connection the agent makes (Atlas and the lens API over HTTPS through edge_agent.http.transport, the
lens's wss:// stream) verifies with one context, made at the first such connection, in a thread (the
bundle is read from disk), and then kept: paid once, and not at all by an agent whose APIs are plain
HTTP. It is made with `ssl.create_default_context()`, so `SSL_CERT_FILE` / `SSL_CERT_DIR` (a lab's own
CA, a proxy's) apply as they do to any Python program; a change of them makes a new one.

aiohttp makes a verified context of its own when it is imported (aiohttp.connector: eagerly, so that no
request loads the bundle on the event loop). The agent never uses it, as it passes its own to every
session, but that context would still hold a second copy of the bundle for the life of the process.
`import_aiohttp()`, called by the command line before any command's module is imported, imports aiohttp
with OpenSSL's default CA *file* pointed at an empty one for the duration of that import: aiohttp's
context then holds no certificate (it can still verify through the default CA *directory*, looked up
per certificate, so a connection that did reach it would be verified, never unverified). Only the
`edge-agent` process does this, never a process that imports edge_agent as a library (the pytest
plugin): there aiohttp is left as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import sys
import threading
from collections.abc import Iterator

# What OpenSSL reads the default CA file and directory from (X509_get_default_cert_file_env()).
CA_FILE_VARIABLE = "SSL_CERT_FILE"
CA_DIR_VARIABLE = "SSL_CERT_DIR"

_lock = threading.Lock()
_made: dict[tuple[str | None, str | None], ssl.SSLContext] = {}


def import_aiohttp() -> None:
    """Import aiohttp with no CA bundle in the verified context it makes at import (module doc). A
    no-op when something imported it already."""
    if "aiohttp" in sys.modules:
        return
    with _default_ca_file(os.devnull):
        import aiohttp  # noqa: F401  (imported for its side effect, here, before anything else does)


@contextlib.contextmanager
def _default_ca_file(path: str) -> Iterator[None]:
    saved = os.environ.get(CA_FILE_VARIABLE)
    os.environ[CA_FILE_VARIABLE] = path
    try:
        yield
    finally:
        if saved is None:
            del os.environ[CA_FILE_VARIABLE]
        else:
            os.environ[CA_FILE_VARIABLE] = saved


async def client_context() -> ssl.SSLContext:
    """The process's verifying client context for the CA settings in force (module doc)."""
    key = (os.environ.get(CA_FILE_VARIABLE), os.environ.get(CA_DIR_VARIABLE))
    made = _made.get(key)
    if made is not None:
        return made
    return await asyncio.to_thread(_make, key)


def _make(key: tuple[str | None, str | None]) -> ssl.SSLContext:
    # Under a lock, in the thread: two first connections at once wait for one context, not two.
    with _lock:
        made = _made.get(key)
        if made is None:
            _made.clear()  # the CA settings changed: the old context is not used again
            made = _made[key] = ssl.create_default_context()
        return made
