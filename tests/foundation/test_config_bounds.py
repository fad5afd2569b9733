"""Every number in the config is finite and bounded, for every field the models have now or get later:
the fields are found by walking the models, not listed here, so a new key without bounds fails here.

`run` used to die of values check-config called valid (`ring_seconds = inf`: OverflowError in the
evidence ring; `max_disk_mb = inf`: OverflowError in the outbox quota). The loader refuses them now;
these tests hold every field to that, through the TOML file as a user writes it.
"""

from __future__ import annotations

import json
import math
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from edge_agent.config import ConfigError, EdgeAgentConfig, load_config

# Values in the bench's own units (limits, scaling, rates, scores): any finite number can be right.
SENSOR_UNIT_FIELDS = {
    "rules[0].min",
    "rules[0].max",
    "rules[0].max_rate",
    "lens.scaling.v.mean",
    "lens.scaling.v.std",
    "lens.min_score",
}

# The smallest document in which every list table has one entry and every optional table exists, so
# that every field has a place to be set.
BASE: dict[str, Any] = {
    "serial": [{"name": "v-port", "url": "loop://"}],
    "rules": [{"channel": "v", "kind": "limits", "min": 0.0}],
    "lens": {"scaling": {"v": {}}, "register": {"lens_name": "x"}, "channels": ["v"]},
    "steps": {"plan": {"cards": [{"title": "c", "steps": [{"title": "s"}]}]}},
    "emulator": {"lenses": [{"lens_id": "l", "lens_name": "n"}]},
}


def _unwrap(annotation: Any) -> list[Any]:
    """The types a field may hold: `X | None` -> [X], `Annotated[X, ...]` -> [X]."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) for t in _unwrap(arg) if t is not type(None)]
    return [annotation]


def numeric_fields(
    model: type[BaseModel], doc: dict[str, Any], prefix: str = ""
) -> Iterator[tuple[str, dict[str, Any], str, type]]:
    """(field path, the dict that holds it in `doc`, its key, int or float) for every number."""
    for name, info in model.model_fields.items():
        key = info.alias or name
        for kind in _unwrap(info.annotation):
            origin, args = typing.get_origin(kind), typing.get_args(kind)
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                yield from numeric_fields(kind, doc.setdefault(key, {}), f"{prefix}{key}.")
            elif origin is list and args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
                yield from numeric_fields(args[0], doc[key][0], f"{prefix}{key}[0].")
            elif origin is dict and isinstance(args[1], type) and issubclass(args[1], BaseModel):
                first = next(iter(doc[key]))
                yield from numeric_fields(args[1], doc[key][first], f"{prefix}{key}.{first}.")
            elif kind in (int, float):
                yield f"{prefix}{key}", doc, key, kind


def _fields() -> list[tuple[str, type]]:
    doc = json.loads(json.dumps(BASE))
    return [(path, kind) for path, _, _, kind in numeric_fields(EdgeAgentConfig, doc)]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


def to_toml(doc: dict[str, Any]) -> str:
    """Top-level arrays first (they must precede every table header), then one table per section."""
    lines = [f"{key} = {_toml_value(value)}" for key, value in doc.items() if not isinstance(value, dict)]
    for key, value in doc.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()]
    return "\n".join(lines) + "\n"


def load_with(tmp_path: Path, field: str, value: Any) -> EdgeAgentConfig:
    doc = json.loads(json.dumps(BASE))
    for path, holder, key, _ in numeric_fields(EdgeAgentConfig, doc):
        if path == field:
            holder[key] = value
            break
    else:
        raise AssertionError(f"no field {field}")
    config_file = tmp_path / "bounds.toml"
    config_file.write_text(to_toml(doc))
    return load_config(config_file, {}, tmp_path)


def problem_of(tmp_path: Path, field: str, value: Any) -> str | None:
    try:
        load_with(tmp_path, field, value)
    except ConfigError as exc:
        reasons = [reason for path, reason in exc.problems if path == field]
        assert reasons, f"{field} = {value!r}: refused, but for other fields: {exc.problems}"
        return reasons[0]
    return None


def test_the_walk_finds_the_fields_and_the_base_document_is_valid(tmp_path: Path) -> None:
    fields = dict(_fields())
    assert len(fields) > 40
    # The fields issue 12 found, and fields of each nesting kind (list table, dict of tables, optional).
    for path in ("evidence.ring_seconds", "outbox.max_disk_mb", "serial[0].baudrate", "rules[0].stuck_for",
                 "lens.scaling.v.std", "emulator.band_k"):  # fmt: skip
        assert path in fields, path
    assert set(fields) >= SENSOR_UNIT_FIELDS, SENSOR_UNIT_FIELDS - set(fields)
    config_file = tmp_path / "base.toml"
    config_file.write_text(to_toml(BASE))
    load_config(config_file, {}, tmp_path)


@pytest.mark.parametrize(("field", "kind"), [f for f in _fields() if f[1] is float])
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_every_float_field_refuses_infinity_and_nan(
    tmp_path: Path, field: str, kind: type, value: float
) -> None:
    reason = problem_of(tmp_path, field, value)
    assert reason is not None, f"{field} = {value} was accepted"
    assert "finite" in reason or "duration" in reason or "stop bits" in reason, reason


@pytest.mark.parametrize(("field", "kind"), _fields())
def test_every_number_outside_the_bench_units_has_a_ceiling(tmp_path: Path, field: str, kind: type) -> None:
    """A huge finite value (1e300, 10**30) overflows whatever it ends up in (a deque's maxlen, a
    timedelta, int(), a C timeout); only values in the bench's own units may be that large."""
    huge: float | int = 1e300 if kind is float else 10**30
    reason = problem_of(tmp_path, field, huge)
    if field in SENSOR_UNIT_FIELDS:
        assert reason is None, f"{field}: a value in the bench's units must be allowed: {reason}"
    else:
        assert reason is not None, f"{field} = {huge!r} was accepted: give it an upper bound"


@pytest.mark.parametrize(
    "table",
    ['[lens.register]\nlens_name = "x"\nlens_config = {gain = inf}\n',
     '[emulator]\nfaults = {latency = {p = nan}}\n',
     '[[atlas.description_blocks]]\ntype = "p"\nweight = [1.0, -inf]\n'],
)  # fmt: skip
def test_free_form_tables_refuse_non_finite_numbers(tmp_path: Path, table: str) -> None:
    """lens_config, emulator faults and description blocks are sent as JSON, which has no inf/nan."""
    config_file = tmp_path / "free.toml"
    config_file.write_text(table)
    with pytest.raises(ConfigError, match="not a finite number"):
        load_config(config_file, {}, tmp_path)


def test_durations_refuse_overflowing_strings_and_env_values(tmp_path: Path) -> None:
    config_file = tmp_path / "d.toml"
    config_file.write_text('[lens]\nread_timeout = "99999999999999999999h"\n')
    with pytest.raises(ConfigError, match=r"lens\.read_timeout"):
        load_config(config_file, {}, tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"EDGE_AGENT_OUTBOX__MAX_DISK_MB": "inf"}, tmp_path)
    assert caught.value.problems[0][0] == "outbox.max_disk_mb"
    assert "EDGE_AGENT_OUTBOX__MAX_DISK_MB" in caught.value.problems[0][1]
