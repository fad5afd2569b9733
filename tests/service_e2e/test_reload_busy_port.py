"""A SIGHUP reload onto a control port that is taken is refused like any invalid config (issue 12 item
6): the running agent keeps its config and keeps serving, instead of stopping itself and then dying on
the bind."""

from __future__ import annotations

import signal
import socket
from pathlib import Path
from typing import Any

from agent_harness import AgentFactory, NotifySocket, wait_for


async def test_sighup_onto_a_taken_port_is_rejected_and_the_agent_keeps_running(
    run_agent: AgentFactory, make_config: Any, notify: NotifySocket, tmp_path: Path
) -> None:
    agent = await run_agent(make_config(lens_url=None))
    url_before = agent.control_url
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config_path = tmp_path / "agent.toml"
        config_path.write_text(
            config_path.read_text().replace('listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{port}"')
        )
        agent.signal(signal.SIGHUP)
        await wait_for(lambda: bool(agent.events("reload_rejected")), 10, "reload_rejected in the log")
    problems = agent.events("reload_rejected")[-1]["problems"]
    assert len(problems) == 1 and problems[0].startswith(
        f"control.listen: 127.0.0.1:{port} is already in use"
    )
    assert not agent.events("reloading") and not agent.exited
    code, _ = await agent.get("/healthz")
    assert code == 200 and agent.control_url == url_before
    agent.signal(signal.SIGTERM)
    assert await agent.wait_exit(25) == 0, agent.output()
