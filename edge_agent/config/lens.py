"""`[lens]`: the Archetype AI lens the frames are windowed into, and how its outputs become anomalies."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, SecretStr

from edge_agent.config.values import Duration, Interval, Section, http_url


class ChannelScale(Section):
    mean: float = Field(0.0, description="In the channel's own unit: any finite value.")
    std: float = Field(1.0, gt=0, description="In the channel's own unit: any finite value > 0.")


class LensRegister(Section):
    """A lens to register at start-up (instead of using an existing `lens_id`)."""

    lens_name: str = Field(min_length=1)
    lens_config: dict[str, Any] = Field(default_factory=dict)


class LensSection(Section):
    model_config = ConfigDict(extra="forbid", validate_default=True, populate_by_name=True)

    enabled: bool = Field(
        True, description="On with a lens (lens_id or [lens.register]): channels and an API key are needed."
    )
    api_url: Annotated[str, AfterValidator(http_url)] = "https://api.u1.archetypeai.app/v0.5"
    api_key: SecretStr | None = Field(
        None,
        description="Needed when the lens is on; else api_key_file, credential atai_api_key, ATAI_API_KEY.",
    )
    api_key_file: Path | None = None
    lens_id: str = Field("", description="The lens the windows go to; or [lens.register], or lens off.")
    register_spec: LensRegister | None = Field(
        None, alias="register", description="Register this lens at start."
    )
    source: str = Field("", description="Serial source that feeds the lens; empty = the first port.")
    channels: list[str] = Field(
        default_factory=list,
        description="Channel order of the windows; needed with lens_id or [lens.register]. On a csv port"
        " with columns, each must be one of them.",
    )
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
    max_windows_per_second: float = Field(
        1.0,
        ge=0.001,
        le=1000,
        description="Send rate to the lens; when windows come faster, each send takes the newest and the"
        " ones in between are not built.",
    )
    max_in_flight: int = Field(20, ge=1, le=10_000)
    queue_windows: int = Field(
        20,
        ge=1,
        le=10_000,
        description="Windows kept waiting; beyond this the oldest is dropped. Each send takes the newest"
        " waiting window; the older ones are dropped (superseded).",
    )
    # 8 MiB: the default 20 windows of 128 samples x 4 channels take 0.1 MB, and 100 windows of 1,024
    # samples x 10 channels still fit; what `queue_windows` alone cannot bound are long or wide windows
    # (20 of 65,536 samples x 8 channels would be ~84 MB). Sizes: lens.windower.window_bytes.
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
