"""`[emulator]`: the built-in Archetype lens and Atlas emulators of `edge-agent emulate` and `demo`."""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr

from edge_agent.config.values import Duration, Interval, Section


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
