"""The CLI as a shell user runs it: output piped into `head`, bad option values. Each through the real
console script as a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("rate", ["inf", "-inf", "nan", "0", "-2", "ten"])
def test_backtest_refuses_a_rate_that_is_not_a_finite_positive_number(tmp_path: Path, rate: str) -> None:
    argv = ["backtest", "--config", str(config_file(tmp_path)), str(csv_recording(tmp_path)), "--rate", rate]
    done = subprocess.run([EXE, *argv], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "argument --rate" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""
