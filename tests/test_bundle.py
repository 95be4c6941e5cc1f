"""Model bundles: what `physioser export` writes and the runtime reads."""

from __future__ import annotations

import json

import numpy as np
import pytest

from physioser.runtime import Engine, EngineError, Streamer
from physioser.runtime.bundle import BUNDLE_FILES, METADATA
from physioser.runtime.integrity import write_integrity
from tests.tinyser import CLASSES, bundle_tiny


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return bundle_tiny(tmp_path_factory.mktemp("bundle"), window_s=1.0, hop_s=0.25)


def _copy(bundle, target):
    target.mkdir()
    for f in bundle.iterdir():
        (target / f.name).write_bytes(f.read_bytes())
    return target


def test_a_bundle_holds_graph_metadata_card_and_their_hashes(bundle):
    listed = sorted(line.split()[1] for line in (bundle / "SHA256SUMS").read_text().splitlines())
    assert listed == sorted(BUNDLE_FILES)
    meta = json.loads((bundle / METADATA).read_text())
    assert meta["class_names"] == CLASSES and meta["window_s"] == 1.0 and meta["sample_rate"] == 16000
    engine = Engine.from_path(bundle)
    assert engine.source == str(bundle) and engine.class_names == CLASSES
    assert engine.infer(np.full((1, 8000), 0.01, np.float32))["probs"].shape == (1, 4)


def test_the_bundle_metadata_drives_the_streamer_window_and_hop(bundle):
    engine = Engine.from_path(bundle, "cpu")
    for streamer in (Streamer(engine), Streamer.from_profile(engine)):
        assert (streamer.window, streamer.hop) == (16000, 4000)
    assert Streamer(engine, window_s=2.0, hop_s=0.5).window == 32000  # an explicit setting wins


def test_a_tampered_graph_is_refused(bundle, tmp_path):
    copy = _copy(bundle, tmp_path / "tampered")
    blob = bytearray((copy / "model.onnx").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(blob))
    with pytest.raises(EngineError, match="model.onnx: integrity check failed"):
        Engine.from_path(copy)


def test_metadata_that_contradicts_the_graph_is_refused(bundle, tmp_path):
    copy = _copy(bundle, tmp_path / "contradicts")
    meta = json.loads((copy / METADATA).read_text())
    meta["class_names"] = list(reversed(meta["class_names"]))
    (copy / METADATA).write_text(json.dumps(meta))
    with pytest.raises(EngineError, match="metadata.json: integrity check failed"):
        Engine.from_path(copy)
    write_integrity(copy, list(BUNDLE_FILES))  # re-hashed: the graph still disagrees
    with pytest.raises(EngineError, match=r"disagree on \['class_names'\]"):
        Engine.from_path(copy)


def test_a_bundle_without_its_hashes_is_refused(bundle, tmp_path):
    copy = _copy(bundle, tmp_path / "nosums")
    (copy / "SHA256SUMS").unlink()
    with pytest.raises(EngineError, match="SHA256SUMS is missing"):
        Engine.from_path(copy)


def test_the_core_points_a_training_checkpoint_to_export(tmp_path):
    ckpt = tmp_path / "run"
    ckpt.mkdir()
    (ckpt / "config.yaml").write_text("name: x\n")
    with pytest.raises(EngineError, match="training checkpoint.*physioser export --checkpoint"):
        Engine.from_path(ckpt)
