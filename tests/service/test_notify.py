"""SystemdNotifier against a real unix datagram socket the test owns (path and abstract namespace)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.service.notify import SystemdNotifier, one_line, socket_address, watchdog_interval


def receive(sock: socket.socket, count: int) -> list[str]:
    sock.settimeout(2.0)  # bounded: a message that never comes fails the test instead of hanging
    return [sock.recv(4096).decode() for _ in range(count)]


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    yield sock, path
    sock.close()


def test_messages_arrive_in_order_on_a_path_socket(path_socket: tuple[socket.socket, str]) -> None:
    sock, path = path_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("streaming: 2 ports")
    assert notifier.status("lens session running")
    assert notifier.watchdog()
    assert notifier.extend_timeout(12.5)
    assert notifier.stopping("draining outbox")
    notifier.close()
    assert receive(sock, 5) == [
        "READY=1\nSTATUS=streaming: 2 ports",
        "STATUS=lens session running",
        "WATCHDOG=1",
        "EXTEND_TIMEOUT_USEC=12500000",
        "STOPPING=1\nSTATUS=draining outbox",
    ]
    assert notifier.sent == 5 and notifier.failures == 0


def test_abstract_namespace_address() -> None:
    name = f"edge-agent-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    try:
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert notifier.watchdog()
        assert receive(sock, 2) == ["READY=1", "WATCHDOG=1"]
    finally:
        sock.close()


def test_no_notify_socket_is_a_no_op() -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled
    assert not notifier.ready("x")
    assert not notifier.watchdog()
    assert not notifier.stopping()
    assert notifier.sent == 0 and notifier.failures == 0


def test_unusable_values_disable_it() -> None:
    for value in ("", "relative/path", "@", "vsock:2:1234"):
        assert socket_address(value) is None
        assert not SystemdNotifier({"NOTIFY_SOCKET": value}).watchdog()


def test_a_vanished_socket_is_counted_never_raised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert not notifier.ready()
    assert not notifier.watchdog()
    assert notifier.failures == 2 and notifier.sent == 0


def test_status_is_one_line_and_bounded(path_socket: tuple[socket.socket, str]) -> None:
    sock, path = path_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    notifier.status("line one\nREADY=1\n" + "x" * 500)
    (message,) = receive(sock, 1)
    assert "\n" not in message  # an embedded newline must not smuggle a READY=1 in
    assert message.startswith("STATUS=line one READY=1 x")
    assert len(message) == len("STATUS=") + 200
    assert one_line("  a \t b ") == "a b"


def test_watchdog_interval_from_environment() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "junk"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 30.0
    mine = str(os.getpid())
    assert watchdog_interval({"WATCHDOG_USEC": "2500000", "WATCHDOG_PID": mine}) == 2.5
    # Meant for another process (e.g. inherited from a parent that systemd watches): not ours.
    assert watchdog_interval({"WATCHDOG_USEC": "2500000", "WATCHDOG_PID": "1"}, pid=4242) is None
    assert watchdog_interval({"WATCHDOG_USEC": "2500000", "WATCHDOG_PID": "4242"}, pid=4242) == 2.5
