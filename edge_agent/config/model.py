"""The whole configuration (`EdgeAgentConfig`, one field a TOML table, and `[agent]`, the bench's own
table) and the two places pydantic-settings reads it from during a load: the parsed TOML document and
the `EDGE_AGENT_*` environment, both from the mapping `load_config` was given."""

from __future__ import annotations

import contextvars
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

from edge_agent.config.atlas import AtlasSection
from edge_agent.config.control import ControlSection
from edge_agent.config.cross import FieldProblems, cross_problems
from edge_agent.config.detection import IncidentsSection, RuleSection
from edge_agent.config.emulator import EmulatorSection
from edge_agent.config.lens import LensSection
from edge_agent.config.memory import EvidenceSection, MemorySection
from edge_agent.config.runs import AnalysisSection, StepsSection
from edge_agent.config.serial_port import SerialPort
from edge_agent.config.storage import OutboxSection, RecorderSection, S3Section
from edge_agent.config.values import Section
from edge_agent.config_sources import CONFIG_PATH_ENV, ENV_PREFIX


class AgentSection(Section):
    bench: str = Field("bench", min_length=1, description="Bench name; appears in titles and tags.")
    state_dir: Path = Field(Path("/var/lib/edge-agent"), description="Outbox, lens session record, evidence.")


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
        problems = cross_problems(self)
        if problems:
            raise FieldProblems(problems)
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
load_inputs: contextvars.ContextVar[tuple[dict[str, Any], Mapping[str, str]]] = contextvars.ContextVar(
    "load_inputs"
)


class _TomlDataSource(PydanticBaseSettingsSource):
    """Feeds the already-parsed TOML document (parsed by us, to report syntax errors with the file)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return load_inputs.get()[0].get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(load_inputs.get()[0])


class EnvValueError(ValueError):
    """A complex field's environment value (a list, a table) that is not JSON. A ValueError, so that
    pydantic-settings' own handling is unchanged; `load._validate` finds it under the SettingsError that
    wraps it and names the variable."""

    def __init__(self, key: str, value: str, reason: str) -> None:
        self.key, self.value, self.reason = key, value, reason
        super().__init__(f"{key}: {reason}")


class _MappingEnvSource(EnvSettingsSource):
    """`EDGE_AGENT_*` variables from the mapping being loaded, without `EDGE_AGENT_CONFIG` (a path,
    not a field)."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        environ = {k: v for k, v in load_inputs.get()[1].items() if k != CONFIG_PATH_ENV}
        return parse_env_vars(environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)

    def decode_complex_value(self, field_name: str, field: Any, value: Any) -> Any:
        try:
            return super().decode_complex_value(field_name, field, value)
        except json.JSONDecodeError as exc:
            raise EnvValueError(field_name, str(value), f"not JSON ({exc})") from None
