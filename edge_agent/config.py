"""Configuration: one TOML file, overridden by `EDGE_AGENT_*` environment variables, secrets from
env, files, systemd credentials and the Atlas CLI's `~/.atlas/` (`config_sources`).

Precedence, highest first:
  1. `EDGE_AGENT_<SECTION>__<KEY>` environment variables (nested with `__`),
  2. the TOML file (`--config PATH`, else `$EDGE_AGENT_CONFIG`, else `/etc/edge-agent/config.toml`),
  3. defaults.

Every error names the file, the field path and the reason (`ConfigError`); the CLI exits 78. A value
that validates here must not kill `run` later: every number is finite and bounded on both sides (a
duration is at most `MAX_DURATION_SECONDS`, a period or timeout at least `MIN_INTERVAL_SECONDS`, a
count or size has a ceiling), except values in the bench's own units (limits, scaling), which only
have to be finite. tests/foundation/test_config_bounds.py holds every numeric field to that.
"""

from __future__ import annotations

import contextvars
import json
import math
import os
import re
import string
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError
from pydantic_settings.sources.utils import parse_env_vars

# Re-exported (`as`): the CLI and the commands import the errors and env names from here.
from edge_agent.config_errors import EX_CONFIG as EX_CONFIG
from edge_agent.config_errors import ConfigError as ConfigError
from edge_agent.config_errors import FieldError as FieldError
from edge_agent.config_sources import CONFIG_PATH_ENV as CONFIG_PATH_ENV
from edge_agent.config_sources import ENV_PREFIX as ENV_PREFIX
from edge_agent.config_sources import (
    env_field,
    env_problems,
    env_source,
    home_dir,
    http_url_problem,
    resolve_secrets,
)

DEFAULT_CONFIG_PATH = Path("/etc/edge-agent/config.toml")

DEFAULT_MARKER_REGEX = r"^#STEP\s+(?P<edge>START|END)\s+(?P<name>\S.*?)(?:\s+(?P<verdict>PASS|FAIL))?\s*$"

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


def _http_url(value: str) -> str:
    problem = http_url_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


DeviceTimeUnit = Literal["auto", "s", "ms", "us", "ns"]
# A device clock running ahead of the host by more than this is a step, not a sparse recording replayed
# fast (README, "The device's clock"): 10 rows of a 1-row-a-minute logger, well under a 1 h DST/NTP step.
DEFAULT_DEVICE_TIME_MAX_JUMP = 600.0


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


class AgentSection(Section):
    bench: str = Field("bench", min_length=1, description="Bench name; appears in titles and tags.")
    state_dir: Path = Field(Path("/var/lib/edge-agent"), description="Outbox, lens session record, evidence.")


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
    columns: list[str] = Field(default_factory=list, description="csv: column names; empty = header line.")
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


class ChannelScale(Section):
    mean: float = Field(0.0, description="In the channel's own unit: any finite value.")
    std: float = Field(1.0, gt=0, description="In the channel's own unit: any finite value > 0.")


class LensRegister(Section):
    """A lens to register at start-up (instead of using an existing `lens_id`)."""

    lens_name: str = Field(min_length=1)
    lens_config: dict[str, Any] = Field(default_factory=dict)


class LensSection(Section):
    model_config = ConfigDict(extra="forbid", validate_default=True, populate_by_name=True)

    enabled: bool = True
    api_url: Annotated[str, AfterValidator(_http_url)] = "https://api.u1.archetypeai.app/v0.5"
    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    lens_id: str = ""
    register_spec: LensRegister | None = Field(
        None, alias="register", description="Register this lens at start."
    )
    source: str = Field("", description="Serial source that feeds the lens; empty = the first port.")
    channels: list[str] = Field(default_factory=list, description="Channel order of the windows.")
    # A window is sent as one JSON message: 65,536 samples a channel is far beyond what a lens takes.
    window_size: int = Field(128, ge=1, le=65536)
    step_size: int = Field(128, ge=1, le=65536)
    missing: Literal["hold", "zero", "skip"] = Field(
        "hold", description="A missing/NaN value: repeat the last value, use 0, or drop the sample."
    )
    scaling: dict[str, ChannelScale] = Field(default_factory=dict, description="Fixed z-score per channel.")
    max_gap: Duration = Field(
        0.0,
        ge=0,
        description="A pause between frames longer than this starts a new window (0: only a dropout does).",
    )
    max_windows_per_second: float = Field(1.0, ge=0.001, le=1000)
    max_in_flight: int = Field(20, ge=1, le=10_000)
    queue_windows: int = Field(
        20, ge=1, le=10_000, description="Windows kept waiting; beyond this the oldest is dropped."
    )
    # 8 MiB: the default 20 windows of 128 samples x 4 channels take 0.5 MB, and 16 windows of 1,024
    # samples x 10 channels still fit; what `queue_windows` alone cannot bound are long or wide windows
    # (20 of 65,536 samples x 8 channels would be ~500 MB). Sizes: lens.windower.window_bytes.
    queue_mb: float = Field(
        8.0,
        ge=0.01,
        le=1024,
        description="Memory for windows waiting to be sent (MiB); beyond it the oldest are dropped (the"
        " newest is always kept).",
    )
    reader: Literal["auto", "session_read", "sse"] = Field(
        "auto",
        description="Where the lens's outputs are read: session_read (polled on the websocket), sse (the"
        " consumer stream), or auto: session_read, switching to sse if no output comes (no_output_after).",
    )
    no_output_after: Duration = Field(
        120.0,
        gt=0,
        description="reader = auto: windows accepted and no output for this long means the lens routes its"
        " outputs to the other reader. Above the lens's warm-up (n-shot processing ~60-70 s, probes 90 s).",
    )
    read_interval: Interval = 1.0
    client_id: str = Field("", description="session.read client id; empty = generated once and persisted.")
    sensor_id: str = ""
    heartbeat_interval: Interval = 30.0
    ready_timeout: Interval = 120.0
    status_poll_interval: Interval = 1.0
    connect_timeout: Interval = 10.0
    read_timeout: Interval = 30.0
    reap_unknown_creates: bool = Field(
        True,
        description="After a session create whose answer was lost, destroy the session it may have made"
        " (same lens, registered at that time, no client connected).",
    )
    clock_skew: Duration = Field(
        60.0, description="Allowed difference between this host's clock and the lens service's (that match)."
    )
    anomaly_labels: list[str] = Field(default_factory=lambda: ["fault"])
    min_score: float | None = Field(
        None, description="Inference score below which an anomalous label is ignored."
    )
    anomaly_severity: Literal["low", "medium", "high"] = "high"
    anomaly_hold_windows: int = Field(
        1, ge=1, le=10_000, description="Anomalous inferences in a row before it opens."
    )
    anomaly_clear_after: Duration = 2.0


# Anomaly fields a description block template may name (the evidence summary's, plus the issue title).
DESCRIPTION_FIELDS = (
    "id", "bench", "run_id", "title", "rule_id", "source", "channel", "kind", "description", "severity",
    "priority", "measure", "threshold", "peak_value", "peak_excursion", "samples", "started_at", "opened_at",
    "peak_at", "label", "scores",
)  # fmt: skip


def _template_fields(value: Any) -> list[str]:
    """Every `{field}` named by the strings of a block template (nested tables and arrays too)."""
    if isinstance(value, str):
        names = []
        for _, field_name, _, _ in string.Formatter().parse(value):
            if field_name is not None:
                names.append(re.split(r"[.\[]", field_name, maxsplit=1)[0])
        return names
    if isinstance(value, dict):
        return [name for item in value.values() for name in _template_fields(item)]
    if isinstance(value, list):
        return [name for item in value for name in _template_fields(item)]
    return []


class AtlasSection(Section):
    enabled: bool = True
    url: Annotated[str, AfterValidator(_http_url)] | None = Field(
        None, description="https://<tenant>.atlas.arenaphysica.com; else ATLAS_URL, ~/.atlas/url"
    )
    token: SecretStr | None = None
    token_file: Path | None = None
    session_title: str = "{bench} run {started:%Y-%m-%d %H:%M}"
    connect_timeout: Interval = 10.0
    read_timeout: Interval = 30.0
    upload_timeout: Interval = 120.0
    upload_attempts: int = Field(
        4,
        ge=1,
        le=1000,
        description="Attempts of an evidence upload that fails (5xx, no answer) while the rest of Atlas"
        " answers, before the issue is filed without that evidence (kept locally, retried on its own).",
    )
    evidence_retry_first: Interval = Field(
        10.0,
        description="Wait before the first retry of evidence Atlas refused (413, 5xx on uploads, no"
        " attachment id); doubles after each refusal of the same form, up to evidence_retry_cap.",
    )
    evidence_retry_cap: Interval = Field(
        900.0, description="Longest wait between two retries of refused evidence."
    )
    evidence_retry_max_age: Interval = Field(
        3 * 86400.0,
        description="Refused evidence still not delivered after this long is kept on disk and said so"
        " in a final comment (below the outbox's own 7-day bound, so the comment is posted).",
    )
    evidence_retry_attempts: int = Field(
        400,
        ge=1,
        le=100_000,
        description="At most this many retries of one refused evidence, whatever their age.",
    )
    description_blocks: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Issue description blocks; strings are templates of anomaly fields ({channel}, ...)."
        " Empty sends []. INFERRED: the block grammar is not public.",
    )

    @field_validator("description_blocks")
    @classmethod
    def _known_template_fields(cls, blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        try:
            names = _template_fields(blocks)
        except ValueError as exc:  # an unbalanced brace
            raise ValueError(f"not a template: {exc}") from None
        unknown = sorted({name for name in names if name not in DESCRIPTION_FIELDS})
        if "" in unknown:
            raise ValueError("a template uses {} without a field name")
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}; known: {', '.join(DESCRIPTION_FIELDS)}")
        return blocks

    @property
    def api_base(self) -> str:
        return (self.url or "").rstrip("/") + "/api/v1"


RuleKind = Literal["limits", "rate", "stuck", "dropout", "baseline"]
Severity = Literal["low", "medium", "high"]


class RuleSection(Section):
    channel: str = Field(min_length=1)
    source: str = ""
    kind: RuleKind
    min: float | None = Field(None, description="limits: in the channel's unit (any finite value).")
    max: float | None = Field(None, description="limits: in the channel's unit (any finite value).")
    max_rate: float | None = Field(None, gt=0, description="rate: the channel's units per second.")
    stuck_for: Duration | None = None
    dropout_after: Duration | None = None
    baseline_file: Path | None = Field(
        None,
        description="baseline: a fixed band from this JSON file (channel -> median, mad), not learned.",
    )
    baseline_warmup: Duration = Field(
        7200.0,
        description="baseline: no verdict until this much data was seen (at start and after a relearn).",
    )
    baseline_k: float = Field(10.0, gt=0, le=1000, description="baseline: band half-width in robust sigmas.")
    baseline_window: Duration = Field(
        14400.0,
        description="baseline: the band is learned from this much recent data; 0 = learn once (static).",
    )
    baseline_update: Interval = Field(
        120.0, description="baseline: the band is recomputed this often (one block of samples)."
    )
    baseline_relearn_after: Duration = Field(
        600.0,
        description="baseline: a gap in the data longer than this forgets the band (learn anew); 0 = never.",
    )
    hold: Duration = 0.0
    hold_samples: int | None = Field(
        None,
        ge=1,
        le=10_000_000,
        description="Active samples in a row before it opens; default 3 for baseline, 1 for the others.",
    )
    clear_after: Duration = 2.0
    severity: Severity = "medium"

    @model_validator(mode="after")
    def _kind_has_its_parameters(self) -> RuleSection:
        needs: dict[str, tuple[str, ...]] = {
            "limits": ("min", "max"),
            "rate": ("max_rate",),
            "stuck": ("stuck_for",),
            "dropout": ("dropout_after",),
        }
        wanted = needs.get(self.kind, ())
        if wanted and all(getattr(self, name) is None for name in wanted):
            raise ValueError(f"a '{self.kind}' rule needs {' or '.join(wanted)}")
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError("min must be below max")
        return self


# 64 MiB holds the default 2 min of the fastest ordinary source (8 channels at 3 Mbaud, 5,000 lines/s:
# ~81 bytes a row, ~49 MB) or of four 921,600-baud ones (1,536 lines/s: ~15 MB each) beside the other
# consumers' usual few MB; wider or faster input is cut by bytes (and the evidence says so) instead of
# growing the process. Their caps (recorder 16 + lens 8 + live page 3.5 MiB) leave the ring at least 36.
DEFAULT_EVIDENCE_MEMORY_MB = 64.0


class MemorySection(Section):
    data_path_mb: float = Field(
        DEFAULT_EVIDENCE_MEMORY_MB,
        ge=4.0,
        le=64 * 1024,
        description="Memory budget of the data path (MiB): what the evidence ring, the recorder's queue, the"
        " lens send queue and the live page hold together, so what the process may grow by with its input."
        " The ring holds what the others leave and gives way when they grow; their own caps"
        " (recorder.max_pending_mb, lens.queue_mb, the live page's 128 channels) must leave it a quarter.",
    )


class EvidenceSection(Section):
    # The ring holds every frame of this span in memory: an hour is already far past one incident's
    # evidence (pre + a part + post), and memory grows with it.
    ring_seconds: Interval = Field(
        120.0, le=3600.0, description="Frames kept in memory for evidence (at most 1 h)."
    )
    memory_mb: float | None = Field(
        None,
        ge=1.0,
        le=64 * 1024,
        description="The evidence ring's own cap within memory.data_path_mb (at most that), all sources"
        " together (MiB); unset: whatever the data path's other consumers leave. Past it the oldest"
        " frames of the source holding the most are dropped first.",
    )
    pre: Duration = 10.0
    post: Duration = 5.0
    max_duration: Interval = 300.0
    plots: bool = Field(
        True,
        description="Upload a PNG plot with each incident's evidence (drawn in a child process, 1-3 s of"
        " CPU a plot); false on a bench PC too slow to spare it.",
    )


GroupBy = Literal["bench", "source", "channels"]


class IncidentsSection(Section):
    """How related anomalies become one incident (one Atlas issue): see edge_agent/incidents/."""

    group_by: GroupBy = Field(
        "bench",
        description="Anomalies that may form one incident: the whole bench, one source, or channel groups.",
    )
    channel_groups: list[list[str]] = Field(
        default_factory=list,
        description="group_by = channels: lists of channels that fail together; others are a group each.",
    )
    join_window: Duration = Field(
        30.0,
        description="An anomaly starting this long after the incident's last activity still joins it;"
        " also the quiet time after which an incident closes.",
    )
    update_after: Duration = Field(
        5.0, description="Members that join are reported in one comment per this many seconds."
    )
    repeat_window: Duration = Field(
        1800.0,
        description="A new incident like one whose issue is still open becomes a comment on it only"
        " within this long since that issue's last activity.",
    )

    @model_validator(mode="after")
    def _groups_are_disjoint(self) -> IncidentsSection:
        seen: dict[str, int] = {}
        for index, group in enumerate(self.channel_groups):
            if not group:
                raise ValueError(f"channel_groups[{index}] is empty")
            for channel in group:
                if channel in seen and seen[channel] != index:
                    raise ValueError(
                        f"channel {channel!r} is in channel_groups[{seen[channel]}] and [{index}]"
                    )
                seen[channel] = index
        if self.group_by == "channels" and not self.channel_groups:
            raise ValueError("group_by = 'channels' needs channel_groups")
        return self


class PlanStep(Section):
    title: str = Field(min_length=1, max_length=100)
    description: str = ""


class PlanCard(Section):
    title: str = Field(min_length=1)
    description: str = ""
    steps: list[PlanStep] = Field(default_factory=list)


class StepsPlan(Section):
    run_title: str = "{bench} run {started:%Y-%m-%d %H:%M}"
    system_id: str = ""
    cards: list[PlanCard] = Field(default_factory=list)


class StepsSection(Section):
    source: Literal["markers", "api", "plan"] = "markers"
    test_run_id: str = ""
    system_id: str = ""
    plan: StepsPlan | None = None


class AnalysisSection(Section):
    """Atlas's analysis report of each test run (edge_agent/analysis): requested when the run ends,
    polled until it is finished, its summary posted on the run's issues and shown on /status."""

    enabled: bool = Field(
        True,
        description="When a test run ends (a clean shutdown, or POST /runs/end) ask Atlas for its analysis"
        " report of the run; needs Atlas and a test run (steps.test_run_id or a system id).",
    )
    per_failed_step: bool = Field(
        False, description="Also ask for a report of each step that ends failed (scope step)."
    )
    comment_on_issues: bool = Field(
        True, description="Post each finished report's summary as a comment on the issues of its run or step."
    )
    # An AI analysis over a run's files is minutes; the polls back off to outbox.retry_cap, so an hour is
    # about 60 polls. Counted on the outbox's clock: time the agent spent polling, not its downtime.
    poll_timeout: Interval = Field(
        3600.0,
        description="A report not finished after this long of polling is given up (said on /status).",
    )


class OutboxSection(Section):
    max_jobs: int = Field(100_000, ge=1, le=100_000_000)
    # 1 TiB: more than any bench PC's disk; above it the byte count stops meaning anything.
    max_disk_mb: float = Field(512.0, ge=1, le=1024 * 1024)
    retry_base: Interval = 0.5
    retry_cap: Interval = 60.0
    drain_deadline: Duration = 20.0


class RecorderSection(Section):
    """Every frame of every source, at full resolution, in gzip'd CSV segment files under
    `<state_dir>/recordings/` (edge_agent/recorder/): one per step and source, rotated by size and time."""

    enabled: bool = Field(True, description="Record every frame into segment files in the state dir.")
    # 2 GiB: about 9 days of a 50 Hz, 6-channel bench or 2 h at 3 Mbaud (bench/RESULTS.md, bytes per sample).
    max_disk_mb: float = Field(
        2048.0,
        ge=0.01,
        le=1024 * 1024,
        description="Disk budget of the recordings; past it the oldest uploaded segments are deleted"
        " first, then (counted, logged) the oldest not uploaded.",
    )
    segment_max_mb: float = Field(
        64.0,
        ge=0.001,
        le=1024 * 1024,
        description="A segment is closed (and uploaded) when its compressed size reaches this.",
    )
    segment_max_duration: Interval = Field(
        3600.0,
        description="A segment is closed when it spans this long (a step longer than this gets several).",
    )
    flush_interval: Interval = Field(
        1.0,
        le=60.0,
        description="Rows are compressed and written this often: what a SIGKILL can lose (plus the hand-off,"
        " 0.25 s).",
    )
    compression_level: int = Field(
        1, ge=1, le=9, description="gzip level: 1 is the measured CPU/size balance (bench_recorder.py)."
    )
    # 16 MiB: ~3 s of the fastest ordinary source (8 channels at 3 Mbaud, 5,000 frames/s at ~1 kB charged
    # each) with a writer that does not run at all (a segment's fsync on a slow card, a CPU busy with
    # something else); the writer takes a batch in milliseconds when it runs. Charged per frame by
    # recorder.frame_bytes, an upper bound of what a decoded frame holds.
    max_pending_mb: float = Field(
        16.0,
        ge=1,
        le=4096,
        description="Memory for frames waiting for the writer thread (MiB); past it frames are not"
        " recorded (counted, logged); detection never waits.",
    )

    @model_validator(mode="after")
    def _segment_fits_budget(self) -> RecorderSection:
        if self.segment_max_mb * 2 > self.max_disk_mb:
            raise ValueError("segment_max_mb must be at most half of max_disk_mb (the open segment plus one)")
        return self


class S3Section(Section):
    """Where finished segments are uploaded (edge_agent/s3/). Credentials: the standard AWS chain
    (AWS_* environment, `profile`, instance or container role) or systemd credentials
    (`$CREDENTIALS_DIRECTORY/aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`)."""

    bucket: str = Field("", description="Bucket for the recordings; empty = keep recordings local only.")
    prefix: str = Field("edge-agent", description="Key prefix: <prefix>/<bench>/<run>/<segment file>.")
    endpoint_url: Annotated[str, AfterValidator(_http_url)] | None = Field(
        None, description="S3-compatible endpoint (MinIO, a local S3); empty = AWS for the region."
    )
    region: str | None = Field(None, description="AWS region; empty = the AWS chain's (AWS_REGION, profile).")
    profile: str | None = Field(None, description="Named profile of ~/.aws/credentials and ~/.aws/config.")
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        "auto", description="path for most S3-compatible servers; auto lets botocore choose."
    )
    # 8 MiB: S3's minimum part is 5 MiB (the last excepted); 8 MiB is the AWS CLI's default.
    part_size_mb: float = Field(
        8.0,
        ge=0.0625,
        le=5120,
        description="Files larger than this go up in parts of this size (multipart, resumable). AWS"
        " needs at least 5; smaller only for S3-compatible servers that allow it.",
    )
    connect_timeout: Interval = 10.0
    read_timeout: Interval = 60.0
    access_key_id: SecretStr | None = Field(None, description="Prefer the AWS chain or systemd credentials.")
    secret_access_key: SecretStr | None = Field(
        None, description="Prefer the AWS chain or systemd credentials."
    )
    session_token: SecretStr | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.bucket)


_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$"
)


class ControlSection(Section):
    enabled: bool = True
    listen: str = "127.0.0.1:8321"
    token: SecretStr | None = None
    token_file: Path | None = None
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="DNS names clients may use to reach the API, besides IP addresses, localhost and the"
        " listen host; any other Host header is refused (DNS rebinding).",
    )
    live_page: bool = Field(
        True,
        description="The live bench page at the API's `/` (same address and token); false serves no page"
        " and feeds no frame to its tap.",
    )

    @field_validator("allowed_hosts")
    @classmethod
    def _hostnames(cls, names: list[str]) -> list[str]:
        cleaned = [name.strip().lower().rstrip(".") for name in names]
        bad = [name for name in cleaned if not _HOSTNAME_RE.match(name)]
        if bad:
            raise ValueError(f"not host names (no scheme, port or wildcard): {bad}")
        return cleaned

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:8321")
        return value


class EmulatedLens(Section):
    lens_id: str = Field(min_length=1)
    lens_name: str = Field(min_length=1)
    lens_config: dict[str, Any] = Field(default_factory=dict)


class EmulatorSection(Section):
    """The built-in Archetype lens and Atlas emulators (`edge-agent emulate`, `edge-agent demo`)."""

    host: str = "127.0.0.1"
    archetype_port: int = Field(0, ge=0, le=65535, description="0 = a free port.")
    atlas_port: int = Field(0, ge=0, le=65535, description="0 = a free port.")
    api_key: SecretStr = SecretStr("emulator-atai-key")
    atlas_token: SecretStr = SecretStr("emulator-atlas-token")
    runner_slots: int = Field(2, ge=1, le=1000)
    warmup: Duration = 2.0
    inference_interval: Interval = 1.0
    buffer_windows: int = Field(20, ge=1, le=10_000)
    baseline_windows: int = Field(5, ge=1, le=10_000)
    band_k: float = Field(4.0, gt=0, le=1000)
    normal_label: str = "normal"
    anomaly_label: str = "fault"
    lenses: list[EmulatedLens] = Field(
        default_factory=lambda: [
            EmulatedLens(lens_id="lns-emulated-machine-state", lens_name="Emulated Machine State"),
        ]
    )
    faults: dict[str, Any] = Field(default_factory=dict, description="Initial fault switches (see README).")


class EdgeAgentConfig(BaseSettings):
    """The whole configuration. Sections mirror the TOML tables."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    agent: AgentSection = Field(default_factory=AgentSection)
    serial: list[SerialPort] = Field(default_factory=list)
    lens: LensSection = Field(default_factory=LensSection)
    atlas: AtlasSection = Field(default_factory=AtlasSection)
    rules: list[RuleSection] = Field(default_factory=list)
    evidence: EvidenceSection = Field(default_factory=EvidenceSection)
    memory: MemorySection = Field(default_factory=MemorySection)
    incidents: IncidentsSection = Field(default_factory=IncidentsSection)
    steps: StepsSection = Field(default_factory=StepsSection)
    analysis: AnalysisSection = Field(default_factory=AnalysisSection)
    outbox: OutboxSection = Field(default_factory=OutboxSection)
    recorder: RecorderSection = Field(default_factory=RecorderSection)
    s3: S3Section = Field(default_factory=S3Section)
    control: ControlSection = Field(default_factory=ControlSection)
    emulator: EmulatorSection = Field(default_factory=EmulatorSection)

    @model_validator(mode="after")
    def _cross_checks(self) -> EdgeAgentConfig:
        names = [port.name for port in self.serial]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"serial port names must be unique (repeated: {', '.join(duplicates)})")
        if self.lens.source and self.serial and self.lens.source not in names:
            raise ValueError(f"lens.source {self.lens.source!r} is not the name of a [[serial]] port")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _MappingEnvSource(settings_cls), _TomlDataSource(settings_cls))


# What the load in progress reads: the parsed TOML document and the environment mapping. A
# ContextVar rather than os.environ/globals so that a test (or a SIGHUP reload) can load a config
# from any mapping without touching the process environment, and concurrent loads never mix.
_load_inputs: contextvars.ContextVar[tuple[dict[str, Any], Mapping[str, str]]] = contextvars.ContextVar(
    "_load_inputs"
)


class _TomlDataSource(PydanticBaseSettingsSource):
    """Feeds the already-parsed TOML document (parsed by us, to report syntax errors with the file)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return _load_inputs.get()[0].get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_load_inputs.get()[0])


class EnvValueError(ValueError):
    """A complex field's environment value (a list, a table) that is not JSON. A ValueError, so that
    pydantic-settings' own handling is unchanged; `_validate` finds it under the SettingsError that
    wraps it and names the variable."""

    def __init__(self, key: str, value: str, reason: str) -> None:
        self.key, self.value, self.reason = key, value, reason
        super().__init__(f"{key}: {reason}")


class _MappingEnvSource(EnvSettingsSource):
    """`EDGE_AGENT_*` variables from the mapping being loaded, without `EDGE_AGENT_CONFIG` (a path,
    not a field)."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        environ = {k: v for k, v in _load_inputs.get()[1].items() if k != CONFIG_PATH_ENV}
        return parse_env_vars(environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)

    def decode_complex_value(self, field_name: str, field: Any, value: Any) -> Any:
        try:
            return super().decode_complex_value(field_name, field, value)
        except json.JSONDecodeError as exc:
            raise EnvValueError(field_name, str(value), f"not JSON ({exc})") from None


def config_path_from(
    cli_path: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None
) -> Path:
    env = os.environ if environ is None else environ
    if cli_path:
        return Path(cli_path)
    if env.get(CONFIG_PATH_ENV):
        return Path(env[CONFIG_PATH_ENV])
    return DEFAULT_CONFIG_PATH


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(path, [("(file)", "not found")]) from None
    except IsADirectoryError:
        raise ConfigError(path, [("(file)", "is a directory, not a TOML file")]) from None
    except OSError as exc:
        raise ConfigError(path, [("(file)", f"cannot be read: {exc.strerror}")]) from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [("(file)", f"is not UTF-8 text (byte {exc.start})")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [("(syntax)", str(exc))]) from None


def load_config(
    path: Path | None,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
    *,
    secrets: bool = True,
) -> EdgeAgentConfig:
    """Load and validate the configuration; raise `ConfigError` naming file, field and reason.

    `path=None` loads defaults plus environment only (used by tools that need no file). `home` is
    where `~/.atlas` is looked for (default: `$HOME`, else the password database, else nowhere).
    `secrets=False` leaves the secrets unresolved (their files unread): for tools that talk to no
    service, such as `edge-agent backtest` on a laptop where the bench's credential files do not exist.
    """
    env = dict(os.environ if environ is None else environ)
    document = read_toml(path) if path is not None else {}
    token = _load_inputs.set((document, env))
    try:
        config = _validate(path, env)
    finally:
        _load_inputs.reset(token)
    if secrets:
        resolve_secrets(config, env, home if home is not None else home_dir(env), path)
    return config


def _validate(path: Path | None, env: dict[str, str]) -> EdgeAgentConfig:
    problems = env_problems(env, set(EdgeAgentConfig.model_fields))
    if problems:
        raise ConfigError(path, problems)
    try:
        return EdgeAgentConfig()
    except SettingsError as exc:
        raise ConfigError(path, [_settings_problem(exc, env)]) from None
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            loc = tuple(error["loc"])
            field = _field_path(loc)
            source = env_source(field, env)
            reason = error["msg"]
            if error["type"] == "extra_forbidden":
                reason = "unknown key"
            if source:
                reason += f" (from environment variable {source})"
            problems.append((field, reason))
        raise ConfigError(path, problems) from None


def _settings_problem(exc: SettingsError, env: Mapping[str, str]) -> tuple[str, str]:
    """(field, reason) for an environment value pydantic-settings could not decode."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, EnvValueError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, EnvValueError):
        suffix = "__" + cause.key.upper()
        for name in sorted(env):
            if (
                name.startswith(ENV_PREFIX)
                and env[name] == cause.value
                and (name.endswith(suffix) or name == ENV_PREFIX + cause.key.upper())
            ):
                return env_field(name), f"{cause.reason} (from environment variable {name})"
        return cause.key, f"{cause.reason} (from the environment)"
    return "(environment)", str(exc)


# AWS chain variables whose values are secret (botocore reads them itself; the redactor must know them).
AWS_SECRET_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


def secret_values(config: EdgeAgentConfig, environ: Mapping[str, str] | None = None) -> list[str]:
    """Every secret the config holds, and the AWS chain's from the environment, for the log redactor."""
    env = os.environ if environ is None else environ
    from_env = [env[name].strip() for name in AWS_SECRET_ENV if env.get(name, "").strip()]
    found = [
        config.lens.api_key,
        config.atlas.token,
        config.control.token,
        config.s3.access_key_id,
        config.s3.secret_access_key,
        config.s3.session_token,
        config.emulator.api_key,
        config.emulator.atlas_token,
    ]
    return [s.get_secret_value() for s in found if s is not None and s.get_secret_value()] + from_env


def masked_dump(config: EdgeAgentConfig) -> dict[str, Any]:
    """The effective config as plain data with secrets shown as '**********' (for check-config)."""
    return config.model_dump(mode="json")
