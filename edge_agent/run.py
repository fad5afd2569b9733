"""`edge-agent run`: the daemon. Signals:

SIGTERM / SIGINT  graceful stop: stop reading, close anomalies and steps, send what is pending,
                  destroy the lens session, drain the outbox until `outbox.drain_deadline`; exit 0.
second signal     exit at once (the outbox keeps what was not delivered for the next start).
SIGHUP            reload the config file: when it is valid the pipeline restarts with it (the
                  bench run and its Atlas session continue); when not, the error is logged and
                  the running config stays.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from edge_agent import preflight
from edge_agent.agent import Agent
from edge_agent.config import (
    EX_CONFIG,
    ConfigError,
    EdgeAgentConfig,
    FieldError,
    config_path_from,
    load_config,
    secret_values,
)
from edge_agent.config_sources import config_error
from edge_agent.control import check_listen
from edge_agent.logs import SecretRedactor, get_logger, setup_logging
from edge_agent.service.notify import SystemdNotifier

log = get_logger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--duration", type=float, default=None, help="stop (gracefully) after this many seconds"
    )


class Daemon:
    # The agent's constructor. A hook for tests (tests/foundation/test_start_up_fallback.py): no
    # known config reaches `_build`'s fallback any more, so a test replaces this to reach it.
    agent_factory: Callable[..., Agent] = Agent

    def __init__(self, config_path: Path, config: EdgeAgentConfig, redactor: SecretRedactor) -> None:
        self.config_path = config_path
        self.config = config
        self.redactor = redactor
        self.notifier = SystemdNotifier()
        self.stop_requested = asyncio.Event()
        self.reload_requested = asyncio.Event()
        self._signals = 0

    def _on_stop_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second_signal_exit_now", signal=signal.Signals(signum).name)
            # The outbox is durable: whatever was not delivered is delivered by the next start.
            os._exit(128 + signum)
        log.info("stop_requested", signal=signal.Signals(signum).name)
        self.stop_requested.set()

    def install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self.reload_requested.set)

    def _reload(self) -> EdgeAgentConfig | None:
        try:
            config = load_config(self.config_path)
            preflight.check(config, self.config_path, create=True)
            moved = config.control.listen != self.config.control.listen or not self.config.control.enabled
            if config.control.enabled and moved:
                check_listen(config.control.listen)  # the running agent holds the old one
        except FieldError as exc:
            self._reject([f"{exc.field}: {exc.reason}"])
            return None
        except ConfigError as exc:
            self._reject([f"{f}: {r}" for f, r in exc.problems])
            return None
        for secret in secret_values(config):
            self.redactor.add(secret)
        return config

    def _build(self, config: EdgeAgentConfig) -> Agent:
        """The agent of `config`. A core refusing a value of a config that validated (a check the
        loader and the preflight lack: a bug to mend there) is a `ConfigError` of the file, not a
        traceback. No config known reaches this fallback: every core that checks its parameters when
        built is built by the preflight first, as the agent builds it (the last that did not, the
        evidence planner sized by the incidents' close margin, is now); it stays as the net for the
        next check the preflight lacks, and its test reaches it by the `agent_factory` hook."""
        try:
            return type(self).agent_factory(config, notifier=self.notifier, add_secret=self.redactor.add)
        except ValueError as exc:
            raise ConfigError(self.config_path, [("(start-up)", str(exc))]) from None

    def _rebuild(self, new_config: EdgeAgentConfig) -> Agent:
        """The agent of a reloaded config; when it cannot be built, the running config's again."""
        try:
            agent = self._build(new_config)
        except ConfigError as exc:
            self._reject([f"{f}: {r}" for f, r in exc.problems])
        except Exception as exc:  # a bug, logged with its traceback: the bench goes on as it was
            log.exception("reload_failed", file=str(self.config_path))
            self._reject([f"{type(exc).__name__}: {exc}"])
        else:
            self.config = new_config
            return agent
        return self._build(self.config)

    def _reject(self, problems: list[str]) -> None:
        log.error("reload_rejected", file=str(self.config_path), problems=problems)
        self.notifier.status("config reload rejected; running with the previous config")

    async def run(self, duration: float | None) -> int:
        self.install_signals()
        agent = self._build(self.config)
        await agent.start()
        ends_at = None if duration is None else time.monotonic() + duration
        while True:
            waiters = [
                asyncio.create_task(self.stop_requested.wait()),
                asyncio.create_task(self.reload_requested.wait()),
            ]
            timeout = None if ends_at is None else max(0.0, ends_at - time.monotonic())
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
            if self.stop_requested.is_set() or (ends_at is not None and time.monotonic() >= ends_at):
                break
            self.reload_requested.clear()
            new_config = self._reload()
            if new_config is None:
                continue
            log.info("reloading", file=str(self.config_path))
            self.notifier.send("RELOADING=1")
            deadline = time.monotonic() + new_config.outbox.drain_deadline
            await agent.stop(deadline, final=False)
            agent = self._rebuild(new_config)
            await agent.start()
        deadline = time.monotonic() + self.config.outbox.drain_deadline
        drained = await agent.stop(deadline, final=True)
        if not drained:
            log.warning(
                "outbox_not_drained", note="pending Atlas writes stay in the outbox for the next start"
            )
        return 0


def main(args: argparse.Namespace) -> int:
    """Exit 78 with one readable message for every configuration problem, whether the loader finds it,
    the preflight (state directory, rules, evidence, lens parameters) or a component at start-up
    (`FieldError`: the control API's port is taken). Everything else is a bug and keeps its traceback."""
    path = config_path_from(args.config)
    try:
        config = load_config(path)
        preflight.check(config, path, create=True)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return EX_CONFIG
    json_logs = {"auto": None, "json": True, "console": False}[args.log_format]
    redactor = setup_logging(args.log_level, json=json_logs, secrets=secret_values(config))
    daemon = Daemon(path, config, redactor)
    try:
        return asyncio.run(daemon.run(args.duration))
    except FieldError as exc:
        print(config_error(path, [(exc.field, exc.reason)], os.environ).render(), file=sys.stderr)
        return EX_CONFIG
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return EX_CONFIG
