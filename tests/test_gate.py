"""The speech gate: verdicts on generated non-speech and real speech, utterance tracking, the end of
utterance in the Streamer and the ROS core, predict's "no speech" and its bounded memory."""

from __future__ import annotations

import json
import tracemalloc
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf

from physioser.audio import load_audio, stream_audio
from physioser.conditions import sources as S
from physioser.runtime import Engine, Streamer
from physioser.runtime.cli import predict_stream, synth_utterance
from physioser.runtime.gate import FRAME, SpeechTracker, silero_model_path, speech_segments
from tests.conftest import corpus_dir
from tests.tinyser import export_tiny

GATES = ["energy", pytest.param("silero", marks=pytest.mark.skipif(silero_model_path() is None, reason="silero-vad not installed"))]
SPEECH_CLIPS = ["RAVDESS/Actor_01/03-01-05-02-01-01-01.flac", "RAVDESS/Actor_02/03-01-04-01-02-01-02.flac",
                "EMOVO/f1/gio-f1-b1.flac", "EMOVO/m2/tri-m2-l2.flac", "URDU/Angry/SM1_F10_A010.flac"]


def _non_speech(seed: int) -> list[tuple[str, np.ndarray]]:
    out = [("silence", np.zeros(3 * 16000, np.float32))]
    for level in (0.003, 0.05, 0.3):
        r = np.random.default_rng([seed, int(level * 1000)])
        out += [("white", S.white_noise(3, r, level)), ("pink", S.coloured_noise(3, r, level)),
                ("brown", S.coloured_noise(3, r, level, 2.0)), ("hum", S.hum(3, r, level, 60.0)),
                ("tone", S.tone(3, r, level, float(r.uniform(100, 3000)))),
                ("beeps", S.tone(3, r, level, float(r.uniform(300, 3000)), beep_s=0.2)), ("sweep", S.sweep(3, r, level)),
                ("clicks", S.clicks(3, r, level)), ("metronome", S.clicks(3, r, level, 8.0, regular=True)),
                ("fan", S.fan_noise(3, r, level))]
    return out


def _speech_s(x: np.ndarray, gate: str) -> float:
    blocks = (x[i : i + 8000] for i in range(0, len(x), 8000))
    return sum(len(p) for _, p in speech_segments(blocks, gate, max_samples=16000 * 10)) / 16000


@pytest.mark.parametrize("gate", GATES)
def test_generated_non_speech_has_no_speech(gate):
    found = {name: s for name, x in _non_speech(7) if (s := _speech_s(x, gate)) > 0}
    assert found == {}


@pytest.mark.corpora
@pytest.mark.parametrize("gate", GATES)
def test_real_speech_is_found(gate):
    for rel in SPEECH_CLIPS:
        path = corpus_dir(rel.split("/")[0]) / rel.split("/", 1)[1]
        assert _speech_s(load_audio(path), gate) >= 0.5, rel


def test_tracker_onset_offset_and_stream_end():
    t = SpeechTracker(0.5, min_speech_s=0.25, min_silence_s=0.3)  # 8 frames to start, 9 to end
    probs = np.r_[np.zeros(5), np.ones(3), np.zeros(2), np.ones(10), np.zeros(20), np.ones(4), np.zeros(30)]
    flags, ended = t.update(probs)
    assert flags.sum() == 17
    # the short burst at frame 5 joins the run (a 2-frame pause), the 4-frame burst at 40 never starts one
    assert [(u.start, u.end) for u in ended] == [(5 * FRAME, 20 * FRAME)]
    _, ended = t.update(np.ones(12))
    assert ended == [] and t.current is not None
    assert [(u.start, u.end) for u in t.finish()] == [(74 * FRAME, 86 * FRAME)]


def test_long_speech_comes_in_bounded_pieces():
    x = np.concatenate([synth_utterance(7.0, seed=1), np.zeros(16000, np.float32)])
    pieces = list(speech_segments([x[i : i + 3000] for i in range(0, len(x), 3000)], "energy", max_samples=2 * 16000))
    assert len(pieces) >= 3 and all(len(p) <= 2 * 16000 for _, p in pieces)
    starts = [s for s, _ in pieces]
    for (s0, p0), s1 in zip(pieces, starts[1:]):
        assert s0 + len(p0) <= s1  # in order, never overlapping
    np.testing.assert_array_equal(pieces[1][1], x[pieces[1][0] : pieces[1][0] + len(pieces[1][1])])


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return Engine.from_path(export_tiny(tmp_path_factory.mktemp("gate"))[1], "cpu")


def _run(streamer, x, chunk=1600):
    events = []
    for i in range(0, len(x), chunk):
        events += streamer.push(x[i : i + chunk])
    return events


def test_an_utterance_shorter_than_a_window_gets_an_estimate(engine):
    utt = synth_utterance(1.2, seed=2)  # speech from 0.0 to about 1.1 s
    silence = np.zeros(16000, np.float32)
    s = Streamer(engine, vad="energy")
    # the stream goes on: the windows on the hop grid that hold the utterance are analysed
    events = _run(s, np.concatenate([silence, utt, silence, silence]))
    assert events and not any(e.final for e in events) and not s.in_speech
    assert max(e.end_s for e in events) >= 2.0 and min(e.start_s for e in events) <= 1.0
    # the stream ends before any window is complete: flush() gives the utterance its own window
    for tail_s in (0.0, 0.2):
        s.reset()
        assert _run(s, np.concatenate([silence[:8000], utt, silence[: int(tail_s * 16000)]])) == []
        tail = s.flush()
        assert len(tail) == 1 and tail[0].final
        assert tail[0].start_s <= 0.4 and 1.5 <= tail[0].end_s <= 1.7  # from about the onset to the last speech frame
    # the utterance ended in the stream, which then ends before the window that was to hold it
    s.reset()
    assert _run(s, np.concatenate([silence[:2000], utt, silence[:8000]])) == []
    tail = s.flush()
    assert len(tail) == 1 and tail[0].final and 1.1 <= tail[0].end_s <= 1.4
    # a voiced window already reached the utterance's end: no second estimate at the end
    s.reset()
    events = _run(s, np.concatenate([utt, silence]))
    assert [e.final for e in events + s.flush()] == [False]


def test_the_ros_core_estimates_the_last_utterance_at_stream_end(engine):
    from physioser.ros import messages as M
    from physioser.ros.core import EmotionCore, NodeConfig

    config = NodeConfig(vad="energy", msg_type="std_msgs/Float32MultiArray")
    core = EmotionCore(config, engine)
    store = M.typestore(M.audio_type(config.msg_type).flavour)
    cls = store.types["std_msgs/msg/Float32MultiArray"]
    layout = store.types["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
    x = np.concatenate([np.zeros(8000, np.float32), synth_utterance(1.2, seed=3)])
    events = []
    for i in range(0, len(x), 1600):
        core.accept(cls(layout=layout, data=x[i : i + 1600].astype(np.float32)), i / 16000)
        events += list(core.process())
    assert events == [] and core.diagnostics()["speech"]
    tail = list(core.end_stream())
    assert len(tail) == 1 and tail[0].event.final
    assert not core.diagnostics()["speech"]


def test_predict_says_no_speech_for_noise_and_finds_speech(engine):
    noise = S.fan_noise(5.0, np.random.default_rng(0), 0.1)
    out = predict_stream(engine, iter([noise[:40000], noise[40000:]]), vad="energy")
    assert out["speech"] is False and out["label"] is None and out["seconds"] == 5.0
    speech = np.concatenate([np.zeros(16000, np.float32), synth_utterance(3.0, seed=4), np.zeros(16000, np.float32)])
    out = predict_stream(engine, iter([speech]), vad="energy")
    assert out["speech"] and out["label"] in engine.class_names and 2.0 <= out["speech_s"] <= 3.0


def test_predict_command_prints_no_speech_and_exits_0(tmp_path, engine):
    import typer
    from typer.testing import CliRunner

    from physioser.runtime import cli

    app = typer.Typer()
    cli.register(app)
    sf.write(tmp_path / "hum.wav", S.hum(3.0, np.random.default_rng(1), 0.2), 16000)
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "hum.wav"), "--model", engine.source, "--json", "--vad", "energy"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.output)["results"][0]
    assert r["speech"] is False and r["label"] is None


@pytest.mark.slow
def test_predict_memory_is_bounded_on_a_long_file(tmp_path, engine):
    """20 minutes of pink noise with an utterance every 5 minutes: Python's peak allocation stays
    far below the decoded file's 77 MB (float32), and only the utterances are inferred."""
    rng = np.random.default_rng(5)
    path = tmp_path / "long.flac"
    with sf.SoundFile(path, "w", 16000, 1, "PCM_16") as f:
        for minute in range(20):
            block = S.coloured_noise(60.0, rng, 0.003)
            if minute % 5 == 2:
                block[16000 : 16000 + 3 * 16000] += synth_utterance(3.0, seed=minute)
            f.write(block)
    tracemalloc.start()
    out = predict_stream(engine, stream_audio(path), vad="energy")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert out["seconds"] == 1200.0 and out["speech"] and 8.0 <= out["speech_s"] <= 12.5
    assert peak < 25 * 2**20, f"peak {peak / 2**20:.1f} MB"


def test_stream_audio_matches_load_audio(tmp_path):
    x = S.coloured_noise(3.0 * 44100 / 16000, np.random.default_rng(6), 0.1)  # 3 s once written at 44.1 kHz
    sf.write(tmp_path / "a.wav", np.stack([x, 0.5 * x], axis=1), 44100)
    blocks = list(stream_audio(tmp_path / "a.wav", block_s=0.37))
    whole = load_audio(tmp_path / "a.wav")
    joined = np.concatenate(blocks)
    assert len(blocks) > 5 and abs(len(joined) - len(whole)) <= 1
    n = min(len(joined), len(whole))
    np.testing.assert_allclose(joined[:n], whole[:n], atol=2e-3)


def test_the_benchmark_speech_verdict_is_predicts_own(engine):
    """The gate benchmark checks corpus clips through predict_stream with the model left out
    (GateOnly): the speech verdict and speech seconds equal predict's with the model."""
    from physioser.bench.gate import GateOnly

    short = np.concatenate([np.zeros(8000, np.float32), synth_utterance(0.4, seed=2), np.zeros(8000, np.float32)])
    for x in (np.zeros(32000, np.float32), synth_utterance(3.0, seed=4), short):
        with_model = predict_stream(engine, iter([x]), vad="energy")
        without = predict_stream(GateOnly(engine), iter([x]), vad="energy")
        assert (without["speech"], without["speech_s"]) == (with_model["speech"], with_model["speech_s"])
    assert predict_stream(GateOnly(engine), iter([synth_utterance(3.0, seed=4)]), vad="energy")["speech"]


@pytest.mark.corpora
@pytest.mark.skipif(silero_model_path() is None, reason="silero-vad not installed")
def test_silero_counts_weak_frames_the_voicing_cues_confirm(monkeypatch):
    """Finding: silero gave quiet sad Amharic and some shouted English clips frame probabilities below
    its threshold, so predict said "no speech" for them. Frames it scores at least 0.1 count as speech
    where the voicing cues find speech too."""
    from physioser.runtime.gate import SileroVAD

    clips = ["ASED/04Sad/s4-04-01-02-39.flac", "RAVDESS/Actor_06/03-01-05-02-02-01-06.flac"]
    audio = [load_audio(corpus_dir(rel.split("/")[0]) / rel.split("/", 1)[1]) for rel in clips]
    assert all(_speech_s(x, "silero") >= 0.5 for x in audio)
    monkeypatch.setattr(SileroVAD, "PRIME_S", 0.0)  # the cold start these clips were missed from
    assert all(_speech_s(x, "silero") >= 0.5 for x in audio)
    monkeypatch.setattr(SileroVAD, "ASSISTED", 1.01)  # silero's probabilities alone
    assert all(_speech_s(x, "silero") < 0.5 for x in audio)


MISSED_COLD = ["ASED/04Sad/s4-03-02-02-56.flac", "ASED/04Sad/s4-05-01-02-51.flac", "ASED/03Happy/h3-05-02-01-05.flac"]


@pytest.mark.corpora
@pytest.mark.skipif(silero_model_path() is None, reason="silero-vad not installed")
def test_silero_primed_with_silence_finds_speech_at_a_streams_start(engine, monkeypatch):
    """Finding: silero's LSTM started from zeros scored speech that begins within the first few hundred
    ms of a clip as barely speech-like (these three ASED clips: best 8-frame mean 0.05-0.43), so predict
    said "no speech" for them; after one second of silence it scores them as speech. predict and the
    Streamer (same detector class) both start from the primed state."""
    from physioser.bench.gate import GateOnly
    from physioser.runtime.gate import SileroVAD

    audio = [load_audio(corpus_dir("ASED") / rel.split("/", 1)[1]) for rel in MISSED_COLD]
    for rel, x in zip(MISSED_COLD, audio):
        assert predict_stream(GateOnly(engine), iter([x]), vad="silero")["speech"], rel
        s = Streamer(engine, vad="silero")
        events = _run(s, x) + s.flush()
        assert events, rel
    monkeypatch.setattr(SileroVAD, "PRIME_S", 0.0)
    assert not any(predict_stream(GateOnly(engine), iter([x]), vad="silero")["speech"] for x in audio)


@pytest.mark.skipif(silero_model_path() is None, reason="silero-vad not installed")
def test_silero_calls_no_stationary_sound_speech_after_silence(monkeypatch):
    """Finding: after a second of silence (a primed state, or any pause in a running stream) silero took
    the onset of a loud 60 Hz hum (-10 dBFS, 8 harmonics) for speech for 2.4 s; frames in a second
    without energy modulation (< 3 dB) are no speech."""
    from physioser.bench.gate import generated
    from physioser.runtime.gate import SileroVAD

    name, hum = generated()[126]
    assert name == "hum60"
    silence = np.zeros(16000, np.float32)
    for x in (hum, np.concatenate([silence, hum])):
        assert _speech_s(x, "silero") == 0
    found = {n: s for n, x in _non_speech(7) if (s := _speech_s(np.concatenate([silence, x]), "silero")) > 0}
    assert found == {}
    monkeypatch.setattr(SileroVAD, "MODULATION_DB", -1.0)  # no veto
    assert _speech_s(hum, "silero") >= 0.5
