"""`edge-agent` command line: one subcommand per tool, each living in the module that owns its work.

A command module provides `add_arguments(parser)` and `main(args) -> int`, and `LOGS_TO_STDERR = True`
when what it prints on stdout is its output (`tail`'s frames): its log lines then go to stderr. Only the
module of the command being run is imported (`--help` without a command lists them from `COMMANDS`): the
agent's process (`run`) never holds the emulators, the simulated bench or the backtest in memory.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import TextIO

from edge_agent import __version__, tls
from edge_agent.config import EX_CONFIG, ConfigError, FieldError, config_path_from, load_config, masked_dump
from edge_agent.config_sources import config_error
from edge_agent.logs import LEVELS, setup_logging

# The --help line, not taken from the docstring: the deployed agent runs with -OO (PYTHONOPTIMIZE=2,
# systemd/edge-agent.service), which drops docstrings.
DESCRIPTION = "`edge-agent` command line: one subcommand per tool."

# name -> (module, one-line help). Order is the order `--help` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("edge_agent.run", "run the agent (the daemon: systemd service or container entry point)"),
    "demo": ("edge_agent.demo", "offline demo: simulated bench + built-in emulators, no credentials"),
    "tail": ("edge_agent.serial.tail", "print decoded frames of a serial port live (for wiring a bench)"),
    "simulate": ("edge_agent.bench_sim.cli", "run the simulated bench on a pseudo-terminal"),
    "emulate": ("edge_agent.emulators.cli", "run the Archetype lens and Atlas emulators"),
    "healthcheck": ("edge_agent.service.healthcheck", "probe the control API /healthz (container health)"),
    "lens": ("edge_agent.lens.cli", "list lenses and sessions, destroy sessions"),
    "backtest": ("edge_agent.backtest.cli", "the incidents a recording would have filed (rules offline)"),
    "export": ("edge_agent.recorder.export", "pack one run's recordings (segments + manifest) into a zip"),
}


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help="TOML config (default: $EDGE_AGENT_CONFIG, then "
                        "/etc/edge-agent/config.toml)")  # fmt: skip
    parser.add_argument("--log-level", choices=LEVELS, default="info")
    parser.add_argument(
        "--log-format", choices=("auto", "json", "console"), default="auto",
        help="auto: JSON lines when the log's stream (stdout; stderr for tail) is not a terminal, readable"
        " text when it is",
    )  # fmt: skip


def chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand `argv` names: its first word that is not an option (options before it are the
    top-level `--help`/`--version`, which take no value)."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for `argv` (default: sys.argv): every command is listed, only the chosen one's
    module is imported for its arguments (argv None and no command: none is)."""
    chosen = chosen_command(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="edge-agent", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    check = sub.add_parser("check-config", help="validate the config and print it with secrets masked")
    _add_common(check)
    version = sub.add_parser("version", help="print the version")
    _add_common(version)

    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text)
        _add_common(command)
        if name == chosen:
            importlib.import_module(module_name).add_arguments(command)
            accept_options_after_actions(command)
    return parser


def accept_options_after_actions(parser: argparse.ArgumentParser) -> None:
    """A command with actions of its own (`lens list`) takes its options after the action as well:
    `lens list --config X` is `lens --config X list`. Each action gets a copy of the command's
    options that sets its value only when given there (SUPPRESS), so it never overwrites the one
    given before the action; given in both places, the later one wins, as for any repeated option."""
    options = [
        action
        for action in parser._actions
        if action.option_strings and not isinstance(action, argparse._HelpAction | argparse._VersionAction)
    ]
    for sub in parser._actions:
        if not isinstance(sub, argparse._SubParsersAction):
            continue
        for action_parser in dict.fromkeys(sub.choices.values()):  # an alias maps to the same parser
            taken = action_parser._option_string_actions
            for option in options:
                if any(string in taken for string in option.option_strings):
                    continue  # the action has an option of that name itself: its own meaning wins
                inherited = copy.copy(option)
                inherited.default = argparse.SUPPRESS
                inherited.required = False
                action_parser._add_action(inherited)
            accept_options_after_actions(action_parser)


def configure_logging(
    args: argparse.Namespace, secrets: Sequence[str] = (), stream: TextIO | None = None
) -> None:
    json_logs = {"auto": None, "json": True, "console": False}[args.log_format]
    setup_logging(args.log_level, json=json_logs, stream=stream, secrets=secrets)


def check_config(args: argparse.Namespace) -> int:
    from edge_agent import preflight  # the cores it builds are not needed by the other commands

    path = config_path_from(args.config)
    try:
        config = load_config(path)
        preflight.check(config, path, create=False)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return EX_CONFIG
    print(f"# {path}: valid")
    print(json.dumps(masked_dump(config), indent=2, default=str))
    return 0


# A command whose output went into a pipe that closed early (`| head`): what a process killed by
# SIGPIPE reports in a shell (Python ignores SIGPIPE, so the write fails with EPIPE instead).
EX_BROKEN_PIPE = 128 + signal.SIGPIPE


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Its output piped into `head` (which exits after a few lines) ends it quietly,
    whichever command was printing and wherever it was."""
    tls.import_aiohttp()  # before any command's module does: its context would hold a CA bundle
    try:
        try:
            return _run_command(argv)
        finally:
            sys.stdout.flush()  # here, where a closed pipe can still be caught, not at interpreter exit
    except BrokenPipeError:
        # Python would flush stdout again at exit and print the error: let that flush go nowhere.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EX_BROKEN_PIPE


def _run_command(argv: Sequence[str] | None) -> int:
    args = build_parser(argv).parse_args(argv)
    if args.command == "version":
        print(f"edge-agent {__version__}")
        return 0
    if args.command == "check-config":
        return check_config(args)
    module = importlib.import_module(COMMANDS[args.command][0])
    configure_logging(args, stream=sys.stderr if getattr(module, "LOGS_TO_STDERR", False) else None)
    try:
        result: int = module.main(args)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return EX_CONFIG
    except FieldError as exc:
        error = config_error(config_path_from(args.config), [(exc.field, exc.reason)], os.environ)
        print(error.render(), file=sys.stderr)
        return EX_CONFIG
    except KeyboardInterrupt:
        return 130
    return result
