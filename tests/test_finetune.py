"""Fine-tuning the Whisper encoder under the recipe's head: eight-bit log-mel, the trained path equal to
the inference path while nothing learns, only the top blocks learning (at their own rate), and a job
whose results the recipe report scores."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch

from physioser.backbones.whisper import WhisperEncoder
from physioser.experiments import finetune, recipe
from physioser.experiments.finetune import FineTuned, MelSet, dequantise, quantise
from physioser.model.config import load_config
from physioser.model.factory import build_model
from physioser.train import _parameter_groups

SHAPE = {"name": "whisper-test", "n_mels": 80, "dim": 32, "heads": 2, "layers": 3, "hidden": 64, "max_frames": 1500}


def _encoder(seed: int = 0) -> WhisperEncoder:
    torch.manual_seed(seed)
    encoder = WhisperEncoder(**SHAPE)
    for p in encoder.parameters():
        torch.nn.init.normal_(p, std=0.1)
    encoder.positions.normal_(std=0.1)
    return encoder


def _recipe_head(classes: list[str]):
    cfg = load_config(None, [*recipe.VARIANTS[finetune.RECIPE], "model.dropout=0.0", "model.input_dropout=0.0"])
    from dataclasses import replace

    cfg = replace(cfg, class_names=classes).with_backbone_shape(SHAPE["layers"] + 1, SHAPE["dim"])
    return cfg


def test_eight_bit_log_mel_keeps_each_value_within_half_a_step():
    encoder = _encoder()
    wave = torch.randn(1, 16000 * 2) * torch.linspace(0, 1, 32000)
    mel, frames = encoder.log_mel(wave, torch.tensor([32000]))
    mel = mel[0, :, : int(frames[0])].numpy()
    q, peak = quantise(mel)
    assert q.dtype == np.uint8 and q.shape == mel.T.shape and peak == pytest.approx(mel.max())
    assert np.abs(dequantise(q, peak) - mel).max() <= finetune.MEL_RANGE / 255 / 2 + 1e-6


def test_the_training_path_equals_the_inference_path_while_nothing_learns():
    encoder = _encoder()
    cfg = _recipe_head(["a", "b", "c"])
    model = build_model(cfg, encoder)
    waves = torch.randn(2, 24000)
    lengths = torch.tensor([24000, 17000])
    expected = model.eval()(waves, lengths)["logits"]
    mel, mel_lengths = encoder.log_mel(waves * (torch.arange(24000) < lengths[:, None]), lengths)
    tuned = FineTuned(model, encoder, blocks=0, lr_scale=0.0).eval()
    got = tuned.forward_cached({"mel": mel, "mel_lengths": mel_lengths})["logits"]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_only_the_top_blocks_learn_at_their_own_rate():
    encoder = _encoder()
    tuned = FineTuned(build_model(_recipe_head(["a", "b"]), None), encoder, blocks=1, lr_scale=0.03)
    learning = {n for n, p in tuned.named_parameters() if p.requires_grad and n.startswith("encoder.")}
    assert learning and all(n.startswith(("encoder.blocks.2.", "encoder.final_norm.")) for n in learning)
    groups = _parameter_groups(tuned, 0.5)
    scales = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    for name, p in tuned.named_parameters():
        if p.requires_grad:
            assert scales[id(p)] == (0.03 if name.startswith("encoder.") else 1.0)
    assert {g["weight_decay"] for g in groups} == {0.5, 0.0}


def _write_pack(path, seed=0):
    rng = np.random.default_rng(seed)
    encoder = _encoder(seed)
    speakers = [f"s{k}" for k in range(6) for _ in range(6)]
    classes = ["angry", "neutral", "sad"]
    rows = [{"corpus": "C", "speaker": s, "canonical": classes[i % 3], "path": f"{i}.wav"} for i, s in enumerate(speakers)]
    mels, peaks, offsets = [], [], [0]
    for i in range(len(rows)):
        frames = int(rng.integers(60, 120))
        q, peak = quantise(rng.normal(size=(80, frames)).astype(np.float32) * 0.3 + 0.2 * (i % 3))
        mels.append(q)
        peaks.append(peak)
        offsets.append(offsets[-1] + frames)
    fold = {"fold": 0, "train": list(range(24)), "val": list(range(24, 30)), "test": {"C": list(range(30, 36))}}
    meta = {"backbone": SHAPE["name"], "num_layers": SHAPE["layers"] + 1, "dim": SHAPE["dim"], "corpora": ["C"],
            "tasks": {"C": {"kind": "intra", "classes": classes, "folds": [fold]}}, "rows": rows, "encoder": SHAPE}
    weights = {f"encoder/{k}": v.to(torch.float16).numpy() for k, v in encoder.state_dict().items()}
    np.savez_compressed(path, mel=np.concatenate(mels), offsets=np.array(offsets), peaks=np.array(peaks, np.float32),
                        meta=np.array(json.dumps(meta)), **weights)
    return encoder


@pytest.fixture()
def pack(tmp_path):
    finetune._PACK.clear()
    path = tmp_path / "pack.npz"
    encoder = _write_pack(path)
    yield path, encoder
    finetune._PACK.clear()


def test_a_job_moves_only_the_learning_blocks_and_the_report_scores_it(pack, tmp_path, monkeypatch):
    path, before = pack
    monkeypatch.setenv("RECIPE_DEVICE", "cpu")
    seen = {}
    import physioser.train

    original = physioser.train.fit

    def spy(model, *args, **kwargs):
        seen["model"] = model
        return original(model, *args, **kwargs)

    monkeypatch.setattr(physioser.train, "fit", spy)
    result = finetune._job(("ft-top1", ["train.epochs=2", "train.lr=0.1"], "C", 0, 0, str(path), str(tmp_path / "work")))
    assert result["task"] == "C" and result["rows"] == list(range(30, 36)) and len(result["logits"]["0"]) == 6
    after = seen["model"].encoder.state_dict()
    reference = {k: v.float() for k, v in before.state_dict().items()}
    for name, value in after.items():
        moved = not torch.equal(value.cpu(), reference[name].to(torch.float16).float())
        assert moved == name.startswith(("blocks.2.", "final_norm.")), name
    runs = tmp_path / "ft-top1.json.gz"
    runs.write_bytes(gzip.compress(json.dumps({"variant": "ft-top1", "overrides": [], "results": [result]}).encode()))
    scores = recipe.score([runs])
    assert list(scores) == ["ft-top1 · whisper-test"] and 0.0 <= scores["ft-top1 · whisper-test"]["C"]["0"]["seed_mean"][0] <= 1.0


def test_the_pack_holds_the_recipe_folds_and_the_frontend_log_mel(corpora_root, tmp_path):
    from physioser.backbones import FeatureCache, build_backbone

    try:
        bb = build_backbone("whisper-tiny.en")
    except Exception as error:  # the weights ship in an optional package
        pytest.skip(f"whisper-tiny.en is not installed here: {error}")
    out = finetune.pack(["EMOVO"], tmp_path / "p.npz", corpora_root, progress=False)
    with np.load(out, allow_pickle=False) as z:
        meta, offsets, mel, peaks = json.loads(str(z["meta"])), z["offsets"], z["mel"], z["peaks"]
        assert {k[len("encoder/"):] for k in z.files if k.startswith("encoder/")} == set(bb.state_dict())
    rows, spans = recipe.read_rows(["EMOVO"], corpora_root)
    assert len(meta["rows"]) == len(rows) == len(offsets) - 1 == 588 and np.all(np.diff(offsets) > 0)
    assert meta["tasks"] == json.loads(json.dumps(recipe.task_plan(rows, spans, ["EMOVO"])))
    assert meta["encoder"] == {"name": "whisper-tiny.en", "n_mels": 80, "dim": 384, "heads": 6, "layers": 4, "hidden": 1536,
                               "max_frames": 1500}
    wave = torch.as_tensor(FeatureCache().loader(rows[3].path))[None]
    expected, frames = bb.log_mel(wave, torch.tensor([wave.shape[1]]))
    got = dequantise(mel[offsets[3] : offsets[4]], float(peaks[3]))
    assert got.shape[1] == int(frames[0])
    assert np.abs(got - expected[0, :, : got.shape[1]].numpy()).max() <= finetune.MEL_RANGE / 255 / 2 + 1e-5
    data = MelSet(mel, offsets, peaks, np.arange(5), np.zeros(5, np.int64))
    batch = data.collate([0, 3])
    assert batch["mel"].shape[:2] == (2, 80) and batch["mel_lengths"].tolist() == [offsets[1] - offsets[0], offsets[4] - offsets[3]]
