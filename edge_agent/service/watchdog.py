"""The systemd watchdog: `WATCHDOG=1` every half interval, but only while the event loop answers and
the pipeline moves. A process whose loop is wedged or whose pipeline has silently stopped is exactly
what the watchdog exists to restart, so withholding the ping is the point; a heartbeat from a
timer alone would only prove that the timer runs.

`WatchdogGate` is the decision (pure); `Watchdog` is the asyncio task that feeds it and pings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from edge_agent.grid import sleep_to_next
from edge_agent.logs import get_logger
from edge_agent.service.looplag import LoopLagMonitor
from edge_agent.service.notify import SystemdNotifier, watchdog_interval

log = get_logger(__name__)

Progress = Callable[[], bool]


@dataclass(slots=True)
class WatchdogGate:
    """Says whether a ping may go out, and why not; logs once per episode of withholding."""

    max_lag: float
    pings: int = 0
    withheld: int = 0
    reason: str | None = None  # why the current episode withholds; None while healthy

    def decide(self, lag: float, progress: bool | None, progress_error: str | None = None) -> str | None:
        """None: ping. Otherwise the reason to withhold (`progress` None means the check raised)."""
        if lag > self.max_lag:
            return f"event loop lagged {lag:.3f}s (limit {self.max_lag:.3f}s)"
        if progress is None:
            return f"progress check failed: {progress_error}"
        if not progress:
            return "pipeline made no progress"
        return None

    def observe(self, verdict: str | None) -> None:
        if verdict is None:
            if self.reason is not None:
                log.info("watchdog_resumed", withheld=self.withheld)
            self.reason = None
            self.pings += 1
            return
        self.withheld += 1
        if self.reason is None:  # first check of an episode: one line, not one per interval
            log.warning("watchdog_withheld", reason=verdict)
        self.reason = verdict


class Watchdog:
    """Pings systemd every `interval / 2` while `monitor` shows no lag above `max_lag` since the last
    check and `progress()` returns True.

    `progress` is the supervisor's: e.g. "frames advanced since the last call, or no port is
    configured". It is called once per check, on the loop, so it must be cheap and must not block.
    """

    def __init__(
        self,
        notifier: SystemdNotifier,
        interval: float,
        monitor: LoopLagMonitor,
        progress: Progress,
        *,
        max_lag: float | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.notifier = notifier
        self.interval = interval
        self.monitor = monitor
        self.progress = progress
        # A quarter of the interval: a stall that long leaves no margin before systemd's deadline.
        self.gate = WatchdogGate(max_lag=interval / 4 if max_lag is None else max_lag)

    @classmethod
    def from_environment(
        cls,
        notifier: SystemdNotifier,
        monitor: LoopLagMonitor,
        progress: Progress,
        environ: Mapping[str, str] | None = None,
    ) -> Watchdog | None:
        """A watchdog for `$WATCHDOG_USEC`, or None when systemd asked for none (or not of us)."""
        interval = watchdog_interval(environ)
        return None if interval is None else cls(notifier, interval, monitor, progress)

    @property
    def healthy(self) -> bool:
        return self.gate.reason is None

    def check(self) -> bool:
        """One check-and-maybe-ping; True if WATCHDOG=1 was sent."""
        lag = self.monitor.take_peak()
        progress: bool | None
        error: str | None = None
        try:
            progress = bool(self.progress())
        except Exception as exc:  # a broken check must withhold the ping, not kill the watchdog task
            progress, error = None, f"{type(exc).__name__}: {exc}"
        verdict = self.gate.decide(lag, progress, error)
        self.gate.observe(verdict)
        return verdict is None and self.notifier.watchdog()

    async def run(self) -> None:
        """Runs until cancelled. The first check waits a half interval so that lag is measured."""
        while True:
            await sleep_to_next(self.interval / 2)
            self.check()
