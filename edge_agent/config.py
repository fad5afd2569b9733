"""Configuration: one TOML file, overridden by `EDGE_AGENT_*` environment variables, secrets from
env, files, systemd credentials and the Atlas CLI's `~/.atlas/`.

Precedence, highest first:
  1. `EDGE_AGENT_<SECTION>__<KEY>` environment variables (nested with `__`),
  2. the TOML file (`--config PATH`, else `$EDGE_AGENT_CONFIG`, else `/etc/edge-agent/config.toml`),
  3. defaults.
Secrets (lens API key, Atlas token, control token) resolve, first hit wins: the explicit value
(file or env above), the `*_file` setting, `$CREDENTIALS_DIRECTORY/<name>` (systemd
`LoadCredential=`), the public env name (`ATAI_API_KEY`, `ATLAS_TOKEN`), then `~/.atlas/token`.

Every error names the file, the field path and the reason (`ConfigError`); the CLI exits 78.
"""

from __future__ import annotations

import contextvars
import os
import re
import string
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
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
from pydantic_settings.sources.utils import parse_env_vars

EX_CONFIG = 78
DEFAULT_CONFIG_PATH = Path("/etc/edge-agent/config.toml")
CONFIG_PATH_ENV = "EDGE_AGENT_CONFIG"
ENV_PREFIX = "EDGE_AGENT_"

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


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]

DeviceTimeUnit = Literal["auto", "s", "ms", "us", "ns"]
# A device clock running ahead of the host by more than this is a step, not a sparse recording replayed
# fast (README, "The device's clock"): 10 rows of a 1-row-a-minute logger, well under a 1 h DST/NTP step.
DEFAULT_DEVICE_TIME_MAX_JUMP = 600.0


class Section(BaseModel):
    """Base of every config table: unknown keys are errors (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class AgentSection(Section):
    bench: str = Field("bench", min_length=1, description="Bench name; appears in titles and tags.")
    state_dir: Path = Field(Path("/var/lib/edge-agent"), description="Outbox, lens session record, evidence.")


class SerialPort(Section):
    name: str = Field(min_length=1, description="Source name carried by every frame of this port.")
    url: str = Field(
        min_length=1, description="Any pyserial URL: /dev/tty*, by-id path, hwgrep://, socket://."
    )
    baudrate: int = Field(115200, gt=0)
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
    max_line_bytes: int = Field(4096, ge=16)
    marker_regex: str = Field(
        DEFAULT_MARKER_REGEX, description="Step marker lines; groups edge, name, verdict."
    )
    reconnect_min: Duration = 0.2
    reconnect_max: Duration = 5.0

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
    mean: float = 0.0
    std: float = Field(1.0, gt=0)


class LensRegister(Section):
    """A lens to register at start-up (instead of using an existing `lens_id`)."""

    lens_name: str = Field(min_length=1)
    lens_config: dict[str, Any] = Field(default_factory=dict)


class LensSection(Section):
    model_config = ConfigDict(extra="forbid", validate_default=True, populate_by_name=True)

    enabled: bool = True
    api_url: str = "https://api.u1.archetypeai.app/v0.5"
    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    lens_id: str = ""
    register_spec: LensRegister | None = Field(
        None, alias="register", description="Register this lens at start."
    )
    source: str = Field("", description="Serial source that feeds the lens; empty = the first port.")
    channels: list[str] = Field(default_factory=list, description="Channel order of the windows.")
    window_size: int = Field(128, ge=1)
    step_size: int = Field(128, ge=1)
    missing: Literal["hold", "zero", "skip"] = Field(
        "hold", description="A missing/NaN value: repeat the last value, use 0, or drop the sample."
    )
    scaling: dict[str, ChannelScale] = Field(default_factory=dict, description="Fixed z-score per channel.")
    max_gap: Duration = Field(
        0.0,
        ge=0,
        description="A pause between frames longer than this starts a new window (0: only a dropout does).",
    )
    max_windows_per_second: float = Field(1.0, gt=0)
    max_in_flight: int = Field(20, ge=1)
    queue_windows: int = Field(
        20, ge=1, description="Windows kept waiting; beyond this the oldest is dropped."
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
    read_interval: Duration = 1.0
    client_id: str = Field("", description="session.read client id; empty = generated once and persisted.")
    sensor_id: str = ""
    heartbeat_interval: Duration = 30.0
    ready_timeout: Duration = 120.0
    status_poll_interval: Duration = 1.0
    connect_timeout: Duration = 10.0
    read_timeout: Duration = 30.0
    reap_unknown_creates: bool = Field(
        True,
        description="After a session create whose answer was lost, destroy the session it may have made"
        " (same lens, registered at that time, no client connected).",
    )
    clock_skew: Duration = Field(
        60.0, description="Allowed difference between this host's clock and the lens service's (that match)."
    )
    anomaly_labels: list[str] = Field(default_factory=lambda: ["fault"])
    min_score: float | None = None
    anomaly_severity: Literal["low", "medium", "high"] = "high"
    anomaly_hold_windows: int = Field(1, ge=1, description="Anomalous inferences in a row before it opens.")
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
    url: str | None = Field(
        None, description="https://<tenant>.atlas.arenaphysica.com; else ATLAS_URL, ~/.atlas/url"
    )
    token: SecretStr | None = None
    token_file: Path | None = None
    session_title: str = "{bench} run {started:%Y-%m-%d %H:%M}"
    connect_timeout: Duration = 10.0
    read_timeout: Duration = 30.0
    upload_timeout: Duration = 120.0
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
    min: float | None = None
    max: float | None = None
    max_rate: float | None = Field(None, gt=0, description="rate: units per second.")
    stuck_for: Duration | None = None
    dropout_after: Duration | None = None
    baseline_file: Path | None = None
    baseline_warmup: Duration = 30.0
    baseline_k: float = Field(6.0, gt=0)
    hold: Duration = 0.0
    hold_samples: int = Field(1, ge=1)
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


class EvidenceSection(Section):
    ring_seconds: Duration = 120.0
    pre: Duration = 10.0
    post: Duration = 5.0
    max_duration: Duration = 300.0


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
        10.0,
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


class OutboxSection(Section):
    max_jobs: int = Field(100_000, ge=1)
    max_disk_mb: float = Field(512.0, gt=0)
    retry_base: Duration = 0.5
    retry_cap: Duration = 60.0
    drain_deadline: Duration = 20.0


class ControlSection(Section):
    enabled: bool = True
    listen: str = "127.0.0.1:8321"
    token: SecretStr | None = None
    token_file: Path | None = None

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
    runner_slots: int = Field(2, ge=1)
    warmup: Duration = 2.0
    inference_interval: Duration = 1.0
    buffer_windows: int = Field(20, ge=1)
    baseline_windows: int = Field(5, ge=1)
    band_k: float = Field(4.0, gt=0)
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
    incidents: IncidentsSection = Field(default_factory=IncidentsSection)
    steps: StepsSection = Field(default_factory=StepsSection)
    outbox: OutboxSection = Field(default_factory=OutboxSection)
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


class _MappingEnvSource(EnvSettingsSource):
    """`EDGE_AGENT_*` variables from the mapping being loaded, without `EDGE_AGENT_CONFIG` (a path,
    not a field)."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        environ = {k: v for k, v in _load_inputs.get()[1].items() if k != CONFIG_PATH_ENV}
        return parse_env_vars(environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


class ConfigError(Exception):
    """A configuration that cannot be used. `problems` are (field path, reason) pairs."""

    def __init__(self, file: Path | None, problems: list[tuple[str, str]]) -> None:
        self.file = file
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        where = str(self.file) if self.file else "(no config file)"
        lines = [f"configuration error in {where}:"]
        lines += [f"  {field}: {reason}" for field, reason in self.problems]
        return "\n".join(lines)


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


def _env_name(loc: tuple[int | str, ...], environ: Mapping[str, str]) -> str | None:
    """The EDGE_AGENT_ variable that supplied `loc`, if any (so the error points at it, not the file)."""
    parts = [str(p) for p in loc if not isinstance(p, int)]
    for cut in range(len(parts), 0, -1):
        name = ENV_PREFIX + "__".join(parts[:cut]).upper()
        if name in environ:
            return name
    return None


def read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(path, [("(file)", "not found")]) from None
    except OSError as exc:
        raise ConfigError(path, [("(file)", f"cannot be read: {exc.strerror}")]) from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(path, [("(file)", "is not UTF-8 text")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [("(syntax)", str(exc))]) from None


def load_config(
    path: Path | None,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> EdgeAgentConfig:
    """Load and validate the configuration; raise `ConfigError` naming file, field and reason.

    `path=None` loads defaults plus environment only (used by tools that need no file).
    """
    env = dict(os.environ if environ is None else environ)
    document = read_toml(path) if path is not None else {}
    token = _load_inputs.set((document, env))
    try:
        config = _validate(path, env)
    finally:
        _load_inputs.reset(token)
    resolve_secrets(config, env, home if home is not None else Path.home(), path)
    return config


def _unknown_env_keys(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """`EDGE_AGENT_<X>` whose <X> names no section: pydantic-settings would silently ignore it."""
    sections = set(EdgeAgentConfig.model_fields)
    problems = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name == CONFIG_PATH_ENV:
            continue
        head = name[len(ENV_PREFIX) :].split("__", 1)[0].lower()
        if head not in sections:
            problems.append((head, f"unknown key (from environment variable {name})"))
    return problems


def _validate(path: Path | None, env: dict[str, str]) -> EdgeAgentConfig:
    unknown = _unknown_env_keys(env)
    if unknown:
        raise ConfigError(path, unknown)
    try:
        return EdgeAgentConfig()
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            loc = tuple(error["loc"])
            field = _field_path(loc)
            source = _env_name(loc, env)
            reason = error["msg"]
            if error["type"] == "extra_forbidden":
                reason = "unknown key"
            if source:
                reason += f" (from environment variable {source})"
            problems.append((field, reason))
        raise ConfigError(path, problems) from None


def _read_secret_file(path: Path, field: str, config_file: Path | None) -> SecretStr:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(config_file, [(field, f"cannot read {path}: {exc.strerror}")]) from None
    if not text:
        raise ConfigError(config_file, [(field, f"{path} is empty")])
    return SecretStr(text)


def _resolve_one(
    explicit: SecretStr | None,
    file_setting: Path | None,
    file_field: str,
    credential: str,
    public_env: str | None,
    home_file: Path | None,
    env: Mapping[str, str],
    config_file: Path | None,
) -> SecretStr | None:
    if explicit is not None and explicit.get_secret_value():
        return explicit
    if file_setting is not None:
        return _read_secret_file(file_setting, file_field, config_file)
    creds = env.get("CREDENTIALS_DIRECTORY")
    if creds and (Path(creds) / credential).is_file():
        return _read_secret_file(
            Path(creds) / credential, f"$CREDENTIALS_DIRECTORY/{credential}", config_file
        )
    if public_env and env.get(public_env):
        return SecretStr(env[public_env].strip())
    if home_file is not None and home_file.is_file():
        return _read_secret_file(home_file, str(home_file), config_file)
    return None


def resolve_secrets(
    config: EdgeAgentConfig, env: Mapping[str, str], home: Path, config_file: Path | None
) -> None:
    """Fill the secret fields from their files, credentials and public env names (see module doc)."""
    config.lens.api_key = _resolve_one(
        config.lens.api_key, config.lens.api_key_file, "lens.api_key_file", "atai_api_key", "ATAI_API_KEY",
        None, env, config_file,
    )  # fmt: skip
    config.atlas.token = _resolve_one(
        config.atlas.token, config.atlas.token_file, "atlas.token_file", "atlas_token", "ATLAS_TOKEN",
        home / ".atlas" / "token", env, config_file,
    )  # fmt: skip
    config.control.token = _resolve_one(
        config.control.token, config.control.token_file, "control.token_file", "control_token", None,
        None, env, config_file,
    )  # fmt: skip
    if not config.atlas.url:
        if env.get("ATLAS_URL"):
            config.atlas.url = env["ATLAS_URL"].strip()
        elif (home / ".atlas" / "url").is_file():
            config.atlas.url = (home / ".atlas" / "url").read_text(encoding="utf-8").strip() or None


def secret_values(config: EdgeAgentConfig) -> list[str]:
    """Every secret the config holds, for the log redactor."""
    found = [
        config.lens.api_key,
        config.atlas.token,
        config.control.token,
        config.emulator.api_key,
        config.emulator.atlas_token,
    ]
    return [s.get_secret_value() for s in found if s is not None and s.get_secret_value()]


def masked_dump(config: EdgeAgentConfig) -> dict[str, Any]:
    """The effective config as plain data with secrets shown as '**********' (for check-config)."""
    return config.model_dump(mode="json")
