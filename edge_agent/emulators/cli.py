"""`edge-agent emulate`: run the Archetype lens and Atlas emulators until stopped.

Prints the base URLs and the credentials they accept, in a form that can be pasted into a shell,
so a user can point the agent (or curl, or the official clients) at them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path

from edge_agent.config import CONFIG_PATH_ENV, EdgeAgentConfig, config_path_from, load_config
from edge_agent.emulators.archetype import ArchetypeEmulator
from edge_agent.emulators.atlas import AtlasEmulator
from edge_agent.logs import get_logger

log = get_logger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--archetype-port", type=int, default=None, help="default: [emulator] archetype_port, 0=free"
    )
    parser.add_argument("--atlas-port", type=int, default=None, help="default: [emulator] atlas_port, 0=free")
    parser.add_argument("--host", default=None, help="default: [emulator] host (127.0.0.1)")
    parser.add_argument(
        "--state-out", metavar="PATH", help="write both emulators' state as JSON here on exit"
    )
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")


def _load(args: argparse.Namespace) -> EdgeAgentConfig:
    # The emulators need no config file: only use one when asked for (or when the env names one).
    path = config_path_from(args.config) if (args.config or os.environ.get(CONFIG_PATH_ENV)) else None
    return load_config(path)


def banner(archetype: ArchetypeEmulator, atlas: AtlasEmulator) -> str:
    return "\n".join(
        [
            "edge-agent emulators running (Ctrl-C to stop)",
            f"  Archetype lens API : {archetype.base_url}",
            f"  Atlas API          : {atlas.base_url}/api/v1",
            f"  admin / state      : {archetype.server.base_url}/_emulator/state  "
            f"{atlas.server.base_url}/_emulator/state",
            "  credentials the emulators accept (emulator-only values, not secrets):",
            f"    export ATAI_API_KEY={archetype.api_key}",
            f"    export ATLAS_URL={atlas.base_url}",
            f"    export ATLAS_TOKEN={atlas.token}",
            f"    export EDGE_AGENT_LENS__API_URL={archetype.base_url}",
        ]
    )


async def serve(args: argparse.Namespace) -> int:
    config = _load(args)
    settings = config.emulator
    host = args.host or settings.host
    archetype = ArchetypeEmulator(
        settings,
        host=host,
        port=args.archetype_port if args.archetype_port is not None else settings.archetype_port,
    )
    atlas = AtlasEmulator(
        settings, host=host, port=args.atlas_port if args.atlas_port is not None else settings.atlas_port
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await archetype.start()
    await atlas.start()
    try:
        print(banner(archetype, atlas), flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=args.duration)
    finally:
        if args.state_out:
            state = {"archetype": archetype.state(), "atlas": atlas.state()}
            text = json.dumps(state, indent=2, default=str)
            await asyncio.to_thread(Path(args.state_out).write_text, text)
        await archetype.stop()
        await atlas.stop()
    return 0


def main(args: argparse.Namespace) -> int:
    return asyncio.run(serve(args))
