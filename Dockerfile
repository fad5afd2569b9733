# syntax=docker/dockerfile:1
# edge-agent container image: `docker run ... edge-agent:latest` runs `edge-agent run`.
# Build: docker build -t edge-agent .      Smoke test: scripts/container-smoke
# Usage (serial device, config, secrets, state volume): systemd/README.md, section "Containers".

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a virtualenv with the package and its dependencies, wheels built here only ------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/edge-agent
WORKDIR /src
# Metadata first: a source-only change does not invalidate the dependency layer.
COPY pyproject.toml README.md ./
RUN mkdir -p edge_agent && touch edge_agent/__init__.py \
    && /opt/edge-agent/bin/pip install . \
    && /opt/edge-agent/bin/pip uninstall --yes edge-agent
COPY edge_agent ./edge_agent
RUN /opt/edge-agent/bin/pip install --no-deps . \
    && /opt/edge-agent/bin/python -m compileall -q -o 0 -o 2 /opt/edge-agent/lib

# --- runtime: the slim base, the virtualenv, a non-root user in dialout ---------------------------
FROM ${PYTHON_IMAGE} AS runtime
# dialout (gid 20 on Debian, as on most hosts) owns /dev/ttyUSB*/ttyACM* passed with --device.
RUN groupadd --system edge-agent \
    && useradd --system --gid edge-agent --groups dialout --home-dir /var/lib/edge-agent \
       --no-create-home --shell /usr/sbin/nologin edge-agent \
    && install -d -o edge-agent -g edge-agent -m 0750 /var/lib/edge-agent \
    && install -d -m 0755 /etc/edge-agent
COPY --from=build /opt/edge-agent /opt/edge-agent
ENV PATH=/opt/edge-agent/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    EDGE_AGENT_AGENT__STATE_DIR=/var/lib/edge-agent \
    MALLOC_ARENA_MAX=2 \
    MALLOC_MMAP_THRESHOLD_=131072 \
    PYTHONOPTIMIZE=2
# MALLOC_*, PYTHONOPTIMIZE: glibc's malloc and Python's -OO as systemd/edge-agent.service sets them (the
# reasons are there); the build step compiled the -OO bytecode.
# Outbox, lens session record, evidence: must outlive the container, or a restart loses queued reports.
VOLUME ["/var/lib/edge-agent"]
WORKDIR /var/lib/edge-agent
USER edge-agent:edge-agent
# The control API (loopback by default; set EDGE_AGENT_CONTROL__LISTEN=0.0.0.0:8321 and a token to publish).
EXPOSE 8321
# No curl in a slim image: the probe is the agent's own, standard library only.
HEALTHCHECK --interval=30s --timeout=5s --start-period=150s --retries=3 \
    CMD ["python", "-m", "edge_agent.service.healthcheck"]
ENTRYPOINT ["edge-agent"]
CMD ["run"]
