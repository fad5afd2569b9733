"""pytest plugin: each test of a suite becomes a step of the edge-agent's Atlas test run.

Installed with the package (entry point `pytest11`, name `edge_agent`) and off unless asked for, so
that installing edge-agent never changes anyone's test runs:

- `--edge-agent` (or ini `edge_agent = true`): every test is a step;
- otherwise only tests marked `@pytest.mark.edge_agent(name=..., card=...)` are (the marker also
  names a test's step or card, e.g. to match a step of the agent's `[steps.plan]`).

A step starts when the test's setup starts (after skip marks are evaluated: a test skipped by a mark
is no step at all) and ends when its teardown is over, with the verdict PASS (passed, or xpassed),
FAIL (the test failed), ERROR (its setup or teardown failed) or SKIP (skipped or xfailed once its
setup began: Atlas shows the step `todo`, its note saying why, unless anomalies happened during it).
The card is the test's module, or with `--edge-agent-card=class` its class (module-level tests keep
the module's card).

It talks to the agent's control API (`POST /steps/start`, `/steps/end`, and with `--edge-agent-end-run`
`/runs/end` when the session finishes) at `--edge-agent-url`, ini `edge_agent_url` or
`$EDGE_AGENT_CONTROL_URL` (default http://127.0.0.1:8321), with the bearer token of
`$EDGE_AGENT_CONTROL__TOKEN` or the file `$EDGE_AGENT_CONTROL__TOKEN_FILE`: the very variables the
agent reads for `control.token`, so one secret has one name. The token is sent in a header and never
printed. The client is the standard library's (no proxy, no redirects, a short timeout).

Never a failure of the user's own: an agent that cannot be reached (or refuses the token) gives one
warning and the plugin marks no more steps in that session; another refusal (409, 422) is warned once
per kind and the suite goes on. The only way the plugin changes a test's result is the opt-in
`--edge-agent-fail-on-failed-step`: a test that passed but whose step the agent judged `failed` (a
high-severity anomaly during it) is failed in its teardown, since the judgement comes when the step
ends (pytest counts it as an error at teardown), with the agent's note as the reason.

Steps are sequential (the agent runs one at a time): under pytest-xdist (`-n`) the plugin stays off.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.error
import urllib.request
import warnings
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ENV_URL = "EDGE_AGENT_CONTROL_URL"
ENV_TOKEN = "EDGE_AGENT_CONTROL__TOKEN"
ENV_TOKEN_FILE = "EDGE_AGENT_CONTROL__TOKEN_FILE"
DEFAULT_URL = "http://127.0.0.1:8321"
# Seconds per request: the agent answers from memory and one state write; an agent that takes longer
# is not there (a blackholed address costs this once, then the plugin is off).
DEFAULT_TIMEOUT = 5.0
MAX_NAME_CHARS = 100  # Atlas step titles, and the control API's limit
MAX_NOTE_CHARS = 300  # of a failure's message in the step's note (the API takes up to 500)
CARD_MODES = ("module", "class")
_PLACEHOLDER = re.compile(r"\{issue:([^{}]+)\}")


class EdgeAgentWarning(pytest.PytestWarning):
    """The plugin could not mark a step; the user's tests are not affected."""


class AgentUnreachable(Exception):
    """No answer, or an answer that means no request will succeed (401/403): the plugin goes off."""


class AgentRefused(Exception):
    """The agent answered this one request with an error (409, 422, 5xx): said once, the suite goes on."""


@dataclass(frozen=True)
class Settings:
    everything: bool
    url: str
    card_mode: str
    fail_on_failed_step: bool
    end_run: bool
    timeout: float

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        def option(dest: str) -> Any:
            value = config.getoption(dest)
            return config.getini(dest) if value is None else value

        card_mode = str(option("edge_agent_card") or "module")
        if card_mode not in CARD_MODES:
            choices = ", ".join(CARD_MODES)
            raise pytest.UsageError(f"edge_agent_card must be one of {choices}, not {card_mode!r}")
        try:
            timeout = float(option("edge_agent_timeout") or DEFAULT_TIMEOUT)
        except ValueError:
            raise pytest.UsageError("edge_agent_timeout must be a number of seconds") from None
        if not 0 < timeout <= 300:
            raise pytest.UsageError("edge_agent_timeout must be more than 0 and at most 300 seconds")
        url = option("edge_agent_url") or os.environ.get(ENV_URL) or DEFAULT_URL
        return cls(
            everything=bool(option("edge_agent")),
            url=str(url).rstrip("/"),
            card_mode=card_mode,
            fail_on_failed_step=bool(option("edge_agent_fail_on_failed_step")),
            end_run=bool(option("edge_agent_end_run")),
            timeout=timeout,
        )


def read_token() -> str | None:
    """The control token from the environment, read when the first step is marked (a session that
    marks none never reads it: a variable meant for the agent must not break unrelated test runs)."""
    token = os.environ.get(ENV_TOKEN, "").strip()
    if token:
        return token
    path = os.environ.get(ENV_TOKEN_FILE, "").strip()
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError) as exc:
        # The path is the user's setting, not a secret; the file's content is never shown.
        raise AgentUnreachable(f"{ENV_TOKEN_FILE}: cannot read {path} ({exc.__class__.__name__})") from None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the bearer token goes to the agent's address only, never where a redirect points


class ControlClient:
    """POSTs JSON to the control API with the stdlib: no proxy (the agent is on this host or the bench
    network, and a CI proxy must not see the token), no redirects, `timeout` seconds per request."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())
        self._token: str | None = None
        self._token_read = False

    def __repr__(self) -> str:
        return f"ControlClient({self.url!r})"  # never the token

    def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if not self._token_read:
            self._token, self._token_read = read_token(), True
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                answer = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            error = _error_text(exc)
            if exc.code in (401, 403):
                hint = f" (set {ENV_TOKEN} to the agent's control.token)" if exc.code == 401 else ""
                raise AgentUnreachable(
                    f"the agent refused the request: HTTP {exc.code} {error}{hint}"
                ) from None
            raise AgentRefused(f"HTTP {exc.code}: {error}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise AgentUnreachable(f"no answer from {self.url}: {reason}") from None
        return answer if isinstance(answer, dict) else {}


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read() or b"{}")
    except (OSError, ValueError):
        return ""
    return str(body.get("error", "")) if isinstance(body, dict) else ""


def step_name(name: str) -> str:
    """A step title Atlas takes (at most 100 characters): long names keep their start and a digest."""
    name = " ".join(name.split()) or "test"
    if len(name) <= MAX_NAME_CHARS:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return name[: MAX_NAME_CHARS - 9] + "~" + digest


def card_title(item: pytest.Item, mode: str) -> str:
    parts = item.nodeid.split("::")
    if mode == "class" and getattr(item, "cls", None) is not None and len(parts) > 2:
        return "::".join(parts[:-1])
    return parts[0]


def _message(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = str(getattr(crash, "message", "") or report.longreprtext or "")
    return " ".join(text.split())[:MAX_NOTE_CHARS]


def _skip_reason(report: pytest.TestReport) -> str:
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        return str(report.longrepr[2]).removeprefix("Skipped: ")[:MAX_NOTE_CHARS]
    return _message(report)


def verdict_of(reports: Mapping[str, pytest.TestReport]) -> tuple[str, str | None]:
    """(PASS | FAIL | ERROR | SKIP, a note) from a test's setup, call and teardown reports."""
    setup, call, teardown = reports.get("setup"), reports.get("call"), reports.get("teardown")
    if setup is not None and setup.failed:
        return "ERROR", f"error in setup: {_message(setup)}"
    if setup is not None and setup.skipped:
        return "SKIP", f"skipped: {_skip_reason(setup)}"
    if call is not None:
        if call.skipped:
            xfail = getattr(call, "wasxfail", None)
            return "SKIP", f"xfailed: {xfail}" if xfail is not None else f"skipped: {_skip_reason(call)}"
        if call.failed:
            return "FAIL", _message(call) or "failed"
    if teardown is not None and teardown.failed:
        return "ERROR", f"error in teardown: {_message(teardown)}"
    return "PASS", None


class StepMarker:
    """The plugin's state for one session (registered as a plugin by `pytest_configure`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = ControlClient(settings.url, settings.timeout)
        self.off: str | None = None  # why no more steps are marked in this session
        self.warned: set[str] = set()
        self.running: dict[str, str] = {}  # nodeid -> the step name it was started with
        self.reports: dict[str, dict[str, pytest.TestReport]] = {}
        self.counts = {"steps": 0, "failed_by_agent": 0}
        self.run_end: str | None = None
        self.used = False  # a step was asked for: only then does the session's summary say anything
        self.last_problem: str | None = None

    def _warn(self, message: str) -> None:
        if message not in self.warned:
            self.warned.add(message)
            warnings.warn(EdgeAgentWarning(message), stacklevel=2)

    def _post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
        if self.off is not None:
            return None
        self.used = True
        try:
            return self.client.post(path, body)
        except AgentUnreachable as exc:
            self.off = self.last_problem = str(exc)
            self._warn(f"edge-agent: {exc}; no test of this session is marked as a step from here on")
        except AgentRefused as exc:
            self.last_problem = f"{path} refused: {exc}"
            self._warn(f"edge-agent: {self.last_problem}")
        return None

    def _is_step(self, item: pytest.Item) -> bool:
        return self.settings.everything or item.get_closest_marker("edge_agent") is not None

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """Runs after the skip marks' own setup hook (tryfirst) and before the fixtures are set up."""
        if self.off is not None or not self._is_step(item):
            return
        marker = item.get_closest_marker("edge_agent")
        kwargs = marker.kwargs if marker is not None else {}
        name = step_name(str(kwargs.get("name") or item.name))
        card = str(kwargs.get("card") or card_title(item, self.settings.card_mode))
        if self._post("/steps/start", {"name": name, "card": card}) is not None:
            self.running[item.nodeid] = name
            self.counts["steps"] += 1

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, Any, None]:
        outcome = yield
        report: pytest.TestReport = outcome.get_result()
        if item.nodeid not in self.running:
            return
        self.reports.setdefault(item.nodeid, {})[report.when] = report
        if report.when == "teardown":
            self._end(item.nodeid, report)

    def _end(self, nodeid: str, teardown: pytest.TestReport) -> None:
        name = self.running.pop(nodeid)
        verdict, note = verdict_of(self.reports.pop(nodeid, {}))
        body: dict[str, Any] = {"name": name, "verdict": verdict}
        if note:
            body["note"] = note
        answer = self._post("/steps/end", body)
        if answer is None or not self.settings.fail_on_failed_step:
            return
        if verdict == "PASS" and answer.get("execution_status") == "failed":
            self.counts["failed_by_agent"] += 1
            teardown.outcome = "failed"
            # The agent writes an anomaly's issue as {issue:<incident-id>} until Atlas has filed it.
            why = _PLACEHOLDER.sub(r"of incident \1", str(answer.get("exception") or "no reason given"))
            teardown.longrepr = f"edge-agent judged the step {name!r} failed: {why}"

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.settings.end_run or self.off is not None or not self.counts["steps"]:
            return
        answer = self._post("/runs/end", {"note": "pytest session finished"})
        if answer is None:
            self.run_end = f"test run not ended: {self.last_problem}"  # the summary line says it too
        else:
            report = answer.get("report") or {}
            said = "report requested" if report.get("requested") else report.get("why") or "no report"
            self.run_end = f"test run ended ({said})"

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.used:
            return
        if self.off is not None:
            terminalreporter.write_line(f"edge-agent: steps not marked: {self.off}")
            return
        line = f"edge-agent: {self.counts['steps']} test(s) marked as steps at {self.settings.url}"
        if self.settings.fail_on_failed_step:
            line += f"; {self.counts['failed_by_agent']} failed by the agent's judgement"
        if self.run_end is not None:
            line += f"; {self.run_end}"
        terminalreporter.write_line(line)


# (flag, dest, help): each option has an ini setting of its dest's name, which the flag overrides.
_OPTIONS = (
    ("--edge-agent", "edge_agent", "every test is a step (default: only tests marked edge_agent)"),
    ("--edge-agent-url", "edge_agent_url", f"the agent's control API (or ${ENV_URL}; default {DEFAULT_URL})"),
    ("--edge-agent-card", "edge_agent_card", "a card per module (default) or per class"),
    ("--edge-agent-fail-on-failed-step", "edge_agent_fail_on_failed_step",
     "fail a passing test whose step the agent judged failed"),
    ("--edge-agent-end-run", "edge_agent_end_run",
     "end the agent's test run when the session finishes (its Atlas report is asked for)"),
    ("--edge-agent-timeout", "edge_agent_timeout",
     f"seconds per request to the agent (default {DEFAULT_TIMEOUT:g})"),
)  # fmt: skip
_FLAGS = frozenset({"edge_agent", "edge_agent_fail_on_failed_step", "edge_agent_end_run"})


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("edge-agent", "edge-agent: tests as steps of the bench's Atlas test run")
    for flag, dest, text in _OPTIONS:
        if dest in _FLAGS:
            group.addoption(flag, action="store_true", default=None, dest=dest, help=f"{text}; ini {dest}")
            parser.addini(dest, text, type="bool", default=False)
        else:
            choices = CARD_MODES if dest == "edge_agent_card" else None
            group.addoption(flag, default=None, dest=dest, choices=choices, help=f"{text}; ini {dest}")
            parser.addini(dest, text, default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "edge_agent(name=None, card=None): this test is a step of the edge-agent's Atlas test run"
        " (its step title and card, by default the test's name and module)",
    )
    if hasattr(config, "workerinput"):
        return  # a pytest-xdist worker: parallel tests cannot be the agent's one running step
    settings = Settings.from_config(config)
    if getattr(config.option, "numprocesses", None):
        if settings.everything:
            message = "edge-agent: steps are sequential; the plugin is off under pytest-xdist -n"
            config.issue_config_time_warning(EdgeAgentWarning(message), stacklevel=2)
        return
    config.pluginmanager.register(StepMarker(settings), "edge-agent-steps")
