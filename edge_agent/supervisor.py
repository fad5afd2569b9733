"""Keeps the agent's long-running components alive: a failed component is restarted with backoff and
its failure stays visible (for /status), so one bad port or one unreachable API never kills the
process. A component that fails for a reason a restart cannot fix (a refused API key) stops and says
so instead of retrying forever.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from edge_agent.backoff import Backoff
from edge_agent.logs import get_logger

log = get_logger(__name__)

# A component that ran this long before failing is considered to have been healthy: its next
# failure restarts it quickly again instead of at the backed-off delay.
HEALTHY_RUN_SECONDS = 60.0


@dataclass(slots=True)
class ComponentState:
    name: str
    state: str = "starting"  # running | backoff | failed | stopped | done
    restarts: int = 0
    last_error: str | None = None
    since: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "changed_wall": self.since,  # when it entered this state
        }


ComponentFactory = Callable[[], Coroutine[Any, Any, None]]


class Supervisor:
    def __init__(self, *, backoff_base: float = 0.5, backoff_cap: float = 30.0) -> None:
        self.components: dict[str, ComponentState] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap

    def spawn(
        self,
        name: str,
        factory: ComponentFactory,
        *,
        fatal: tuple[type[BaseException], ...] = (),
    ) -> None:
        """Run `factory()` as component `name`; on an exception restart it with backoff, except for
        exceptions in `fatal`, which stop the component (state `failed`) with the error shown."""
        state = ComponentState(name)
        self.components[name] = state
        self._tasks[name] = asyncio.create_task(self._guard(state, factory, fatal), name=f"component:{name}")

    def _set(self, state: ComponentState, value: str, error: str | None = None) -> None:
        state.state = value
        state.since = time.time()
        if error is not None:
            state.last_error = error

    async def _guard(
        self, state: ComponentState, factory: ComponentFactory, fatal: tuple[type[BaseException], ...]
    ) -> None:
        backoff = Backoff(base=self._backoff_base, cap=self._backoff_cap, jitter=0.5)
        while True:
            started = time.monotonic()
            self._set(state, "running")
            try:
                await factory()
            except asyncio.CancelledError:
                self._set(state, "stopped")
                raise
            except fatal as exc:
                self._set(state, "failed", describe(exc))
                log.error("component_stopped", component=state.name, error=describe(exc))
                return
            except Exception as exc:
                if time.monotonic() - started >= HEALTHY_RUN_SECONDS:
                    backoff.reset()
                delay = backoff.next_delay()
                state.restarts += 1
                self._set(state, "backoff", describe(exc))
                log.error(
                    "component_failed",
                    component=state.name,
                    error=describe(exc),
                    restart_in=round(delay, 2),
                    restarts=state.restarts,
                    exc_info=exc,
                )
                await asyncio.sleep(delay)
                continue
            self._set(state, "done")
            return

    async def stop(self, *names: str) -> None:
        """Cancel the named components (all when none are named) and wait for them to finish."""
        chosen = [n for n in (names or tuple(self._tasks)) if n in self._tasks]
        tasks = [self._tasks.pop(n) for n in chosen]
        for task in tasks:
            task.cancel()
        # gather(return_exceptions) so that our own cancellation still propagates from the await.
        await asyncio.gather(*tasks, return_exceptions=True)

    def status(self) -> dict[str, dict[str, Any]]:
        return {name: state.as_dict() for name, state in self.components.items()}

    def running(self, name: str) -> bool:
        state = self.components.get(name)
        return state is not None and state.state == "running"


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
