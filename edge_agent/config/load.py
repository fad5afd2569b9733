"""Loading the configuration: which file (`config_path_from`), reading it (`read_toml`), validating it
with the environment (`load_config`, every error a `ConfigError` naming file, field and reason), then
resolving secrets; and what the rest of the process may see of it (`secret_values` for the log
redactor, `masked_dump` for check-config)."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings.exceptions import SettingsError

from edge_agent.config.cross import FieldProblems
from edge_agent.config.model import EdgeAgentConfig, EnvValueError, load_inputs
from edge_agent.config_errors import ConfigError
from edge_agent.config_sources import (
    CONFIG_PATH_ENV,
    ENV_PREFIX,
    config_error,
    env_field,
    env_problems,
    home_dir,
    resolve_secrets,
)

DEFAULT_CONFIG_PATH = Path("/etc/edge-agent/config.toml")


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
    token = load_inputs.set((document, env))
    try:
        config = _validate(path, env)
    finally:
        load_inputs.reset(token)
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
            cause = error.get("ctx", {}).get("error")
            if isinstance(cause, FieldProblems):  # checks across tables, each naming its own field
                problems += cause.problems
                continue
            field = _field_path(tuple(error["loc"]))
            reason = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
            problems.append((field, reason))
        raise config_error(path, problems, env) from None


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
