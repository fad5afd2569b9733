"""The two ways a configuration turns out unusable, and the exit code both end in.

`ConfigError` is found while loading (the file, its fields, the environment, secret files).
`FieldError` is found later, by the component that tries to use a value (the control API's port is
taken, the state directory cannot be written): that component knows the field but not the file, so
the command that loaded the config renders it as a `ConfigError`. Either way the process prints one
readable message naming the file and the field and exits `EX_CONFIG` (78, sysexits' EX_CONFIG), never
a traceback: under systemd the journal then says what to fix instead of five identical crashes.
"""

from __future__ import annotations

from pathlib import Path

EX_CONFIG = 78


class ConfigError(Exception):
    """A configuration that cannot be used. `problems` are (field path, reason) pairs."""

    def __init__(self, file: Path | None, problems: list[tuple[str, str]]) -> None:
        self.file = file
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        where = str(self.file) if self.file else "(no config file)"
        if len(self.problems) == 1:  # one line: what a journal or a terminal shows best
            field, reason = self.problems[0]
            return f"configuration error in {where}: {field}: {reason}"
        lines = [f"configuration error in {where}:"]
        lines += [f"  {field}: {reason}" for field, reason in self.problems]
        return "\n".join(lines)


class FieldError(Exception):
    """A config value that a component could not use at start-up (`field` is its path, e.g.
    `control.listen`). The CLI turns it into a `ConfigError` of the file it loaded
    (`config_sources.config_error`, which also names the environment variable that set the field)."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")
