"""Runtime: hardware profiles, Engine checks, Streamer schedule/VAD/smoothing, the predict/demo commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from typer.testing import CliRunner

from physioser.model.directory import torch_engine
from physioser.runtime import CIRCUMPLEX, Engine, EngineError, ProfileError, Streamer, load_profile, valence_arousal
from physioser.runtime.profiles import available_profiles
from tests.conftest import corpus_dir
from tests.tinyser import METADATA, export_tiny

RAVDESS_CLIP = "Actor_01/03-01-05-02-01-01-01.flac"  # angry, strong intensity, 4.1 s


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp("runtime"))


@pytest.fixture(scope="module")
def engine(tiny):
    return Engine.from_path(tiny[1], "cpu")


@pytest.fixture(scope="module")
def clip():
    from physioser.audio import load_audio

    return load_audio(corpus_dir("RAVDESS") / RAVDESS_CLIP)


# ---------------------------------------------------------------- profiles

def test_shipped_profiles_load():
    assert {"cpu", "jetson-orin", "desktop-gpu"} <= set(available_profiles())
    orin = load_profile("jetson-orin")
    assert orin.provider_names[:2] == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    trt = orin.providers[0].options
    assert trt["trt_fp16_enable"] is True and "${" not in trt["trt_engine_cache_path"]
    assert orin.precision == "fp16"
    assert load_profile("desktop-gpu").provider_names[0] == "CUDAExecutionProvider"
    cpu = load_profile("physioser/hardware/cpu.yaml", allow_path=True)
    assert (cpu.window_s, cpu.hop_s, cpu.intra_op_threads) == (None, None, 2)  # window/hop: the model's
    # backbones chosen by measurement (docs/backbones.md): CPU the one within its latency budget, GPUs the more accurate
    assert (cpu.backbone, orin.backbone, load_profile("desktop-gpu").backbone) == ("whisper-tiny.en", "whisper-base", "whisper-base")


def _write(tmp_path: Path, data) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


BASE = {"name": "x", "providers": [{"name": "CPUExecutionProvider"}]}


@pytest.mark.parametrize(
    "data, message",
    [
        ({**BASE, "threds": 2}, "1 unknown key"),
        ({**BASE, "providers": [{"name": "CudaProvider"}]}, "not a known execution provider"),
        ({**BASE, "stream": {"window_s": 1.0, "hop_s": 2.0}}, "must not exceed"),
        ({**BASE, "threads": {"intra_op": 0}}, "threads.intra_op must be >= 1"),
        ({**BASE, "threads": {"intra_op": "two"}}, "must be an integer"),
        ({**BASE, "precision": "int4"}, "precision must be one of"),
        ({**BASE, "stream": {"vad": "webrtc"}}, "stream.vad"),
        ({"providers": BASE["providers"]}, "'name' is required"),
        ({**BASE, "providers": []}, "non-empty list"),
        ({**BASE, "backbone": " "}, "'backbone' must be a non-empty string"),
        ("name: [unclosed", "not valid YAML"),
    ],
)
def test_invalid_profiles_get_clear_errors(tmp_path, data, message):
    path = _write(tmp_path, data)
    with pytest.raises(ProfileError, match=message) as err:
        load_profile(path, allow_path=True)
    assert str(path) in str(err.value)


def test_missing_profile_names_the_available_ones(tmp_path):
    with pytest.raises(ProfileError, match="not one of the installed profiles.*cpu.*allow"):
        load_profile("raspberry-pi")
    with pytest.raises(ProfileError, match="does not exist"):
        load_profile("/nonexistent/p.yaml", allow_path=True)
    with pytest.raises(ProfileError, match="is a directory"):
        load_profile(tmp_path, allow_path=True)


SECRET_LINES = ["root:$6$Zq81xWvKp$Hx7RtLQm2nB9cYd4eF0aJs:19000:0:99999:7:::",
                "operator: Vq3Lp9Xe2RtY7uKw", "api_token: 8fJ2kL0pQ7wZ3xN5", "precision: hJ4kL9mN2bV6cX1z",
                "threads: {intra_op: Pq8Wm3Nx}", "providers: [{name: Tz6Yh2Ug}]", "name: [Rk5Jd8Fs, {"]


def secret_fragments(text: str, size: int = 6) -> set[str]:
    """Every `size`-character piece of the secret's non-trivial words (what a leak would show)."""
    import re

    words = [w for w in re.split(r"[^A-Za-z0-9$]+", text) if len(w) >= size and w not in
             {"precision", "threads", "intra_op", "providers", "operator", "api_token"}]
    return {w[i : i + size] for w in words for i in range(len(w) - size + 1)}


@pytest.mark.parametrize("body", [
    "\n".join(SECRET_LINES[:1] * 3),  # /etc/shadow-like lines: parsed as keys
    "\n".join(SECRET_LINES[1:3]),  # a mapping of unknown keys
    "name: x\nproviders: [CPUExecutionProvider]\n" + SECRET_LINES[3],  # a bad value
    "name: x\n" + SECRET_LINES[4],  # a bad nested value
    "name: x\n" + SECRET_LINES[5],  # an unknown provider
    SECRET_LINES[6] + "\n" + SECRET_LINES[1],  # invalid YAML: the parser quotes the line
    "\u00e9t\u00e9: Vq3Lp9Xe2RtY7uKw".encode("latin-1"),  # not UTF-8
])
def test_profile_errors_never_quote_the_file(tmp_path, body):
    """A profile that is not a profile is refused by name and field only: no fragment of its content
    appears in the error (a remote peer could name any file on the robot)."""
    path = tmp_path / "secret"
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    text = body.decode("latin-1") if isinstance(body, bytes) else body
    for allow in (False, True):
        with pytest.raises(ProfileError) as err:
            load_profile(path, allow_path=allow)
        message = str(err.value) + "".join(str(e) for e in (err.value.__cause__, err.value.__context__) if e)
        assert str(path) in message
        assert not {f for f in secret_fragments(text) if f in message}, message


def test_profile_paths_only_where_the_operator_allows_them(tmp_path):
    path = tmp_path / "cpu.yaml"
    path.write_text((Path(__file__).parents[1] / "physioser/hardware/cpu.yaml").read_text())
    with pytest.raises(ProfileError, match="not one of the installed profiles"):
        load_profile(path)
    with pytest.raises(ProfileError, match="not one of the installed profiles"):
        Engine.from_path(None, str(path))
    assert load_profile(path, allow_path=True).name == load_profile("cpu").name


# ---------------------------------------------------------------- engine

def test_engine_matches_torch_fallback_and_adds_valence_arousal(tiny, engine):
    model, _ = tiny
    fallback = torch_engine(model, METADATA)
    assert fallback.backend == "torch" and engine.backend == "onnxruntime"
    x = np.random.default_rng(0).standard_normal((2, 20000)).astype(np.float32) * 0.1
    lens = np.array([20000, 12000])
    a, b = engine.infer(x, lens), fallback.infer(x, lens)
    np.testing.assert_allclose(a["logits"], b["logits"], atol=1e-4)
    np.testing.assert_allclose(a["probs"].sum(-1), 1.0, atol=1e-5)
    v, ar = valence_arousal(a["probs"], engine.class_names)
    np.testing.assert_allclose(a["valence"], v)
    np.testing.assert_allclose(a["arousal"], ar)


def test_engine_session_follows_the_profile_and_parks_its_threads(tiny, tmp_path):
    """Threads from the profile; worker threads stop spinning when a call returns (a streaming
    engine idles between hops and must not hold the other cores)."""
    prof = {**BASE, "threads": {"intra_op": 3, "inter_op": 1}}
    eng = Engine.from_path(tiny[1], _write(tmp_path, prof), allow_profile_path=True)
    opts = eng._backend.session.get_session_options()
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (3, 1)
    assert opts.get_session_config_entry("session.force_spinning_stop") == "1"


def test_circumplex_mapping():
    v, a = valence_arousal(np.array([[0, 1.0, 0, 0], [0.5, 0, 0, 0.5]]), ["neutral", "happy", "angry", "sad"])
    assert (v[0], a[0]) == pytest.approx(CIRCUMPLEX["happy"])
    assert (v[1], a[1]) == pytest.approx(np.array(CIRCUMPLEX["sad"]) / 2)
    assert valence_arousal(np.array([1.0]), ["anger"])[0] == pytest.approx(CIRCUMPLEX["angry"][0])


def test_missing_and_truncated_models_get_clear_errors(tiny, tmp_path):
    with pytest.raises(EngineError, match="does not exist"):
        Engine.from_path(tmp_path / "nope.onnx")
    blob = Path(tiny[1]).read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(EngineError, match="cut.onnx.*(truncated|corrupt|could not load)"):
        Engine.from_path(cut)
    empty_dir = tmp_path / "ckpt"
    empty_dir.mkdir()
    with pytest.raises(EngineError, match="ckpt is neither a model bundle"):
        Engine.from_path(empty_dir)


def _edited(tiny, tmp_path, edit) -> Path:
    proto = onnx.load(str(tiny[1]))
    edit(proto)
    path = tmp_path / "edited.onnx"
    onnx.save(proto, str(path))
    return path


def test_engine_checks_opset_inputs_outputs_metadata(tiny, tmp_path):
    def low_opset(p):
        for o in p.opset_import:
            if o.domain in ("", "ai.onnx"):
                o.version = 16

    def drop_metadata(p):
        del p.metadata_props[:]

    def rename_input(p):
        for node in p.graph.node:
            node.input[:] = ["audio" if i == "waveform" else i for i in node.input]
        p.graph.input[0].name = "audio"

    def wrong_rate(p):
        for e in p.metadata_props:
            if e.key == "sample_rate":
                e.value = "8000"

    for edit, message in [(low_opset, "opset 16"), (drop_metadata, "metadata lacks"),
                          (rename_input, "input 'waveform' missing"), (wrong_rate, "8000 Hz")]:
        with pytest.raises(EngineError, match=message):
            Engine.from_path(_edited(tiny, tmp_path, edit))


def test_bad_input_gets_clear_errors(engine):
    with pytest.raises(EngineError, match="8000 Hz"):
        engine.infer(np.zeros((1, 16000), np.float32), sample_rate=8000)
    with pytest.raises(EngineError, match="8000 Hz"):
        Streamer(engine, sample_rate=8000)
    with pytest.raises(EngineError, match="int16"):
        engine.infer(np.zeros((1, 16000), np.int16))
    with pytest.raises(EngineError, match="lengths must lie"):
        engine.infer(np.zeros((1, 1000), np.float32))
    with pytest.raises(EngineError, match="NaN"):
        engine.infer(np.full((1, 16000), np.nan, np.float32))
    with pytest.raises(EngineError, match="mono"):
        Streamer(engine).push(np.zeros((160, 2), np.float32))


# ---------------------------------------------------------------- streamer

def _stream(engine, audio, chunk, **kw):
    s = Streamer(engine, **kw)
    events = []
    for i in range(0, len(audio), chunk):
        events += s.push(audio[i : i + chunk])
    return events + s.flush()


def test_chunk_sizes_give_identical_events(engine, clip):
    audio = clip[: int(3.3 * 16000)]
    runs = {c: _stream(engine, audio, c, batch=1) for c in (1, 160, 320, 16000)}
    # the stream ends in speech: its last window ends at the last speech frame (98 x 32 ms)
    assert [(e.start_s, e.end_s, e.final) for e in runs[1]] == [
        (0.0, 2.0, False), (0.5, 2.5, False), (1.0, 3.0, False), (1.136, 3.136, True)]
    for c in (160, 320, 16000):
        assert runs[c] == runs[1], c  # every field but latency_ms, exactly
    # batching windows together changes only float rounding, never labels or the schedule
    batched = _stream(engine, audio, 16000, batch=4)
    assert [(e.label, e.start_s, e.end_s) for e in batched] == [(e.label, e.start_s, e.end_s) for e in runs[1]]
    for a, b in zip(batched, runs[1]):
        assert a.probs == pytest.approx(b.probs, abs=1e-5)


def test_streamer_label_equals_offline_prediction_on_the_same_window(engine, clip):
    s = Streamer(engine, smoothing=0.0, vad="none")
    events = s.push(clip[:48000])
    for e in events:
        window = clip[int(e.start_s * 16000) : int(e.end_s * 16000)]
        offline = engine.infer(window[None])
        assert e.label == engine.class_names[int(offline["probs"][0].argmax())]
        assert list(e.probs.values()) == pytest.approx(offline["probs"][0].tolist(), abs=1e-6)
        assert e.valence == pytest.approx(float(offline["valence"][0]), abs=1e-6)
        assert e.latency_ms > 0


def test_vad_gate_silence_and_smoothing_reset(engine, clip):
    silence = np.zeros(3 * 16000, np.float32)
    assert _stream(engine, silence, 800) == []
    voiced = clip[:32000]  # speech from about 0.9 s
    audio = np.concatenate([voiced, silence, clip[:48000]])
    events = _stream(engine, audio, 800, smoothing=0.9)
    starts = [e.start_s for e in events]
    gap = [i for i in range(1, len(events)) if starts[i] - starts[i - 1] > 0.5]
    assert starts[0] == 0.0 and len(gap) == 1 and 2.0 < starts[gap[0]] <= 5.0
    assert not {2.0, 2.5, 3.0} & set(starts)  # windows inside the silence are gated out
    # smoothing restarts after the unvoiced gap: the first window after it reports its own probabilities
    after = events[gap[0]]
    raw = engine.infer(audio[None, int(after.start_s * 16000) : int(after.end_s * 16000)])["probs"][0]
    assert list(after.probs.values()) == pytest.approx(raw.tolist(), abs=1e-6)
    smoothed_next = events[gap[0] + 1]
    assert list(smoothed_next.probs.values()) != pytest.approx(raw.tolist(), abs=1e-6)


def test_smoothing_is_an_ema(engine, clip):
    raw = _stream(engine, clip[:40000], 40000, smoothing=0.0, vad="none")
    smooth = _stream(engine, clip[:40000], 40000, smoothing=0.5, vad="none")
    p0, p1 = (np.array(list(e.probs.values())) for e in raw[:2])
    np.testing.assert_allclose(list(smooth[1].probs.values()), 0.5 * p0 + 0.5 * p1, atol=1e-9)


def test_memory_is_bounded_and_short_streams_flush(engine, clip):
    s = Streamer(engine, batch=4, vad="none")
    long = np.tile(clip, 8)[: 30 * 16000]
    events = s.push(long)
    assert len(events) == (30 - 2) * 2 + 1
    assert s._ring.shape == (32000,) and s._pending == []
    short = Streamer(engine, vad="none")
    assert short.push(clip[:20000]) == []
    tail = short.flush()
    assert len(tail) == 1 and (tail[0].start_s, tail[0].end_s) == (0.0, 1.25)


def test_silero_gate(engine, clip):
    pytest.importorskip("silero_vad")
    assert len(_stream(engine, clip[:32000], 1600, vad="silero")) == 1
    assert _stream(engine, np.zeros(32000, np.float32), 1600, vad="silero") == []


# ---------------------------------------------------------------- commands

@pytest.fixture(scope="module")
def app():
    import typer

    from physioser.runtime import cli

    app = typer.Typer()
    cli.register(app)
    return app


def test_predict_json_and_errors(app, tiny, engine, clip):
    path = corpus_dir("RAVDESS") / RAVDESS_CLIP
    result = CliRunner().invoke(app, ["predict", str(path), "--json", "--model", str(tiny[1])])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)["results"][0]
    offline = engine.infer(clip[None])
    assert out["label"] == engine.class_names[int(offline["probs"][0].argmax())]
    assert set(out["probs"]) == set(METADATA["class_names"]) and out["latency_ms"] > 0
    missing = CliRunner().invoke(app, ["predict", "/nonexistent.wav", "--model", str(tiny[1])])
    assert missing.exit_code == 1 and "nonexistent.wav" in missing.output


def test_predict_table_names_the_file_of_out_of_range_samples(app, tiny, tmp_path):
    """Finding: the error for samples beyond ±2 (raised by the engine, which knows no file) did not
    name the file in the table output."""
    import soundfile as sf

    loud = tmp_path / "loud.wav"
    sf.write(loud, (3.0 * np.sin(np.arange(32000) / 10.0)).astype(np.float32), 16000, subtype="FLOAT")
    result = CliRunner().invoke(app, ["predict", str(loud), "--model", str(tiny[1]), "--vad", "none"], env={"COLUMNS": "300"})
    assert result.exit_code == 1
    error = next(line for line in result.output.splitlines() if line.startswith("error:"))
    assert str(loud) in error and "2" in error


def test_demo_streams_a_synthesised_utterance(app, tiny):
    result = CliRunner().invoke(app, ["demo", "--model", str(tiny[1]), "--fast"])
    assert result.exit_code == 0, result.output
    assert "0.00- 2.00 s" in result.output and "estimates; most frequent" in result.output
