"""Configuration: TOML + env precedence, secret sources, errors that name file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    config_path_from,
    load_config,
    masked_dump,
    parse_duration,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "edge-agent.example.toml"


def write(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_example_config_loads_and_documents_every_section(tmp_path: Path) -> None:
    config = load_config(EXAMPLE, {}, tmp_path)
    assert config.agent.bench == "bench-03"
    assert config.serial[0].baudrate == 921600
    assert config.serial[0].columns[0] == "t_ms"
    assert config.lens.window_size == 128
    assert {rule.kind for rule in config.rules} == {"limits", "rate", "stuck", "dropout", "baseline"}
    assert config.rules[0].hold == pytest.approx(0.2)
    assert config.lens.ready_timeout == 120.0
    text = EXAMPLE.read_text()
    for section in type(config).model_fields:
        assert f"[{section}]" in text or f"[[{section}]]" in text, section


def test_defaults_without_file(tmp_path: Path) -> None:
    config = load_config(None, {}, tmp_path)
    assert config.serial == []
    assert config.control.listen == "127.0.0.1:8321"
    assert config.lens.api_key is None


def test_env_overrides_file_nested_with_double_underscore(tmp_path: Path) -> None:
    path = write(tmp_path, '[agent]\nbench = "from-file"\n[lens]\nwindow_size = 64\n')
    env = {"EDGE_AGENT_AGENT__BENCH": "from-env", "EDGE_AGENT_CONFIG": str(path)}
    config = load_config(path, env, tmp_path)
    assert config.agent.bench == "from-env"
    assert config.lens.window_size == 64


def test_config_path_precedence() -> None:
    assert config_path_from("a.toml", {"EDGE_AGENT_CONFIG": "b.toml"}) == Path("a.toml")
    assert config_path_from(None, {"EDGE_AGENT_CONFIG": "b.toml"}) == Path("b.toml")
    assert config_path_from(None, {}) == DEFAULT_CONFIG_PATH


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ("[agent]\nbench = 'x'\ntypo = 1\n", "agent.typo", "unknown key"),
        ("[nonsense]\n", "nonsense", "unknown key"),
        ("[[serial]]\nname='a'\nurl='loop://'\nbaudrate='fast'\n", "serial[0].baudrate", "valid integer"),
        ("[[serial]]\nname='a'\nurl='loop://'\nparity='Q'\n", "serial[0].parity", "'N'"),
        (
            "[[serial]]\nname='a'\nurl='loop://'\nmarker_regex='(unclosed'\n",
            "serial[0].marker_regex",
            "regular",
        ),
        (
            "[[serial]]\nname='a'\nurl='loop://'\ndevice_time='stamp'\n",
            "serial[0].device_time_unit",
            "the unit of device_time 'stamp' cannot be told",
        ),
        (
            "[[serial]]\nname='a'\nurl='loop://'\ndevice_time='t_ms'\ndevice_time_unit='min'\n",
            "serial[0].device_time_unit",
            "'auto'",
        ),
        (
            "[[serial]]\nname='a'\nurl='loop://'\ndevice_time_max_jump=0\n",
            "serial[0].device_time_max_jump",
            "greater",
        ),
        ("[[rules]]\nchannel='v'\nkind='limits'\n", "rules[0]", "needs min or max"),
        ("[[rules]]\nchannel='v'\nkind='limits'\nmin=1\nhold='soon'\n", "rules[0].hold", "not a duration"),
        ("[control]\nlisten='nowhere'\n", "control.listen", "HOST:PORT"),
        (
            "[[atlas.description_blocks]]\ntype='p'\ntext='{chanel} high'\n",
            "atlas.description_blocks",
            "unknown field(s) ['chanel']",
        ),
        ("[[atlas.description_blocks]]\ntext='{channel'\n", "atlas.description_blocks", "not a template"),
        ("[agent\n", "(syntax)", "line 1"),
    ],
)
def test_errors_name_file_field_and_reason(tmp_path: Path, text: str, field: str, reason: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, {}, tmp_path)
    rendered = caught.value.render()
    assert str(path) in rendered
    matching = [r for f, r in caught.value.problems if f == field]
    assert matching, caught.value.problems
    assert reason in matching[0]


LENS_KEYS = "[lens]\nlens_id = 'lns-x'\napi_key = 'k'\n"


@pytest.mark.parametrize(
    "port",
    [
        "format = 'csv'",  # the columns come from the device's header line
        "format = 'jsonl'",
        "format = 'kv'",
        "format = 'jsonl'\ncolumns = ['a']",  # jsonl and kv: channels are what the data holds
    ],
)
def test_channel_names_are_not_refused_where_the_port_names_them_only_when_data_comes(
    tmp_path: Path, port: str
) -> None:
    text = (
        f"[[serial]]\nname = 'p'\nurl = 'loop://'\n{port}\n"
        "[[rules]]\nchannel = 'zzz'\nkind = 'limits'\nmax = 1.0\n"
        f"{LENS_KEYS}channels = ['zzz']\n"
    )
    config = load_config(write(tmp_path, text), {}, tmp_path)
    assert config.rules[0].channel == "zzz" and config.lens.channels == ["zzz"]


def test_a_rule_without_source_needs_its_channel_on_one_port_of_those_named(tmp_path: Path) -> None:
    ports = (
        "[[serial]]\nname = 'p'\nurl = 'loop://'\ncolumns = ['a']\n"
        "[[serial]]\nname = 'q'\nurl = 'loop://'\ncolumns = ['b']\n"
    )
    rule = "[[rules]]\nchannel = '{}'\nkind = 'limits'\nmax = 1.0\n"
    assert load_config(write(tmp_path, ports + rule.format("b")), {}, tmp_path).rules[0].channel == "b"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, ports + rule.format("c")), {}, tmp_path)
    assert caught.value.problems == [
        ("rules[0].channel", "'c' is not a channel of any [[serial]] port (p: a; q: b)")
    ]


@pytest.mark.parametrize(
    ("lens", "field"),
    [
        ("lens_id = 'lns-x'\nchannels = []\n", "lens.channels"),
        ("[lens.register]\nlens_name = 'mine'\n", "lens.channels"),
        ("channels = ['a']\n", "lens.lens_id"),
    ],
)
def test_a_lens_that_is_on_needs_both_a_lens_and_channels(tmp_path: Path, lens: str, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, f"[lens]\n{lens}"), {}, tmp_path)
    assert [f for f, _ in caught.value.problems] == [field]
    assert "lens.enabled = false" in caught.value.problems[0][1]
    # Off, the same keys are kept for later and refused nowhere.
    assert not load_config(write(tmp_path, f"[lens]\nenabled = false\n{lens}"), {}, tmp_path).lens.enabled


def test_env_error_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"EDGE_AGENT_LENS__WINDOW_SIZE": "big"}, tmp_path)
    assert caught.value.problems[0][0] == "lens.window_size"
    assert "EDGE_AGENT_LENS__WINDOW_SIZE" in caught.value.problems[0][1]


@pytest.mark.parametrize("name", ["EDGE_AGENT_LENSE__LENS_ID", "EDGE_AGENT_LENS__LENSID"])
def test_unknown_env_keys_are_errors(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, {name: "x"}, tmp_path)
    assert "unknown key" in caught.value.render()
    assert name in caught.value.render()


def test_the_pytest_plugins_url_variable_is_not_the_agents_key(tmp_path: Path) -> None:
    """A shell that runs both the agent and a suite with the pytest plugin sets the plugin's URL
    variable and the token variable both read: the agent takes the token and ignores the URL."""
    config = load_config(
        None,
        {"EDGE_AGENT_CONTROL_URL": "http://127.0.0.1:9", "EDGE_AGENT_CONTROL__TOKEN": "t-1234"},
        tmp_path,
    )
    assert config.control.token is not None and config.control.token.get_secret_value() == "t-1234"
    with pytest.raises(ConfigError, match="EDGE_AGENT_CONTROL_URI"):  # any other stray name still is
        load_config(None, {"EDGE_AGENT_CONTROL_URI": "x"}, tmp_path)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml", {}, tmp_path)


def test_public_secret_env_names(tmp_path: Path) -> None:
    config = load_config(None, {"ATAI_API_KEY": "atai-123456", "ATLAS_TOKEN": "tok-123456", "ATLAS_URL": "https://x"},
                         tmp_path)  # fmt: skip
    assert config.lens.api_key is not None and config.lens.api_key.get_secret_value() == "atai-123456"
    assert config.atlas.token is not None and config.atlas.token.get_secret_value() == "tok-123456"
    assert config.atlas.url == "https://x"
    assert config.atlas.api_base == "https://x/api/v1"


def test_atlas_cli_files_in_home(tmp_path: Path) -> None:
    (tmp_path / ".atlas").mkdir()
    (tmp_path / ".atlas" / "token").write_text("home-token-xyz\n")
    (tmp_path / ".atlas" / "url").write_text("https://tenant.atlas.example\n")
    config = load_config(None, {}, tmp_path)
    assert config.atlas.token is not None and config.atlas.token.get_secret_value() == "home-token-xyz"
    assert config.atlas.url == "https://tenant.atlas.example"
    # The env names take precedence over ~/.atlas, as the Atlas CLI documents.
    config = load_config(None, {"ATLAS_TOKEN": "env-token-123", "ATLAS_URL": "https://env"}, tmp_path)
    assert config.atlas.token is not None and config.atlas.token.get_secret_value() == "env-token-123"
    assert config.atlas.url == "https://env"


def test_secret_files_and_systemd_credentials(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "atai_api_key").write_text("cred-key-123\n")
    (creds / "atlas_token").write_text("cred-token-123\n")
    key_file = tmp_path / "key.txt"
    key_file.write_text("file-key-123\n")
    path = write(tmp_path, f'[lens]\napi_key_file = "{key_file}"\n')
    env = {"CREDENTIALS_DIRECTORY": str(creds), "ATAI_API_KEY": "env-key-123", "ATLAS_TOKEN": "env-token-123"}
    config = load_config(path, env, tmp_path)
    # *_file beats the credentials dir, which beats the public env names.
    assert config.lens.api_key is not None and config.lens.api_key.get_secret_value() == "file-key-123"
    assert config.atlas.token is not None and config.atlas.token.get_secret_value() == "cred-token-123"


def test_missing_secret_file_names_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, f'[atlas]\ntoken_file = "{tmp_path / "nope"}"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, {}, tmp_path)
    assert caught.value.problems[0][0] == "atlas.token_file"


def test_masked_dump_never_shows_secrets(tmp_path: Path) -> None:
    config = load_config(
        None, {"ATAI_API_KEY": "atai-very-secret", "ATLAS_TOKEN": "atlas-very-secret"}, tmp_path
    )
    text = repr(masked_dump(config)) + repr(config) + str(config)
    assert "atai-very-secret" not in text
    assert "atlas-very-secret" not in text
    assert "**********" in text


@pytest.mark.parametrize(
    ("raw", "seconds"), [("200ms", 0.2), ("5s", 5.0), ("2m", 120.0), ("1h", 3600.0), (3, 3.0)]
)
def test_durations(raw: object, seconds: float) -> None:
    assert parse_duration(raw) == pytest.approx(seconds)
