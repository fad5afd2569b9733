"""AWS credentials never reach the logs (at debug level, through an S3 outage), the state files,
/status or /metrics, not even a 4-character prefix: given through the AWS chain's environment
variables, and through systemd credentials ($CREDENTIALS_DIRECTORY). The upload still works with
them (the object is in the bucket), so the credentials were really used."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp
import pytest
from e2e_helpers import agent_config_toml, step_toml
from recorder_helpers import CapturingSim, S3Proxy, free_port, objects, s3_toml
from test_s3_outage_kill import _spawn, _status, _until

from edge_agent.emulators.atlas import AtlasEmulator

KEY_ID = "AKIAQ7VK2MP9XR4TW8YB"
SECRET_KEY = "Zq7vK2mP9xR4tW8yB3nL6cF1hJ5dG0sAx9Wq2Er"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEHcaCXVzLWVhc3QtMSJHMEUCIQDx8Yh3Lm2Pq9Rt5Vw7"
SECRETS = (KEY_ID, SECRET_KEY, SESSION_TOKEN)


def leaks(text: str) -> list[str]:
    return [s[:n] for s in SECRETS for n in range(4, len(s) + 1) if s[:n] in text]


@pytest.mark.parametrize("source", ["environment", "systemd_credentials"])
async def test_aws_credentials_stay_secret(
    tmp_path: Path, atlas: AtlasEmulator, s3_server: str, s3_proxy: S3Proxy, source: str
) -> None:
    link = tmp_path / "ttyBENCH0"
    port = free_port()
    control = f"http://127.0.0.1:{port}"
    config = tmp_path / "agent.toml"
    toml = agent_config_toml(tmp_path / "state", link, atlas.base_url, control_port=port)
    config.write_text(toml + s3_toml(s3_proxy.url, keys=False), encoding="utf-8")
    scenario = tmp_path / "scenario.toml"
    scenario.write_text('name = "secrets"\nduration = "3s"\n' + step_toml("only", 0.8, 2.0), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "no-aws-files")
    if source == "environment":
        env.update(
            AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_SESSION_TOKEN=SESSION_TOKEN
        )
    else:
        creds = tmp_path / "credentials"
        creds.mkdir()
        for name, value in zip(
            ("aws_access_key_id", "aws_secret_access_key", "aws_session_token"), SECRETS, strict=True
        ):
            (creds / name).write_text(value + "\n")
        env["CREDENTIALS_DIRECTORY"] = str(creds)
    log = tmp_path / "agent.log"
    await s3_proxy.down()  # errors first: their messages are logged
    old = os.environ.copy()
    os.environ.clear()
    os.environ.update(env)
    try:
        proc = await _spawn(config, log, "--log-level", "debug")
    finally:
        os.environ.clear()
        os.environ.update(old)
    sim = CapturingSim(scenario, link, tmp_path / "oracle.jsonl", rate=100.0)
    answers = []
    try:
        async with aiohttp.ClientSession() as http:
            await _until(lambda: _status(http, control), 30, "the agent's control API")
            await sim.start()
            await sim.wait(30)

            async def retried() -> bool:
                status = await _status(http, control)
                return bool(status and status["outbox"]["counters"].get("retries", 0) >= 1)

            await _until(retried, 30, "an upload to fail and be retried")
            await s3_proxy.up()

            async def uploaded() -> bool:
                status = await _status(http, control)
                return bool(status and status["recorder"]["uploaded_segments"] >= 2)

            await _until(uploaded, 60, "the uploads")
            for path in ("/status", "/metrics", "/readyz", "/healthz"):
                async with http.get(control + path) as resp:
                    answers.append(await resp.text())
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await sim.stop()
    assert len(await asyncio.to_thread(objects, s3_server)) >= 2  # the credentials were used
    texts = {"log": log.read_text(errors="replace")}
    texts.update({f"http {i}": a for i, a in enumerate(answers)})
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_bytes().decode("utf-8", "replace")
    found = {where: leaks(text) for where, text in texts.items() if leaks(text)}
    assert not found, found
    assert "outbox_retry" in texts["log"]  # the outage was logged, with its error text
