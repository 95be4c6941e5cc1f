"""Fuzzing the runtime boundary: Engine.infer / Streamer.push inputs, Streamer settings, hardware
profiles (as data and as files), ONNX metadata and ONNX bytes.

Every example either works (and the result is consistent) or raises the project's error class
naming what is wrong: EngineError for models and inputs, ProfileError for profiles.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from physioser.export import set_metadata
from physioser.runtime import Engine, EngineError, ProfileError, Streamer, load_profile
from physioser.runtime.profiles import HardwareProfile, parse_profile
from tests.fuzzing import budget, byte_edits, check_rejection, mutate, only_warnings
from tests.tinyser import export_tiny

TMP = Path(tempfile.mkdtemp(prefix="physioser-fuzz-runtime-"))
_, TINY = export_tiny(TMP)
TINY_BYTES = TINY.read_bytes()
ENGINE = Engine.from_path(TINY, load_profile(None))

numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**40), 2**40))
def _small(shape: tuple[int, ...]) -> bool:
    """Shapes of at most 100k elements (max_side applies per dimension: 5000^3 would be 500 GB)."""
    return int(np.prod(shape, dtype=np.int64)) <= 100_000


small_dtypes = st.sampled_from([np.float16, np.float32, np.float64, np.int16, np.int64, np.uint8, np.bool_, np.complex64, object])


# ------------------------------------------------------------------ inference inputs

@settings(max_examples=budget(150))
@given(
    x=hnp.arrays(small_dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5000).filter(_small))
    | hnp.arrays(np.float32, st.tuples(st.integers(0, 3), st.integers(0, 20000)), elements=st.floats(-1, 1, width=32)),
    lengths=st.none() | st.lists(numbers, max_size=4) | st.lists(st.integers(0, 20000), max_size=4) | st.text(max_size=3),
    rate=st.none() | st.sampled_from([16000, 8000, 0, -1]),
)
@example(x=np.zeros((2, 8000), np.float32), lengths=[8000, float("nan")], rate=None)
@example(x=np.zeros((2, 8000), np.float32), lengths=[8000, 1e30], rate=None)
@example(x=np.zeros((2, 8000), np.float32), lengths="ab", rate=None)
@example(x=np.zeros((0, 8000), np.float32), lengths=None, rate=None)  # empty batch: onnxruntime's own error escaped
@example(x=np.zeros((0, 0), np.float32), lengths=None, rate=None)
@example(x=np.zeros((1, 8000)) + 1e300, lengths=None, rate=None)
def test_fuzz_engine_infer(x, lengths, rate):
    with only_warnings():
        try:
            out = ENGINE.infer(x, lengths, sample_rate=rate)
        except EngineError as exc:
            check_rejection(exc, (EngineError,))
            return
    batch = 1 if np.ndim(x) == 1 else np.shape(x)[0]
    assert batch >= 1
    for key in ("logits", "probs", "embedding", "valence", "arousal"):
        assert out[key].shape[0] == batch and np.isfinite(out[key]).all(), key
    np.testing.assert_allclose(out["probs"].sum(-1), 1.0, atol=1e-5)


@settings(max_examples=budget(150))
@given(chunks=st.lists(
    hnp.arrays(small_dtypes, hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=9000).filter(_small))
    | hnp.arrays(np.float32, st.integers(0, 40000), elements=st.floats(-1, 1, width=32))
    | st.none() | st.lists(st.floats(-1, 1), max_size=5) | st.text(max_size=4),
    max_size=6))
def test_fuzz_streamer_push(chunks):
    """Any sequence of chunks: valid ones advance the stream by their size, refused ones leave it."""
    s = Streamer(ENGINE, vad="none")
    expected = 0
    with only_warnings():
        for chunk in chunks:
            before = s.total
            try:
                events = s.push(chunk)
            except EngineError as exc:
                check_rejection(exc, (EngineError,))
                assert s.total == before
                continue
            expected += np.asarray(chunk).size
            assert s.total == expected
            for e in events:
                assert 0 <= e.start_s < e.end_s <= s.time_s and np.isfinite(list(e.probs.values())).all()
        tail = s.flush()
    assert all(e.end_s <= s.time_s for e in tail)


@settings(max_examples=budget(150))
@given(window_s=numbers, hop_s=numbers, smoothing=numbers, batch=st.integers(-3, 70) | numbers,
       vad=st.sampled_from(["energy", "none", "", "silero-x", "ENERGY"]), threshold=numbers,
       sample_rate=st.sampled_from([16000, 8000, 0]))
@example(window_s=float("nan"), hop_s=0.5, smoothing=0.5, batch=4, vad="none", threshold=-45.0, sample_rate=16000)
@example(window_s=2.0, hop_s=float("nan"), smoothing=0.5, batch=4, vad="none", threshold=-45.0, sample_rate=16000)
@example(window_s=2.0, hop_s=0.5, smoothing=float("nan"), batch=4, vad="none", threshold=-45.0, sample_rate=16000)
@example(window_s=2.0, hop_s=0.5, smoothing=0.5, batch=4, vad="energy", threshold=float("nan"), sample_rate=16000)
@example(window_s=1e12, hop_s=0.5, smoothing=0.5, batch=4, vad="none", threshold=-45.0, sample_rate=16000)
@example(window_s=2.0, hop_s=1e-9, smoothing=0.5, batch=4, vad="none", threshold=-45.0, sample_rate=16000)
@example(window_s=2.0, hop_s=0.5, smoothing=0.5, batch=2.5, vad="none", threshold=-45.0, sample_rate=16000)
def test_fuzz_streamer_settings(window_s, hop_s, smoothing, batch, vad, threshold, sample_rate):
    with only_warnings():
        try:
            s = Streamer(ENGINE, window_s=window_s, hop_s=hop_s, vad=vad, vad_threshold_db=threshold,
                         smoothing=smoothing, batch=batch, sample_rate=sample_rate)
        except EngineError as exc:
            check_rejection(exc, (EngineError,))
            return
    # accepted settings must be usable: a sane schedule and a working push
    assert ENGINE.min_samples <= s.window <= 60 * 16000 and 1 <= s.hop <= s.window
    assert 0.0 <= s.smoothing < 1.0 and isinstance(s.batch, int) and s.batch >= 1
    assert s.gate is None or math.isfinite(s.gate.threshold)
    s.push(np.full(s.window + s.hop, 0.1, np.float32))


# ------------------------------------------------------------------ hardware profiles

yaml_scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=12),
                         st.sampled_from(["CPUExecutionProvider", "CUDAExecutionProvider", "fp32", "int8", "energy", "x"]))
yaml_values = st.recursive(yaml_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                           max_leaves=8)
stream_section = st.fixed_dictionaries({}, optional={"window_s": numbers | yaml_values, "hop_s": numbers | yaml_values,
                                                    "batch": numbers | yaml_values, "vad": yaml_scalars})
profiles = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(max_size=8) | yaml_values,
        "description": yaml_values,
        "precision": st.sampled_from(["fp32", "fp16", "int8", "fp64"]) | yaml_scalars,
        "threads": st.fixed_dictionaries({}, optional={"intra_op": numbers | yaml_scalars, "inter_op": numbers | yaml_scalars}) | yaml_values,
        "providers": st.lists(st.sampled_from(["CPUExecutionProvider", "CUDAExecutionProvider", "Bogus"])
                              | st.fixed_dictionaries({"name": yaml_scalars}, optional={"options": yaml_values}), max_size=3) | yaml_values,
        "stream": stream_section | yaml_values,
        "latency_budget_ms": numbers | yaml_scalars,
        "extra": yaml_values,
    },
)


def _check_profile(p: HardwareProfile) -> None:
    assert p.name.strip() and p.providers and len({x.name for x in p.providers}) == len(p.providers)
    assert 1 <= p.intra_op_threads <= 256 and 1 <= p.inter_op_threads <= 256
    window, hop = p.window_s if p.window_s is not None else 2.0, p.hop_s if p.hop_s is not None else 1e-3
    assert all(math.isfinite(v) for v in (window, hop, p.latency_budget_ms)), "non-finite number accepted"
    assert 0.1 <= window <= 60 and 0 < hop and (p.window_s is None or p.hop_s is None or hop <= window)
    assert 1 <= p.batch <= 1024 and p.latency_budget_ms > 0


@settings(max_examples=budget(400))
@given(data=profiles | yaml_values)
@example(data={"name": "x", "providers": ["CPUExecutionProvider"], "stream": {"hop_s": float("nan")}})
@example(data={"name": "x", "providers": ["CPUExecutionProvider"], "stream": {"window_s": float("nan")}})
@example(data={"name": "x", "providers": ["CPUExecutionProvider"], "latency_budget_ms": float("inf")})
def test_fuzz_profile_data(data):
    with only_warnings():
        try:
            p = parse_profile(data, "fuzz.yaml")
        except ProfileError as exc:
            check_rejection(exc, (ProfileError,), "fuzz.yaml")
            return
    _check_profile(p)


@settings(max_examples=budget(150), suppress_health_check=[HealthCheck.too_slow])
@given(text=st.binary(max_size=300) | st.text(max_size=300).map(str.encode)
       | profiles.map(lambda d: yaml.safe_dump(d, allow_unicode=True).encode()))
def test_fuzz_profile_files(text):
    path = TMP / "fuzz-profile.yaml"
    path.write_bytes(text)
    try:
        p = load_profile(path, allow_path=True)
    except ProfileError as exc:
        check_rejection(exc, (ProfileError,), str(path))
        return
    _check_profile(p)


def test_profile_nan_numbers_are_refused():
    """Finding: `.nan` passed every range check (NaN compares false), giving a NaN window/hop/budget."""
    for stream in ({"window_s": float("nan")}, {"hop_s": float("nan")}):
        with pytest.raises(ProfileError, match="p.yaml: stream.(window_s|hop_s) must be a finite number"):
            parse_profile({"name": "x", "providers": ["CPUExecutionProvider"], "stream": stream}, "p.yaml")
    with pytest.raises(ProfileError, match="latency_budget_ms must be a finite number"):
        parse_profile({"name": "x", "providers": ["CPUExecutionProvider"], "latency_budget_ms": float("nan")}, "p.yaml")


# ------------------------------------------------------------------ ONNX metadata and bytes

meta_values = st.one_of(st.text(max_size=20), st.sampled_from(['["a", "a"]', "[]", "[1, 2]", '["neutral"]', "16000", "8000",
                                                              "0", "-1", "1e9", "NaN", "Infinity", "2.5", "true", "null",
                                                              '{"a": 1}', '"16000"']))


@settings(max_examples=budget(60), suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.dictionaries(st.sampled_from(["class_names", "sample_rate", "min_samples", "window_s", "hop_s", "backbone",
                                              "training_corpora", "physioser_version"]), meta_values | st.none(), min_size=1, max_size=3))
@example(edits={"class_names": '["neutral", "neutral", "angry", "sad"]'})
@example(edits={"min_samples": '"abc"'})
@example(edits={"min_samples": "0"})
@example(edits={"window_s": "NaN"})
def test_fuzz_onnx_metadata(edits):
    proto = onnx.load_from_string(TINY_BYTES)
    meta = {p.key: p.value for p in proto.metadata_props}
    for key, value in edits.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    set_metadata(proto, meta)
    path = TMP / "fuzz-meta.onnx"
    onnx.save(proto, str(path))
    with only_warnings():
        try:
            engine = Engine.from_path(path)
        except EngineError as exc:
            check_rejection(exc, (EngineError,), str(path))
            return
    names = engine.class_names
    assert len(names) == 4 and len(set(names)) == 4 and all(isinstance(n, str) for n in names)
    assert engine.sample_rate == 16000 and 1 <= engine.min_samples <= 60 * 16000
    out = engine.infer(np.full((1, max(engine.min_samples, 4000)), 0.1, np.float32))
    assert out["probs"].shape == (1, 4)


@settings(max_examples=budget(40), suppress_health_check=[HealthCheck.too_slow])
@given(edits=byte_edits(max_blob=8, min_size=1, max_size=4))
def test_fuzz_onnx_bytes(edits):
    """The tiny model's bytes flipped, truncated or extended anywhere: EngineError, or a model that runs."""
    path = TMP / "fuzz-bytes.onnx"
    path.write_bytes(mutate(TINY_BYTES, edits))
    try:
        engine = Engine.from_path(path)
    except EngineError as exc:
        check_rejection(exc, (EngineError,), str(path))
        return
    try:
        engine.infer(np.full((1, 8000), 0.1, np.float32))
    except EngineError:
        pass  # a corrupted graph may fail at run time; it must still say so through EngineError


def test_duplicate_class_names_are_refused(tmp_path):
    """Finding: repeated class names made probs a dict with fewer entries than classes (a class silently lost)."""
    proto = onnx.load_from_string(TINY_BYTES)
    meta = {p.key: p.value for p in proto.metadata_props}
    meta["class_names"] = '["neutral", "happy", "happy", "sad"]'
    set_metadata(proto, meta)
    onnx.save(proto, str(tmp_path / "dup.onnx"))
    with pytest.raises(EngineError, match="dup.onnx: metadata class_names repeats a name"):
        Engine.from_path(tmp_path / "dup.onnx")


def test_bad_min_samples_metadata_is_an_engine_error(tmp_path):
    """Finding: min_samples "abc" raised int()'s bare ValueError in Engine.__init__, naming no file."""
    for value, name in (('"abc"', "a"), ("0", "b"), ("2.5", "c")):
        proto = onnx.load_from_string(TINY_BYTES)
        meta = {p.key: p.value for p in proto.metadata_props}
        meta["min_samples"] = value
        set_metadata(proto, meta)
        onnx.save(proto, str(tmp_path / f"{name}.onnx"))
        with pytest.raises(EngineError, match=f"{name}.onnx: metadata min_samples must be an integer"):
            Engine.from_path(tmp_path / f"{name}.onnx")


@pytest.mark.parametrize("lengths", [[8000, float("nan")], [8000, 1e30], "ab", [8000.0, 8000.0]])
def test_non_integer_lengths_are_an_engine_error(lengths):
    """Finding: NaN/float/str lengths were cast by numpy (bare ValueError/OverflowError, or garbage with a warning)."""
    with pytest.raises(EngineError, match="lengths must be integers"):
        ENGINE.infer(np.zeros((2, 8000), np.float32), lengths)


@pytest.mark.parametrize("kwargs, message", [
    ({"hop_s": 1e-9}, "shorter than one sample"),  # was an endless loop in push(): the hop was 0 samples
    ({"window_s": 1e12}, "window_s <= 60"),  # was a 57 PiB ring-buffer allocation
    ({"vad_threshold_db": float("nan")}, "vad_threshold_db must be a finite number"),  # gate silently never opened
    ({"batch": 2.5}, "batch must be an integer"),  # failed later inside push()
    ({"window_s": float("nan")}, "window_s must be a finite number"),
])
def test_streamer_settings_findings(kwargs, message):
    with pytest.raises(EngineError, match=message):
        Streamer(ENGINE, **kwargs)


def test_samples_far_beyond_full_scale_are_refused():
    """Finding (long campaign): a float16 chunk of large finite values went through the model and came
    out as events with NaN probabilities; int16 PCM passed as float gave garbage without a word."""
    s = Streamer(ENGINE, vad="none")
    for chunk in (np.full(32000, 60000.0, np.float16), np.full(32000, 3000.0, np.float32)):
        with pytest.raises(EngineError, match="chunk samples reach .*must be float in \\[-1, 1\\]"):
            s.push(chunk)
    assert s.total == 0
    with pytest.raises(EngineError, match="waveforms reach"):
        ENGINE.infer(np.full((1, 8000), 2.5, np.float32))
    s.push(np.full(32000, 1.5, np.float32))  # overshoot up to 2 stays accepted
    assert s.total == 32000
