"""Short soak of the ROS message path (the long one: `python -m physioser.bench.soak --hours 2`).

Four minutes of audio (speech, silences, noise, clipped speech) as CDR-serialised Int16MultiArray
messages of random size through EmotionCore with the small test model: stereo layouts, declared
rate changes, new publishers and gaps, malformed messages mixed in. Every malformed message is
refused with its reason, every event matches a clean run on the valid audio, the window count
adds up, and Python allocations do not grow.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from physioser.bench.soak import MALFORMED, MSG, Wire, _deliver, run_soak
from physioser.ros.core import EmotionCore, NodeConfig
from physioser.runtime import Engine, Streamer, load_profile
from tests.tinyser import export_tiny


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    _, path = export_tiny(tmp_path_factory.mktemp("soak"))
    return Engine.from_path(path, dataclasses.replace(load_profile(None), intra_op_threads=1))


def test_short_soak_through_the_ros_core_matches_clean_run(engine):
    result = run_soak(engine, audio_s=240.0, seed=3, malformed_rate=0.08, new_publisher_rate=0.15, gap_rate=0.1,
                      stereo_rate=0.2, sample_every_s=20.0, progress=False)
    assert result["failures"] == [] and result["passed"]
    assert result["audio_s"] >= 240.0
    assert result["malformed_accepted"] == result["malformed_wrong_reason"] == 0
    assert result["malformed_total"] > 20 and len(result["malformed_messages"]) == len(MALFORMED)
    assert result["events"] > 200 and result["events_clean_run_unmatched"] == result["events_soak_unmatched"] == 0
    assert result["events"] - result["events_end_of_utterance"] + result["windows_unvoiced"] == result["windows_in_schedule"]
    assert result["windows_unvoiced"] > 0  # silences were gated out, so both branches of the VAD ran
    assert result["max_abs_diff_vs_clean"] <= 1e-5
    assert result["new_publishers"] > 0 and result["gaps"] > 0 and result["stereo_segments"] > 0
    assert len(result["segment_rates_hz"]) > 1  # the resampler ran
    mem = result["memory"]
    assert mem["tracemalloc_mb_end"] - mem["tracemalloc_mb_after_warmup"] < 1.0
    assert {"silence", "synth", "loud_noise"} <= set(result["segment_kinds"])


def test_soak_detects_a_streamer_that_loses_events(engine, monkeypatch):
    """The soak's checks can fail: a Streamer that drops every 7th voiced window is caught."""
    original = Streamer._run
    calls: dict[int, int] = {}

    def lossy(self):  # the soak and its clean run lose the same events: only the window count can tell
        kept = []
        for e in original(self):
            calls[id(self)] = calls.get(id(self), 0) + 1
            if calls[id(self)] % 7:
                kept.append(e)
        return kept

    monkeypatch.setattr(Streamer, "_run", lossy)
    result = run_soak(engine, audio_s=30.0, seed=1, progress=False)
    assert not result["passed"]
    assert any("windows in the schedule" in f or "missing" in f for f in result["failures"])


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_each_malformed_message_is_refused_with_its_reason(engine, name):
    wire = Wire()
    core = EmotionCore(NodeConfig(msg_type=MSG, vad="none"), engine)
    assert _deliver(core, wire, wire.encode(np.zeros(12345, np.int16)), 1.0, 0)
    reason, build = MALFORMED[name]
    assert not _deliver(core, wire, build(wire, np.random.default_rng(0)), 1.1, 0)
    assert core.diagnostics()["rejected_by_reason"] == {reason: 1}
    assert core.diagnostics()["messages_accepted"] == 1
