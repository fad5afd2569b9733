"""What the agent keeps and where: `[outbox]` (jobs for Atlas, on disk until done), `[recorder]` (every
frame in segment files) and `[s3]` (where finished segments go).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr, model_validator

from edge_agent.config.values import Duration, Interval, Section, http_url


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
    endpoint_url: Annotated[str, AfterValidator(http_url)] | None = Field(
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
