"""The systemd unit (verified by systemd-analyze), the udev rule, the Dockerfile (lint-level: no engine
runs here) and scripts/container-smoke (must say "no container engine" with exit 77 when none works)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "edge-agent.service"
EDGE_AGENT = Path(sys.executable).with_name("edge-agent")
INSTALLED_PATH = "/opt/edge-agent/bin/edge-agent"


def unit_directives(text: str) -> dict[str, list[tuple[str, str]]]:
    """systemd's unit syntax, as far as we use it: [Section], Key=value, keys may repeat."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections.setdefault(current, [])
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not Key=value: {line!r}"
        sections[current].append((key.strip(), value.strip()))
    return sections


def values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in section if k == key]


def verify(
    unit_text: str, tmp_path: Path, name: str = "edge-agent.service"
) -> subprocess.CompletedProcess[str]:
    unit = tmp_path / name
    unit.write_text(unit_text.replace(INSTALLED_PATH, str(EDGE_AGENT)))
    return subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )


def our_warnings(result: subprocess.CompletedProcess[str], name: str) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines() if name in line]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    assert EDGE_AGENT.exists()
    result = verify(UNIT.read_text(), tmp_path)
    assert result.returncode == 0, result.stderr
    assert our_warnings(result, "edge-agent.service") == []  # unknown keys only warn: none allowed


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_verify_check_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above is not vacuous: a typo'd key is reported, a missing binary fails."""
    broken = UNIT.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes")
    assert our_warnings(verify(broken, tmp_path, "typo.service"), "typo.service")
    missing = UNIT.read_text().replace(INSTALLED_PATH, "/nonexistent/edge-agent")
    unit = tmp_path / "missing.service"
    unit.write_text(missing)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0


def test_unit_has_the_required_service_contract() -> None:
    sections = unit_directives(UNIT.read_text())
    service = sections["Service"]
    single = {k: v for k, v in service}
    assert single["Type"] == "notify"
    assert single["WatchdogSec"] == "30s"
    assert single["Restart"] == "on-failure"
    assert "check-config" in single["ExecStartPre"] and single["ExecStartPre"].startswith(INSTALLED_PATH)
    assert single["ExecStart"].split()[:2] == [INSTALLED_PATH, "run"]
    assert single["User"] == "edge-agent" and single["SupplementaryGroups"] == "dialout"
    assert single["StateDirectory"] == "edge-agent"
    credentials = {v.split(":", 1)[0] for v in values(service, "LoadCredential")}
    assert credentials == {"atai_api_key", "atlas_token"}  # the names edge_agent/config_sources.py looks up
    assert single["ProtectSystem"] == "strict" and single["NoNewPrivileges"] == "yes"
    assert single["DevicePolicy"] == "closed"
    assert {"char-ttyUSB rw", "char-ttyACM rw"} <= set(values(service, "DeviceAllow"))
    assert "PrivateDevices" not in single  # it would hide the serial ports
    assert sections["Install"] == [("WantedBy", "multi-user.target")]


def test_sysusers_puts_the_user_in_dialout() -> None:
    lines = [
        line.split()
        for line in (REPO / "systemd" / "edge-agent.sysusers.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0][:2] == ["u", "edge-agent"]
    assert ["m", "edge-agent", "dialout"] in lines


UDEV_PAIR = re.compile(r'^(?P<key>[A-Z_]+(?:\{[^}]+\})?)(?P<op>==|!=|\+=|-=|:=|=)"(?P<value>[^"]*)"$')


def test_udev_rule_is_well_formed_and_names_the_bench() -> None:
    rules = [
        line
        for line in (REPO / "systemd" / "99-edge-agent-bench.rules").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert rules
    for rule in rules:
        pairs = [UDEV_PAIR.match(part.strip()) for part in rule.split(", ")]
        assert all(pairs), rule
        keys = {m["key"]: (m["op"], m["value"]) for m in pairs if m}
        assert keys["SUBSYSTEM"] == ("==", "tty")
        assert keys["SYMLINK"][0] == "+=" and keys["SYMLINK"][1]
        assert keys["GROUP"] == ("=", "dialout")


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_shape() -> None:
    instructions = dockerfile_instructions()
    known = {"ARG", "FROM", "ENV", "RUN", "WORKDIR", "COPY", "VOLUME", "USER", "EXPOSE", "HEALTHCHECK",
             "ENTRYPOINT", "CMD"}  # fmt: skip
    assert {word for word, _ in instructions} <= known
    froms = [rest for word, rest in instructions if word == "FROM"]
    assert len(froms) >= 2 and froms[0].endswith(" AS build")  # multi-stage
    args = dict(rest.split("=", 1) for word, rest in instructions if word == "ARG")
    assert "-slim" in args["PYTHON_IMAGE"]
    runtime = instructions[max(i for i, (word, _) in enumerate(instructions) if word == "FROM") :]
    users = [rest for word, rest in runtime if word == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert any("--groups dialout" in rest for word, rest in runtime if word == "RUN")
    assert any("/var/lib/edge-agent" in rest for word, rest in runtime if word == "VOLUME")
    (health,) = [rest for word, rest in runtime if word == "HEALTHCHECK"]
    assert "edge_agent.service.healthcheck" in health and "curl" not in health
    assert ("ENTRYPOINT", '["edge-agent"]') in runtime and ("CMD", '["run"]') in runtime
    # The health probe is importable from the installed package, as the HEALTHCHECK runs it.
    result = subprocess.run(
        [sys.executable, "-m", "edge_agent.service.healthcheck", "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0 and "--url" in result.stdout


def test_dockerignore_sends_only_the_package() -> None:
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert lines[0] == "**"
    assert {"!pyproject.toml", "!README.md", "!edge_agent/"} <= set(lines)


def test_container_smoke_says_no_engine_with_exit_77(tmp_path: Path) -> None:
    """This machine has a docker client but no daemon, and neither podman nor buildah."""
    script = REPO / "scripts" / "container-smoke"
    assert os.access(script, os.X_OK)
    engines = [e for e in ("docker", "podman", "buildah") if shutil.which(e)]
    works = [
        e for e in engines
        if subprocess.run([e, "info"], capture_output=True, timeout=30, check=False).returncode == 0
    ]  # fmt: skip
    if works:
        pytest.skip(f"a working container engine is present ({works}): run scripts/container-smoke itself")
    result = subprocess.run([str(script)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 77, result.stderr
    assert "no container engine" in result.stderr
    # A named engine that does not exist is the same verdict, not a crash.
    env = dict(os.environ, CONTAINER_ENGINE="no-such-engine")
    result = subprocess.run([str(script)], capture_output=True, text=True, timeout=60, env=env, check=False)
    assert result.returncode == 77 and "no-such-engine (not installed)" in result.stderr
