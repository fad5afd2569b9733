"""`edge-agent healthcheck` / `python -m edge_agent.service.healthcheck`: exit 0 if the local control
API answers `GET /healthz` with 200, else 1. For container HEALTHCHECKs: standard library only, no
curl needed in a slim image, no token needed (liveness is open).
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

from edge_agent.config import ConfigError, config_path_from, load_config

DEFAULT_TIMEOUT = 3.0
# Not __doc__: the deployed agent runs with -OO (edge_agent.cli.DESCRIPTION says why).
DESCRIPTION = (
    "exit 0 if the local control API answers `GET /healthz` with 200, else 1 (for container HEALTHCHECKs)"
)
# A server bound to every address is reached on loopback from inside its own container.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "[::1]"}


# No proxies: an $http_proxy meant for the cloud APIs must not route a loopback probe away.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def url_from_listen(listen: str) -> str:
    host, _, port = listen.rpartition(":")
    host = _WILDCARDS.get(host, host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/healthz"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="health URL (default: from [control] listen in the config)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds (default 3)")


def probe(url: str, timeout: float) -> tuple[bool, str]:
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return response.status == 200, f"{url}: HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{url}: HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"{url}: {reason}"


def main(args: argparse.Namespace) -> int:
    url = args.url
    if not url:
        path = config_path_from(args.config)
        try:
            # A missing file is fine: the listen address then comes from defaults and environment.
            config = load_config(path if path.exists() else None)
        except ConfigError as exc:
            print(exc.render(), file=sys.stderr)
            return 1
        if not config.control.enabled:
            print("control API disabled in the config: nothing to probe", file=sys.stderr)
            return 0
        url = url_from_listen(config.control.listen)
    healthy, detail = probe(url, args.timeout)
    print(("healthy: " if healthy else "unhealthy: ") + detail, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


def run(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge_agent.service.healthcheck", description=DESCRIPTION)
    parser.add_argument("--config", metavar="PATH")
    add_arguments(parser)
    return main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(run())
