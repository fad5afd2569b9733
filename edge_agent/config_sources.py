"""Where configuration comes from besides the TOML file: the environment, secret files, systemd
credentials and the Atlas CLI's `~/.atlas/`. Every read goes through one of the helpers here, so that
every way such a source can be unusable (missing, a directory, unreadable, not UTF-8, empty, a value
that cannot go in an HTTP header, a URL that is not one) ends in a `ConfigError` naming the config
file, the field and the source, never in a traceback.

Secrets resolve, first hit wins: the explicit value (file or env), the `*_file` setting,
`$CREDENTIALS_DIRECTORY/<name>` (systemd `LoadCredential=`), the public env name (`ATAI_API_KEY`,
`ATLAS_TOKEN`), then `~/.atlas/token`; AWS keys only from the explicit value or systemd credentials
(`aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`), the rest of the AWS chain being
botocore's. No message here ever contains a secret's value.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import SecretStr

from edge_agent.config_errors import ConfigError

if TYPE_CHECKING:
    from edge_agent.config import EdgeAgentConfig

ENV_PREFIX = "EDGE_AGENT_"
CONFIG_PATH_ENV = "EDGE_AGENT_CONFIG"
# Variables under EDGE_AGENT_ read by the agent's clients, not by the agent: the pytest plugin's URL of
# the control API (it shares the agent's EDGE_AGENT_CONTROL__TOKEN). Set in a shell both share, they
# must not stop the agent as unknown keys.
CLIENT_ENV = frozenset({"EDGE_AGENT_CONTROL_URL"})
# Variables outside EDGE_AGENT_* that the config reads, and the field each one stands for.
PUBLIC_ENV_FIELDS = {
    "ATAI_API_KEY": "lens.api_key",
    "ATLAS_TOKEN": "atlas.token",
    "ATLAS_URL": "atlas.url",
    "CREDENTIALS_DIRECTORY": "(systemd credentials)",
}
# A secret file is a token, not a document: anything larger is the wrong file.
MAX_SECRET_FILE_BYTES = 64 * 1024


def env_field(name: str) -> str:
    """`EDGE_AGENT_LENS__CHANNELS` -> `lens.channels`."""
    return ".".join(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))


def env_source(field: str, env: Mapping[str, str]) -> str | None:
    """The `EDGE_AGENT_` variable that set `field` (`agent.state_dir`, `rules[0].min`), or a table
    holding it, if any: an error then points at the variable (a unit file, `docker run -e`) instead of
    sending the reader to a config file that does not contain the value."""
    parts = [part.split("[", 1)[0] for part in field.split(".")]
    for cut in range(len(parts), 0, -1):
        name = ENV_PREFIX + "__".join(parts[:cut]).upper()
        if name in env:
            return name
    return None


def config_error(file: Path | None, problems: list[tuple[str, str]], env: Mapping[str, str]) -> ConfigError:
    """A `ConfigError` whose problems say which environment variable set their field, if one did."""
    annotated = []
    for field, reason in problems:
        name = env_source(field, env)
        if name is not None and "environment variable" not in reason:
            reason += f" (from environment variable {name})"
        annotated.append((field, reason))
    return ConfigError(file, annotated)


def _is_utf8(text: str) -> bool:
    # os.environ decodes bytes that are not UTF-8 as lone surrogates (PEP 383): such a value can be
    # neither logged as JSON nor sent in a request, so it is refused here rather than half-way through.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def env_problems(env: Mapping[str, str], sections: set[str]) -> list[tuple[str, str]]:
    """What is wrong with the environment before any value is parsed: `EDGE_AGENT_<X>` whose <X> names
    no section (pydantic-settings would silently ignore it), and values that are not UTF-8."""
    problems = []
    for name in sorted(env):
        if name.startswith(ENV_PREFIX) and name != CONFIG_PATH_ENV and name not in CLIENT_ENV:
            field = env_field(name)
            head = field.split(".", 1)[0]
            if head not in sections:
                problems.append((head, f"unknown key (from environment variable {name})"))
            elif not _is_utf8(env[name]):
                problems.append((field, f"not UTF-8 text (from environment variable {name})"))
        elif name in PUBLIC_ENV_FIELDS and not _is_utf8(env[name]):
            problems.append((PUBLIC_ENV_FIELDS[name], f"not UTF-8 text (from environment variable {name})"))
    return problems


def home_dir(env: Mapping[str, str]) -> Path | None:
    """`$HOME`, else the user's home from the password database; None when there is none (a container
    running as an arbitrary uid): `Path.home()` would raise there, and `~/.atlas` is optional."""
    if env.get("HOME"):
        return Path(env["HOME"])
    try:
        return Path(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:
        return None


def read_text_file(path: Path, field: str, config_file: Path | None, *, max_bytes: int) -> str:
    """The stripped text of a small UTF-8 file; `ConfigError` (naming `field` and `path`) when it is
    missing, a directory, unreadable, too large, not UTF-8 or empty."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise ConfigError(config_file, [(field, f"{path} does not exist")]) from None
    except IsADirectoryError:
        raise ConfigError(config_file, [(field, f"{path} is a directory, not a file")]) from None
    except OSError as exc:
        raise ConfigError(config_file, [(field, f"cannot read {path}: {exc.strerror}")]) from None
    if len(raw) > max_bytes:
        raise ConfigError(config_file, [(field, f"{path} is larger than {max_bytes} bytes")])
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(config_file, [(field, f"{path} is not UTF-8 text")]) from None
    if not text:
        raise ConfigError(config_file, [(field, f"{path} is empty")])
    return text


def header_safe(secret: str) -> bool:
    """A token goes into an `Authorization` header: visible ASCII only. A space, a newline (two lines
    pasted into a file) or a non-ASCII character would fail on the first request, not here."""
    return bool(secret) and all("!" <= char <= "~" for char in secret)


def http_url_problem(value: str) -> str | None:
    """Why `value` is not an absolute http(s) URL with a host, or None when it is one."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number in range)
    except ValueError as exc:
        return f"not a URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "expected an http:// or https:// URL with a host"
    if any(char.isspace() for char in value):
        return "a URL cannot contain spaces"
    return None


def _file_secret(path: Path, field: str, config_file: Path | None) -> SecretStr:
    text = read_text_file(path, field, config_file, max_bytes=MAX_SECRET_FILE_BYTES)
    if not header_safe(text):
        reason = f"{path} holds a space, control or non-ASCII character (not usable as a token)"
        raise ConfigError(config_file, [(field, reason)])
    return SecretStr(text)


def _resolve_one(
    explicit: SecretStr | None,
    field: str,
    file_setting: Path | None,
    credential: str,
    public_env: str | None,
    home_file: Path | None,
    env: Mapping[str, str],
    config_file: Path | None,
) -> SecretStr | None:
    if explicit is not None and explicit.get_secret_value():
        if not header_safe(explicit.get_secret_value()):
            reason = "holds a space, control or non-ASCII character (not usable as a token)"
            raise ConfigError(config_file, [(field, reason)])
        return explicit
    if file_setting is not None:
        return _file_secret(file_setting, f"{field}_file", config_file)
    creds = env.get("CREDENTIALS_DIRECTORY")
    if creds and _exists(Path(creds) / credential):
        return _file_secret(Path(creds) / credential, field, config_file)
    if public_env and env.get(public_env):
        value = env[public_env].strip()
        if not header_safe(value):
            reason = f"holds a space, control or non-ASCII character (from environment variable {public_env})"
            raise ConfigError(config_file, [(field, reason)])
        return SecretStr(value)
    if home_file is not None and _exists(home_file):
        return _file_secret(home_file, field, config_file)
    return None


def _exists(path: Path) -> bool:
    """Whether a secret source is there to be read. Anything at the path counts (a directory too, so
    that it is reported rather than skipped); a parent that cannot be searched counts as there, so the
    read reports the permission problem instead of the secret silently coming from elsewhere."""
    try:
        path.lstat()
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        return False
    except OSError:
        return True
    return True


def resolve_secrets(
    config: EdgeAgentConfig, env: Mapping[str, str], home: Path | None, config_file: Path | None
) -> None:
    """Fill the secret fields and `atlas.url` from their files, credentials and public env names."""
    atlas_dir = home / ".atlas" if home is not None else None
    config.lens.api_key = _resolve_one(
        config.lens.api_key, "lens.api_key", config.lens.api_key_file, "atai_api_key", "ATAI_API_KEY",
        None, env, config_file,
    )  # fmt: skip
    config.atlas.token = _resolve_one(
        config.atlas.token, "atlas.token", config.atlas.token_file, "atlas_token", "ATLAS_TOKEN",
        atlas_dir / "token" if atlas_dir else None, env, config_file,
    )  # fmt: skip
    config.control.token = _resolve_one(
        config.control.token, "control.token", config.control.token_file, "control_token", None,
        None, env, config_file,
    )  # fmt: skip
    # AWS: only the systemd credentials (or explicit values) land in the config; the AWS chain
    # (AWS_* environment, profiles, instance role) is botocore's own and is resolved by the S3 client.
    for name in ("access_key_id", "secret_access_key", "session_token"):
        value = _resolve_one(
            getattr(config.s3, name), f"s3.{name}", None, f"aws_{name}", None, None, env, config_file
        )
        setattr(config.s3, name, value)
    if config.atlas.url:
        return
    source, url = None, None
    if env.get("ATLAS_URL", "").strip():
        source, url = "environment variable ATLAS_URL", env["ATLAS_URL"].strip()
    elif atlas_dir is not None and _exists(atlas_dir / "url"):
        source = str(atlas_dir / "url")
        url = read_text_file(atlas_dir / "url", "atlas.url", config_file, max_bytes=4096)
    if url is not None:
        problem = http_url_problem(url)
        if problem is not None:
            raise ConfigError(config_file, [("atlas.url", f"{problem} (from {source})")])
        config.atlas.url = url


def missing_access(config: EdgeAgentConfig) -> list[tuple[str, str]]:
    """What a service that is on lacks after `resolve_secrets`: `run` cannot build a lens client
    without a key, and would run with Atlas silently off without its URL or token. Checked by
    `preflight` (run, a SIGHUP reload, check-config), not by `load_config`: the tools that read the
    config for something else (the emulators, the health check, an export) need neither."""
    problems = []
    lens = config.lens
    if lens.enabled and lens.channels and (lens.api_key is None or not lens.api_key.get_secret_value()):
        problems.append((
            "lens.api_key",
            "the lens is on and has no API key: set lens.api_key_file, the ATAI_API_KEY environment"
            " variable or the systemd credential atai_api_key (or lens.enabled = false)",
        ))  # fmt: skip
    atlas = config.atlas
    if atlas.enabled and not atlas.url:
        problems.append((
            "atlas.url",
            "Atlas is on and has no URL: set atlas.url, the ATLAS_URL environment variable or"
            " ~/.atlas/url (or atlas.enabled = false)",
        ))  # fmt: skip
    if atlas.enabled and (atlas.token is None or not atlas.token.get_secret_value()):
        problems.append((
            "atlas.token",
            "Atlas is on and has no token: set atlas.token_file, the ATLAS_TOKEN environment variable,"
            " the systemd credential atlas_token or ~/.atlas/token (or atlas.enabled = false)",
        ))  # fmt: skip
    return problems
