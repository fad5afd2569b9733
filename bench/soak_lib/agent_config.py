"""The agent's config for the soak: one serial port on the simulator's link, the lens streaming to the
Archetype emulator with its anomaly labels switched off, one rule per (channel, fault kind) of the
simulated bench, Atlas on the emulator, steps from the stream markers.

Why lens labels are off: the emulator's band model flags fault windows too, so every sensor fault
would open a second, lens anomaly whose timing depends on window alignment and model warm-up (and
restarts at every new session). The soak checks the local rules against the oracle exactly; the lens
still streams every window, so websocket drops and server-side session ends are exercised for real.
"""

from __future__ import annotations

from pathlib import Path

from edge_agent.bench_sim.model import DEFAULT_CHANNELS
from edge_agent.bench_sim.scenario import _SOAK_MAGNITUDE

SAMPLE_RATE = 50.0
CLEAR_AFTER = 1.0
DROPOUT_AFTER = 0.5
STUCK_FOR = 1.0


def rules_toml() -> str:
    """Limits at half the fault magnitude (plus the channel's slow drift) held for 3 samples, so a
    one-sample spike is the rate rule's; rate at a fifth of a spike's jump per sample; stuck after 1 s
    (soak faults last >= 2 s); device dropout after 0.5 s without frames or at a link loss. All
    medium: a step's `failed` outcome then comes from its FAIL marker, as the oracle expects."""
    out: list[str] = []
    for spec in DEFAULT_CHANNELS:
        magnitude = _SOAK_MAGNITUDE[spec.name]
        band = 0.5 * magnitude + spec.drift_amplitude
        out += [
            "[[rules]]", f'channel = "{spec.name}"', 'kind = "limits"',
            f"min = {spec.nominal - band!r}", f"max = {spec.nominal + band!r}",
            'hold = "60ms"', "hold_samples = 3", f'clear_after = "{CLEAR_AFTER}s"', 'severity = "medium"',
            "[[rules]]", f'channel = "{spec.name}"', 'kind = "rate"',
            f"max_rate = {magnitude * SAMPLE_RATE * 0.2!r}", f'clear_after = "{CLEAR_AFTER}s"',
            'severity = "medium"',
            "[[rules]]", f'channel = "{spec.name}"', 'kind = "stuck"', f'stuck_for = "{STUCK_FOR}s"',
            f'clear_after = "{CLEAR_AFTER}s"', 'severity = "medium"',
        ]  # fmt: skip
    out += [
        "[[rules]]", 'channel = "*"', 'kind = "dropout"', f'dropout_after = "{DROPOUT_AFTER}s"',
        f'clear_after = "{CLEAR_AFTER}s"', 'severity = "medium"',
    ]  # fmt: skip
    return "\n".join(out)


def agent_config(
    *, state_dir: Path, link: Path, archetype_url: str, atlas_url: str, control_port: int
) -> str:
    columns = ", ".join(f'"{c}"' for c in ["t_ms", *(s.name for s in DEFAULT_CHANNELS)])
    lens_channels = ", ".join(f'"{s.name}"' for s in DEFAULT_CHANNELS[:4])
    return f"""
[agent]
bench = "soak"
state_dir = "{state_dir}"

[[serial]]
name = "bench"
url = "{link}"
columns = [{columns}]
device_time = "t_ms"
reconnect_min = "100ms"
reconnect_max = "1s"

[lens]
api_url = "{archetype_url}"
api_key = "emulator-atai-key"
lens_id = "lns-emulated-machine-state"
channels = [{lens_channels}]
window_size = 50
step_size = 50
anomaly_labels = []
ready_timeout = "30s"
connect_timeout = "5s"
read_timeout = "10s"

[atlas]
url = "{atlas_url}"
token = "emulator-atlas-token"
connect_timeout = "3s"
read_timeout = "10s"
upload_timeout = "30s"

[evidence]
ring_seconds = "30s"
pre = "3s"
post = "2s"
max_duration = "60s"

[incidents]
# The soak's faults are independent and at least 8 s apart; the rules that one fault trips (a step's
# edges trip the rate rule too) overlap it and still join its incident.
join_window = "1s"
update_after = "1s"

[steps]
system_id = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"

[outbox]
retry_base = "250ms"
retry_cap = "5s"
drain_deadline = "30s"

[control]
listen = "127.0.0.1:{control_port}"

{rules_toml()}
"""
