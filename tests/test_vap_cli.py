"""`physioser vap plot` writes a figure and fails clearly on bad input."""

from __future__ import annotations

import soundfile as sf
from typer.testing import CliRunner

from physioser.cli import app
from physioser.synthesis import synthetic_vowel


def test_plot_writes_a_png(tmp_path):
    audio = tmp_path / "vowel.wav"
    sf.write(audio, synthetic_vowel(seconds=0.6), 16000)
    out = tmp_path / "figs" / "quartet.png"
    result = CliRunner().invoke(app, ["vap", "plot", str(audio), "-o", str(out), "--bands", "40"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_reports_bad_input(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["vap", "plot", str(tmp_path / "missing.wav"), "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 1 and "no such file" in result.output
    audio = tmp_path / "vowel.wav"
    sf.write(audio, synthetic_vowel(seconds=0.6), 16000)
    result = runner.invoke(app, ["vap", "plot", str(audio), "-o", str(tmp_path / "x.png"), "--start", "0.55"])
    assert result.exit_code == 1 and "needs at least 0.1 s" in result.output
    result = runner.invoke(app, ["vap", "plot", str(audio), "-o", str(tmp_path / "x.png"), "--pooling", "bark"])
    assert result.exit_code == 1 and "pooling must be one of" in result.output
