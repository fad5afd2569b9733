"""`[atlas]`: where and how issues are filed, evidence uploaded and retried, and what an issue's
description blocks may name.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Field, SecretStr, field_validator

from edge_agent.config.values import Interval, Section, http_url

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
    enabled: bool = Field(True, description="On, url and token are needed (check-config and run refuse it).")
    url: Annotated[str, AfterValidator(http_url)] | None = Field(
        None, description="https://<tenant>.atlas.arenaphysica.com; else ATLAS_URL, ~/.atlas/url"
    )
    token: SecretStr | None = Field(
        None, description="else token_file, the credential atlas_token, ATLAS_TOKEN, ~/.atlas/token"
    )
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
