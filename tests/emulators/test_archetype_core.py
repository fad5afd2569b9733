"""Sans-I/O core of the Archetype emulator and its band lens model: plain and property tests,
time passed in, no sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.emulators.archetype_core import LensService, NoRunner, RequestError, parse_window
from edge_agent.emulators.archetype_session import FAILED, RUNNING, STALE
from edge_agent.emulators.lens_model import BandModel, band_model_factory

T0 = 1_779_428_775.0


def service(**overrides: object) -> LensService:
    kwargs: dict[str, object] = {
        "model_factory": band_model_factory(
            baseline_windows=2, k=1.0, normal_label="ok", anomaly_label="bad"
        ),
        "runner_slots": 2,
        "warmup": 1.0,
        "buffer_windows": 3,
        "inference_interval": 1.0,
        "seed": 1,
    }
    kwargs.update(overrides)
    svc = LensService(**kwargs)  # type: ignore[arg-type]
    svc.add_lens("lns-a", "Lens A", {}, T0, modifiable=False)
    return svc


def update(values: list[list[float]]) -> dict[str, object]:
    return {
        "type": "session.update",
        "event_data": {"type": "data.json", "event_data": {"sensor_data": values}},
    }


# -- band model ----------------------------------------------------------------------------------------


def test_band_model_learns_then_flags_values_outside_the_band() -> None:
    model = BandModel(baseline_windows=2, k=1.0, normal_label="ok", anomaly_label="bad")
    assert model.classify([[0.0, 1.0], [10.0, 10.0]])[0] == "ok"
    assert model.learning
    assert model.classify([[0.5, 1.0], [10.0, 10.0]])[0] == "ok"
    assert not model.learning
    # Channel 0 learned [0, 1], spread 1, k 1 -> band [-1, 2].
    assert model.classify([[-0.9, 1.9], [10.0, 10.0]])[0] == "ok"
    label, scores = model.classify([[2.5, 1.0], [10.0, 10.0]])
    assert label == "bad"
    assert scores["bad"] > 0.5
    # A constant channel gets a floor spread instead of flagging any change at all.
    assert model.classify([[0.5, 0.5], [10.0001, 10.0]])[0] == "ok"
    assert model.classify([[0.5, 0.5], [11.0, 10.0]])[0] == "bad"


def test_band_model_rejects_bad_windows_and_settings() -> None:
    model = BandModel(baseline_windows=1)
    model.classify([[1.0], [2.0]])
    with pytest.raises(ValueError, match="channels"):
        model.classify([[1.0]])
    with pytest.raises(ValueError):
        model.classify([])
    with pytest.raises(ValueError):
        BandModel(baseline_windows=0)
    with pytest.raises(ValueError):
        BandModel(adapt_rate=1.0)
    with pytest.raises(ValueError):
        BandModel(normal_label="x", anomaly_label="x")


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(
    baseline=st.lists(st.lists(finite, min_size=1, max_size=8), min_size=2, max_size=2),
    probe=st.lists(st.lists(finite, min_size=1, max_size=8), min_size=2, max_size=2),
)
def test_band_model_scores_sum_to_one_and_label_is_the_argmax(
    baseline: list[list[float]], probe: list[list[float]]
) -> None:
    model = BandModel(baseline_windows=1, k=2.0)
    model.classify(baseline)
    label, scores = model.classify(probe)
    assert sum(scores.values()) == pytest.approx(1.0)
    assert all(0.0 <= s <= 1.0 for s in scores.values())
    if label == "fault":
        assert scores["fault"] > 0.5
    else:
        assert label == "normal" and scores["normal"] >= 0.5
    # Values seen in the baseline are always normal.
    assert model.classify(baseline)[0] == "normal"


# -- parse_window ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        None,
        {"type": "data.text", "event_data": {"sensor_data": [[1.0]]}},
        {"type": "data.json"},
        {"type": "data.json", "event_data": {"sensor_data": []}},
        {"type": "data.json", "event_data": {"sensor_data": [1.0, 2.0]}},
        {"type": "data.json", "event_data": {"sensor_data": [[1.0], [1.0, 2.0]]}},
        {"type": "data.json", "event_data": {"sensor_data": [[True]]}},
        {"type": "data.json", "event_data": {"sensor_data": [[float("nan")]]}},
        {"type": "data.json", "event_data": {"sensor_data": [[1.0]], "sensor_metadata": "x"}},
    ],
)
def test_parse_window_rejects_with_a_reason(data: object) -> None:
    window, reason = parse_window(data)
    assert window is None
    assert reason


def test_parse_window_accepts_channel_first_ints_and_floats() -> None:
    window, reason = parse_window(
        {"type": "data.json", "event_data": {"sensor_data": [[1, 2.5], [3, 4]], "sensor_metadata": {}}}
    )
    assert window == [[1.0, 2.5], [3.0, 4.0]]
    assert reason == ""


# -- sessions ----------------------------------------------------------------------------------------------


def test_status_progression_slots_and_expiry() -> None:
    svc = service()
    a = svc.create_session({"lens_id": "lns-a"}, T0)
    svc.create_session({"lens_id": "lns-a"}, T0)
    with pytest.raises(NoRunner):
        svc.create_session({"lens_id": "lns-a"}, T0)
    with pytest.raises(RequestError) as missing:
        svc.create_session({"lens_id": "lns-x"}, T0)
    assert missing.value.status == 404

    reply = svc.handle_event(a.session_id, {"type": "session.status"}, T0 + 0.5)
    assert reply["session_status"] == "LensSessionStatus.SESSION_STATUS_REGISTERED"
    reply = svc.handle_event(a.session_id, {"type": "session.status"}, T0 + 1.0)
    assert reply["session_status"] == "LensSessionStatus.SESSION_STATUS_RUNNING"
    assert reply["session_start_timestamp"] == T0 + 1.0

    assert svc.due_to_expire(T0 + 5, expire_after=0) == []
    assert sorted(svc.due_to_expire(T0 + 5, expire_after=5)) == sorted(svc.sessions)
    svc.end_session(a.session_id, STALE, T0 + 5)
    assert svc.slots_in_use == 1
    assert svc.handle_event(a.session_id, {"type": "session.heartbeat"}, T0 + 6) == {
        "type": "error",
        "message": f"Unknown session id: {a.session_id}",
    }
    # Inactivity for the documented TTL expires a session too.
    assert len(svc.due_to_expire(T0 + 86400, expire_after=0)) == 1


def test_buffer_drops_when_full_and_outputs_fan_out_in_order() -> None:
    svc = service()
    s = svc.create_session({"lens_id": "lns-a"}, T0)
    assert (
        svc.handle_event(s.session_id, {"type": "session.read", "event_data": {"client_id": "a"}}, T0)[
            "event_data"
        ]
        is None
    )
    replies = [svc.handle_event(s.session_id, update([[float(i)]]), T0) for i in range(5)]
    assert [r["event_data"]["accepted"] for r in replies] == [True, True, True, False, False]
    assert s.counts.windows_dropped == 2
    assert s.infer(T0 + 0.5, 1.0) is None  # not RUNNING yet: nothing is produced
    s.refresh(T0 + 1.0)
    assert s.status == RUNNING
    outputs = [s.infer(T0 + 2 + i, 1.0) for i in range(4)]
    assert outputs[3] is None
    ids = [o.event_id for o in outputs if o is not None]
    assert ids == sorted(ids) and len(ids) == 3
    read = svc.handle_event(s.session_id, {"type": "session.read", "event_data": {"client_id": "a"}}, T0 + 9)
    assert [m["event_data"]["query_metadata"]["query_timestamp"] for m in read["event_data"]["messages"]] == [
        T0 + 2,
        T0 + 3,
        T0 + 4,
    ]
    assert s.counts.inferences == 3


def test_model_errors_become_inference_error_outputs() -> None:
    svc = service()
    s = svc.create_session({"lens_id": "lns-a"}, T0)
    s.refresh(T0 + 1)
    svc.handle_event(s.session_id, update([[1.0], [2.0]]), T0 + 1)
    svc.handle_event(s.session_id, update([[1.0]]), T0 + 1)  # channel count changes
    assert s.infer(T0 + 2, 1.0) is not None
    failed = s.infer(T0 + 3, 1.0)
    assert failed is not None
    assert failed.event["type"] == "inference.error"
    assert "channels" in failed.event["event_data"]["error_messages"][0]
    assert s.counts.inference_errors == 1


def test_failed_sessions_keep_their_slot_until_destroyed() -> None:
    svc = service(runner_slots=1)
    s = svc.create_session({"lens_id": "lns-a"}, T0)
    svc.fail_session(s.session_id, T0 + 2)
    assert s.status == FAILED
    assert svc.slots_in_use == 1
    with pytest.raises(NoRunner):
        svc.create_session({"lens_id": "lns-a"}, T0 + 3)
    reply = svc.handle_event(s.session_id, {"type": "session.destroy"}, T0 + 4)
    assert reply["event_data"]["session_status"] == "SESSION_STATUS_DESTROYED"
    assert svc.create_session({"lens_id": "lns-a"}, T0 + 5).runner == s.runner


def test_register_ids_are_prefixed_by_the_name_and_deterministic_with_a_seed() -> None:
    body = {"lens_config": {"lens_name": "Penmanshiel Turbine 7", "lens_config": {}}}
    first = service(seed=5).register_lens(body, T0)
    again = service(seed=5).register_lens(body, T0)
    assert first.lens_id == again.lens_id
    assert first.lens_id.startswith("lns-penmanshiel-turb-")  # "lns-" + name[:16]
