"""Logs: JSON off a TTY, console on one, and secrets redacted wherever they appear."""

from __future__ import annotations

import io
import json
import logging

from edge_agent.logs import REDACTED, SecretRedactor, get_logger, setup_logging

SECRET = "atai-secret-key-0123456789"


def records(buf: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


def test_json_lines_when_not_a_tty() -> None:
    buf = io.StringIO()
    setup_logging("info", stream=buf)  # StringIO is not a TTY -> JSON
    get_logger("t").info("serial.port_lost", port="bench", attempt=2)
    (record,) = records(buf)
    assert record["event"] == "serial.port_lost"
    assert record["port"] == "bench"
    assert record["level"] == "info"
    assert "timestamp" in record


def test_console_output_on_a_tty() -> None:
    class FakeTTY(io.StringIO):
        def isatty(self) -> bool:
            return True

    buf = FakeTTY()
    setup_logging("info", stream=buf)
    get_logger("t").info("hello", port="bench")
    text = buf.getvalue()
    assert "hello" in text and "port" in text
    assert not text.lstrip().startswith("{")


def test_level_filters() -> None:
    buf = io.StringIO()
    setup_logging("warning", stream=buf, json=True)
    log = get_logger("t")
    log.info("quiet")
    log.warning("loud")
    assert [r["event"] for r in records(buf)] == ["loud"]


def test_secret_redacted_everywhere() -> None:
    buf = io.StringIO()
    setup_logging("debug", stream=buf, json=True, secrets=[SECRET])
    log = get_logger("t")
    log.info(f"event text {SECRET}", value=SECRET, nested={"list": [f"x{SECRET}y"], "api_key": "echoed"})
    log.info("headers", headers={"Authorization": "Bearer some-other-token-abc"})
    log.info("sensitive keys", api_key="echoed-key-zzz", token="tok-zzz")
    try:
        raise RuntimeError(f"failed with {SECRET}")
    except RuntimeError:
        log.exception("boom")
    # Library loggers (aiohttp, websockets) go through the same redactor.
    logging.getLogger("aiohttp.client").warning("lib %s", SECRET)
    out = buf.getvalue()
    for leaked in (SECRET, "echoed", "some-other-token-abc", "tok-zzz"):
        assert leaked not in out, leaked
    assert out.count(REDACTED) >= 7
    assert len(records(buf)) == 5


def test_redactor_learns_new_secrets_and_ignores_tiny_ones() -> None:
    redactor = SecretRedactor(["ab"])
    assert redactor.redact_text("abc") == "abc"
    redactor.add("late-secret-1")
    assert redactor.redact({"k": ("late-secret-1",)}) == {"k": (REDACTED,)}


def test_aws_secret_names_are_redacted() -> None:
    buf = io.StringIO()
    setup_logging("debug", stream=buf, json=True)
    log = get_logger("aws")
    log.info(
        "creds",
        aws_secret_access_key="s3cr3t-value-1",
        AWS_SESSION_TOKEN="s3cr3t-value-2",
        nested={
            "SecretAccessKey": "x",
            "secret_access_key": "s3cr3t-value-3",
            "X-Amz-Security-Token": "s3cr3t-4",
        },
    )
    text = buf.getvalue()
    assert "s3cr3t" not in text, text
