"""`physioser corpora list | scan | folds` on fixture trees."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import typer
from typer.testing import CliRunner

from physioser.data import CORPORA, load_protocol
from physioser.data.cli import register

runner = CliRunner()


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command("noop")  # a second command keeps `corpora` a sub-command, as in physioser.cli
    def noop() -> None:
        pass

    return app


def write(path, x, sr=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, sr, subtype="PCM_16")


@pytest.fixture
def ravdess_tree(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "RAVDESS"
    for actor in ("01", "02", "03", "04"):
        for emotion in ("01", "03", "04", "05"):
            write(root / f"Actor_{actor}/03-01-{emotion}-01-01-01-{actor}.wav", rng.normal(0, 0.1, 3200).astype(np.float32))
    # a byte-identical copy, a dithered copy, an unreadable file, a too-short file and a malformed name
    shutil.copy(root / "Actor_01/03-01-01-01-01-01-01.wav", root / "Actor_01/03-01-01-01-01-02-01.wav")
    x, _ = sf.read(root / "Actor_02/03-01-03-01-01-01-02.wav", dtype="int16")
    write(root / "Actor_02/03-01-03-01-01-02-02.wav", ((x + rng.integers(-2, 3, x.size)) / 32768).astype(np.float32))
    (root / "Actor_03/03-01-05-01-02-01-03.wav").write_bytes(b"not audio at all" * 20)
    write(root / "Actor_04/03-01-03-01-02-01-04.wav", np.full(400, 0.1, dtype=np.float32))
    write(root / "Actor_04/03-01-03-01-01-01.wav", rng.normal(0, 0.1, 3200).astype(np.float32))
    return root


def test_list_shows_every_corpus_and_layout(app):
    result = runner.invoke(app, ["corpora", "list", "--labels"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for spec in CORPORA.values():
        assert spec.name in result.output
    assert "Actor_AA/03-01-EE-II-SS-RR-AA" in result.output
    assert "(lines '[start" in result.output  # layouts are printed verbatim, not as markup
    assert "rab=angry" in result.output


def test_scan_reports_every_problem(app, ravdess_tree, tmp_path):
    out = tmp_path / "report.json"
    result = runner.invoke(app, ["corpora", "scan", "RAVDESS", str(ravdess_tree), "--json", str(out)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "RAVDESS at" in result.output and "20 rows, 4 speakers" in result.output
    report = json.loads(out.read_text())
    assert report["rows"] == 20
    assert report["speakers"] == {"01": 5, "02": 5, "03": 5, "04": 5}
    assert report["labels"] == {"01": 5, "03": 6, "04": 4, "05": 5}
    assert [u["path"].endswith("03-01-05-01-02-01-03.wav") for u in report["unreadable"]] == [True]
    assert "cannot decode audio" in report["unreadable"][0]["error"]
    assert [d["path"].endswith("03-01-03-01-02-01-04.wav") for d in report["too_short"]] == [True]
    assert [[p.rsplit("/", 1)[1] for p in g] for g in report["duplicates"]] == [
        ["03-01-01-01-01-01-01.wav", "03-01-01-01-01-02-01.wav"]
    ]
    assert [[p.rsplit("/", 1)[1] for p in g] for g in report["near_duplicates"]] == [
        ["03-01-03-01-01-01-02.wav", "03-01-03-01-01-02-02.wav"]
    ]
    assert len(report["unmatched"]) == 1 and "does not match RAVDESS naming" in report["unmatched"][0]["reason"]
    assert report["durations"]["files"] == 19  # the unreadable file has none
    for title in ("unreadable or invalid files: 1", "byte-identical duplicates: 1", "files that match no pattern: 1"):
        assert title in result.output


def test_scan_decode_reports_audio_warnings(app, tmp_path):
    root = tmp_path / "EMOVO"
    t = np.arange(8000) / 16000
    write(root / "f1/rab-f1-b1.wav", np.clip(1.5 * np.sin(2 * np.pi * 200 * t), -1, 1).astype(np.float32))
    write(root / "f1/neu-f1-b1.wav", (0.1 * np.sin(2 * np.pi * 200 * t) + 0.3).astype(np.float32))
    result = runner.invoke(app, ["corpora", "scan", "EMOVO", str(root), "--decode"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "audio warnings: 2" in result.output
    assert "clipped" in result.output and "DC offset" in result.output


def test_scan_without_decode_says_it_did_not_look_for_audio_warnings(app, tmp_path):
    """Finding: without --decode the scan said "audio warnings: 0" where predict later warned of
    clipping and DC offset: it had not looked."""
    root = tmp_path / "EMOVO"
    t = np.arange(8000) / 16000
    write(root / "f1/rab-f1-b1.wav", np.clip(1.5 * np.sin(2 * np.pi * 200 * t), -1, 1).astype(np.float32))
    out = tmp_path / "scan.json"
    result = runner.invoke(app, ["corpora", "scan", "EMOVO", str(root), "--json", str(out)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "audio warnings: not looked for" in result.output and "--decode" in result.output
    report = json.loads(out.read_text())
    assert report["decoded"] is False and report["audio_warnings"] is None


def test_scan_wrong_layout_fails_naming_expected_layout(app, ravdess_tree):
    result = runner.invoke(app, ["corpora", "scan", "EMOVO", str(ravdess_tree)], env={"COLUMNS": "250"})
    assert result.exit_code == 1
    assert "yields no rows" in result.output and "Expected layout: SPK/emo-SPK-sentence.wav" in result.output
    result = runner.invoke(app, ["corpora", "scan", "NOPE", str(ravdess_tree)], env={"COLUMNS": "250"})
    assert result.exit_code == 1 and "unknown corpus 'NOPE'" in result.output


def test_folds_writes_and_checks_protocol(app, ravdess_tree, tmp_path):
    out = tmp_path / "protocols" / "RAVDESS.yaml"
    result = runner.invoke(app, ["corpora", "folds", "RAVDESS", str(ravdess_tree), "--out", str(out)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    protocol = load_protocol(out)
    assert protocol.scheme == "speaker" and len(protocol.folds) == 4 and protocol.n_rows == 20
    check = runner.invoke(app, ["corpora", "folds", "RAVDESS", str(ravdess_tree), "--out", str(out), "--check"], env={"COLUMNS": "250"})
    assert check.exit_code == 0 and "checked" in check.output
    (ravdess_tree / "Actor_01/03-01-04-01-01-01-01.wav").unlink()
    changed = runner.invoke(app, ["corpora", "folds", "RAVDESS", str(ravdess_tree), "--out", str(out), "--check"], env={"COLUMNS": "250"})
    assert changed.exit_code == 1 and "made on 20 rows" in changed.output and "gives 19" in changed.output
