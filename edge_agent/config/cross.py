"""Checks across tables: a name in one table that must be one of another's (a rule's source and
channel, the lens's source and channels, unique port names), and the lens's keys that only make sense
together. Each problem names its own field (`rules[0].channel`, `serial[1].name`), not the whole
config: `FieldProblems` carries them out of the model's validator to `load._validate`.

A misspelt name here would not stop the agent: it would start and never detect on that channel, which
is worse than refusing to start. A name is refused only where the config says what the port carries (a
csv port with `columns`); a header read from the device, or a jsonl/kv port, names its channels only
when data comes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_agent.config.detection import ANY_CHANNEL

if TYPE_CHECKING:
    from edge_agent.config.model import EdgeAgentConfig
    from edge_agent.config.serial_port import SerialPort


class FieldProblems(ValueError):
    """Problems of named fields, raised by a model validator (a ValueError, so pydantic reports it as
    a validation error; `load._validate` finds it in the error's context and lists each problem under
    its field instead of `(top level)`)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{field}: {reason}" for field, reason in problems))


def cross_problems(config: EdgeAgentConfig) -> list[tuple[str, str]]:
    return _serial_names(config) + _lens_problems(config) + _rule_problems(config)


def _serial_names(config: EdgeAgentConfig) -> list[tuple[str, str]]:
    problems = []
    first: dict[str, int] = {}
    for index, port in enumerate(config.serial):
        if port.name in first:
            reason = f"{port.name!r} is already serial[{first[port.name]}]'s name: port names must be unique"
            problems.append((f"serial[{index}].name", reason))
        else:
            first[port.name] = index
    return problems


def _port(config: EdgeAgentConfig, name: str) -> SerialPort | None:
    return next((port for port in config.serial if port.name == name), None)


def _not_a_port(field: str, name: str, config: EdgeAgentConfig) -> tuple[str, str]:
    names = ", ".join(repr(port.name) for port in config.serial)
    return field, f"{name!r} is not the name of a [[serial]] port (ports: {names})"


def _not_a_channel(field: str, channel: str, port: SerialPort, known: tuple[str, ...]) -> tuple[str, str]:
    reason = f"{channel!r} is not a channel of serial port {port.name!r} (its channels: {', '.join(known)})"
    if port.device_time == channel:
        reason = f"{channel!r} is the device_time column of serial port {port.name!r}, not a value channel"
    return field, reason


def _lens_problems(config: EdgeAgentConfig) -> list[tuple[str, str]]:
    lens = config.lens
    problems = []
    if lens.source and config.serial and _port(config, lens.source) is None:
        problems.append(_not_a_port("lens.source", lens.source, config))
    if not lens.enabled:
        return problems
    named = bool(lens.lens_id) or lens.register_spec is not None
    if named and not lens.channels:
        problems.append(
            ("lens.channels", "empty: list the channels to window into the lens, or set lens.enabled = false")
        )
    if lens.channels and not named:
        reason = "empty while lens.channels is set: name the lens (lens_id, or a [lens.register] table)"
        problems.append(("lens.lens_id", reason + " or set lens.enabled = false"))
    port = _port(config, lens.source) if lens.source else (config.serial[0] if config.serial else None)
    known = port.value_channels if port is not None else None
    if port is not None and known is not None:
        for index, channel in enumerate(lens.channels):
            if channel not in known:
                problems.append(_not_a_channel(f"lens.channels[{index}]", channel, port, known))
    return problems


def _rule_problems(config: EdgeAgentConfig) -> list[tuple[str, str]]:
    if not config.serial:
        return []
    problems = []
    for index, rule in enumerate(config.rules):
        if rule.source:
            port = _port(config, rule.source)
            if port is None:
                problems.append(_not_a_port(f"rules[{index}].source", rule.source, config))
                continue
            ports = [port]
        else:
            ports = list(config.serial)  # a rule without a source watches every port
        channels = [port.value_channels for port in ports]
        if rule.kind == "dropout" and rule.channel == ANY_CHANNEL:
            continue  # any frame of the port
        if any(known is None for known in channels):
            continue  # some port names its channels only when data comes
        if any(known is not None and rule.channel in known for known in channels):
            continue
        field = f"rules[{index}].channel"
        if len(ports) == 1:
            problems.append(_not_a_channel(field, rule.channel, ports[0], channels[0] or ()))
        else:
            each = "; ".join(
                f"{port.name}: {', '.join(known or ())}" for port, known in zip(ports, channels, strict=True)
            )
            problems.append((field, f"{rule.channel!r} is not a channel of any [[serial]] port ({each})"))
    return problems
