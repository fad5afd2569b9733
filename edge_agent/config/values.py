"""The value types every config section is built from: durations (`"200ms"`, `"5s"`, `"2m"`) and
their bounds, HTTP URLs, and `Section`, the base of every table (unknown keys and non-finite numbers
are errors).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator

from edge_agent.config_sources import http_url_problem

_DURATION_RE = re.compile(r"^\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|min|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> object:
    """`"200ms"`, `"5s"`, `"2m"`, `"1h"` or a bare number of seconds -> seconds as float."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '200ms', '5s', '2m'")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration (use e.g. '200ms', '5s', '2m', '1h')")
        return float(match["num"]) * _UNIT_SECONDS[match["unit"]]
    return value


# No duration the agent uses means anything beyond a month-long soak, and larger ones overflow what
# they end up in (a deque's maxlen, a timedelta, a socket timeout): refused here, not at run time.
MAX_DURATION_SECONDS = 30 * 86400.0
# A period or a timeout of 0 (or 1e-300) is a busy loop or an instant failure, never a setting.
MIN_INTERVAL_SECONDS = 0.001

Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0, le=MAX_DURATION_SECONDS)]
"""Seconds, 0 allowed (0 = off or at once): a hold, a clear delay, a margin."""
Interval = Annotated[
    float, BeforeValidator(parse_duration), Field(ge=MIN_INTERVAL_SECONDS, le=MAX_DURATION_SECONDS)
]
"""Seconds, at least 1 ms: a period, a timeout, a backoff step."""


def non_finite_path(value: Any, path: str = "") -> str | None:
    """Where a float that is not finite sits inside free-form data (tables, arrays), or None. Such a
    value passes the TOML parser (`inf`, `nan`) but not the JSON it is later sent as."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "(value)"
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = non_finite_path(item, f"{path}[{key!r}]" if isinstance(key, str) else f"{path}[{key}]")
        if found is not None:
            return found
    return None


def http_url(value: str) -> str:
    problem = http_url_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


class Section(BaseModel):
    """Base of every config table: unknown keys are errors (a typo must not be silently ignored), and
    no number is infinite or NaN: `allow_inf_nan=False` for typed numbers, the validator below for
    numbers inside free-form tables (lens_config, description blocks, emulator faults)."""

    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _finite_inside(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, dict | list):
            where = non_finite_path(value)
            if where is not None:
                raise ValueError(f"{where} is not a finite number (JSON has no inf or nan)")
        return value
