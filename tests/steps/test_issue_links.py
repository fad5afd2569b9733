"""A failed step's `exception` names the Atlas issue(s) of the anomalies in it, not internal ids
(issue 13 point 4): the note carries `{issue:<incident-id>}` and the outcome job puts the issue's id
there when it is sent, found by the incident's tag on the real Atlas emulator."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from reporter_helpers import make_client

from edge_agent.atlas.narrative import agent_tag
from edge_agent.emulators.atlas import AtlasEmulator
from edge_agent.outbox import Job, JobState, Waiting
from edge_agent.steps.jobs import ISSUE_WAIT_ATTEMPTS, OutcomeHandler
from edge_agent.steps.outcome import AnomalySpan, step_outcome


def test_the_note_names_the_incidents_issue_or_else_the_anomaly() -> None:
    spans = [
        AnomalySpan("a1", "high", "supply_v on bench: supply_v above 12.6", 1.0, 2.0, "bench", "inc-1"),
        AnomalySpan("a2", "low", "temp_c on bench: temp_c stuck", 1.5, 2.5, "bench"),
    ]
    outcome = step_outcome(0.0, 10.0, spans)
    assert outcome.execution_status == "failed"
    assert outcome.exception is not None
    assert "[high, issue {issue:inc-1}]" in outcome.exception
    assert "[low, anomaly a2]" in outcome.exception  # no incident known: the anomaly, as before


def _job(payload: dict[str, Any], attempts: int) -> Job:
    now = time.time()
    return Job(id=1, kind="atlas.step_outcome", group="g", payload=payload, deps=(), priority=0,
               state=JobState.IN_FLIGHT, attempts=attempts, next_attempt_at=now, attempt_started=True,
               last_error=None, result=None, failure=None, created_at=now, updated_at=now, size_bytes=0,
               files=())  # fmt: skip


async def test_the_outcome_puts_the_issue_id_there_and_waits_a_little_for_one_not_filed_yet(
    emulator: AtlasEmulator, tmp_path: Path
) -> None:
    client = make_client(emulator)
    try:
        issue = await client.create_issue("supply_v high", tags=[agent_tag("inc-1")])
        run = await client.create_test_run("run", "a1b2c3d4-e5f6-7890-abcd-ef1234567890")
        card = await client.create_card(run.uuid, "card", "", 1)
        step = await client.create_step(run.uuid, card.uuid, "load_test", "", 1)
        note = (
            "anomalies during the step: supply_v [high, issue {issue:inc-1}];"
            " temp_c [low, issue {issue:inc-2}]"
        )
        payload = {
            "run_id": run.uuid, "card_id": card.uuid, "step_id": step.uuid, "execution_status": "failed",
            "exception": note, "started_at": time.time() - 5, "ended_at": time.time(),
        }  # fmt: skip
        handler = OutcomeHandler(client)
        with pytest.raises(Waiting, match="inc-2"):  # inc-2's issue is not in Atlas yet
            await handler.deliver(_job(payload, attempts=1), {})
        await handler.deliver(_job(payload, attempts=ISSUE_WAIT_ATTEMPTS), {})  # then it goes anyway
        stored = emulator.state()["test_runs"][0]["test_cards"][0]["test_steps"][0]
        assert stored["execution_status"] == "failed"
        assert stored["exception"] == (
            f"anomalies during the step: supply_v [high, issue {issue.uuid}];"
            " temp_c [low, issue pending (incident inc-2)]"
        )
    finally:
        await client.close()
