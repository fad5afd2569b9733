"""Logging: structlog, JSON lines off a TTY (journald, containers), console on one, and a redactor
that strips secrets from every record, ours and the libraries' (aiohttp, websockets) alike.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, WrappedLogger

REDACTED = "***"

# Keys whose values are secret whatever they hold (the lens create call echoes `api_key`).
SENSITIVE_KEYS = frozenset(
    {
        "api_key", "apikey", "token", "atlas_token", "authorization", "password", "secret", "bearer",
        # AWS (botocore's names, the environment's and the systemd credentials'): the key id too, as
        # it names the account's key pair.
        "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_security_token",
        "access_key_id", "secret_access_key", "session_token", "x-amz-security-token",
        "accesskeyid", "secretaccesskey", "sessiontoken",  # botocore's credential dicts (CamelCase)
    }
)  # fmt: skip
_BEARER_RE = re.compile(r"(?i)(bearer\s+)[^\s'\",}]+")


class SecretRedactor:
    """A structlog processor: replaces known secret values and sensitive keys anywhere in a record.

    Secrets shorter than 4 characters are not registered: replacing every "a" in every log line
    would destroy the logs without protecting anything.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        if len(secret) < 4 or secret in self._secrets:
            return
        self._secrets.add(secret)
        # Longest first so that a secret containing another is replaced whole.
        ordered = sorted(self._secrets, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(s) for s in ordered))

    def redact_text(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        return _BEARER_RE.sub(r"\1" + REDACTED, text)

    def redact(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, dict):
            return {
                k: (REDACTED if isinstance(k, str) and k.lower() in SENSITIVE_KEYS else self.redact(v))
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return type(value)(self.redact(v) for v in value)
        if isinstance(value, bytes | bytearray):
            return self.redact_text(bytes(value).decode("utf-8", "replace"))
        if isinstance(value, int | float | bool) or value is None:
            return value
        # Anything else (exceptions, paths, objects) is rendered now, so its repr is redacted too.
        return self.redact_text(str(value))

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        out: MutableMapping[str, Any] = {}
        for key, value in event_dict.items():
            if key.lower() in SENSITIVE_KEYS:
                out[key] = REDACTED
            elif key.startswith("_"):
                out[key] = value  # structlog internals (e.g. _record): not rendered
            else:
                out[key] = self.redact(value)
        return dict(out)


LEVELS = ("debug", "info", "warning", "error", "critical")


class _LogStreamHandler(logging.StreamHandler[TextIO]):
    """The stdlib stream handler, except when whoever read the logs went away (`edge-agent demo | head`,
    a restarted journal): the lines that follow go nowhere, quietly, instead of a "Logging error"
    traceback on stderr for each. The process goes on (a daemon keeps running); a command's own output
    to the closed pipe ends it (edge_agent.cli.main)."""

    def handleError(self, record: logging.LogRecord) -> None:
        if isinstance(sys.exc_info()[1], BrokenPipeError):
            # Not setStream: it would flush the broken stream first, and raise again.
            self.stream = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 (open for the handler's life)
            return
        super().handleError(record)


def setup_logging(
    level: str = "info",
    *,
    json: bool | None = None,
    stream: TextIO | None = None,
    secrets: Iterable[str] = (),
) -> SecretRedactor:
    """Configure structlog and the stdlib root logger; return the redactor so callers can add
    secrets learned later (e.g. on a config reload)."""
    out = stream if stream is not None else sys.stdout
    as_json = json if json is not None else not out.isatty()
    redactor = SecretRedactor(secrets)
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        timestamper,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redactor,
            renderer,
        ],
    )
    handler = _LogStreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Library chatter at INFO (every aiohttp access line) drowns the agent's own story.
    # botocore's DEBUG lines carry signed headers and bodies: never below WARNING.
    noisy_loggers = ("aiohttp.access", "websockets.client", "websockets.server")
    for noisy in (*noisy_loggers, "botocore", "boto3", "s3transfer", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return redactor


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
