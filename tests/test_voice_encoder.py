"""A bundle's speaker encoder (voice.onnx): export with parity to PyTorch, integrity, and the stream
naming unnamed voices by it."""

from __future__ import annotations

import shutil
import numpy as np
import pytest
import torch

from physioser.audio import load_audio
from physioser.runtime import Engine, EngineError, Streamer
from physioser.runtime.adaptation import FEATURE_THRESHOLD
from physioser.runtime.voice import DVECTOR_THRESHOLD, VOICE_GRAPH, VoiceEncoder
from tests.conftest import corpus_dir
from tests.tinyser import export_adaptive

@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A speaker-adaptive model's bundle with the speaker encoder added."""
    from physioser.export import add_voice_encoder, write_bundle

    root = tmp_path_factory.mktemp("voice")
    _, graph = export_adaptive(root / "m.onnx")
    out = write_bundle(graph, root / "bundle")
    assert add_voice_encoder(out) < 1e-4  # onnxruntime against PyTorch, checked at export
    return out


def _copy(bundle, target):
    shutil.copytree(bundle, target)
    return target


def _take(actor: int, repetition: int) -> np.ndarray:
    return load_audio(corpus_dir("RAVDESS") / f"Actor_{actor:02d}" / f"03-01-01-01-01-{repetition:02d}-{actor:02d}.flac")[:32000]


def test_the_bundle_lists_the_speaker_encoder_and_its_dvectors_match_pytorch(bundle):
    from physioser.backbones.resemblyzer import DVector, build_resemblyzer

    assert VOICE_GRAPH in (bundle / "SHA256SUMS").read_text()
    encoder = Engine.from_path(bundle).voice_encoder()
    assert isinstance(encoder, VoiceEncoder) and encoder.threshold == DVECTOR_THRESHOLD
    x = _take(1, 1)
    with torch.no_grad():
        want = DVector(build_resemblyzer()).eval()(torch.from_numpy(x)[None], torch.tensor([len(x)]))[0].numpy()
    got = encoder(x)
    assert got.shape == (256,)
    np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.parametrize("profile", ["cpu", "desktop-gpu", "jetson-orin"])
def test_the_speaker_encoder_runs_where_the_profile_runs_the_model(bundle, profile):
    """The encoder gets the profile's execution providers, as the emotion graph does (on a build
    without the GPU ones both fall back to the CPU alike)."""
    engine = Engine.from_path(bundle, profile=profile)
    assert engine.voice_encoder().providers == engine.providers


def test_dvectors_of_one_actor_are_closer_than_of_two(bundle):
    """Two takes of one RAVDESS actor (same sentence and emotion) are closer than the same take by
    another actor: the vector names speakers, not words."""
    encoder = Engine.from_path(bundle).voice_encoder()
    a1, a2, b1 = encoder(_take(1, 1)), encoder(_take(1, 2)), encoder(_take(3, 1))
    cos = lambda x, y: float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))  # noqa: E731
    assert cos(a1, a2) > cos(a1, b1) and cos(a1, a2) > cos(a2, b1)


def test_a_replaced_or_unlisted_speaker_encoder_is_refused(bundle, tmp_path):
    replaced = _copy(bundle, tmp_path / "replaced")
    blob = bytearray((replaced / VOICE_GRAPH).read_bytes())
    blob[-100] ^= 0xFF
    (replaced / VOICE_GRAPH).write_bytes(bytes(blob))
    with pytest.raises(EngineError, match="voice.onnx: integrity check failed"):
        Engine.from_path(replaced)
    unlisted = _copy(bundle, tmp_path / "unlisted")
    sums = unlisted / "SHA256SUMS"
    sums.write_text("".join(line + "\n" for line in sums.read_text().splitlines() if VOICE_GRAPH not in line))
    with pytest.raises(EngineError, match="voice.onnx is not listed in SHA256SUMS"):
        Engine.from_path(unlisted)


def test_exporting_a_bundle_again_drops_the_earlier_speaker_encoder(bundle, tmp_path):
    from physioser.export import write_bundle

    again = _copy(bundle, tmp_path / "again")
    graph = shutil.copy(again / "model.onnx", tmp_path / "m.onnx")
    write_bundle(graph, again)
    assert not (again / VOICE_GRAPH).exists()
    assert Engine.from_path(again).voice_encoder() is None


def test_the_stream_names_unnamed_voices_by_the_speaker_encoder_only_when_asked(bundle):
    engine = Engine.from_path(bundle)
    named = Streamer(engine, adapt_unnamed=True)
    assert named.voice_embedding is engine.voice_encoder() and named.voices.threshold == DVECTOR_THRESHOLD
    by_statistics = Streamer(engine, adapt_unnamed=True, voice_encoder=False)
    assert by_statistics.voice_embedding is None and by_statistics.voices.threshold == FEATURE_THRESHOLD
    assert Streamer(engine).voice_embedding is None  # strict while no one is named: no encoder runs
    assert Streamer(engine, adapt_unnamed=True, voice_threshold=0.8).voices.threshold == 0.8


def test_the_node_names_unnamed_voices_by_the_speaker_encoder_unless_told_not_to(bundle):
    from physioser.ros.core import STREAMER_KEYS, EmotionCore, NodeConfig, make_streamer

    engine = Engine.from_path(bundle)
    assert make_streamer(engine, NodeConfig(adapt_unnamed=True)).voice_embedding is engine.voice_encoder()
    by_statistics = make_streamer(engine, NodeConfig(adapt_unnamed=True, voice_encoder=False))
    assert by_statistics.voice_embedding is None and by_statistics.voices.threshold == FEATURE_THRESHOLD
    assert "voice_encoder" in STREAMER_KEYS  # a change rebuilds the stream
    assert make_streamer(engine, NodeConfig()).unnamed_voices == "strict"
    assert by_statistics.unnamed_voices == "model statistics"
    core = EmotionCore(NodeConfig(adapt_unnamed=True), engine)
    assert core.diagnostics()["unnamed_voices"] == engine.voice_encoder().name


def test_two_actors_in_one_stream_are_named_apart_by_the_speaker_encoder(bundle):
    engine = Engine.from_path(bundle)
    stream = Streamer(engine, window_s=2.0, hop_s=1.0, vad="none", smoothing=0.0, adapt_unnamed=True)
    voices = []
    for actor, repetition in ((1, 1), (3, 1), (1, 2), (3, 2)):
        stream.push(_take(actor, repetition))
        voices.append(stream.speaker)
        stream.reset()  # a new stream; the voices heard stay
    assert voices[0] == voices[2] and voices[1] == voices[3] and voices[0] != voices[1]
