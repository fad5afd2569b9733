"""Fixtures of the outbox tests: a scripted HTTP peer on 127.0.0.1 and outboxes in tmp dirs."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from outbox_peer import ItemHandler, ScriptedPeer

from edge_agent.config import OutboxSection
from edge_agent.outbox import JobHandler, Outbox

FAST = {"retry_base": 0.01, "retry_cap": 0.2, "drain_deadline": 5.0}


@pytest.fixture
async def peer() -> AsyncIterator[ScriptedPeer]:
    server = ScriptedPeer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def handler(peer: ScriptedPeer) -> AsyncIterator[ItemHandler]:
    item_handler = ItemHandler(peer.url, timeout=2.0)
    yield item_handler
    await item_handler.close()


OutboxFactory = Callable[..., Awaitable[Outbox]]


@pytest.fixture
async def make_outbox(tmp_path: Path) -> AsyncIterator[OutboxFactory]:
    """Started outboxes over `tmp_path/state` with fast retries; closed at the end of the test."""
    opened: list[Outbox] = []

    async def make(
        handlers: dict[str, JobHandler] | None = None, section: dict[str, Any] | None = None, **kw: Any
    ) -> Outbox:
        outbox = Outbox(
            tmp_path / "state", OutboxSection.model_validate({**FAST, **(section or {})}), handlers, **kw
        )
        await outbox.start()
        opened.append(outbox)
        return outbox

    yield make
    for outbox in opened:
        await outbox.close()
