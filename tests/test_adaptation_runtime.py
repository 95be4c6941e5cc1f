"""Speaker adaptation in the exported graph and the stream: the optional ``speaker_offset`` input
(omitted = strict outputs), parity with PyTorch, per-speaker state in the Streamer."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from physioser.runtime import Engine, EngineError
from physioser.runtime.streamer import Streamer
from tests.tinyser import export_adaptive

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return export_adaptive(tmp_path_factory.mktemp("adaptive") / "m.onnx", offsets=True)


def _speech(seconds: float, f0: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (0.1 * x + 0.005 * rng.standard_normal(len(t))).astype(np.float32)


def test_offset_input_is_optional_and_matches_pytorch(exported) -> None:
    model, path = exported
    engine = Engine.from_path(path)
    dim = engine.adaptation_dim
    assert dim == model.class_offsets.shape[1] and engine.metadata["adaptation"]["tau"] == model.adaptation_tau
    assert engine.metadata["adaptation"]["balance"] == pytest.approx(0.6)
    x = np.stack([_speech(2.0, 120, 0), _speech(2.0, 210, 1)])
    lens = np.array([32000, 24000])
    offset = np.random.default_rng(2).normal(0, 0.5, (2, dim)).astype(np.float32)
    with torch.no_grad():
        strict = model(torch.from_numpy(x), torch.from_numpy(lens))
        adapted = model(torch.from_numpy(x), torch.from_numpy(lens), torch.from_numpy(offset))
    plain = engine.infer(x, lens)
    np.testing.assert_allclose(plain["logits"], strict["logits"].numpy(), atol=1e-4)
    np.testing.assert_allclose(engine.infer(x, lens, speaker_offset=np.zeros((2, dim), np.float32))["logits"], plain["logits"], atol=1e-6)
    got = engine.infer(x, lens, speaker_offset=offset)
    np.testing.assert_allclose(got["logits"], adapted["logits"].numpy(), atol=1e-4)
    np.testing.assert_allclose(got["speaker_features"], adapted["speaker_features"].numpy(), atol=1e-3)
    assert not np.allclose(got["logits"], plain["logits"], atol=1e-3)
    # the speaker's evidence is the input's without the offset, whatever offset is fed
    np.testing.assert_allclose(got["speaker_probs"], adapted["speaker_probs"].numpy(), atol=1e-4)
    np.testing.assert_allclose(got["speaker_probs"], plain["probs"], atol=1e-5)
    np.testing.assert_allclose(got["speaker_features"], plain["speaker_features"], atol=1e-4)
    np.testing.assert_array_equal(plain["speaker_probs"], plain["probs"])
    with pytest.raises(EngineError, match="speaker_offset"):
        engine.infer(x, lens, speaker_offset=offset[:, :3])


def test_streamer_keeps_bounded_state_per_speaker(exported) -> None:
    _, path = exported
    engine = Engine.from_path(path)
    stream = Streamer(engine, window_s=1.0, hop_s=0.5, vad="none", max_speakers=2, adapt=True)
    assert stream.adaptation is not None and stream.speaker is None
    for name, f0 in (("ada", 110), ("ben", 180), ("cy", 250)):
        stream.set_speaker(name)
        events = stream.push(_speech(3.0, f0, 3))
        assert events and stream.adaptation.weight(name) == pytest.approx(len(events) * 0.5)
    assert stream.adaptation.speakers == ["ben", "cy"]  # bounded: the least recently heard went
    stream.set_speaker(None)  # no speaker known: strict windows, no voice named
    stream.push(_speech(2.0, 140, 4))
    assert stream.speaker is None and stream.adaptation.speakers == ["ben", "cy"]
    stream.adapt_unnamed = True  # voices named from the model's own statistics
    stream.push(_speech(2.0, 140, 4))
    assert stream.speaker is not None and stream.speaker.startswith("voice-")
    stream.reset_adaptation()
    assert len(stream.adaptation) == 0 and stream.speaker is None
    with pytest.raises(EngineError):
        stream.set_speaker("")
    assert Streamer(engine, window_s=1.0, hop_s=0.5, vad="none").adaptation is not None  # on by default
    off = Streamer(engine, window_s=1.0, hop_s=0.5, vad="none", adapt=False)
    off.push(_speech(2.0, 110, 5))
    assert off.adaptation is None
    for tau in (-1.0, float("nan")):
        with pytest.raises(EngineError, match="adapt_tau"):
            Streamer(engine, window_s=1.0, hop_s=0.5, vad="none", adapt_tau=tau)


def test_adaptation_changes_what_the_stream_reports(exported) -> None:
    _, path = exported
    engine = Engine.from_path(path)
    audio = _speech(4.0, 130, 6)
    strict = Streamer(engine, window_s=1.0, hop_s=0.5, vad="none", adapt=False, smoothing=0.0).push(audio)
    unnamed = Streamer(engine, window_s=1.0, hop_s=0.5, vad="none", smoothing=0.0, adapt=True).push(audio)
    assert [e.probs for e in unnamed] == [e.probs for e in strict]  # no speaker named: strict
    stream = Streamer(engine, window_s=1.0, hop_s=0.5, vad="none", smoothing=0.0, adapt=True)
    stream.set_speaker("ada")
    adapted = stream.push(audio)
    assert strict[0].probs == pytest.approx(adapted[0].probs, abs=1e-5)  # first window: nothing heard yet
    assert any(abs(a.probs[k] - s.probs[k]) > 1e-4 for a, s in zip(adapted[1:], strict[1:]) for k in a.probs)


def test_stream_state_sums_the_windows_strict_evidence(exported) -> None:
    """A window's evidence is the graph's without the offset: the running offset equals the protocol's
    offset of the same windows inferred strictly, so it cannot feed back into itself."""
    from physioser.runtime.adaptation import output_evidence, speaker_offset

    _, path = exported
    engine = Engine.from_path(path)
    audio = _speech(4.0, 140, 8)
    stream = Streamer(engine, window_s=1.0, hop_s=0.5, vad="none", smoothing=0.0, adapt=True, adapt_tau=2.0)
    stream.set_speaker("ada")
    events = stream.push(audio)
    assert len(events) == 7
    rows = np.concatenate([output_evidence(engine.infer(audio[None, int(e.start_s * 16000) : int(e.end_s * 16000)])) for e in events])
    balance = engine.metadata["adaptation"]["balance"]
    expected = speaker_offset(rows, engine.adaptation_dim, 2.0, balance, weights=np.full(len(rows), 0.5))
    np.testing.assert_allclose(stream.adaptation.offset("ada"), expected, rtol=1e-4, atol=1e-5)


def test_voices_named_from_the_statistics_cost_one_inference_per_window(exported) -> None:
    """With no speaker named and no voice embedding, each window is inferred once (with the last voice's
    offset), then named from its own statistics, and its evidence goes to that voice alone."""
    _, path = exported
    engine = Engine.from_path(path)
    audio = np.concatenate([_speech(3.0, 110, 1), _speech(3.0, 300, 2), _speech(3.0, 110, 3), _speech(2.0, 300, 4)])
    # a threshold that tells this untrained model's two synthetic voices apart
    stream = Streamer(engine, window_s=1.0, hop_s=0.5, vad="none", smoothing=0.0, adapt=True, adapt_tau=0.5,
                      voice_threshold=0.95, adapt_unnamed=True)
    calls, infer = [], engine.infer
    stream.engine = type("Counted", (), {"infer": lambda self, *a, **k: calls.append(k["speaker_offset"]) or infer(*a, **k),
                                         "__getattr__": lambda self, name: getattr(engine, name)})()
    events, voices = [], []
    for start in range(0, len(audio), 8000):
        got = stream.push(audio[start : start + 8000])
        events += got
        voices += [stream.speaker] * len(got)
    assert len(calls) == len(events) and len(set(voices)) >= 2
    assert sum(stream.adaptation.weight(v) for v in set(voices)) == pytest.approx(0.5 * len(events))
    assert not calls[0].any()  # the first window: no voice heard yet


def test_a_voice_embedding_names_the_voice_before_the_window_is_inferred(exported) -> None:
    """With ``voice_embedding``, the voice of each window is named from the embedding of its samples
    and the window inferred once, with that voice's offset: the events of a stream told those names."""
    _, path = exported
    engine = Engine.from_path(path)
    loud, quiet = _speech(3.0, 150, 1), 0.2 * _speech(3.0, 150, 2)
    audio = np.concatenate([loud, quiet, loud, quiet])
    calls = []

    def by_level(samples: np.ndarray) -> np.ndarray:  # two "speakers": loud and quiet
        calls.append(len(samples))
        return np.array([1.0, 0.0]) if samples.std() > 0.03 else np.array([0.0, 1.0])

    settings = dict(window_s=1.0, hop_s=0.5, vad="none", smoothing=0.0, adapt=True, adapt_tau=0.5, adapt_unnamed=True)
    unnamed = Streamer(engine, **settings, voice_embedding=by_level)
    named = Streamer(engine, **settings)
    seen = []
    for start in range(0, len(audio), 8000):
        chunk = audio[start : start + 8000]
        got = unnamed.push(chunk)
        if got:
            seen.append(unnamed.speaker)
            named.set_speaker(unnamed.speaker)
            want = named.push(chunk)
            assert len(want) == len(got) == 1 and got[0].probs == pytest.approx(want[0].probs, abs=1e-6)
        else:
            assert named.push(chunk) == []
    assert len(calls) == len(seen) and set(seen) == {"voice-1", "voice-2"}
    assert seen.index("voice-2") < len(seen) - 1 - seen[::-1].index("voice-1")  # voice-1 came back after voice-2


def test_adapted_events_do_not_depend_on_chunking(exported) -> None:
    """Each window's offset includes every window before it, whether they arrived in one push or many."""
    _, path = exported
    engine = Engine.from_path(path)
    audio = _speech(6.0, 150, 7)
    whole_stream = Streamer(engine, window_s=1.0, hop_s=0.5, vad="none", smoothing=0.0, batch=8, adapt=True)
    whole_stream.set_speaker("ada")
    whole = whole_stream.push(audio)
    chunked_stream = Streamer(engine, window_s=1.0, hop_s=0.5, vad="none", smoothing=0.0, batch=8, adapt=True)
    chunked_stream.set_speaker("ada")
    chunked = [e for i in range(0, len(audio), 1600) for e in chunked_stream.push(audio[i : i + 1600])]
    assert len(whole) == len(chunked) == 11
    for a, b in zip(whole, chunked):
        assert (a.start_s, a.end_s) == (b.start_s, b.end_s)
        assert a.probs == pytest.approx(b.probs, abs=1e-6)


def test_the_evaluation_protocol_on_whole_utterances(exported) -> None:
    """utterance_evidence + protocol_offsets: the graph's strict outputs per utterance, each speaker's
    offset with the metadata's shrinkage and balance; predict_file applies it to every segment."""
    from physioser.runtime.adaptation import evidence, protocol_offsets, speaker_offset, utterance_evidence
    from physioser.runtime.cli import predict_file

    _, path = exported
    engine = Engine.from_path(path)
    audio = [_speech(1.5, 110, 0), _speech(2.0, 115, 1), _speech(1.0, 220, 2), _speech(2.5, 230, 3)]
    speakers = ["a", "a", "b", "b"]
    ev = utterance_evidence(engine, audio)
    outs = [engine.infer(a[None]) for a in audio]
    np.testing.assert_allclose(ev, evidence(*(np.concatenate([o[n] for o in outs]) for n in ("features", "speaker_features", "probs"))))
    assert not protocol_offsets(engine, ev, speakers, 0).any()
    offsets = protocol_offsets(engine, ev, speakers, None)
    assert offsets.dtype == np.float32 and offsets.shape == (4, engine.adaptation_dim)
    np.testing.assert_allclose(offsets[2], speaker_offset(ev[2:], engine.adaptation_dim, 1.0, 0.6), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(offsets[0], offsets[1])
    got = predict_file(engine, audio[3], max_seconds=1.0, speaker_offset=offsets[3:])  # three segments, each adapted
    bounds = np.linspace(0, len(audio[3]), 4).astype(int)
    want = sum((b - a) / len(audio[3]) * engine.infer(audio[3][None, a:b], speaker_offset=offsets[3:])["probs"][0]
               for a, b in zip(bounds[:-1], bounds[1:]))
    np.testing.assert_allclose(list(got["probs"].values()), want, atol=1e-6)


def test_streamed_clips_each_get_the_windows_that_end_in_them(exported) -> None:
    """conditions.evaluate.stream_predictions: one stream per speaker, clip after clip with silence
    between; a clip's class comes from the windows ending in it (or the silence after it), and a
    silent clip gets none (-1)."""
    from types import SimpleNamespace

    from physioser.conditions.evaluate import stream_predictions

    _, path = exported
    engine = Engine.from_path(path)
    heard = [_speech(2.5, 210, 0), _speech(1.5, 230, 1), np.zeros(24000, np.float32), _speech(3.0, 250, 3), _speech(2.0, 220, 4)]
    rows = [SimpleNamespace(corpus="C", speaker=s) for s in ("a", "a", "a", "b", "b")]
    strict = stream_predictions(engine, rows, heard, adapt=False, seed=0)
    assert strict[2] == -1 and (np.delete(strict, 2) >= 0).all() and (strict < len(engine.class_names)).all()
    alone = stream_predictions(engine, rows[3:4], heard[3:4], adapt=False, seed=0)
    assert alone[0] == strict[3]  # no window of another clip or speaker leaks in
    adapted = stream_predictions(engine, rows, heard, adapt=True, seed=0)
    assert adapted[2] == -1 and (np.delete(adapted, 2) >= 0).all()


def test_unnamed_speakers_stream_per_corpus_or_all_corpora_in_one(exported, monkeypatch) -> None:
    """stream_predictions with no speaker named: one stream per corpus, or with ``mixed`` one stream
    for every corpus's clips; each voiced clip still gets its estimate and a silent one none."""
    from types import SimpleNamespace

    import physioser.runtime.streamer as streamer
    from physioser.conditions.evaluate import stream_predictions

    _, path = exported
    engine = Engine.from_path(path)
    made = []

    class Counted(streamer.Streamer):  # the spectral gate: silero scores this synthetic voice near its threshold
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs, vad="energy")
            made.append(self)

    monkeypatch.setattr(streamer, "Streamer", Counted)
    heard = [_speech(2.5, 210, 0), _speech(1.5, 230, 1), np.zeros(24000, np.float32), _speech(3.0, 250, 3), _speech(2.0, 220, 4)]
    rows = [SimpleNamespace(corpus=c, speaker=s) for c, s in (("C", "a"), ("C", "b"), ("C", "a"), ("D", "c"), ("D", "d"))]
    for mixed, streams in ((False, 2), (True, 1)):
        made.clear()
        pred = stream_predictions(engine, rows, heard, adapt=True, seed=0, named=False, mixed=mixed)
        assert len(made) == streams
        assert pred[2] == -1 and (np.delete(pred, 2) >= 0).all()


def _reference(dim: int, speakers: int = 6, seed: int = 0):
    from physioser.runtime.adaptation import SpeakerReference

    rng = np.random.default_rng(seed)
    return SpeakerReference(rng.normal(0, 1, (speakers, 2 * dim)), rng.uniform(0, 1, speakers), neighbours=3)


def _reference_bundle(exported, folder, reference):
    from physioser.export import write_bundle
    from physioser.runtime.adaptation import REFERENCE_FILE

    _, path = exported
    model_dir = folder / "model"
    model_dir.mkdir(parents=True)
    reference.save(model_dir / REFERENCE_FILE)
    return write_bundle(path, folder / "bundle", model_dir=model_dir)


def test_a_bundle_carries_the_training_speakers_that_adaptation_measures_against(exported, tmp_path) -> None:
    from physioser.runtime.adaptation import REFERENCE_FILE, protocol_offsets, speaker_offsets, utterance_evidence

    bare = Engine.from_path(exported[1])
    reference = _reference(bare.adaptation_dim)
    bundle = _reference_bundle(exported, tmp_path, reference)
    assert REFERENCE_FILE in (bundle / "SHA256SUMS").read_text()
    engine = Engine.from_path(bundle)
    assert bare.speaker_reference is None and engine.speaker_reference.neighbours == 3
    np.testing.assert_allclose(engine.speaker_reference.means, reference.means, atol=2e-3)  # kept in float16
    audio = [_speech(1.5, 110, 0), _speech(2.0, 115, 1), _speech(1.0, 220, 2)]
    ev = utterance_evidence(engine, audio)
    got = protocol_offsets(engine, ev, ["a", "a", "b"], None)
    want = speaker_offsets(ev, ["a", "a", "b"], None, engine.adaptation_dim, 1.0, 0.6, reference=engine.speaker_reference)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(got, protocol_offsets(bare, ev, ["a", "a", "b"], None), atol=1e-3)
    assert Streamer(engine, window_s=1.0, hop_s=0.5, vad="none").adaptation.reference is None  # the stream's default
    stream = Streamer(engine, window_s=1.0, hop_s=0.5, vad="none", adapt_reference=True)
    assert stream.adaptation.reference is engine.speaker_reference
    stream.set_speaker("a")
    stream.push(_speech(3.0, 120, 6))
    total, weight = stream.adaptation._state["a"]
    from physioser.runtime.adaptation import offsets_from_sums

    np.testing.assert_allclose(stream.adaptation.offset("a"), offsets_from_sums(
        total[None], np.array([weight]), engine.adaptation_dim, stream.adaptation.tau, 0.6, engine.speaker_reference)[0], atol=1e-6)


def test_a_speaker_reference_that_is_unlisted_replaced_or_does_not_fit_is_refused(exported, tmp_path) -> None:
    from physioser.runtime.adaptation import REFERENCE_FILE
    from physioser.runtime.integrity import write_integrity

    dim = Engine.from_path(exported[1]).adaptation_dim
    bundle = _reference_bundle(exported, tmp_path / "ok", _reference(dim))
    unlisted = _reference_bundle(exported, tmp_path / "unlisted", _reference(dim))
    write_integrity(unlisted, ["model.onnx", "metadata.json", "MODEL_CARD.md"])
    with pytest.raises(EngineError, match=f"{REFERENCE_FILE} is not listed in SHA256SUMS"):
        Engine.from_path(unlisted)
    replaced = _reference_bundle(exported, tmp_path / "replaced", _reference(dim))
    (replaced / REFERENCE_FILE).write_bytes((bundle / REFERENCE_FILE).read_bytes()[:-8] + bytes(8))
    with pytest.raises(EngineError, match="integrity check failed"):
        Engine.from_path(replaced)
    narrow = _reference_bundle(exported, tmp_path / "narrow", _reference(dim - 1))
    with pytest.raises(EngineError, match="does not fit"):
        Engine.from_path(narrow)
    garbage = _reference_bundle(exported, tmp_path / "garbage", _reference(dim))
    (garbage / REFERENCE_FILE).write_bytes(b"not an npz archive")
    write_integrity(garbage, ["model.onnx", "metadata.json", "MODEL_CARD.md", REFERENCE_FILE])
    with pytest.raises(EngineError, match="is not a speaker reference") as err:
        Engine.from_path(garbage)
    assert "npz archive" not in str(err.value)  # the file's contents are not echoed
