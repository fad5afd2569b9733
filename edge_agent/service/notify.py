"""systemd's notify protocol (sd_notify(3)): `READY=1`, `STATUS=...`, `STOPPING=1`, `WATCHDOG=1`.

One datagram per message to the unix socket named by `$NOTIFY_SOCKET` (a path, or `@name` for the
abstract namespace). Without that variable every call is a no-op, so the agent runs the same under
systemd, in a container, and in a terminal. Sending never raises into the caller: a notification
that cannot be delivered must not take the pipeline down, so the first failure is logged and the
rest are counted.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from edge_agent.logs import get_logger

log = get_logger(__name__)

# STATUS= is shown by `systemctl status` on one line; a long one is cut rather than refused.
MAX_STATUS_CHARS = 200


def socket_address(value: str) -> str | bytes | None:
    """`$NOTIFY_SOCKET` -> an AF_UNIX address: `@name` is abstract (leading NUL), `/path` a file.

    Anything else (empty, relative, vsock:...) is not something we can send to: None.
    """
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def watchdog_interval(environ: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """Seconds within which systemd expects `WATCHDOG=1`, from `$WATCHDOG_USEC`; None when the watchdog
    is off, malformed, or meant for another process (`$WATCHDOG_PID` names a different pid)."""
    env = os.environ if environ is None else environ
    raw = env.get("WATCHDOG_USEC", "")
    if not raw.isdigit() or int(raw) == 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner and (not owner.isdigit() or int(owner) != (os.getpid() if pid is None else pid)):
        return None
    return int(raw) / 1_000_000


def one_line(text: str) -> str:
    """STATUS= must be a single line: a newline would start a new (and bogus) assignment."""
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_STATUS_CHARS else flat[: MAX_STATUS_CHARS - 1] + "…"


class SystemdNotifier:
    """Sends notify messages; a no-op when `$NOTIFY_SOCKET` is unset or unusable."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        self._address = socket_address(raw)
        self._sock: socket.socket | None = None
        self._warned = False
        self.sent = 0
        self.failures = 0
        if raw and self._address is None:
            log.warning("notify_socket_unsupported", notify_socket=raw)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([f"STATUS={one_line(status)}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={one_line(text)}")

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *([f"STATUS={one_line(status)}"] if status else []))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more time for the start-up or shutdown in progress (a long outbox drain)."""
        return self.send(f"EXTEND_TIMEOUT_USEC={max(1, int(seconds * 1_000_000))}")

    def send(self, *assignments: str) -> bool:
        """One datagram of `KEY=value` lines; True if the kernel took it (always False when disabled)."""
        if self._address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode()
        try:
            if self._sock is None:
                # Non-blocking: if systemd is slow to drain its queue we drop a message rather than
                # stall the event loop (a missed WATCHDOG=1 is repeated at the next interval).
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(payload, self._address)
        except OSError as exc:
            self.failures += 1
            if not self._warned:
                self._warned = True
                log.warning(
                    "notify_send_failed", error=f"{type(exc).__name__}: {exc}", message=assignments[0]
                )
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
