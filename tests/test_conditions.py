"""Conditions as data: deterministic for a seed, SNR as requested, RIR convolution keeping length and level."""

from __future__ import annotations

import json

import numpy as np
import pytest

from physioser.conditions import sources as S
from physioser.conditions import transforms as T
from physioser.conditions.spec import REAL_NOISE_TEST, REAL_NOISE_TRAIN, Condition, ConditionError, parse
from physioser.runtime.cli import synth_utterance
from tests.conftest import CORPORA_ROOT

NOISE_ROOT = CORPORA_ROOT.parent / "noise"
SPEECH = synth_utterance(3.0, seed=11)


@pytest.mark.parametrize("snr", [20, 10, 5, 0, -5])
@pytest.mark.parametrize("kind", ["white", "pink", "fan", "hum"])
def test_add_noise_hits_the_snr(snr, kind):
    noise = {"white": S.white_noise, "pink": S.coloured_noise, "fan": S.fan_noise, "hum": S.hum}[kind](
        1.3, np.random.default_rng(abs(snr)), 0.2)  # shorter than the speech: looped
    part = T.scaled_noise(SPEECH, noise, snr, np.random.default_rng(1))
    assert abs(T.snr_db(SPEECH, part) - snr) < 0.2
    mix = T.add_noise(SPEECH, noise, snr, np.random.default_rng(1))  # the same draw
    assert len(mix) == len(SPEECH) and mix.dtype == np.float32 and np.abs(mix).max() <= T.PEAK + 1e-6
    scale = float(np.abs(mix).max() / np.abs(SPEECH + part).max())  # 1 unless scaled down to PEAK, both parts alike
    np.testing.assert_allclose(mix, scale * (SPEECH + part), atol=2e-6)


def test_conditions_are_deterministic_for_a_seed():
    for spec in ("fan:10", "white:0+telephone", "reverb:0.3+pink:5", "robotmic+clip:0.05"):
        a = Condition(spec, seed=3).apply(SPEECH, "clip-a")
        np.testing.assert_array_equal(a, Condition(spec, seed=3).apply(SPEECH, "clip-a"))
        assert not np.array_equal(a, SPEECH)
        if spec != "robotmic+clip:0.05":  # no random draw in this one
            assert not np.array_equal(a, Condition(spec, seed=4).apply(SPEECH, "clip-a"))
            assert not np.array_equal(a, Condition(spec, seed=3).apply(SPEECH, "clip-b"))


@pytest.mark.parametrize("t60", [0.3, 0.6, 0.9])
def test_room_reverberation_time_length_and_level(t60):
    rng = np.random.default_rng(int(t60 * 10))
    rir = T.room_impulse_response(t60, 2.0, rng)
    # Schroeder backward integration: T30 extrapolated to 60 dB, within 15 % of the target
    energy = np.cumsum(rir[::-1] ** 2)[::-1]
    edc = 10 * np.log10(energy / energy[0] + 1e-30)
    t = np.arange(len(rir)) / 16000
    i5, i35 = np.argmax(edc <= -5), np.argmax(edc <= -35)
    t30 = 2 * (t[i35] - t[i5])
    assert abs(t30 - t60) / t60 < 0.15, t30
    y = T.reverberate(SPEECH, rir)
    assert len(y) == len(SPEECH)
    assert T.power(y) == pytest.approx(T.power(SPEECH), rel=1e-3)


def test_microphones_limit_the_band_and_clip():
    x = S.white_noise(2.0, np.random.default_rng(0), 0.1)
    spec = lambda y: np.abs(np.fft.rfft(y)) ** 2  # noqa: E731
    f = np.fft.rfftfreq(len(x), 1 / 16000)
    tel = spec(T.telephone(x))
    assert tel[(f > 4200)].mean() < 1e-4 * tel[(f > 500) & (f < 3000)].mean()
    robot = spec(T.robot_mic(x))
    assert robot[f < 60].mean() < 0.05 * robot[(f > 500) & (f < 3000)].mean()
    clipped = T.clip(SPEECH, 0.05)
    assert 0.04 <= np.mean(np.abs(clipped) >= 1.0) <= 0.06


def test_bad_conditions_are_named():
    for spec, message in (("snow:3", "unknown step"), ("fan", "needs a value"), ("telephone:3", "takes no value"),
                          ("fan:x", "not a number"), ("reverb:9", "T60")):
        with pytest.raises(ConditionError, match=message):
            parse(spec)


@pytest.mark.corpora
def test_real_noise_split_and_babble_from_other_corpora():
    if not NOISE_ROOT.is_dir():
        pytest.skip(f"../shared/noise not found at {NOISE_ROOT}")
    assert not set(REAL_NOISE_TEST) & set(REAL_NOISE_TRAIN)
    for spec in ("noise:5", "noise-train:5"):
        y = Condition(spec, noise_root=NOISE_ROOT).apply(SPEECH, "k")
        assert abs(T.snr_db(SPEECH, y - SPEECH) - 5) < 0.2
    cond = Condition("babble:10", corpora_root=CORPORA_ROOT)
    y = cond.apply(SPEECH, "k", corpus="RAVDESS")
    assert abs(T.snr_db(SPEECH, y - SPEECH) - 10) < 0.2
    talkers = cond._babble.talkers("RAVDESS")
    assert talkers and not any(name.startswith("RAVDESS/") for name, _ in talkers)


def test_augmenter_is_deterministic_per_clip_and_epoch():
    from physioser.conditions.augment import Augmenter

    aug = Augmenter(seed=1, p_noise=1.0, noise_kinds=("fan",), p_reverb=0.0, p_speed=1.0, speeds=(0.9,))
    a = aug(SPEECH, "clip", epoch=0)
    np.testing.assert_array_equal(a, Augmenter(seed=1, p_noise=1.0, noise_kinds=("fan",), p_reverb=0.0, p_speed=1.0,
                                               speeds=(0.9,))(SPEECH, "clip", epoch=0))
    assert not np.array_equal(a, aug(SPEECH, "clip", epoch=1))
    assert abs(len(a) - len(SPEECH) / 0.9) <= 2  # slowed down: longer


def test_robustness_curves_and_plot(tmp_path):
    """UA against SNR per noise kind and against T60, clean as the noiseless / anechoic point;
    combined conditions and microphones are no point of a curve."""
    from physioser.conditions.evaluate import curves, plot

    ua = {"clean": 0.8, "babble:20": 0.7, "babble:0": 0.4, "fan:10": 0.6, "reverb:0.9": 0.5, "reverb:0.3": 0.75,
          "telephone": 0.3, "reverb:0.6+fan:10": 0.2, "clip:0.01": 0.1}
    result = {"command": "physioser robustness ...", "clips": 10, "conditions": {k: {"all": {"ua": v}} for k, v in ua.items()}}
    assert curves(result) == {"babble": [(0.0, 0.4), (20.0, 0.7), (float("inf"), 0.8)], "fan": [(10.0, 0.6), (float("inf"), 0.8)],
                              "reverb": [(0.0, 0.8), (0.3, 0.75), (0.9, 0.5)]}
    png = plot(result, tmp_path / "sweep.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_robustness_reuses_the_conditions_an_earlier_run_holds():
    """`physioser robustness --out` resumes: conditions already measured for the same model, seed and
    clips are copied, the others run (here with no clip, so nothing is inferred)."""
    from types import SimpleNamespace

    from physioser.conditions.evaluate import evaluate

    earlier = {"clean": {"all": {"ua": 0.8}, "seconds": 1.0}}
    out = evaluate(SimpleNamespace(class_names=["a", "b"]), [], ["clean"], 0, CORPORA_ROOT, NOISE_ROOT, progress=False, done=earlier)
    assert out == {"clips": 0, "clip_keys": [], "labels": [], "conditions": earlier}


def test_two_models_are_compared_per_clip():
    from physioser.conditions.evaluate import paired

    def result(preds):
        return {"clip_keys": ["a", "b", "c", "d"], "labels": [0, 1, 1, 0],
                "conditions": {spec: {"all": {"ua": ua}, "predictions": p} for spec, (ua, p) in preds.items()}}

    new = result({"clean": (1.0, [0, 1, 1, 0]), "fan:10": (0.75, [0, 1, 0, 0]), "babble:10": (0.5, [1, 1, 0, 0])})
    old = result({"clean": (0.75, [0, 1, 1, 1]), "fan:10": (0.5, [1, 0, 1, 0])})
    old["conditions"]["babble:10"] = {"all": {"ua": 0.4}}  # a sweep without per-clip predictions: not paired
    out = paired(new, old)
    assert set(out) == {"clean", "fan:10"}
    assert out["clean"] == {"ua_new": 1.0, "ua_old": 0.75, "ua_diff": 0.25, "only_new_right": 1, "only_old_right": 0}
    assert (out["fan:10"]["only_new_right"], out["fan:10"]["only_old_right"]) == (2, 1)
    with pytest.raises(ValueError, match="same clips"):
        paired(new, {**old, "clip_keys": ["a", "b", "c", "e"]})


def test_the_comparison_command_adds_the_sign_test_and_each_corpus(tmp_path, capsys):
    from physioser.conditions.compare import main, sign_test

    assert sign_test(9, 1) == pytest.approx(0.021484375)  # 2 · (1 + 10) / 2**10
    assert sign_test(0, 0) == 1.0

    def result(ua_x, preds):
        return {"clip_keys": ["x/1", "x/2", "y/1"], "labels": [0, 1, 1],
                "conditions": {"clean": {"all": {"ua": 0.5}, "X": {"ua": ua_x}, "Y": {"ua": 1.0}, "seconds": 2.0,
                                         "predictions": preds}}}

    (tmp_path / "a.json").write_text(json.dumps(result(1.0, [0, 1, 1])))
    (tmp_path / "b.json").write_text(json.dumps(result(0.5, [1, 1, 1])))
    main([str(tmp_path / "a.json"), "--against", str(tmp_path / "b.json"), "--names", "A", "B", "--out", str(tmp_path / "t.md")])
    row = capsys.readouterr().out.splitlines()[-1]
    assert row == "| clean | 0.500 | 0.500 | +0.000 | 1.000 / 0.500 (+0.500) | 1.000 / 1.000 (+0.000) | 1 / 0 (p 1) |"
    assert (tmp_path / "t.md").read_text().endswith(row + "\n")
    main([str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--against", str(tmp_path / "b.json"), str(tmp_path / "a.json"),
          "--names", "A", "B"])
    row = capsys.readouterr().out.splitlines()[-1]  # seed pairs: the difference per corpus is their mean (+0.5, -0.5)
    assert row == "| clean | 0.500 ± 0.000 | 0.500 ± 0.000 | +0.000 ± 0.000 (0/2) | +0.000 | +0.000 | 1 / 0 (1), 0 / 1 (1) |"
    main([str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--against", str(tmp_path / "b.json"), str(tmp_path / "a.json"),
          "--names", "A", "B", "--pairs", "draws"])
    assert "| A (2 draws) | B (2 draws) |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="2 results against 1 references"):
        main([str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--against", str(tmp_path / "b.json")])
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(SystemExit, match="c.json: not a readable results file"):
        main([str(tmp_path / "c.json"), "--against", str(tmp_path / "b.json")])


@pytest.mark.parametrize("value", ["-3", "ten"])
def test_robustness_refuses_a_bad_adaptation_count(value):
    import typer
    from typer.testing import CliRunner

    from physioser.conditions.evaluate import register

    app = typer.Typer()
    register(app)
    app.callback()(lambda: None)
    res = CliRunner().invoke(app, ["robustness", "-c", "clean", "--adapt", value])
    assert res.exit_code == 2 and "give a number of clips >= 0 or 'all'" in res.output


def test_robustness_hears_the_speakers_the_given_checkpoint_held_out(tmp_path, corpora_root):
    """`--heldout-of`: the held-out speakers of another split (train.split_seed) are other speakers;
    a folder that is not a training checkpoint is refused by name."""
    import typer
    import yaml
    from typer.testing import CliRunner

    from physioser.build_default import heldout_rows
    from physioser.conditions.evaluate import register
    from physioser.paths import default_model_dir

    cfg = yaml.safe_load((default_model_dir() / "config.yaml").read_text())
    cfg["train"]["split_seed"] = cfg["train"].get("split_seed") or cfg["train"]["seed"] + 1
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    speakers = [{(r.corpus, r.speaker) for r in heldout_rows(d, corpora_root)} for d in (default_model_dir(), tmp_path)]
    assert speakers[0] and speakers[1] and speakers[0] != speakers[1]
    app = typer.Typer()
    register(app)
    app.callback()(lambda: None)
    res = CliRunner().invoke(app, ["robustness", "-c", "clean", "--heldout-of", str(tmp_path / "nothing"),
                                   "--corpora-root", str(corpora_root)])
    assert res.exit_code == 2 and "not a physioser model directory" in res.output


@pytest.mark.parametrize("args, message", [(["--adapt", "10", "--stream"], "the stream adapts from everything heard"),
                                           (["--window-s", "4"], "a window is for --stream only"),
                                           (["--adapt-tau", "8", "--stream"], "a shrinkage is for the"),
                                           (["--unnamed"], "unnamed speakers are for"),
                                           (["--mix-corpora", "--stream"], "add --unnamed"),
                                           (["--adapt-reference", "--adapt", "10"], "a reference is for the")])
def test_robustness_refuses_options_the_stream_does_not_take(args, message):
    import typer
    from typer.testing import CliRunner

    from physioser.conditions.evaluate import register

    app = typer.Typer()
    register(app)
    app.callback()(lambda: None)
    res = CliRunner().invoke(app, ["robustness", "-c", "clean", *args])
    assert res.exit_code == 2 and message in res.output
