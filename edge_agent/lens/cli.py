"""`edge-agent lens ...`: look at lenses and sessions, destroy sessions.

  edge-agent lens list                 lenses visible to the key
  edge-agent lens sessions             the org's sessions with their status (org-wide, not only ours)
  edge-agent lens destroy SESSION_ID   destroy one session (frees its runner slot)
  edge-agent lens cleanup              destroy the sessions this agent recorded in its state dir, and
                                       those made by its creates whose answer was lost
                                       (do not run it beside a running agent: it would end its session)

Exit codes: 0 done, 1 the API failed, 77 the key was refused, 78 bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from edge_agent.config import ConfigError, EdgeAgentConfig, config_path_from, load_config
from edge_agent.lens.client import LensClient
from edge_agent.lens.errors import LensAuthError, LensError, LensNotFound
from edge_agent.lens.lifecycle import LifecycleSettings, SessionLifecycle
from edge_agent.lens.status import parse_status
from edge_agent.lens.store import SessionStore

EX_NOPERM = 77


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sub = parser.add_subparsers(dest="lens_command", metavar="ACTION", required=True)
    sub.add_parser("list", help="lenses visible to the API key")
    sub.add_parser("sessions", help="the org's lens sessions and their status")
    destroy = sub.add_parser("destroy", help="destroy one session")
    destroy.add_argument("session_id", metavar="SESSION_ID")
    sub.add_parser("cleanup", help="destroy the sessions this agent recorded (leftovers of crashes)")


def main(args: argparse.Namespace) -> int:
    path = config_path_from(args.config)
    config = load_config(path)
    if config.lens.api_key is None or not config.lens.api_key.get_secret_value():
        raise ConfigError(path, [("lens.api_key", "no lens API key (lens.api_key_file, ATAI_API_KEY, ...)")])
    try:
        return asyncio.run(_run(args, config))
    except LensAuthError as exc:
        print(f"edge-agent lens: the lens API refused the API key: {exc}", file=sys.stderr)
        return EX_NOPERM
    except LensError as exc:
        print(f"edge-agent lens: {exc}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace, config: EdgeAgentConfig) -> int:
    lens = config.lens
    key = lens.api_key.get_secret_value() if lens.api_key is not None else ""
    async with LensClient(
        lens.api_url, key, connect_timeout=lens.connect_timeout, read_timeout=lens.read_timeout
    ) as client:
        if args.lens_command == "list":
            lenses = await client.list_lenses()
            rows = [[item.get("lens_id", ""), item.get("lens_name", "")] for item in lenses]
            _print(args, lenses, ["LENS_ID", "NAME"], rows)
            return 0
        if args.lens_command == "sessions":
            sessions = await client.list_sessions()
            ours = {record.session_id for record in SessionStore(config.agent.state_dir).load().sessions}
            rows = [
                [
                    item.get("session_id", ""),
                    item.get("lens_id", ""),
                    parse_status(item.get("session_status")).value,
                    f"{float(item.get('session_duration_sec') or 0):.0f}s",
                    "yes" if item.get("session_id") in ours else "",
                ]
                for item in sessions
            ]
            _print(args, sessions, ["SESSION_ID", "LENS_ID", "STATUS", "AGE", "THIS_AGENT"], rows)
            return 0
        store = SessionStore(config.agent.state_dir)
        if args.lens_command == "destroy":
            targets = [args.session_id]
        else:
            targets = [record.session_id for record in store.load().sessions]
            if not targets and not store.load().pending_creates:
                print("no recorded sessions")
                return 0
        failed = 0
        for session_id in targets:
            try:
                await client.destroy_session(session_id)
                print(f"destroyed {session_id}")
            except LensNotFound:
                print(f"{session_id}: already gone")
            except LensAuthError:
                raise
            except LensError as exc:
                print(f"{session_id}: {exc}", file=sys.stderr)
                failed += 1
                continue
            store.remove_session(session_id)
        if args.lens_command == "cleanup":
            failed += await _reap_unknown_creates(client, store, config)
        return 1 if failed else 0


async def _reap_unknown_creates(client: LensClient, store: SessionStore, config: EdgeAgentConfig) -> int:
    """Sessions made by creates whose answer was lost (see lens/lifecycle.py); 1 while such creates
    remain on file (the search failed, or a create is too recent to be sure of)."""
    if not store.load().pending_creates:
        return 0
    lens = config.lens
    lifecycle = SessionLifecycle(
        client,
        store,
        LifecycleSettings(
            lens_id=lens.lens_id or "(none)",  # only the pending records' own lens ids are matched
            reap_unknown_creates=lens.reap_unknown_creates,
            clock_skew=lens.clock_skew,
            create_timeout=lens.connect_timeout + lens.read_timeout,
        ),
    )
    for session_id in await lifecycle.reap_unknown_creates():
        print(f"destroyed {session_id} (made by a create whose answer was lost)")
    if lifecycle.unknown_creates_pending:
        print("creates of unknown outcome remain on file: run cleanup again in a minute", file=sys.stderr)
        return 1
    return 0


def _print(
    args: argparse.Namespace, raw: list[dict[str, Any]], header: list[str], rows: list[list[str]]
) -> None:
    if args.json:
        print(json.dumps(raw, indent=2, default=str))
        return
    table = [header, *rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
