"""The pytest plugin's pure parts: step names Atlas takes, and the client never showing the token."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.pytest_plugin import MAX_NAME_CHARS, AgentUnreachable, ControlClient, step_name


def test_names_fit_atlas_and_stay_apart() -> None:
    assert step_name("test_power[12V]") == "test_power[12V]"
    assert step_name("  test \n spaced  ") == "test spaced"
    assert step_name("   ") == "test"
    long_a, long_b = "test_" + "a" * 200, "test_" + "a" * 199 + "b"
    assert len(step_name(long_a)) == MAX_NAME_CHARS and step_name(long_a) != step_name(long_b)
    assert step_name(long_a).startswith("test_aaaa")


@given(st.text(min_size=0, max_size=400))
def test_every_name_is_a_valid_step_title(name: str) -> None:
    title = step_name(name)
    assert 1 <= len(title) <= MAX_NAME_CHARS and title == title.strip() and "\n" not in title


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_client_says_why_without_the_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EDGE_AGENT_CONTROL__TOKEN", "s3cret-token-value")
    client = ControlClient(f"http://127.0.0.1:{closed_port()}", 1.0)
    with pytest.raises(AgentUnreachable) as refused:
        client.post("/steps/start", {"name": "x"})
    assert "no answer from http://127.0.0.1:" in str(refused.value)
    assert "s3cret" not in str(refused.value) + repr(client)
    # A token file that cannot be read: said with its path, never with any content.
    monkeypatch.delenv("EDGE_AGENT_CONTROL__TOKEN")
    token_file = tmp_path / "token"
    token_file.write_bytes(b"\xffs3cret")
    monkeypatch.setenv("EDGE_AGENT_CONTROL__TOKEN_FILE", str(token_file))
    with pytest.raises(AgentUnreachable, match=r"cannot read .*token") as unreadable:
        ControlClient("http://127.0.0.1:9", 1.0).post("/steps/start", {"name": "x"})
    assert "s3cret" not in str(unreadable.value)
