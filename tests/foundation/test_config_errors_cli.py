"""Every config and environment error, through the real CLI as a subprocess, from `edge-agent run` and
from `edge-agent check-config` alike: exit 78, stderr names the config file and the field, and no
traceback anywhere in the output (issue 12 item 6). Under systemd each of these used to be a traceback
and exit 1, retried five times with nothing readable in the journal.

`run` and `check-config` get the same case at the same time: check-config must refuse what run would
die of. The read-only file system is a real one (a tmpfs mounted read-only, which needs root: CI runs
as root); a directory the agent's user cannot write is a real permission refusal (as root, the agent
runs without the capabilities that let root ignore permissions).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

EXE = str(Path(sys.executable).with_name("edge-agent"))
IS_ROOT = os.geteuid() == 0
# Capabilities that let root ignore file permissions: without them root is refused like any user.
NO_DAC = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"]


def base_toml(
    state_dir: Path, extra: str = "", *, lens: str = "enabled = false", atlas: str = "enabled = false"
) -> str:
    """A config that starts: no ports, lens and Atlas off. `lens`/`atlas` are those tables' keys,
    `extra` adds tables."""
    return f"""
[agent]
state_dir = "{state_dir}"
[lens]
{lens}
[atlas]
{atlas}
[control]
listen = "127.0.0.1:0"
{extra}"""


@dataclass
class Setup:
    """What a case prepared: the config file, extra environment, and a command prefix."""

    config: Path
    env: dict[str, str] = field(default_factory=dict)
    prefix: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout + self.stderr


def run_both(
    tmp_path: Path, setup: Setup, commands: tuple[str, ...] = ("run", "check-config")
) -> dict[str, Outcome]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), **setup.env}
    procs = {}
    for command in commands:
        argv = [*setup.prefix, EXE, command, "--config", str(setup.config)]
        if command == "run":
            argv += ["--duration", "15", "--log-format", "json"]  # a case that wrongly starts still ends
        procs[command] = subprocess.Popen(  # both at once: half the wall time
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path
        )
    outcomes = {}
    for command, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        outcomes[command] = Outcome(
            proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
        )
    return outcomes


def assert_config_error(outcome: Outcome, setup: Setup, field_name: str, *mentions: str) -> None:
    assert outcome.code == 78, outcome
    assert "Traceback" not in outcome.text, outcome.text
    assert str(setup.config) in outcome.stderr, outcome.stderr
    assert f"{field_name}: " in outcome.stderr, outcome.stderr
    for mention in mentions:
        assert mention in outcome.stderr, (mention, outcome.stderr)


def write_config(
    tmp_path: Path,
    extra: str = "",
    state_dir: Path | None = None,
    *,
    lens: str = "enabled = false",
    atlas: str = "enabled = false",
) -> Path:
    if state_dir is None:
        # Made here: run and check-config run at the same time, and check-config removes a state
        # directory that it had to create (one that run may be using).
        state_dir = tmp_path / "state"
        state_dir.mkdir(exist_ok=True)
    path = tmp_path / "agent.toml"
    path.write_text(base_toml(state_dir, extra, lens=lens, atlas=atlas))
    return path


# -- the cases: each prepares a bench PC with one thing wrong -------------------------------------------


def api_key_file_not_utf8(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    key = tmp_path / "atai_api_key"
    key.write_bytes(b"\xff\xfekey")
    return (
        Setup(write_config(tmp_path, lens=f'enabled = false\napi_key_file = "{key}"')),
        "lens.api_key_file",
        [str(key), "not UTF-8"],
    )


def atlas_url_in_home_not_utf8(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    atlas_dir = tmp_path / "home" / ".atlas"
    atlas_dir.mkdir(parents=True)
    (atlas_dir / "url").write_bytes(b"https://\xff.example\n")
    return Setup(write_config(tmp_path)), "atlas.url", [str(atlas_dir / "url"), "not UTF-8"]


def env_serial_not_json(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    setup = Setup(write_config(tmp_path), env={"EDGE_AGENT_SERIAL": "/dev/ttyUSB0"})
    return setup, "serial", ["EDGE_AGENT_SERIAL", "not JSON"]


def env_value_not_utf8(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    setup = Setup(write_config(tmp_path), env={"EDGE_AGENT_AGENT__BENCH": os.fsdecode(b"bench-\xff")})
    return setup, "agent.bench", ["EDGE_AGENT_AGENT__BENCH", "not UTF-8"]


def env_number_infinite(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    setup = Setup(write_config(tmp_path), env={"EDGE_AGENT_OUTBOX__MAX_DISK_MB": "inf"})
    return setup, "outbox.max_disk_mb", ["EDGE_AGENT_OUTBOX__MAX_DISK_MB", "finite"]


def ring_seconds_inf(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    return (
        Setup(write_config(tmp_path, "[evidence]\nring_seconds = inf\n")),
        "evidence.ring_seconds",
        ["finite"],
    )


def max_disk_mb_inf(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    return Setup(write_config(tmp_path, "[outbox]\nmax_disk_mb = inf\n")), "outbox.max_disk_mb", ["finite"]


def duration_absurd(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    return Setup(write_config(tmp_path, "[outbox]\nretry_cap = 1e300\n")), "outbox.retry_cap", []


def ring_shorter_than_evidence(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    # Valid field by field; the evidence planner refused it when run built the reporter.
    setup = Setup(write_config(tmp_path, '[evidence]\nring_seconds = "5s"\npre = "10s"\n'))
    return setup, "evidence", ["ring_seconds"]


def ring_shorter_than_the_incidents_close_margin(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    # Valid field by field, and pre + join_window fit the ring; but an incident closes 15 s later still
    # (the rule's hold), when its last evidence part is written: the reporter's planner, sized by the
    # grouper's close margin, refuses it, and so must check-config (issue-less before: run started).
    extra = (
        '[evidence]\nring_seconds = "30s"\n[incidents]\njoin_window = "10s"\n'
        '[[rules]]\nchannel = "v"\nkind = "limits"\nmax = 1.0\nhold = "15s"\n'
    )
    atlas = 'url = "http://127.0.0.1:9"\ntoken = "t-0123456789"'
    return Setup(write_config(tmp_path, extra, atlas=atlas)), "evidence", ["ring_seconds", "join_window"]


def lens_scaling_for_unknown_channel(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    # Valid field by field; the lens windower refused it when run built the lens service.
    lens = 'lens_id = "lns-x"\napi_key = "k"\nchannels = ["v"]'
    path = write_config(tmp_path, "[lens.scaling.w]\nstd = 2.0\n", lens=lens)
    return Setup(path), "lens", ["not windowed"]


def token_file_with_two_lines(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    token = tmp_path / "atlas_token"
    token.write_text("first-token\nsecond-token\n")  # would be a broken Authorization header
    setup = Setup(write_config(tmp_path, atlas=f'enabled = false\ntoken_file = "{token}"'))
    return setup, "atlas.token_file", [str(token)]


def baseline_file_not_utf8(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    baseline = tmp_path / "baseline.json"
    baseline.write_bytes(b'{"v": {"median": 1.0, "mad": 0.1, "note": "\xff"}}')
    rule = f'[[rules]]\nchannel = "v"\nkind = "baseline"\nbaseline_file = "{baseline}"\n'
    return Setup(write_config(tmp_path, rule)), "rules[0]", [str(baseline), "not UTF-8"]


def atlas_url_env_not_a_url(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    setup = Setup(write_config(tmp_path), env={"ATLAS_URL": "tenant.atlas.example"})
    return setup, "atlas.url", ["ATLAS_URL", "http"]


def atlas_token_env_not_utf8(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    setup = Setup(write_config(tmp_path), env={"ATLAS_TOKEN": os.fsdecode(b"tok-\xe9")})
    return setup, "atlas.token", ["ATLAS_TOKEN", "not UTF-8"]


def credential_is_a_directory(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    creds = tmp_path / "credentials"
    (creds / "atlas_token").mkdir(parents=True)
    setup = Setup(write_config(tmp_path), env={"CREDENTIALS_DIRECTORY": str(creds)})
    return setup, "atlas.token", [str(creds / "atlas_token"), "is a directory"]


def toml_not_utf8(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    path = tmp_path / "agent.toml"
    path.write_bytes(b'[agent]\nbench = "b\xe9nch"\n')
    return Setup(path), "(file)", ["not UTF-8"]


def toml_is_a_directory(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    path = tmp_path / "agent.toml"
    path.mkdir()
    return Setup(path), "(file)", ["is a directory"]


def state_dir_is_a_file(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    state = tmp_path / "state"
    state.write_text("not a directory")
    return Setup(write_config(tmp_path, state_dir=state)), "agent.state_dir", [str(state), "not a directory"]


def state_dir_not_writable(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    state = tmp_path / "state"
    state.mkdir(mode=0o555)
    state.chmod(0o555)
    prefix = NO_DAC if IS_ROOT else []
    return (
        Setup(write_config(tmp_path, state_dir=state), prefix=prefix),
        "agent.state_dir",
        [
            str(state),
            "Permission denied",
        ],
    )


# A service that is on and cannot be reached: run died building the lens client (a traceback, exit 1),
# or ran with Atlas silently off; check-config said the config was valid.
LENS_ON = 'lens_id = "lns-x"\nchannels = ["a"]'
ATLAS_URL = 'url = "http://127.0.0.1:9"'  # never dialled: the config is refused before anything starts
# A csv port whose columns the config gives: its channels are known before any data comes.
PORT_P = '[[serial]]\nname = "p"\nurl = "/dev/null"\ncolumns = ["t_s", "a", "b"]\ndevice_time = "t_s"\n'
RULE = '[[rules]]\nkind = "limits"\nmax = 1.0\n'


def lens_without_api_key(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    creds = tmp_path / "credentials"  # systemd's, holding no atai_api_key
    creds.mkdir()
    setup = Setup(write_config(tmp_path, lens=LENS_ON), env={"CREDENTIALS_DIRECTORY": str(creds)})
    return setup, "lens.api_key", ["api_key_file", "ATAI_API_KEY", "atai_api_key", "lens.enabled = false"]


def example_config_without_credentials(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    # The shipped example as a fresh install runs it: LoadCredential= given but no credential in it.
    creds = tmp_path / "credentials"
    creds.mkdir()
    state = tmp_path / "state"
    state.mkdir()
    example = Path(__file__).resolve().parents[2] / "config" / "edge-agent.example.toml"
    env = {"CREDENTIALS_DIRECTORY": str(creds), "EDGE_AGENT_AGENT__STATE_DIR": str(state)}
    return Setup(example, env=env), "lens.api_key", ["ATAI_API_KEY", "atlas.token: ", "atlas.url: "]


def atlas_without_token(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    setup = Setup(write_config(tmp_path, atlas=f"enabled = true\n{ATLAS_URL}"))
    return setup, "atlas.token", ["token_file", "ATLAS_TOKEN", "~/.atlas/token", "atlas.enabled = false"]


def atlas_without_url(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    setup = Setup(write_config(tmp_path, atlas="enabled = true"), env={"ATLAS_TOKEN": "tok"})
    return setup, "atlas.url", ["ATLAS_URL", "~/.atlas/url", "atlas.enabled = false"]


def lens_without_channels(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    setup = Setup(write_config(tmp_path, lens='lens_id = "lns-x"\napi_key = "k"\nchannels = []'))
    return setup, "lens.channels", ["lens.enabled = false"]


def rule_channel_not_a_column(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    setup = Setup(write_config(tmp_path, f'{PORT_P}{RULE}channel = "zzz"\n'))
    return setup, "rules[0].channel", ["'zzz'", "'p'"]


def rule_channel_is_the_device_time(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    setup = Setup(write_config(tmp_path, f'{PORT_P}{RULE}channel = "t_s"\n'))
    return setup, "rules[0].channel", ["device_time"]


def rule_source_not_a_port(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    setup = Setup(write_config(tmp_path, f'{PORT_P}{RULE}channel = "a"\nsource = "nosuch"\n'))
    return setup, "rules[0].source", ["'nosuch'", "[[serial]]"]


def lens_channel_not_a_column(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    lens = 'lens_id = "lns-x"\napi_key = "k"\nchannels = ["a", "zzz"]'
    return Setup(write_config(tmp_path, PORT_P, lens=lens)), "lens.channels[1]", ["'zzz'", "'p'"]


def lens_source_not_a_port(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    lens = 'lens_id = "lns-x"\napi_key = "k"\nchannels = ["a"]\nsource = "nosuchport"'
    return Setup(write_config(tmp_path, PORT_P, lens=lens)), "lens.source", ["'nosuchport'"]


def serial_names_repeated(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    setup = Setup(write_config(tmp_path, PORT_P + PORT_P))
    return setup, "serial[1].name", ["'p'", "serial[0]", "unique"]


def control_port_out_of_range(tmp_path: Path) -> tuple[Setup, str, list[str]]:
    setup = Setup(write_config(tmp_path), env={"EDGE_AGENT_CONTROL__LISTEN": "127.0.0.1:99999"})
    return setup, "control.listen", ["99999", "out of range 1-65535", "EDGE_AGENT_CONTROL__LISTEN"]


CASES: dict[str, Callable[[Path], tuple[Setup, str, list[str]]]] = {
    "lens_without_api_key": lens_without_api_key,
    "example_config_without_credentials": example_config_without_credentials,
    "atlas_without_token": atlas_without_token,
    "atlas_without_url": atlas_without_url,
    "lens_without_channels": lens_without_channels,
    "rule_channel_not_a_column": rule_channel_not_a_column,
    "rule_channel_is_the_device_time": rule_channel_is_the_device_time,
    "rule_source_not_a_port": rule_source_not_a_port,
    "lens_channel_not_a_column": lens_channel_not_a_column,
    "lens_source_not_a_port": lens_source_not_a_port,
    "serial_names_repeated": serial_names_repeated,
    "control_port_out_of_range": control_port_out_of_range,
    "api_key_file_not_utf8": api_key_file_not_utf8,
    "atlas_url_in_home_not_utf8": atlas_url_in_home_not_utf8,
    "env_serial_not_json": env_serial_not_json,
    "env_value_not_utf8": env_value_not_utf8,
    "env_number_infinite": env_number_infinite,
    "ring_seconds_inf": ring_seconds_inf,
    "max_disk_mb_inf": max_disk_mb_inf,
    "duration_absurd": duration_absurd,
    "ring_shorter_than_evidence": ring_shorter_than_evidence,
    "ring_shorter_than_the_incidents_close_margin": ring_shorter_than_the_incidents_close_margin,
    "lens_scaling_for_unknown_channel": lens_scaling_for_unknown_channel,
    "token_file_with_two_lines": token_file_with_two_lines,
    "credential_is_a_directory": credential_is_a_directory,
    "baseline_file_not_utf8": baseline_file_not_utf8,
    "atlas_url_env_not_a_url": atlas_url_env_not_a_url,
    "atlas_token_env_not_utf8": atlas_token_env_not_utf8,
    "toml_not_utf8": toml_not_utf8,
    "toml_is_a_directory": toml_is_a_directory,
    "state_dir_is_a_file": state_dir_is_a_file,
    "state_dir_not_writable": state_dir_not_writable,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_run_and_check_config_exit_78_naming_file_and_field(tmp_path: Path, case: str) -> None:
    if case == "state_dir_not_writable" and IS_ROOT and shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to run as root without the permission capabilities")
    setup, field_name, mentions = CASES[case](tmp_path)
    outcomes = run_both(tmp_path, setup)
    for outcome in outcomes.values():
        assert_config_error(outcome, setup, field_name, *mentions)
    # The message is the same whichever command found it.
    assert (
        outcomes["run"].stderr.strip().splitlines()[-1]
        == outcomes["check-config"].stderr.strip().splitlines()[-1]
    )


@pytest.fixture
def readonly_fs(tmp_path: Path) -> Iterator[Path]:
    if not IS_ROOT:
        pytest.skip("mounting a read-only tmpfs needs root (CI runs as root)")
    mount_point = tmp_path / "readonly"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.mark.parametrize("inside", [False, True], ids=["is_the_mount", "below_the_mount"])
def test_state_dir_on_a_read_only_file_system(tmp_path: Path, readonly_fs: Path, inside: bool) -> None:
    state = readonly_fs / "state" if inside else readonly_fs
    setup = Setup(write_config(tmp_path, state_dir=state))
    for outcome in run_both(tmp_path, setup).values():
        assert_config_error(outcome, setup, "agent.state_dir", str(state), "Read-only file system")


def test_state_dir_from_the_environment_names_the_variable(tmp_path: Path) -> None:
    state = tmp_path / "file-not-dir"
    state.write_text("")
    setup = Setup(write_config(tmp_path), env={"EDGE_AGENT_AGENT__STATE_DIR": str(state)})
    for outcome in run_both(tmp_path, setup).values():
        assert_config_error(outcome, setup, "agent.state_dir", "EDGE_AGENT_AGENT__STATE_DIR")


def test_busy_control_port_is_one_line_and_exit_78(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        setup = Setup(write_config(tmp_path), env={"EDGE_AGENT_CONTROL__LISTEN": f"127.0.0.1:{port}"})
        outcomes = run_both(tmp_path, setup)
    run = outcomes["run"]
    assert_config_error(run, setup, "control.listen", f"127.0.0.1:{port} is already in use")
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    # Nothing was started before the port was found taken: no state written, nothing logged as started.
    assert not (tmp_path / "state" / "outbox.sqlite3").exists()
    assert "agent_started" not in run.text
    # check-config does not test the port: a running agent holds it (ExecStartPre of a restart).
    assert outcomes["check-config"].code == 0, outcomes["check-config"]


def test_control_listen_on_an_address_of_another_machine(tmp_path: Path) -> None:
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never an address of this machine. Binding fails locally; no
    # packet is sent anywhere.
    setup = Setup(write_config(tmp_path), env={"EDGE_AGENT_CONTROL__LISTEN": "192.0.2.1:0"})
    run = run_both(tmp_path, setup, ("run",))["run"]
    assert_config_error(
        run, setup, "control.listen", "not an address of this machine", "EDGE_AGENT_CONTROL__LISTEN"
    )


def test_check_config_leaves_no_trace_of_its_state_dir_test(tmp_path: Path) -> None:
    state = tmp_path / "not" / "yet" / "there"
    setup = Setup(write_config(tmp_path, state_dir=state))
    outcome = run_both(tmp_path, setup, ("check-config",))["check-config"]
    assert outcome.code == 0, outcome
    assert not (tmp_path / "not").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "outbox.sqlite3").write_text("kept")
    setup = Setup(write_config(tmp_path, state_dir=existing))
    assert run_both(tmp_path, setup, ("check-config",))["check-config"].code == 0
    assert sorted(p.name for p in existing.iterdir()) == ["outbox.sqlite3"]
