"""A `[[serial]]` port: how to open it, how its lines decode, its device clock and its step markers."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from edge_agent.config.values import Duration, Interval, Section

DEFAULT_MARKER_REGEX = r"^#STEP\s+(?P<edge>START|END)\s+(?P<name>\S.*?)(?:\s+(?P<verdict>PASS|FAIL))?\s*$"

DeviceTimeUnit = Literal["auto", "s", "ms", "us", "ns"]
# A device clock running ahead of the host by more than this is a step, not a sparse recording replayed
# fast (README, "The device's clock"): 10 rows of a 1-row-a-minute logger, well under a 1 h DST/NTP step.
DEFAULT_DEVICE_TIME_MAX_JUMP = 600.0


class SerialPort(Section):
    name: str = Field(min_length=1, description="Source name carried by every frame of this port.")
    url: str = Field(
        min_length=1, description="Any pyserial URL: /dev/tty*, by-id path, hwgrep://, socket://."
    )
    # 50 Mbaud is above every UART and USB bridge made; beyond it the termios call fails at open.
    baudrate: int = Field(115200, gt=0, le=50_000_000)
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["N", "E", "O", "M", "S"] = "N"
    stopbits: float = Field(1, description="1, 1.5 or 2")
    rtscts: bool = False
    xonxoff: bool = False
    format: Literal["csv", "jsonl", "kv"] = "csv"
    columns: list[str] = Field(
        default_factory=list,
        description="csv: column names; empty = the device's header line. Rows before it (the agent"
        " started while the device streamed) are skipped, counted `skipped_before_header`, with one"
        " `serial.waiting_for_header` warning, until the device prints its header, often only at reset:"
        " set the columns to decode from the first row.",
    )
    delimiter: str = Field(",", min_length=1, max_length=1)
    device_time: str | None = Field(
        None, description="Field carrying the device's own timestamp; rules then run on the device's clock."
    )
    device_time_unit: DeviceTimeUnit = Field(
        "auto",
        description="Unit of device_time: s, ms, us, ns, or auto (from the name's suffix _s/_ms/_us/_ns).",
    )
    device_time_max_jump: Duration = Field(
        DEFAULT_DEVICE_TIME_MAX_JUMP,
        gt=0,
        description="Device time running ahead of the host by more than this (seconds) is a clock step.",
    )
    max_line_bytes: int = Field(
        4096, ge=16, le=16 * 1024 * 1024, description="Longer lines are skipped and counted."
    )
    marker_regex: str = Field(
        DEFAULT_MARKER_REGEX, description="Step marker lines; groups edge, name, verdict."
    )
    reconnect_min: Interval = 0.2
    reconnect_max: Interval = 5.0

    @property
    def value_channels(self) -> tuple[str, ...] | None:
        """The channels this port's frames carry when the config says so (a csv port with `columns`,
        less the device time column); None when they come from the data (a header line, jsonl, kv)."""
        if self.format != "csv" or not self.columns:
            return None
        return tuple(name for name in (c.strip() for c in self.columns) if name != self.device_time)

    @field_validator("stopbits")
    @classmethod
    def _stopbits(cls, value: float) -> float:
        if value not in (1, 1.5, 2):
            raise ValueError("stop bits are 1, 1.5 or 2")
        return value

    @field_validator("device_time_unit")
    @classmethod
    def _unit_known(cls, value: DeviceTimeUnit, info: ValidationInfo) -> DeviceTimeUnit:
        # Imported here: edge_agent.serial's package imports this module (the decoders take a SerialPort).
        from edge_agent.serial.clock import device_time_scale

        field = info.data.get("device_time")
        if field is not None:
            device_time_scale(field, value)  # a name without a unit suffix needs the unit said
        return value

    @field_validator("marker_regex")
    @classmethod
    def _regex_compiles(cls, value: str) -> str:
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        missing = {"edge", "name"} - set(pattern.groupindex)
        if missing:
            raise ValueError(f"needs named groups 'edge' and 'name' (missing: {', '.join(sorted(missing))})")
        return value
