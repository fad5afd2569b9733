"""What `run` needs beyond a config that validates, checked before anything starts, and checked the
same way by `check-config` (which must refuse what `run` would die of):

- a service that is on has what it needs to be reached: the lens its API key, Atlas its URL and
  token (`config_sources.missing_access`);
- the state directory exists or can be made, is a directory, and files can be created in it (and in
  what the agent already keeps there) by this user: a regular file in its place, a read-only file
  system or a directory owned by someone else is a config error of `agent.state_dir`, not a traceback
  from the first write;
- every sans-I/O core that checks its parameters when built (the rules and their baseline files, the
  evidence planner and ring, the lens windower and pacer) is built once here: its `ValueError` becomes
  a config error of its section.

`check-config` leaves nothing behind: a state directory it had to create is removed again, and the
test file always is. The control API's port is not checked here: a running agent holds it, so
`check-config` (systemd's ExecStartPre of a restart, an operator on a live bench) would refuse a good
config; `run` takes the port first thing (`ControlServer.bind`) and reports a busy one as a config
error of `control.listen`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from edge_agent.config import EdgeAgentConfig
from edge_agent.config_sources import config_error, missing_access
from edge_agent.detect.detector import Detector
from edge_agent.detect.rules import RuleConfigError
from edge_agent.evidence import EvidencePlanner, EvidenceRings
from edge_agent.evidence.planner import closes_at_end
from edge_agent.incidents import IncidentGrouper
from edge_agent.lens.pacer import WindowPacer
from edge_agent.lens.windower import Scale, Windower
from edge_agent.memory_budget import DataPathBudget

# Out of space is not a configuration error: the agent reports a full disk and carries on when space
# returns, so a start on a full disk must not be refused (systemd would give up on the unit).
_NOT_CONFIG_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
PROBE_PREFIX = ".edge-agent-write-test-"


def check(
    config: EdgeAgentConfig,
    config_file: Path | None,
    *,
    create: bool,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Raise `ConfigError` (every problem found, each naming its field) unless `run` can start.

    `create=True` (run) leaves the state directory in place; `create=False` (check-config) removes
    whatever it had to create to test it."""
    problems = missing_access(config)
    reason = state_dir_problem(Path(config.agent.state_dir), keep=create)
    if reason is not None:
        problems.append(("agent.state_dir", reason))
    problems += core_problems(config)
    if problems:
        raise config_error(config_file, problems, os.environ if environ is None else environ)


def evidence_planner(config: EdgeAgentConfig) -> EvidencePlanner:
    """The planner as the reporter builds it: with Atlas on, its parts are sized by the incidents' close
    margin (the join window and the rules' report delays), which the ring must hold; without Atlas no
    evidence is written, and only its own parameters are checked."""
    margin = IncidentGrouper.from_config(config).close_margin if config.atlas.enabled else closes_at_end
    return EvidencePlanner.from_config(config.evidence, margin)


def core_problems(config: EdgeAgentConfig) -> list[tuple[str, str]]:
    builders: list[tuple[str, Callable[[], object]]] = [
        ("rules", lambda: Detector(config.rules, config.lens if config.lens.enabled else None)),
        ("evidence", lambda: EvidenceRings.from_config(config.evidence)),
        ("memory.data_path_mb", lambda: DataPathBudget.from_config(config)),
        ("evidence", lambda: evidence_planner(config)),
    ]
    lens = config.lens
    if lens.enabled and lens.channels:
        source = lens.source or (config.serial[0].name if config.serial else "")
        builders.append(("lens", lambda: Windower(
            source, lens.channels, lens.window_size, lens.step_size, missing=lens.missing,
            scaling={name: Scale(s.mean, s.std) for name, s in lens.scaling.items()}, max_gap=lens.max_gap,
        )))  # fmt: skip
        builders.append(
            ("lens", lambda: WindowPacer(lens.max_windows_per_second, lens.max_in_flight, lens.queue_windows))
        )
    problems = []
    for section, build in builders:
        try:
            build()
        except RuleConfigError as exc:  # its message starts with the rule's path: "rules[2] (...): ..."
            field, _, reason = str(exc).partition(": ")
            problems.append((field.split(" ", 1)[0], f"{field}: {reason}" if reason else str(exc)))
        except ValueError as exc:
            problems.append((section, str(exc)))
    return problems


def state_dir_problem(path: Path, *, keep: bool) -> str | None:
    """Why the agent could not keep its state in `path`, or None. Creates `path` if it is missing
    (removed again unless `keep`), then creates and removes a file in it."""
    made: list[Path] = []
    try:
        reason = _make_dirs(path, made)
        if reason is None:
            reason = _write_problem(path)
        if reason is None:
            reason = _contents_problem(path)
        return reason
    finally:
        if not keep:
            for directory in reversed(made):
                # OSError: someone else put something in it meanwhile, theirs to keep.
                with contextlib.suppress(OSError):
                    directory.rmdir()


def _make_dirs(path: Path, made: list[Path]) -> str | None:
    missing: list[Path] = []
    probe = path
    while True:
        try:
            is_dir = probe.is_dir()
            exists = is_dir or probe.exists()
        except OSError as exc:
            return f"cannot look at {probe}: {exc.strerror}{_as_user(exc)}"
        if exists:
            if not is_dir:
                return f"{probe} exists and is not a directory"
            break
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            continue
        except OSError as exc:
            return f"cannot create {directory}: {exc.strerror}{_as_user(exc)}"
        made.append(directory)
    return None


def _write_problem(path: Path) -> str | None:
    try:
        fd, name = tempfile.mkstemp(dir=path, prefix=PROBE_PREFIX)
    except OSError as exc:
        if exc.errno in _NOT_CONFIG_ERRNOS:
            return None
        return f"cannot create files in {path}: {exc.strerror}{_as_user(exc)}"
    os.close(fd)
    try:
        os.unlink(name)
    except OSError as exc:  # created but not removable (a sticky directory of another owner)
        return f"cannot remove files in {path}: {exc.strerror}{_as_user(exc)}"
    return None


def _contents_problem(path: Path) -> str | None:
    """What the agent already keeps in `path` (its files and folders, one level down) must be writable
    by this user too: a state file left by a run as root stops a service running as its own user."""
    try:
        entries = list(path.iterdir())
        for entry in list(entries):
            if entry.is_dir() and not entry.is_symlink():
                entries += [child for child in entry.iterdir() if child.is_dir()]
    except OSError as exc:
        return f"cannot list {path}: {exc.strerror}{_as_user(exc)}"
    for entry in entries:
        if entry.name.startswith(PROBE_PREFIX) or entry.is_symlink():
            continue
        if not os.access(entry, os.W_OK | (os.X_OK if entry.is_dir() else 0)):
            return f"{entry} is not writable{_as_user(None)}"
    return None


def _as_user(exc: OSError | None) -> str:
    """For a permission problem, who was refused: check-config run by hand is often another user."""
    if exc is not None and exc.errno not in (errno.EACCES, errno.EPERM):
        return ""
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return f" (as user {name})"
