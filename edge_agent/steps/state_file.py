"""The step tracker's state on disk: `<state_dir>/steps/state.json`, written through on every change.

The tracker's memory copy is the truth while the process runs; this file is what a restart continues
from. Each change is written off the event loop (`state_files`). A write that fails (disk full) never
loses the change nor stops the caller: the state stays marked unsaved, `status()` says so (shown on
/status), and `flush()` (the agent's tick) writes it once space returns. A file that is not a steps
state is set aside (`state_files`) and the tracker starts afresh.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_agent.logs import get_logger
from edge_agent.state_files import (
    dump_json,
    read_json_state_async,
    set_aside_async,
    write_atomic_async,
)
from edge_agent.state_health import StateFileHealth

log = get_logger(__name__)

STATE_FILE = "state.json"


class StepStateFile:
    def __init__(
        self, state_dir: Path, *, mono: Callable[[], float], health: StateFileHealth | None = None
    ) -> None:
        self.path = Path(state_dir) / "steps" / STATE_FILE
        self._mono = mono
        self.health = health
        self._save_lock = asyncio.Lock()
        self._unsaved = False  # the memory state has changes the file does not (a write failed)
        self._save_error: str | None = None
        self._unsaved_since: float | None = None
        self.save_failures = 0

    async def load(self) -> dict[str, Any] | None:
        """The saved state, or None (no file, a damaged one set aside, or one that is not an object)."""
        saved = await read_json_state_async(self.path, what="steps", health=self.health)
        if saved is not None and not isinstance(saved, dict):
            await set_aside_async(
                self.path, "not a steps state (top level not an object)", what="steps", health=self.health
            )
            return None
        return saved

    async def save(self, state: Callable[[], dict[str, Any]]) -> None:
        """Write the state through. `state()` gives the tracker's state at the moment of writing:
        writers queue on a lock and each writes the latest state, so an older snapshot never lands after
        a newer one. A failed write keeps the change (module doc)."""
        self._unsaved = True
        async with self._save_lock:
            if not self._unsaved:
                return  # a writer that queued before us already wrote what we changed
            try:
                data = dump_json(state())  # encoded here: the thread must not see the dict change
            except (TypeError, ValueError) as exc:
                self._note_unsaved(f"state not encodable: {exc}")
                return
            self._unsaved = False
            try:
                await write_atomic_async(self.path, data, health=self.health)
            except OSError as exc:
                self._unsaved = True
                self._note_unsaved(str(exc))
                return
        if self._save_error is not None:
            log.warning("steps_state_saved_again", after_failures=self.save_failures)
            self._save_error = None
            self._unsaved_since = None

    def _note_unsaved(self, error: str) -> None:
        self.save_failures += 1
        if self._save_error is None:
            self._unsaved_since = self._mono()
            log.error("steps_state_not_saved", path=str(self.path), error=error, kept_in_memory=True)
        self._save_error = error

    @property
    def unsaved(self) -> bool:
        return self._unsaved

    def status(self) -> dict[str, Any]:
        return {
            "saved": not self._unsaved,
            "error": self._save_error,
            "unsaved_for_s": None
            if self._unsaved_since is None
            else round(self._mono() - self._unsaved_since, 3),
            "failed_writes": self.save_failures,
        }
