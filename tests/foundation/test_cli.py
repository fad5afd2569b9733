"""The CLI as users run it: console script, `python -m`, check-config exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).with_name("edge-agent")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, env=env, cwd=REPO)


def clean_env(tmp_path: Path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}


def test_console_script_and_module_report_version() -> None:
    a = run(str(EXE), "version")
    b = run(sys.executable, "-m", "edge_agent", "--version")
    assert a.returncode == 0 and b.returncode == 0
    assert a.stdout.strip() == b.stdout.strip()
    assert a.stdout.startswith("edge-agent ")


def test_check_config_valid_prints_masked(tmp_path: Path) -> None:
    env = clean_env(tmp_path) | {"ATAI_API_KEY": "atai-cli-secret-1", "ATLAS_TOKEN": "atlas-cli-secret-1"}
    env["ATLAS_URL"] = "https://tenant.atlas.example"  # the example leaves the URL to the environment
    result = run(str(EXE), "check-config", "--config", str(REPO / "config/edge-agent.example.toml"), env=env)
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout
    assert "**********" in result.stdout
    assert "atai-cli-secret-1" not in result.stdout + result.stderr
    assert "atlas-cli-secret-1" not in result.stdout + result.stderr


def test_check_config_error_exits_78_naming_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[serial]]\nname = "bench"\nurl = "loop://"\nbaudrate = -5\n')
    result = run(str(EXE), "check-config", "--config", str(bad), env=clean_env(tmp_path))
    assert result.returncode == 78
    assert str(bad) in result.stderr
    assert "serial[0].baudrate" in result.stderr
    assert "greater than 0" in result.stderr


def test_check_config_device_time_without_a_unit_exits_78_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[serial]]\nname = "bench"\nurl = "loop://"\ndevice_time = "ts"\n')
    result = run(str(EXE), "check-config", "--config", str(bad), env=clean_env(tmp_path))
    assert result.returncode == 78, result.stderr
    assert str(bad) in result.stderr and "serial[0].device_time_unit" in result.stderr
    assert "set device_time_unit" in result.stderr and "Traceback" not in result.stderr


def test_check_config_uses_env_path_and_reports_missing_file(tmp_path: Path) -> None:
    env = clean_env(tmp_path) | {"EDGE_AGENT_CONFIG": str(tmp_path / "missing.toml")}
    result = run(str(EXE), "check-config", env=env)
    assert result.returncode == 78
    assert "missing.toml" in result.stderr and "not found" in result.stderr
