"""Fuzzing the command line (typer CliRunner on physioser.cli.app).

Commands whose every invocation is bounded in time are driven with arbitrary option values
(numbers including 0, negative, NaN, Inf; unknown names; missing, empty and garbage files):
predict, demo --fast, export, corpora list/scan/folds, ros replay, features extract, report,
vap plot. A run must end with exit code 0, 1 or 2; an exception that escapes the command must be
one of the project's error classes (which name the file or option and the problem), never a bare
ZeroDivisionError/TypeError/OverflowError and the like. Training and evaluation are left out:
valid random arguments could start hours of work.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from physioser.audio import AudioError
from physioser.backbones.ct2 import CheckpointError
from physioser.cli import app
from physioser.data import CorpusLayoutError, ProtocolError
from physioser.export import ExportError
from physioser.model.config import ConfigError
from physioser.ros.messages import MessageDecodeError
from physioser.runtime import EngineError, ProfileError
from tests.fuzzing import budget

PROJECT_ERRORS = (AudioError, CheckpointError, CorpusLayoutError, ProtocolError, ExportError, ConfigError,
                  MessageDecodeError, EngineError, ProfileError)
RUNNER = CliRunner()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder with a short voiced clip, a garbage file, the tiny model, a small corpus tree and a bag."""
    from tests.ros_support import write_bag
    from tests.tinyser import export_tiny

    root = tmp_path_factory.mktemp("cli")
    t = np.arange(24000) / 16000
    sf.write(root / "a.wav", (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32) / 2, 16000)
    (root / "junk.bin").write_bytes(os.urandom(300))
    (root / "empty.wav").write_bytes(b"")
    export_tiny(root)
    actor = root / "corp" / "Actor_01"
    actor.mkdir(parents=True)
    for i, emotion in enumerate(("01", "03", "05", "04")):
        (actor / f"03-01-{emotion}-01-01-01-01.wav").write_bytes((root / "a.wav").read_bytes() if i % 2 else b"junk")
    tone = (0.2 * np.sin(np.arange(32000) / 4.0)).astype(np.float32)
    write_bag(root / "bag", "std_msgs/Int16MultiArray", [tone[i : i + 1600] for i in range(0, tone.size, 1600)])
    return root


floats = st.one_of(st.sampled_from(["0", "-1", "nan", "inf", "-inf", "1e-9", "1e30", "0.5", "2", "abc", ""]),
                   st.floats(allow_nan=True, allow_infinity=True).map(str))
ints = st.one_of(st.sampled_from(["0", "-1", "1", "3", "99999999999999999999", "x", ""]), st.integers(-5, 100).map(str))
files = st.sampled_from(["a.wav", "junk.bin", "empty.wav", "missing.wav", "tiny.onnx", "corp", "bag", "."])
models = st.sampled_from(["tiny.onnx", "junk.bin", "missing.onnx", "corp", "a.wav"])
profiles = st.sampled_from([None, "cpu", "junk.bin", "nope", "a.wav"])
names = st.sampled_from(["RAVDESS", "ravdess", "EMOVO", "Nope", "", "CREMA-D"])


def _opt(flag, value):
    return [] if value is None else [flag, value]


commands = st.one_of(
    st.builds(lambda fs, js, m, p, b, ms: ["predict", *fs, *js, "--model", m, *_opt("--profile", p), "--backend", b, "--max-seconds", ms],
              st.lists(files, min_size=1, max_size=3), st.sampled_from([[], ["--json"]]), models, profiles,
              st.sampled_from(["auto", "torch", "onnxruntime", "tpu"]), floats),
    st.builds(lambda f, m, p, c, v: ["demo", *([f] if f else []), "--model", m, *_opt("--profile", p), "--fast", "--chunk-ms", c, *_opt("--vad", v)],
              st.none() | files, models, profiles, floats, st.sampled_from([None, "energy", "none", "bogus"])),
    st.builds(lambda c, p, pr: ["export", "--checkpoint", c, "--out", "out/x.onnx", *_opt("--profile", p), *_opt("--precision", pr)],
              st.sampled_from(["junk.bin", "missing", "corp", "a.wav"]), profiles, st.sampled_from([None, "fp32", "int8", "fp64"])),
    st.just(["corpora", "list"]) | st.just(["corpora", "list", "--labels"]),
    st.builds(lambda n, r, d, j: ["corpora", "scan", n, r, *d, *j], names, files, st.sampled_from([[], ["--decode"]]), st.sampled_from([[], ["--json"]])),
    st.builds(lambda n, r, s, f, sf_, v, seed: ["corpora", "folds", n, r, "--out", "folds.yaml", *_opt("--scheme", s), "--folds", f,
                                                 *_opt("--sentence-folds", sf_), "--val-fraction", v, "--seed", seed],
              names, files, st.sampled_from([None, "speaker", "bogus", "speaker_sentence"]), ints, st.none() | ints, floats, ints),
    st.builds(lambda b, w, h, v, t, s, r, c, f: ["ros", "replay", b, "--model", "tiny.onnx", "--out", "timeline.csv", "--window-s", w,
                                                 "--hop-s", h, *_opt("--vad", v), "--vad-threshold-db", t, "--smoothing", s,
                                                 "--sample-rate", r, "--channels", c, *_opt("--sample-format", f)],
              st.sampled_from(["bag", "junk.bin", "missing", "corp"]), floats, floats, st.sampled_from([None, "none", "energy", "x"]),
              floats, floats, ints, ints, st.sampled_from([None, "S16LE", "mp3"])),
    st.builds(lambda c, r, b, lim, th: ["features", "extract", "--corpus", c, "--root", r, "--backbone", b, "--cache-dir", "cache",
                                        "--limit", lim, "--threads", th],
              names, st.sampled_from(["corp", "missing", "junk.bin"]), st.sampled_from(["fbank", "nope"]), ints,
              st.sampled_from(["1", "0", "-2"])),
    st.builds(lambda d: ["report", "--results-dir", d], st.sampled_from(["missing", "corp", "junk.bin", "."])),
    st.builds(lambda f, b, s, d: ["vap", "plot", f, "-o", "plot.png", "--bands", b, "--start", s, "--duration", d],
              st.sampled_from(["a.wav", "junk.bin", "missing.wav"]), ints, floats, floats),
)


def _invoke(workdir: Path, args: list[str]):
    old = os.getcwd()
    os.chdir(workdir)
    try:
        return RUNNER.invoke(app, args)
    finally:
        os.chdir(old)


@settings(max_examples=budget(60), suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(args=commands)
@example(args=["predict", "a.wav", "--model", "tiny.onnx", "--max-seconds", "0"])  # was ZeroDivisionError
@example(args=["predict", "a.wav", "--model", "tiny.onnx", "--max-seconds", "nan"])  # was ValueError from int(nan)
@example(args=["demo", "--model", "tiny.onnx", "--fast", "--chunk-ms", "nan"])  # was ValueError from int(nan)
@example(args=["demo", "--model", "tiny.onnx", "--fast", "--chunk-ms", "inf"])  # was OverflowError
@example(args=["features", "extract", "--corpus", "Nope", "--root", "corp", "--backbone", "fbank"])  # was KeyError traceback
@example(args=["features", "extract", "--corpus", "RAVDESS", "--root", "corp", "--backbone", "nope"])
@example(args=["vap", "plot", "a.wav", "-o", "plot.png", "--bands", "0"])  # long campaign: IndexError in the plot
def test_fuzz_cli(workdir, args):
    result = _invoke(workdir, args)
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        assert isinstance(exc, PROJECT_ERRORS), f"{args}: {type(exc).__name__}: {exc}"
        assert str(exc).strip()
    assert result.exit_code in (0, 1, 2), (args, result.exit_code, result.output[-500:])


@pytest.mark.parametrize("args, message", [
    (["predict", "a.wav", "--model", "tiny.onnx", "--max-seconds", "0"], "--max-seconds"),
    (["predict", "a.wav", "--model", "tiny.onnx", "--max-seconds", "nan"], "--max-seconds"),
    (["demo", "--model", "tiny.onnx", "--fast", "--chunk-ms", "nan"], "--chunk-ms"),
    (["demo", "--model", "tiny.onnx", "--fast", "--chunk-ms", "inf"], "--chunk-ms"),
    (["features", "extract", "--corpus", "Nope", "--root", "corp"], "unknown corpus 'Nope'"),
    (["features", "extract", "--corpus", "RAVDESS", "--root", "corp", "--backbone", "nope"], "unknown backbone 'nope'"),
    (["features", "extract", "--corpus", "RAVDESS", "--root", "corp", "--threads", "0"], "--threads"),
    (["vap", "plot", "a.wav", "-o", "plot.png", "--duration", "inf"], "--duration"),  # was OverflowError
    (["vap", "plot", "a.wav", "-o", "plot.png", "--start", "nan"], "--start"),  # was ValueError
])
def test_cli_number_findings(workdir, args, message):
    result = _invoke(workdir, args)
    assert result.exit_code == 2 and message in result.output, result.output[-400:]


def test_finite_options_still_work(workdir):
    # a.wav is an amplitude-modulated tone: no speech to the gate, so ungated here
    result = _invoke(workdir, ["predict", "a.wav", "--model", "tiny.onnx", "--json", "--max-seconds", "0.5", "--vad", "none"])
    assert result.exit_code == 0, result.output
    assert math.isfinite(float(__import__("json").loads(result.output)["results"][0]["confidence"]))


def test_vap_plot_with_zero_bands_is_a_clear_error(workdir):
    """Finding (long campaign): `vap plot --bands 0` crashed with IndexError inside the plot."""
    result = _invoke(workdir, ["vap", "plot", "a.wav", "-o", "plot.png", "--bands", "0"])
    assert result.exit_code == 1 and "n_bands must be >= 1" in result.output
