"""Feature cache: hits, version invalidation, corrupt entries, two concurrent writers, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import physioser.backbones.cache as cache_module
from physioser.backbones import FeatureCache, build_backbone, pad_batch

REPO = Path(__file__).resolve().parents[1]


def _write_clips(folder: Path, count: int, seconds: float = 0.5) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = folder / f"clip{i}.wav"
        sf.write(path, (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000)
        paths.append(path)
    return paths


@pytest.fixture()
def fbank():
    return build_backbone("fbank")


def test_miss_then_hit_and_content_addressing(tmp_path, fbank):
    clips = _write_clips(tmp_path, 3)
    cache = FeatureCache(tmp_path / "cache")
    first = cache.extract(clips, fbank, progress=False)
    assert (first.files, first.computed, first.hits) == (3, 3, 0)
    second = cache.extract(clips, fbank, progress=False)
    assert (second.files, second.computed, second.hits) == (3, 0, 3)
    entry, hit = cache.get_or_compute_entry(clips[0], fbank)
    assert hit and entry.hidden_states.shape == (1, 51, 80) and entry.hidden_states.dtype == torch.float16
    direct = cache.compute(sf.read(clips[0], dtype="float32")[0], fbank)
    torch.testing.assert_close(entry.hidden_states, direct.hidden_states)
    torch.testing.assert_close(entry.mean, direct.hidden_states.float().mean(1), atol=1e-2, rtol=1e-3)
    assert entry.pooled().shape == (1, 160)
    # same bytes under another name: a hit; changed bytes: a miss
    copy = tmp_path / "copy.wav"
    copy.write_bytes(clips[1].read_bytes())
    assert cache.get_or_compute_entry(copy, fbank)[1]
    sf.write(clips[2], np.zeros(8000, np.float32) + 0.01, 16000)
    assert not cache.get_or_compute_entry(clips[2], fbank)[1]
    batch, lengths = pad_batch([entry.hidden_states, entry.hidden_states[:, :20]])
    assert batch.shape == (2, 1, 51, 80) and lengths.tolist() == [51, 20]
    assert torch.equal(batch[1, :, :20], entry.hidden_states[:, :20]) and batch[1, :, 20:].abs().max() == 0
    # options are part of the key
    assert cache.backbone_dir(build_backbone("fbank", n_mels=40)) != cache.backbone_dir(fbank)


def test_version_bump_and_corrupt_entry_are_recomputed(tmp_path, fbank, monkeypatch):
    clip = _write_clips(tmp_path, 1)[0]
    cache = FeatureCache(tmp_path / "cache")
    features, hit = cache.get_or_compute_entry(clip, fbank)
    assert not hit
    entry = cache.entry_path(cache.content_hash(clip), fbank)
    entry.write_bytes(entry.read_bytes()[:100])  # truncated entry
    assert cache.load(clip, fbank) is None
    recomputed, hit = cache.get_or_compute_entry(clip, fbank)
    assert not hit and torch.equal(recomputed.hidden_states, features.hidden_states)
    assert cache.get_or_compute_entry(clip, fbank)[1]
    monkeypatch.setattr(cache_module, "CACHE_VERSION", "test-bump")
    assert cache.load(clip, fbank) is None
    assert not cache.get_or_compute_entry(clip, fbank)[1]


def test_short_clip_error_names_the_file(tmp_path):
    clip = tmp_path / "tiny.wav"
    sf.write(clip, np.full(1700, 0.1, np.float32), 16000)
    cache = FeatureCache(tmp_path / "cache", loader=lambda p: sf.read(p, dtype="float32")[0][:300])
    with pytest.raises(ValueError, match=r"tiny\.wav.*shorter than the encoder's receptive field"):
        cache.get_or_compute(clip, build_backbone("whisper-tiny.en"))
    report = cache.extract([clip], build_backbone("whisper-tiny.en"), progress=False, on_error="skip")
    assert report.files == 0 and len(report.failures) == 1 and "tiny.wav" in report.failures[0]


def test_two_concurrent_writers(tmp_path):
    clips = _write_clips(tmp_path, 8, seconds=2.0)
    root = tmp_path / "cache"
    script = (
        "import sys, torch; torch.set_num_threads(1)\n"
        "from physioser.backbones import FeatureCache, build_backbone, pad_batch\n"
        "r = FeatureCache(sys.argv[1]).extract(sys.argv[2:], build_backbone('resemblyzer'), progress=False)\n"
        "print(r.files)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(root), *map(str, order)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for order in (clips, clips[::-1])
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.strip() == "8"
    cache = FeatureCache(root)
    backbone = build_backbone("resemblyzer")
    assert all(cache.load(clip, backbone) is not None for clip in clips)
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_cli_extract_twice_is_a_cache_hit(tmp_path):
    from typer.testing import CliRunner

    import typer
    from physioser.backbones.cli import register

    corpus = tmp_path / "RAVDESS" / "Actor_01"
    corpus.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for emotion in ("01", "03", "05"):
        sf.write(corpus / f"03-01-{emotion}-01-01-01-01.wav", (0.05 * rng.standard_normal(12000)).astype(np.float32), 16000)
    app = typer.Typer()
    register(app)
    app.callback()(lambda: None)
    args = ["features", "extract", "--corpus", "RAVDESS", "--root", str(tmp_path / "RAVDESS"), "--backbone", "fbank",
            "--cache-dir", str(tmp_path / "cache"), "--json", str(tmp_path / "summary.json")]
    runner = CliRunner()
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "3 files (0 cache hits, 3 computed, 0 failed)" in first.output and "real time" in first.output
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and "3 files (3 cache hits, 0 computed" in second.output
    assert json.loads((tmp_path / "summary.json").read_text())["hits"] == 3
