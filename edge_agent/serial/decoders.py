"""Sans-I/O line decoders: `feed(bytes, mono, wall) -> list[Frame | StepMarker]`, one per format: csv
(csv_decoder.py), jsonl and kv (here), on the shared line pipeline (`LineDecoder`, line_decoder.py)."""

from __future__ import annotations

import json
import math
from typing import Any

from edge_agent.config import SerialPort
from edge_agent.serial.clock import SourceClock
from edge_agent.serial.csv_decoder import CsvDecoder
from edge_agent.serial.line_decoder import Decoded, LineDecoder, Row
from edge_agent.serial.stats import BAD_JSON, BAD_KV, NOT_NUMERIC, WRONG_COLUMNS

__all__ = ["CsvDecoder", "Decoded", "JsonlDecoder", "KvDecoder", "LineDecoder", "make_decoder"]


def _number(value: Any) -> float | None:
    """JSON value -> float: numbers, numeric strings; null is a missing sample (NaN); else None."""
    kind = type(value)
    if kind is float or kind is int:
        return float(value)
    if kind is str:
        try:
            return float(value)
        except ValueError:
            return None
    if value is None:
        return math.nan
    return None  # bools, lists, objects


class JsonlDecoder(LineDecoder):
    """One JSON object per line. With `columns`, exactly those fields (each must be numeric); without,
    every number-valued field is a channel and other JSON types (strings, bools) are ignored."""

    def __init__(self, port: SerialPort, clock: SourceClock | None = None) -> None:
        super().__init__(port, clock)
        self._columns = tuple(c for c in port.columns if c != port.device_time)

    def _decode(self, line: str) -> Row | None:
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            self.stats.skip(BAD_JSON)
            return None
        if type(obj) is not dict:
            self.stats.skip(BAD_JSON)
            return None
        device_time = None
        if self._device_time is not None:
            raw_time = obj.pop(self._device_time, None)
            if raw_time is not None:
                device_time = _number(raw_time)
                if device_time is None:
                    self.stats.skip(NOT_NUMERIC)
                    return None
        values: dict[str, float] = {}
        if self._columns:
            for name in self._columns:
                if name not in obj:
                    self.stats.skip(WRONG_COLUMNS)
                    return None
                value = _number(obj[name])
                if value is None:
                    self.stats.skip(NOT_NUMERIC)
                    return None
                values[name] = value
        else:
            shared = self._name_memo()
            for name, raw in obj.items():
                kind = type(raw)
                if kind is float or kind is int:
                    values[shared(name, name)] = float(raw)
            if not values:
                self.stats.skip(NOT_NUMERIC)
                return None
        return values, device_time


class KvDecoder(LineDecoder):
    """`name=value name2=value2` separated by blanks (a trailing `,`/`;` on a pair is tolerated).
    Every value must be a number; with `columns`, only those names are kept and all must be present."""

    def __init__(self, port: SerialPort, clock: SourceClock | None = None) -> None:
        super().__init__(port, clock)
        self._columns = tuple(c for c in port.columns if c != port.device_time)

    def _decode(self, line: str) -> Row | None:
        values: dict[str, float] = {}
        shared = self._name_memo()
        for token in line.split():
            name, sep, text = token.rstrip(",;").partition("=")
            if not sep or not name:
                self.stats.skip(BAD_KV)
                return None
            try:
                values[shared(name, name)] = float(text)
            except ValueError:
                self.stats.skip(NOT_NUMERIC)
                return None
        device_time = None
        if self._device_time is not None:
            device_time = values.pop(self._device_time, None)
        if self._columns:
            try:
                values = {name: values[name] for name in self._columns}
            except KeyError:
                self.stats.skip(WRONG_COLUMNS)
                return None
        elif not values:
            self.stats.skip(NOT_NUMERIC)
            return None
        return values, device_time


_DECODERS: dict[str, type[LineDecoder]] = {"csv": CsvDecoder, "jsonl": JsonlDecoder, "kv": KvDecoder}


def make_decoder(port: SerialPort, clock: SourceClock | None = None) -> LineDecoder:
    """The port's decoder, stamping frames on `clock` (default: a clock of its own for the port)."""
    return _DECODERS[port.format](port, clock)
