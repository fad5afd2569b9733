"""The control API of a real `edge-agent run` (issue 12 item 7): what a web page on the bench PC sends is
refused and the running step is unchanged; malformed bodies are 4xx; the agent's own log holds no
traceback; the legitimate sequencer calls still work."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from agent_harness import AgentFactory, AgentProcess


async def send(
    agent: AgentProcess, method: str, path: str, body: bytes | None, headers: dict[str, str]
) -> tuple[int, Any]:
    assert agent.http is not None
    async with agent.http.request(method, agent.control_url + path, data=body, headers=headers) as response:
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


async def current_step(agent: AgentProcess) -> Any:
    return (await agent.status())["steps"]["current"]


async def test_a_web_page_cannot_end_the_running_step(run_agent: AgentFactory, make_config: Any) -> None:
    agent = await run_agent(make_config(lens_url=None))
    code, answer = await agent.post("/steps/start", {"name": "soak", "card": "smoke"})
    assert code == 200, answer
    running = await current_step(agent)
    assert running is not None and "soak" in json.dumps(running)
    end_as_fail = json.dumps({"name": "soak", "verdict": "FAIL"}).encode()

    # The cross-site "simple" POST any page can send.
    code, answer = await send(
        agent,
        "POST",
        "/steps/end",
        end_as_fail,
        {"Content-Type": "text/plain", "Origin": "http://evil.example"},
    )
    assert code == 403, answer
    # DNS rebinding: same-origin to the browser, but the Host is the attacker's name.
    json_type = {"Content-Type": "application/json"}
    for method, path in (
        ("POST", "/steps/end"),
        ("GET", "/status"),
        ("GET", "/metrics"),
        ("GET", "/healthz"),
    ):
        code, answer = await send(
            agent, method, path, end_as_fail, {"Host": "evil.example:8321", **json_type}
        )
        assert code == 403, (path, answer)
    # Malformed bodies: 4xx with a reason, never a 500.
    bodies = {
        b"[" * 10_000 + b"]" * 10_000: 400,
        b'{"name": "soak", "verdict": "\xff"}': 400,
        b'{"name": "soak", "verdict": ["FAIL"]}': 422,
        b'{"name": "' + b"x" * (10 * 1024 * 1024) + b'"}': 413,
    }
    for body, expected in bodies.items():
        code, answer = await send(agent, "POST", "/steps/end", body, json_type)
        assert code == expected and answer["error"], (code, answer)

    assert await current_step(agent) == running  # nothing above touched the step
    code, answer = await agent.post("/steps/end", {"name": "soak", "verdict": "PASS"})
    assert code == 200 and answer["execution_status"] == "passed", answer
    assert "Traceback" not in "\n".join(agent.raw), agent.output()
    assert not agent.events("control_request_failed")


async def test_the_health_check_and_a_scrape_pass_the_guard(
    run_agent: AgentFactory, make_config: Any
) -> None:
    agent = await run_agent(make_config(lens_url=None))
    assert agent.http is not None
    async with agent.http.get(agent.control_url + "/metrics", headers={"Accept": "text/plain"}) as response:
        assert response.status == 200 and "edge_agent_" in await response.text()
    # The container's HEALTHCHECK command, as the image runs it (standard library HTTP client).
    probe = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent.service.healthcheck", "--url", agent.control_url + "/healthz",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(probe.communicate(), 30)
    assert probe.returncode == 0, (out, err)
    assert out.decode().startswith("healthy:")
