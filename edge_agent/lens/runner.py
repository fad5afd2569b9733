"""Run the lens side alone: `python -m edge_agent.lens.runner --config X`.

Feeds the lens from the configured serial port (`[[serial]]`, the one named by `lens.source`) or,
with `--generate` (or when no port is configured), from generated frames of the configured
channels. Inferences are logged. SIGTERM/SIGINT end it cleanly (its session is destroyed); a
SIGKILL leaves the session recorded in the state directory for the next start to destroy.

Exit codes: 0 clean stop, 77 the API refused the key (401/403), 78 bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import sys
import time
from collections.abc import Sequence

from edge_agent.config import (
    EX_CONFIG,
    ConfigError,
    EdgeAgentConfig,
    config_path_from,
    load_config,
    secret_values,
)
from edge_agent.frames import Frame
from edge_agent.lens.errors import LensAuthError
from edge_agent.lens.protocol import LensInference
from edge_agent.lens.service import LensService
from edge_agent.logs import LEVELS, get_logger, setup_logging

log = get_logger(__name__)

EX_NOPERM = 77
# Not __doc__: the deployed agent runs with -OO (edge_agent.cli.DESCRIPTION says why).
DESCRIPTION = "Run the lens side alone: `python -m edge_agent.lens.runner --config X`."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m edge_agent.lens.runner", description=DESCRIPTION)
    parser.add_argument("--config", metavar="PATH", help="TOML config (default: $EDGE_AGENT_CONFIG)")
    parser.add_argument("--generate", action="store_true", help="feed generated frames, not a serial port")
    parser.add_argument("--rate", type=float, default=200.0, help="generated frames per second")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--log-level", choices=LEVELS, default="info")
    return parser


def lens_source(config: EdgeAgentConfig) -> str:
    if config.lens.source:
        return config.lens.source
    return config.serial[0].name if config.serial else "generated"


async def generate_frames(service: LensService, source: str, channels: Sequence[str], rate: float) -> None:
    """A smooth signal per channel, in batches so that a high rate costs few wake-ups."""
    batch = max(1, int(rate / 50))
    period = batch / rate
    n = 0
    while True:
        mono, wall = time.monotonic(), time.time()
        for i in range(batch):
            values = {name: math.sin((n + i) / (10.0 + k)) for k, name in enumerate(channels)}
            service.feed(Frame(source=source, mono=mono, wall=wall + i / rate, values=values))
        n += batch
        await asyncio.sleep(period)


async def run(config: EdgeAgentConfig, args: argparse.Namespace) -> int:
    source = lens_source(config)

    def on_inference(inference: LensInference) -> None:
        log.info(
            "lens_inference", label=inference.label, scores=inference.scores, session_id=inference.session_id,
            window_start=inference.window_start, window_end=inference.window_end,
        )  # fmt: skip

    try:
        service = LensService(config.lens, config.agent.state_dir, on_inference, source=source)
    except ValueError as exc:
        raise ConfigError(config_path_from(args.config), [("lens", str(exc))]) from None
    tasks: list[asyncio.Task[None]] = []
    port = next((p for p in config.serial if p.name == source), None)
    if port is not None and not args.generate:
        from edge_agent.serial.reader import SerialReader  # only when a port is used

        tasks.append(asyncio.create_task(SerialReader(port, service.feed).run()))
    else:
        tasks.append(asyncio.create_task(generate_frames(service, source, config.lens.channels, args.rate)))
    main = asyncio.create_task(service.run())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([main, stopper], timeout=args.duration, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in [*tasks, stopper]:
            task.cancel()
        if not main.done():
            main.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await main
        log.info("lens_runner_stopped", **service.counters())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(config_path_from(args.config))
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return EX_CONFIG
    setup_logging(args.log_level, json=True, secrets=secret_values(config))
    try:
        return asyncio.run(run(config, args))
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return EX_CONFIG
    except LensAuthError as exc:
        log.error("lens_auth_failed", error=str(exc), hint="check lens.api_key / ATAI_API_KEY")
        print(f"edge-agent lens: the lens API refused the API key: {exc}", file=sys.stderr)
        return EX_NOPERM


if __name__ == "__main__":
    raise SystemExit(main())
