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

The models live one module a concern (values, serial_port, lens, atlas, detection, memory, runs,
storage, control, emulator; the whole in model), loading in load; every name is re-exported here, so
`from edge_agent.config import ...` is the one way in for the code, the tests and scripts/config-reference.
"""

from __future__ import annotations

from edge_agent.config.atlas import DESCRIPTION_FIELDS, AtlasSection
from edge_agent.config.control import ControlSection
from edge_agent.config.detection import GroupBy, IncidentsSection, RuleKind, RuleSection, Severity
from edge_agent.config.emulator import EmulatedLens, EmulatorSection
from edge_agent.config.lens import ChannelScale, LensRegister, LensSection
from edge_agent.config.load import (
    AWS_SECRET_ENV,
    DEFAULT_CONFIG_PATH,
    config_path_from,
    load_config,
    masked_dump,
    read_toml,
    secret_values,
)
from edge_agent.config.memory import DEFAULT_EVIDENCE_MEMORY_MB, EvidenceSection, MemorySection
from edge_agent.config.model import AgentSection, EdgeAgentConfig, EnvValueError
from edge_agent.config.runs import AnalysisSection, PlanCard, PlanStep, StepsPlan, StepsSection
from edge_agent.config.serial_port import (
    DEFAULT_DEVICE_TIME_MAX_JUMP,
    DEFAULT_MARKER_REGEX,
    DeviceTimeUnit,
    SerialPort,
)
from edge_agent.config.storage import OutboxSection, RecorderSection, S3Section
from edge_agent.config.values import (
    MAX_DURATION_SECONDS,
    MIN_INTERVAL_SECONDS,
    Duration,
    Interval,
    Section,
    non_finite_path,
    parse_duration,
)

# The CLI and the commands import the errors and env names from here too.
from edge_agent.config_errors import EX_CONFIG, ConfigError, FieldError
from edge_agent.config_sources import CONFIG_PATH_ENV, ENV_PREFIX

__all__ = [
    "AWS_SECRET_ENV",
    "CONFIG_PATH_ENV",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_DEVICE_TIME_MAX_JUMP",
    "DEFAULT_EVIDENCE_MEMORY_MB",
    "DEFAULT_MARKER_REGEX",
    "DESCRIPTION_FIELDS",
    "ENV_PREFIX",
    "EX_CONFIG",
    "MAX_DURATION_SECONDS",
    "MIN_INTERVAL_SECONDS",
    "AgentSection",
    "AnalysisSection",
    "AtlasSection",
    "ChannelScale",
    "ConfigError",
    "ControlSection",
    "DeviceTimeUnit",
    "Duration",
    "EdgeAgentConfig",
    "EmulatedLens",
    "EmulatorSection",
    "EnvValueError",
    "EvidenceSection",
    "FieldError",
    "GroupBy",
    "IncidentsSection",
    "Interval",
    "LensRegister",
    "LensSection",
    "MemorySection",
    "OutboxSection",
    "PlanCard",
    "PlanStep",
    "RecorderSection",
    "RuleKind",
    "RuleSection",
    "S3Section",
    "Section",
    "SerialPort",
    "Severity",
    "StepsPlan",
    "StepsSection",
    "config_path_from",
    "load_config",
    "masked_dump",
    "non_finite_path",
    "parse_duration",
    "read_toml",
    "secret_values",
]
