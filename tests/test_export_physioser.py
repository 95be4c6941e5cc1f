"""Export and serving of the real PhysioSER model (small config: fbank backbone, narrow head)."""

from __future__ import annotations

from dataclasses import replace
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from physioser.runtime import Engine, EngineError
from physioser.export import open_engine
from physioser.model.directory import load_checkpoint
from physioser.runtime.integrity import write_integrity

OVERRIDES = ["backbone.name=fbank", "model.dim=32", "cpa.dim=32", "model.fusion.heads=2"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from physioser.model import build_backbone_for, build_model, load_config
    from physioser.model.checkpoint import save_model

    torch.manual_seed(0)
    cfg = replace(load_config("configs/physioser.yaml", OVERRIDES), class_names=["neutral", "happy", "angry", "sad"],
                  corpora=["RAVDESS", "EMOVO"])
    backbone = build_backbone_for(cfg)
    cfg = cfg.with_backbone_shape(backbone.num_layers, backbone.dim)
    model = build_model(cfg, backbone).eval()
    directory = tmp_path_factory.mktemp("physioser") / "model"
    save_model(model, cfg, directory)
    return directory


@pytest.fixture
def app():
    import typer

    from physioser import export

    app = typer.Typer()
    export.register(app)
    app.command("noop")(lambda: None)  # a second command keeps typer's sub-command parsing
    return app


def test_export_command_on_a_trained_model_directory(app, model_dir, tmp_path):
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(app, ["export", "--checkpoint", str(model_dir), "--out", str(out), "--profile", "cpu"])
    assert result.exit_code == 0, result.output
    assert result.output.count("parity at") == 3 and "onnx checker: ok" in result.output
    engine = Engine.from_path(out)
    assert engine.class_names == ["neutral", "happy", "angry", "sad"]
    assert engine.metadata["backbone"] == "fbank" and engine.metadata["training_corpora"] == ["RAVDESS", "EMOVO"]
    model, _ = load_checkpoint(model_dir)
    x = np.random.default_rng(1).standard_normal((2, 30000)).astype(np.float32) * 0.1
    lens = np.array([30000, 21000])
    with torch.no_grad():
        ref = model(torch.from_numpy(x), torch.from_numpy(lens))["logits"].numpy()
    np.testing.assert_allclose(engine.infer(x, lens)["logits"], ref, atol=1e-4)


def test_model_directory_is_exported_once_into_the_cache(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PHYSIOSER_CACHE", str(tmp_path / "cache"))
    first = open_engine(model_dir)
    assert first.backend == "onnxruntime" and first.source.startswith(str(tmp_path / "cache"))
    stamp = (tmp_path / "cache").joinpath(*first.source.split("/cache/")[1:]).stat().st_mtime_ns
    second = open_engine(model_dir)
    assert second.source == first.source
    assert (tmp_path / "cache").joinpath(*second.source.split("/cache/")[1:]).stat().st_mtime_ns == stamp
    fallback = open_engine(model_dir, backend="torch")
    x = np.random.default_rng(2).standard_normal((1, 24000)).astype(np.float32) * 0.1
    np.testing.assert_allclose(first.infer(x)["probs"], fallback.infer(x)["probs"], atol=1e-5)


def test_integrity_hash_is_checked(model_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    write_integrity(copy, ["model.safetensors", "config.yaml"])
    load_checkpoint(copy)  # intact: loads
    blob = bytearray((copy / "model.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (copy / "model.safetensors").write_bytes(bytes(blob))
    with pytest.raises(EngineError, match="integrity check failed"):
        open_engine(copy, backend="torch")


def test_engine_falls_back_to_pytorch_when_the_graph_cannot_be_built(model_dir, tmp_path, monkeypatch):
    import physioser.export as export
    from physioser.export import ExportError

    def broken(*args, **kwargs):
        raise ExportError("simulated exporter failure")

    monkeypatch.setenv("PHYSIOSER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(export, "export_onnx", broken)
    engine = open_engine(model_dir)
    assert engine.backend == "torch"
    assert engine.infer(np.zeros((1, 16000), np.float32) + 0.01)["probs"].shape == (1, 4)
    with pytest.raises(EngineError, match="simulated exporter failure"):
        open_engine(model_dir, backend="onnxruntime")


def test_export_command_int8_says_which_graph_it_kept(app, model_dir, tmp_path):
    out = tmp_path / "m8.onnx"
    result = CliRunner().invoke(app, ["export", "--checkpoint", str(model_dir), "--out", str(out), "--precision", "int8"])
    assert result.exit_code == 0, result.output
    kept = Engine.from_path(out).metadata["precision"]
    if "int8 is not faster here" in result.output:
        assert kept == "fp32"
    else:
        assert "int8 is faster here" in result.output and kept == "int8"


def test_export_command_adds_the_speaker_encoder_to_a_bundle_only(app, model_dir, tmp_path):
    out = tmp_path / "bundle"
    result = CliRunner().invoke(app, ["export", "--checkpoint", str(model_dir), "--out", str(out), "--voice-encoder"])
    assert result.exit_code == 0, result.output
    assert "max |d-vector diff| onnxruntime vs PyTorch" in result.output and "voice.onnx" in (out / "SHA256SUMS").read_text()
    assert Engine.from_path(out).voice_encoder() is not None
    bare = CliRunner().invoke(app, ["export", "--checkpoint", str(model_dir), "--out", str(tmp_path / "m.onnx"), "--voice-encoder"])
    assert bare.exit_code != 0 and "give --out a folder" in " ".join(bare.output.replace("│", " ").split())
    assert not (tmp_path / "m.onnx").exists()
