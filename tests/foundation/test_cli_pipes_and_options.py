"""The CLI as a shell user runs it: output piped into `head`, bad option values, options after a
command's action. Each through the real console script as a subprocess, or on the real parsers."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.cli import COMMANDS, build_parser

EXE = str(Path(sys.executable).with_name("edge-agent"))


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "base.toml"
    path.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\n[lens]\nenabled = false\n[atlas]\nenabled = false\n'
        '[[serial]]\nname = "bench"\nurl = "/dev/ttyUSB0"\n'
        '[[rules]]\nchannel = "supply_v"\nkind = "limits"\nmax = 12.6\n'
    )
    return path


@pytest.fixture
def closed_pipe() -> Iterator[int]:
    """The write end of a pipe whose reader is gone: what `| head` leaves once head has exited. Every
    write to it fails (EPIPE), whatever its size, so the test does not race head's exit."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    yield write_end
    os.close(write_end)


def csv_recording(tmp_path: Path) -> Path:
    path = tmp_path / "r.csv"
    path.write_text("supply_v\n" + "".join(f"{13 if 40 <= i < 60 else 12}\n" for i in range(200)))
    return path


@pytest.mark.parametrize("command", ["check-config", "version", "backtest"])
def test_output_into_a_closed_pipe_ends_quietly(tmp_path: Path, closed_pipe: int, command: str) -> None:
    config = config_file(tmp_path)
    argv = {
        "check-config": ["check-config", "--config", str(config)],
        "version": ["version"],
        "backtest": ["backtest", "--config", str(config), str(csv_recording(tmp_path)), "--rate", "10"],
    }[command]
    done = subprocess.run(
        [EXE, *argv], stdout=closed_pipe, stderr=subprocess.PIPE, text=True, timeout=60, cwd=tmp_path
    )
    assert done.stderr == ""  # no traceback, no "Exception ignored ... BrokenPipeError"
    assert done.returncode == 128 + signal.SIGPIPE


def test_head_of_check_config_is_its_first_lines_and_nothing_on_stderr(tmp_path: Path) -> None:
    """The audit's own command line: `edge-agent check-config --config X | head -3`, with a config
    whose dump is larger than a pipe holds (64 KiB): check-config is still writing when head exits."""
    config = config_file(tmp_path)
    with config.open("a") as rules:
        rules.write(
            "".join(f'[[rules]]\nchannel = "ch{i}"\nkind = "limits"\nmax = {i}\n' for i in range(800))
        )
    assert (
        len(subprocess.run([EXE, "check-config", "--config", str(config)], capture_output=True).stdout)
        > 1 << 17
    )
    pipeline = f"'{EXE}' check-config --config '{config}' | head -3"
    done = subprocess.run(["bash", "-c", pipeline], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.splitlines()[0].endswith("base.toml: valid") and len(done.stdout.splitlines()) == 3


def test_a_command_that_logs_to_stdout_ends_quietly_when_its_reader_goes(tmp_path: Path) -> None:
    """`edge-agent demo | head -3`: the demo logs to stdout (JSON lines) besides printing; after head
    is gone its log lines must not become a "Logging error" traceback each on stderr."""
    argv = [EXE, "demo", "--workdir", str(tmp_path / "demo"), "--log-format", "json", "--log-level", "debug"]
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    ) as demo:
        assert demo.stdout is not None and demo.stderr is not None
        head = [demo.stdout.readline() for _ in range(3)]
        demo.stdout.close()
        assert demo.wait(timeout=120) == 128 + signal.SIGPIPE
        assert demo.stderr.read() == ""
    assert all(head)


@pytest.mark.parametrize("rate", ["inf", "-inf", "nan", "0", "-2", "ten"])
def test_backtest_refuses_a_rate_that_is_not_a_finite_positive_number(tmp_path: Path, rate: str) -> None:
    argv = ["backtest", "--config", str(config_file(tmp_path)), str(csv_recording(tmp_path)), "--rate", rate]
    done = subprocess.run([EXE, *argv], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "argument --rate" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_every_action_of_every_command_takes_the_commands_options_after_it() -> None:
    """`edge-agent lens list --config X` as well as `edge-agent lens --config X list`: README says every
    command takes `--config PATH`, and users put it last. Checked on the parsers of every command, so a
    command that gains actions later is held to it too."""
    checked = 0
    for name in COMMANDS:
        parser = build_parser([name])
        command = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
        options = {s for a in command._actions for s in a.option_strings}
        for sub in command._actions:
            if isinstance(sub, argparse._SubParsersAction):
                for action_name, action_parser in sub.choices.items():
                    missing = options - set(action_parser._option_string_actions)
                    assert not missing, f"edge-agent {name} {action_name} lacks {sorted(missing)}"
                    checked += 1
    assert checked >= 4  # lens list|sessions|destroy|cleanup at least


def test_an_option_before_the_action_is_not_undone_by_the_actions_copy() -> None:
    """The action's copy of `--config` sets nothing unless given there: the value given before the
    action stands; given in both places, the later one wins."""
    parser = build_parser(["lens"])
    args = parser.parse_args(["lens", "--config", "a.toml", "--json", "--log-level", "debug", "list"])
    assert (args.config, args.json, args.log_level) == ("a.toml", True, "debug")
    args = parser.parse_args(["lens", "list", "--config", "b.toml", "--json"])
    assert (args.config, args.json, args.log_level) == ("b.toml", True, "info")
    args = parser.parse_args(["lens", "--config", "a.toml", "destroy", "lsn-1", "--config", "b.toml"])
    assert (args.config, args.session_id) == ("b.toml", "lsn-1")
