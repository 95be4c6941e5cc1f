"""Statistics pooling and unsupervised speaker adaptation: the cached training path equals the
waveform path, adaptation never reads a label, the run-time state is bounded and resettable."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from physioser.features import FeatureSet
from physioser.model import Config, PhysioSER, build_backbone_for, build_model
from physioser.model.adaptation import RULES, adapted_predictions, speaker_evidence, speaker_reference, training_offsets
from physioser.model.config import AdaptConfig, ConfigError, load_config
from physioser.model.pooling import frame_statistics
from physioser.runtime.adaptation import (AdaptationError, SpeakerAdaptation, SpeakerReference, evidence, mixing_weight,
                                          offsets_from_sums, speaker_offset, speaker_offsets)

STATS = ["model.branches=[backbone]", "cpa.weight=0", "model.statistics=true", "model.head=mlp", "model.dim=32"]
CLASSES = ["neutral", "happy", "angry", "sad"]


def _cfg(*overrides: str, layers: int = 5, dim: int = 384) -> Config:
    return replace(load_config(None, [*STATS, *overrides]), class_names=CLASSES).with_backbone_shape(layers, dim)


def _synthetic(n_speakers: int = 6, per: int = 12, layers: int = 2, dim: int = 8, seed: int = 0) -> FeatureSet:
    """Rows whose statistics are a speaker shift plus a class shift plus noise."""
    rng = np.random.default_rng(seed)
    speaker_shift = rng.normal(0, 2, (n_speakers, layers, dim))
    class_shift = rng.normal(0, 1, (len(CLASSES), layers, dim))
    labels = np.tile(np.arange(len(CLASSES)), n_speakers * per // len(CLASSES))
    speakers = np.repeat(np.arange(n_speakers), per)
    mean = speaker_shift[speakers] + class_shift[labels] + rng.normal(0, 0.3, (len(labels), layers, dim))
    spread = np.abs(1 + 0.1 * class_shift[labels] + rng.normal(0, 0.05, (len(labels), layers, dim)))
    rows = [SimpleNamespace(corpus="synthetic", speaker=f"s{s}") for s in speakers]
    return FeatureSet(rows=rows, labels=labels.astype(np.int64), class_names=CLASSES,
                      backbone_segments=torch.tensor(mean, dtype=torch.float32)[:, :, None, :],
                      backbone_counts=torch.ones(len(labels), 1), backbone_spread=torch.tensor(spread, dtype=torch.float32))


def _model(data: FeatureSet, *overrides: str) -> PhysioSER:
    from physioser.train import new_model

    cfg = _cfg(*overrides, layers=data.backbone_spread.shape[1], dim=data.backbone_spread.shape[2])
    return new_model(cfg, data, np.arange(len(data)))


def test_frame_statistics_match_the_feature_cache_definition() -> None:
    x = torch.randn(3, 2, 17, 5)
    lengths = torch.tensor([17, 9])
    mean, std = frame_statistics(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        s, m = torch.std_mean(x[:, b, :n], dim=1, correction=0)  # as FeatureCache.compute
        assert torch.allclose(mean[:, b], m, atol=1e-6) and torch.allclose(std[:, b], s, atol=1e-5)


def test_statistics_training_path_equals_waveform_path() -> None:
    cfg = _cfg()
    backbone = build_backbone_for(cfg)
    torch.manual_seed(0)
    model = build_model(cfg, backbone).eval()
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([16000, 11000])
    x = (0.1 * torch.randn(2, 16000, generator=g)) * (torch.arange(16000)[None] < lengths[:, None])
    means, stds = [], []
    with torch.no_grad():
        for b in range(2):
            hidden, _ = backbone(x[b : b + 1, : lengths[b]], lengths[b : b + 1])
            s, m = torch.std_mean(torch.stack([h[0] for h in hidden]), dim=1, correction=0)
            means.append(m)
            stds.append(s)
        batch = {"labels": torch.zeros(2, dtype=torch.long), "backbone_segments": torch.stack(means)[:, :, None],
                 "backbone_counts": torch.ones(2, 1), "backbone_spread": torch.stack(stds)}
        offset = 0.3 * torch.randn(2, model.class_offsets.shape[1], generator=g)
        direct = model(x, lengths, offset)
        cached = model.forward_cached(dict(batch, speaker_offset=offset))
    assert torch.allclose(direct["logits"], cached["logits"], atol=2e-4, rtol=1e-4)
    assert torch.allclose(direct["features"], cached["features"], atol=2e-3, rtol=1e-3)


def test_adaptation_never_reads_a_label() -> None:
    data = _synthetic()
    model = _model(data).eval()
    test = np.arange(len(data))
    shuffled = FeatureSet(rows=data.rows, labels=np.random.default_rng(1).permutation(data.labels), class_names=CLASSES,
                          backbone_segments=data.backbone_segments, backbone_counts=data.backbone_counts,
                          backbone_spread=data.backbone_spread)
    assert np.array_equal(speaker_evidence(model, data, test), speaker_evidence(model, shuffled, test))
    reference = speaker_reference(model, data, np.arange(36))  # the training speakers' labels, read on purpose
    test = np.arange(36, len(data))
    for rule in RULES:
        kwargs = {"reference": reference} if rule == "referenced" else {}
        a = adapted_predictions(model, data, test, [5, None], tau=2.0, rule=rule, **kwargs)
        b = adapted_predictions(model, shuffled, test, [5, None], tau=2.0, rule=rule, **kwargs)
        assert all(np.array_equal(a[k], b[k]) for k in a), rule


def test_only_the_referenced_rule_takes_a_reference() -> None:
    data = _synthetic()
    model = _model(data).eval()
    reference = speaker_reference(model, data, np.arange(36))
    with pytest.raises(ValueError, match="referenced"):
        adapted_predictions(model, data, np.arange(36, 72), [5], tau=1.0, rule="referenced")
    with pytest.raises(ValueError, match="referenced"):
        adapted_predictions(model, data, np.arange(36, 72), [5], tau=1.0, rule="balanced", reference=reference)


def test_speaker_reference_holds_each_training_speakers_mean_and_emotion_balance() -> None:
    data = _synthetic()
    model = _model(data).eval()
    train = np.arange(36)  # speakers s0-s2, every emotion equally often
    reference = speaker_reference(model, data, train)
    rows = speaker_evidence(model, data, train)
    dim = model.class_offsets.shape[1]
    assert reference.means.shape == (3, 2 * dim)
    assert np.allclose(reference.means[1], rows[12:24, : 2 * dim].mean(0))
    assert np.allclose(reference.balance, 1.0)
    one_emotion = np.flatnonzero(data.labels == 2)[:9]  # angry only
    assert np.allclose(speaker_reference(model, data, one_emotion).balance, 0.0)


def test_speaker_reference_keeps_each_kind_of_training_copy_of_a_speaker_apart() -> None:
    from dataclasses import replace

    data = _synthetic()
    model = _model(data).eval()
    train = np.arange(36)
    kinds = np.array(["recording", "augmented"] * 18, dtype=object)
    kinds[24:36] = "recording"  # speaker s2: recordings only
    reference = speaker_reference(model, replace(data, copy_kinds=np.concatenate([kinds, np.full(36, "recording")])), train)
    rows = speaker_evidence(model, data, train)
    dim = model.class_offsets.shape[1]
    # sorted entries: (s0, augmented), (s0, recording), (s1, augmented), (s1, recording), (s2, recording)
    assert reference.means.shape == (5, 2 * dim)
    assert np.allclose(reference.means[0], rows[1:12:2, : 2 * dim].mean(0))
    assert np.allclose(reference.means[3], rows[12:24:2, : 2 * dim].mean(0))
    assert np.allclose(reference.means[4], rows[24:36, : 2 * dim].mean(0))
    # the emotion balance is the speaker's, over all their rows, whatever each kind of copy holds
    assert np.allclose(reference.balance, 1.0)


def _evidence(n: int, dim: int = 3, classes: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    x, c = rng.normal(size=(n, dim)), rng.normal(size=(n, dim))
    p = rng.dirichlet(np.ones(classes), size=n)
    return x, c, p, evidence(x, c, p)


def test_speaker_offsets_protocols() -> None:
    x, c, p, e = _evidence(10)
    spk = np.array(["a"] * 6 + ["b"] * 4)
    assert np.array_equal(speaker_offsets(e, spk, 0, 3, tau=1.0, balance=0.5), np.zeros_like(x))
    full = speaker_offsets(e, spk, None, 3, tau=2.0, balance=0.0)  # balance 0: the compensated mean
    assert np.allclose(full[0], c[:6].sum(0) / (6 + 2.0)) and np.allclose(full[-1], c[6:].sum(0) / (4 + 2.0))
    k3 = speaker_offsets(e, spk, 3, 3, tau=0.0, balance=0.0, seed=4)
    assert np.allclose(k3[:6], k3[0]) and any(np.allclose(k3[0], c[list(s)].mean(0)) for s in _triples(6))
    assert np.array_equal(k3, speaker_offsets(e, spk, 3, 3, tau=0.0, balance=0.0, seed=4))
    with pytest.raises(AdaptationError):
        speaker_offsets(e, spk[:3], 3, 3, tau=1.0, balance=0.0)


def test_offset_mixes_plain_and_compensated_means_by_balance_and_prediction_entropy() -> None:
    x, c, _, _ = _evidence(4)
    spread, one = np.full((4, 2), 0.5), np.tile([1.0, 0.0], (4, 1))
    # predictions spread over every class: the weight is the balance (1: the plain speaker mean)
    assert np.allclose(speaker_offset(evidence(x, c, spread), 3, tau=0.0, balance=1.0), x.mean(0))
    assert np.allclose(speaker_offset(evidence(x, c, spread), 3, tau=0.0, balance=0.25), 0.25 * x.mean(0) + 0.75 * c.mean(0))
    # one predicted class: the compensated mean whatever the balance
    assert np.allclose(speaker_offset(evidence(x, c, one), 3, tau=0.0, balance=1.0), c.mean(0))
    assert mixing_weight(np.array([0.5, 0.5]), 0.6) == pytest.approx(0.6) and mixing_weight(np.array([1.0, 0.0]), 1.0) == 0.0
    assert np.array_equal(offsets_from_sums(np.zeros((1, 8)), np.zeros(1), 3, 1.0, 1.0), np.zeros((1, 3)))


def test_referenced_offset_is_measured_against_the_nearest_training_speakers() -> None:
    dim = 2
    # two training populations far apart: one balanced (balance 1), one in a single emotion (balance 0)
    means = np.array([[10.0, 0, 9, 0], [11, 0, 10, 0], [-10, 0, -10, 0], [-11, 0, -10, 0]])
    reference = SpeakerReference(means, np.array([1.0, 1.0, 0.0, 0.0]), neighbours=2)
    near, balance = reference.nearest(np.array([[9.0, 1.0], [-12.0, 0.0]]))
    assert np.allclose(near, [[10.5, 0, 9.5, 0], [-10.5, 0, -10, 0]]) and np.allclose(balance, [1.0, 0.0])
    probs = np.full(2, 0.5)  # predictions spread over both classes: normalised entropy 1
    rows = np.array([[11.5, 2.0, 12.0, 1.0, *probs], [12.5, 2.0, 12.0, 3.0, *probs]])  # two utterances near the first population
    got = speaker_offset(rows, dim, tau=0.0, balance=0.0, reference=reference)
    assert np.allclose(got, np.array([12.0, 2.0]) - [10.5, 0.0])  # the plain mean (local balance 1) less the neighbours'
    assert np.allclose(speaker_offset(rows, dim, tau=0.0, balance=0.0), [12.0, 2.0])  # no reference: compensated, from 0
    far = rows - np.array([25.0, 2, 22, 1, 0, 0])  # near the single-emotion population (balance 0): not trusted at all
    assert np.allclose(speaker_offset(far, dim, tau=0.0, balance=1.0, reference=reference), 0.0)
    # every training speaker as neighbours (balance 0.5, a = 0.5): the mixed mean less theirs, scaled by 0.5
    everyone = SpeakerReference(means, np.array([1.0, 1.0, 0.0, 0.0]), neighbours=4)
    x, c = np.array([12.0, 2.0]) - [0.0, 0.0], np.array([12.0, 2.0]) - [-0.25, 0.0]
    assert np.allclose(speaker_offset(rows, dim, tau=0.0, balance=1.0, reference=everyone), 0.5 * (0.5 * x + 0.5 * c))
    assert np.allclose(offsets_from_sums(np.zeros((1, 2 * dim + 2)), np.zeros(1), dim, 1.0, 1.0, reference), 0.0)


def test_a_saved_speaker_reference_keeps_the_speaker_features_as_a_low_rank_shift(tmp_path) -> None:
    rng = np.random.default_rng(0)
    x, probs, class_offsets = rng.normal(0, 3, (30, 64)), rng.dirichlet(np.ones(4), 30), rng.normal(0, 1, (4, 64))
    reference = SpeakerReference(np.concatenate([x, x - probs @ class_offsets], axis=1), rng.uniform(0, 1, 30), neighbours=3)
    reference.save(tmp_path / "ref.npz")
    with np.load(tmp_path / "ref.npz") as data:  # the features' means, and the emotions' shift in rank <= classes
        assert data["means"].shape == (30, 64) and data["shift_weights"].shape[1] <= 4 and data["shift_basis"].shape[0] <= 4
    loaded = SpeakerReference.load(tmp_path / "ref.npz")
    np.testing.assert_allclose(loaded.means, reference.means, atol=1e-2)  # float16 features
    np.testing.assert_allclose(loaded.balance, reference.balance, atol=1e-6)
    # a reference written with both means side by side still loads
    np.savez(tmp_path / "both.npz", means=reference.means.astype(np.float16), balance=reference.balance.astype(np.float32),
             neighbours=np.array(3))
    np.testing.assert_allclose(SpeakerReference.load(tmp_path / "both.npz").means, reference.means, atol=1e-2)


def test_a_speaker_reference_that_does_not_fit_is_refused() -> None:
    with pytest.raises(AdaptationError, match="reference"):
        SpeakerReference(np.zeros((3, 4)), np.zeros(3), neighbours=0)
    with pytest.raises(AdaptationError, match="reference"):
        SpeakerReference(np.zeros((3, 4)), np.full(3, 1.5))
    with pytest.raises(AdaptationError, match="width"):
        SpeakerReference(np.zeros((3, 4)), np.zeros(3), neighbours=2).nearest(np.zeros((1, 3)))


def test_balance_is_the_emotion_spread_of_the_training_speakers() -> None:
    spans = _synthetic()  # every speaker speaks every emotion equally often
    assert float(_model(spans).speaker_balance) == pytest.approx(1.0)
    one = FeatureSet(rows=[SimpleNamespace(corpus="synthetic", speaker=f"s{y}") for y in spans.labels], labels=spans.labels,
                     class_names=CLASSES, backbone_segments=spans.backbone_segments, backbone_counts=spans.backbone_counts,
                     backbone_spread=spans.backbone_spread)  # one emotion per speaker
    assert float(_model(one).speaker_balance) == pytest.approx(0.0)


def test_a_checkpoint_saved_before_the_balance_existed_loads_with_balance_zero(tmp_path) -> None:
    from physioser.model.checkpoint import load_model, save_model

    data = _synthetic()
    model = _model(data)
    cfg = _cfg(layers=2, dim=8)
    save_model(model, cfg, tmp_path)
    from safetensors.torch import load_file, save_file

    state = load_file(str(tmp_path / "model.safetensors"))
    assert "speaker_balance" in state
    save_file({k: v for k, v in state.items() if k != "speaker_balance"}, str(tmp_path / "model.safetensors"))
    assert float(load_model(tmp_path, with_backbone=False).speaker_balance) == 0.0


def _triples(n: int):
    from itertools import combinations

    return combinations(range(n), 3)


def test_training_offsets_use_other_utterances_of_the_same_speaker() -> None:
    feats = np.eye(8)
    rows = evidence(np.zeros((8, 8)), feats, np.tile([1.0, 0.0], (8, 1)))
    spk = np.array(["a"] * 4 + ["b"] * 4)
    adapt = AdaptConfig(tau=0.0, train_prob=1.0, train_k=(2,))
    off = training_offsets(rows, spk, adapt, np.random.default_rng(0), 8, 1.0)
    for i in range(8):
        own = slice(0, 4) if i < 4 else slice(4, 8)
        assert off[i, i] == 0 and np.isclose(off[i, own].sum(), 1.0) and np.isclose(off[i].sum(), 1.0)
        assert np.count_nonzero(off[i]) == 2
    none = training_offsets(rows, spk, replace(adapt, train_prob=0.0), np.random.default_rng(0), 8, 1.0)
    assert not none.any()


def _update(state: SpeakerAdaptation, speaker, value: float, weight: float = 1.0) -> None:
    """One utterance whose features and speaker features are ``value`` everywhere (predictions: one class)."""
    v = np.full(state.dim, value)
    state.update(speaker, evidence(v, v, np.eye(state.classes)[:1])[0], weight)


def test_speaker_state_is_bounded_resettable_and_saved_only_when_asked(tmp_path) -> None:
    state = SpeakerAdaptation(dim=3, classes=2, tau=1.0, max_speakers=2, horizon=None)
    assert np.array_equal(state.offset("x"), np.zeros(3)) and np.array_equal(state.offset(None), np.zeros(3))
    _update(state, "a", 1.0)
    _update(state, "b", 2.0)
    assert np.allclose(state.offset("a"), 0.5)  # 1 / (1 + tau); also marks "a" recently used
    _update(state, "c", 1.0)
    assert state.speakers == ["a", "c"] and len(state) == 2  # "b" was least recently used
    _update(state, None, 1.0)  # no identity: nothing kept
    assert len(state) == 2 and not list(tmp_path.iterdir())
    state.save(tmp_path / "state.npz")
    other = SpeakerAdaptation(dim=3, classes=2, tau=1.0, max_speakers=2)
    other.load(tmp_path / "state.npz")
    assert np.allclose(other.offset("a"), state.offset("a")) and other.weight("c") == 1.0
    state.reset("a")
    assert state.speakers == ["c"]
    state.reset()
    assert len(state) == 0
    with pytest.raises(AdaptationError):
        state.update("a", np.ones(4 + 4 + 2))
    with pytest.raises(AdaptationError):
        SpeakerAdaptation(dim=4, classes=2, tau=1.0).load(tmp_path / "state.npz")
    with pytest.raises(AdaptationError):
        SpeakerAdaptation(dim=3, classes=3, tau=1.0).load(tmp_path / "state.npz")


def test_running_state_gives_the_evaluation_protocols_offset() -> None:
    x, c, p, e = _evidence(7, dim=5, classes=4, seed=3)
    state = SpeakerAdaptation(dim=5, classes=4, tau=1.0, balance=0.7, horizon=None)
    for i in range(7):
        state.update("a", e[i])
    assert np.allclose(state.offset("a"), speaker_offsets(e, ["a"] * 7, None, 5, tau=1.0, balance=0.7)[0], atol=1e-6)


def test_running_estimate_forgets_beyond_its_horizon() -> None:
    state = SpeakerAdaptation(dim=1, classes=2, tau=0.0, horizon=4.0)
    for _ in range(20):
        _update(state, "a", 1.0)
    for _ in range(20):
        _update(state, "a", -1.0)
    assert state.weight("a") == pytest.approx(4.0) and state.offset("a")[0] < -0.9


def test_one_model_learns_strict_and_adapted_inputs() -> None:
    from physioser.train import fit

    data = _synthetic(n_speakers=8, per=16)
    train, test = np.arange(0, 6 * 16), np.arange(6 * 16, 8 * 16)
    model = _model(data, "adapt.train_prob=0.5", "train.mixup=0.4", "train.epochs=25", "train.device=cpu", "adapt.tau=1.0")
    cfg = _cfg("adapt.train_prob=0.5", "train.mixup=0.4", "train.epochs=25", "train.device=cpu", "adapt.tau=1.0",
               layers=2, dim=8)
    fit(model, data, train, None, cfg, "unused", progress=False, save=False)
    out = adapted_predictions(model, data, test, [0, None], tau=1.0)
    ua = {k: float(np.mean([(v.argmax(1) == data.labels[test])[data.labels[test] == c].mean() for c in range(4)]))
          for k, v in out.items()}
    # speakers shift the statistics twice as much as emotions: knowing the speaker must help
    assert ua[None] > ua[0] and ua[None] > 0.8


def test_adaptation_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="statistics"):
        load_config(None, ["adapt.train_prob=0.5"])
    with pytest.raises(ConfigError, match="segments"):
        load_config(None, ["model.statistics=true", "model.segments=4"])


def test_eval_refuses_an_unknown_adaptation_rule_naming_it(tmp_path) -> None:
    from typer.testing import CliRunner

    from physioser.cli import app

    res = CliRunner().invoke(app, ["eval", "-c", "RAVDESS", "--adapt", "10", "--adapt-rule", "nearest", "--corpora-root", str(tmp_path)])
    assert res.exit_code != 0 and "--adapt-rule" in res.output and "'nearest'" in res.output


def test_a_trained_model_keeps_its_speaker_reference_beside_its_weights(tmp_path) -> None:
    from physioser.model.adaptation import write_speaker_reference
    from physioser.runtime.adaptation import REFERENCE_FILE

    data = _synthetic()
    model = _model(data).eval()
    path = write_speaker_reference(model, data, np.arange(36), tmp_path)
    assert path == tmp_path / REFERENCE_FILE
    saved, computed = SpeakerReference.load(path), speaker_reference(model, data, np.arange(36))
    np.testing.assert_allclose(saved.means, computed.means, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(saved.balance, computed.balance, atol=1e-6)
    assert saved.neighbours == computed.neighbours
    pooled_otherwise = SimpleNamespace(statistics=False)  # no speaker offset input: nothing to measure against
    assert write_speaker_reference(pooled_otherwise, data, np.arange(36), tmp_path / "other") is None
