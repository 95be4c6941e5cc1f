"""``physioser robustness``: UA of a model under listening conditions, clean beside each.

The default: the shipped model on the speakers its training held out (``build_default.heldout_rows``:
15 % of the speakers of each training corpus), whole-utterance predictions as in its model card
(``predict_file``, no speech gate: the gate is measured apart, ``python -m physioser.bench.gate``).
Every condition is applied to the same clips with the same seed (:mod:`physioser.conditions.spec`), so
the differences to clean are paired per clip; they are reported per corpus and overall.

    OMP_NUM_THREADS=1 physioser robustness -c clean -c babble:20 -c babble:10 -c babble:5 -c babble:0 \\
        -c fan:20 -c fan:10 -c fan:5 -c fan:0 -c reverb:0.3 -c reverb:0.6 -c reverb:0.9 \\
        --out eval/results/robustness/default_model_recipe.json

writes the JSON, a markdown table and a PNG of UA against SNR and T60 (``--out`` resumes: conditions
it already holds for the same model, seed and clips are not rerun).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import typer

from physioser.runtime.adaptation import STREAM_TAU


STREAM_GAP_S = 2.0
"""Least silence between two clips of a speaker's stream (:func:`stream_predictions`; at least one
window, so that no window holds two clips)."""


def stream_predictions(engine, rows, heard: list[np.ndarray], adapt: bool, seed: int, window_s: float | None = None,
                       adapt_tau: float = STREAM_TAU, named: bool = True, mixed: bool = False,
                       streamer_options: dict | None = None) -> np.ndarray:
    """Class index per clip when each speaker's clips (in an order drawn from ``seed``) are streamed
    through one :class:`~physioser.runtime.streamer.Streamer` (speech gate, no smoothing, the speaker
    named with ``set_speaker``, running adaptation if ``adapt``), clip after clip with
    :data:`STREAM_GAP_S` (or one window, if longer) of silence after each: the argmax of the mean
    probabilities of the windows that end within the clip or the silence after it; -1 where no
    window does. ``window_s``: the stream's window (default: the model's); ``adapt_tau``: the running
    adaptation's shrinkage. ``named=False``: each corpus's held-out speakers' clips in one stream, in
    an order drawn from ``seed``, with no speaker named (the stream names voices itself, ``adapt_unnamed``); with ``mixed``,
    every corpus's in one stream. ``streamer_options``: further keyword arguments of each Streamer."""
    from physioser.runtime.streamer import Streamer

    names = engine.class_names
    sr = engine.sample_rate
    window = engine.metadata["window_s"] if window_s is None else window_s
    gap = np.zeros(int(max(STREAM_GAP_S, window) * sr), dtype=np.float32)
    speakers = np.array([f"{r.corpus}/{r.speaker}" if named else "all" if mixed else r.corpus for r in rows])
    rng = np.random.default_rng(seed)
    pred = np.full(len(rows), -1, dtype=np.int64)
    for speaker in sorted(set(speakers.tolist())):
        order = rng.permutation(np.flatnonzero(speakers == speaker))
        stream = Streamer(engine, window_s, smoothing=0.0, adapt=adapt, adapt_tau=adapt_tau, adapt_unnamed=not named,
                          **(streamer_options or {}))
        stream.set_speaker(speaker if named else None)
        events, spans, t = [], [], 0
        for i in order:
            x = np.asarray(heard[i], dtype=np.float32)
            events += stream.push(x) + stream.push(gap)
            spans.append((t, t + len(x) + len(gap)))
            t += len(x) + len(gap)
        events += stream.flush()
        ends = np.array([e.end_s * sr for e in events])
        probs = np.array([[e.probs[n] for n in names] for e in events]).reshape(len(events), len(names))
        for i, (a, b) in zip(order, spans):
            mine = (ends > a) & (ends <= b)
            if mine.any():
                pred[i] = int(probs[mine].mean(0).argmax())
    return pred


def evaluate(engine, rows, conditions: list[str], seed: int, corpora_root: Path, noise_root: Path,
             progress: bool = True, done: dict | None = None, adapt_k: int | None = 0, stream: bool = False,
             window_s: float | None = None, adapt_tau: float = STREAM_TAU, named: bool = True, mixed: bool = False,
             streamer_options: dict | None = None) -> dict:
    """UA per condition (all clips and per corpus) and every clip's predicted class index
    (``predictions``, in the order of ``clip_keys``, true classes in ``labels``: for comparisons of two
    models paired per clip, :func:`paired`); conditions in ``done`` (results of an earlier run of the
    same model, seed and clips) are taken from it, not rerun. ``adapt_k`` > 0 (``None``: all): the
    adapted protocol, each speaker's offset from ``adapt_k`` random of their clips heard under the
    same condition (:func:`~physioser.runtime.adaptation.protocol_offsets`, seeded by ``seed``).
    ``stream``: the runtime path instead of whole files (:func:`stream_predictions`; ``adapt_k`` 0: no
    adaptation, else the stream's running adaptation with shrinkage ``adapt_tau``; ``window_s`` its window,
    default the model's; ``named=False``, ``mixed``, ``streamer_options``: see :func:`stream_predictions`);
    clips without an estimate are predicted -1, left out of the metrics and counted (``no_estimate``)."""
    from tqdm import tqdm

    from physioser.audio import load_audio
    from physioser.conditions.spec import Condition
    from physioser.data.labels import to_four_class
    from physioser.model.metrics import classification_metrics
    from physioser.runtime.adaptation import protocol_offsets, utterance_evidence
    from physioser.runtime.cli import predict_file

    names = engine.class_names
    y_true = np.array([names.index(to_four_class(r.canonical)) for r in rows])
    corpus = np.array([r.corpus for r in rows])
    audio = [load_audio(r.path) for r in rows]
    keys = [str(Path(r.path).relative_to(corpora_root)) for r in rows]
    speakers = [f"{r.corpus}/{r.speaker}" for r in rows]
    out: dict = {"clips": len(rows), "clip_keys": keys, "labels": y_true.tolist(), "conditions": {}}
    for spec in conditions:
        if spec in (done or {}):
            out["conditions"][spec] = done[spec]
            continue
        cond = Condition(spec, seed=seed, noise_root=noise_root, corpora_root=corpora_root)
        t0 = time.perf_counter()
        heard = (cond.apply(x, key, corpus=r.corpus) for r, x, key in zip(rows, audio, keys))
        if stream:
            heard = list(tqdm(heard, desc=f"{spec} (streaming)", total=len(rows), disable=not progress, mininterval=5))
            pred = stream_predictions(engine, rows, heard, adapt_k != 0, seed, window_s, adapt_tau, named, mixed, streamer_options)
        elif adapt_k == 0:
            pred = [names.index(predict_file(engine, y)["label"]) for y in tqdm(heard, desc=spec, total=len(rows),
                                                                               disable=not progress, mininterval=5)]
        else:
            heard = list(tqdm(heard, desc=f"{spec} (adapting)", total=len(rows), disable=not progress, mininterval=5))
            offsets = protocol_offsets(engine, utterance_evidence(engine, heard), speakers, adapt_k, seed)
            pred = [names.index(predict_file(engine, y, speaker_offset=offsets[i : i + 1])["label"]) for i, y in enumerate(heard)]
        pred = np.array(pred)
        est = pred >= 0
        res = {"all": classification_metrics(y_true[est], pred[est], names)}
        for c in sorted(set(corpus)):
            m = (corpus == c) & est
            res[c] = classification_metrics(y_true[m], pred[m], names)
        if stream:
            res["no_estimate"] = int((~est).sum())
        res["seconds"] = round(time.perf_counter() - t0, 1)
        res["predictions"] = pred.tolist()
        out["conditions"][spec] = res
        print(f"{spec}: UA {res['all']['ua']:.3f}", flush=True)
    return out


def markdown(result: dict) -> str:
    conds = list(result["conditions"])
    groups = [k for k in result["conditions"][conds[0]] if k not in ("seconds", "predictions", "no_estimate")]
    clean = result["conditions"].get("clean")
    lines = ["| condition | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
    for spec in conds:
        cells = []
        for g in groups:
            ua = result["conditions"][spec][g]["ua"]
            diff = f" ({ua - clean[g]['ua']:+.3f})" if clean and spec != "clean" else ""
            cells.append(f"{ua:.3f}{diff}")
        lines.append(f"| {spec} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def paired(new: dict, old: dict) -> dict[str, dict]:
    """{condition: UA of each, the difference, and clips right only under ``new`` / only under ``old``}
    for two ``physioser robustness`` results on the same clips (conditions both hold with per-clip
    predictions; a condition's audio is the same for both, seeded per clip)."""
    if new.get("clip_keys") != old.get("clip_keys") or new.get("labels") != old.get("labels"):
        raise ValueError("the two results are not on the same clips")
    y = np.asarray(new["labels"])
    out = {}
    for spec, a in new["conditions"].items():
        b = old["conditions"].get(spec)
        if b is None or "predictions" not in a or "predictions" not in b:
            continue
        ra, rb = np.asarray(a["predictions"]) == y, np.asarray(b["predictions"]) == y
        out[spec] = {"ua_new": a["all"]["ua"], "ua_old": b["all"]["ua"], "ua_diff": a["all"]["ua"] - b["all"]["ua"],
                     "only_new_right": int((ra & ~rb).sum()), "only_old_right": int((~ra & rb).sum())}
    return out


def curves(result: dict) -> dict[str, list[tuple[float, float]]]:
    """{noise kind or "reverb": [(SNR dB or T60 s, UA of all clips)]} of the single-step conditions,
    clean as the anechoic / noiseless point (T60 0; SNR +inf)."""
    from physioser.conditions.spec import NOISE_KINDS, parse

    conds = result["conditions"]
    out: dict[str, list[tuple[float, float]]] = {}
    for spec, res in conds.items():
        steps = parse(spec)
        if len(steps) == 1 and (steps[0].kind in NOISE_KINDS or steps[0].kind == "reverb"):
            out.setdefault(steps[0].kind, []).append((steps[0].value, res["all"]["ua"]))
    if "clean" in conds:
        for kind, points in out.items():
            points.append((0.0 if kind == "reverb" else float("inf"), conds["clean"]["all"]["ua"]))
    return {k: sorted(v) for k, v in out.items()}


def plot(result: dict, path: Path) -> Path:
    """UA against SNR (noise kinds) and against T60 (rooms), one panel each, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = curves(result)
    noise = {k: v for k, v in lines.items() if k != "reverb"}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    finite = sorted({x for v in noise.values() for x, _ in v if np.isfinite(x)})
    clean_x = (finite[-1] + 10) if finite else 30.0  # where "clean" sits on the SNR axis
    for kind, points in noise.items():
        xs = [clean_x if not np.isfinite(x) else x for x, _ in points]
        axes[0].plot(xs, [ua for _, ua in points], "o-", label=kind)
    axes[0].set_xticks([*finite, clean_x], [*(f"{x:g}" for x in finite), "clean"])
    axes[0].set_xlabel("SNR (dB)")
    axes[0].set_ylabel("UA, all clips")
    axes[0].legend()
    if "reverb" in lines:
        axes[1].plot(*zip(*lines["reverb"]), "o-", color="tab:green")
    axes[1].set_xlabel("room T60 (s; 0 = clean)")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(f"{result['command']} ({result['clips']} held-out clips)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def register(app: typer.Typer) -> None:
    @app.command("robustness")
    def robustness_cmd(
        conditions: list[str] = typer.Option(["clean", "babble:10", "fan:10", "reverb:0.6"], "--condition", "-c",
                                             help="condition string (see physioser.conditions.spec), repeatable"),
        model: str = typer.Option(None, "--model", help="model bundle or .onnx graph (default: the shipped model)"),
        heldout_of: Path = typer.Option(None, "--heldout-of", help="the training checkpoint (physioser train --fold all) whose "
                                        "held-out speakers are heard: the one --model was exported from (default: the shipped model's)"),
        seed: int = typer.Option(0, "--seed"),
        adapt: str = typer.Option("0", "--adapt", help="speaker adaptation: each held-out speaker's offset from K random of "
                                  "their clips under the same condition (K or 'all'; 0: none, the strict protocol); "
                                  "with --stream: 'all' = the stream's running adaptation"),
        stream: bool = typer.Option(False, "--stream", help="each held-out speaker's clips streamed through the Streamer "
                                    "(speech gate, windows, the speaker named) instead of whole files"),
        adapt_tau: float = typer.Option(STREAM_TAU, "--adapt-tau", min=0.0, help="with --stream --adapt all: the running "
                                        "adaptation's shrinkage in utterance weights (about 2 s of speech each)"),
        unnamed: bool = typer.Option(False, "--unnamed", help="with --stream: each corpus's held-out speakers in one stream, "
                                     "no speaker named (the stream names voices itself)"),
        mix_corpora: bool = typer.Option(False, "--mix-corpora", help="with --unnamed: every corpus's held-out speakers in "
                                         "one stream (more voices than the stream keeps)"),
        voice_encoder: bool = typer.Option(True, "--voice-encoder/--no-voice-encoder", help="with --unnamed: name voices by the "
                                           "bundle's speaker encoder where it has one (physioser export --voice-encoder), "
                                           "else by the model's own statistics"),
        adapt_reference: bool = typer.Option(False, "--adapt-reference", help="with --stream --adapt all: the running "
                                             "adaptation measured against the model's training speakers (its speaker reference)"),
        window_s: float = typer.Option(None, "--window-s", min=0.25, max=60.0, help="with --stream: the stream's window in seconds (default: the model's)"),
        limit: int = typer.Option(0, "--limit", help="at most this many held-out clips per corpus (0: all)"),
        corpora_root: Path = typer.Option(None, "--corpora-root", help="default: ../shared/corpora"),
        noise_root: Path = typer.Option(None, "--noise-root", help="default: $PHYSIOSER_NOISE or ../shared/noise"),
        out: Path = typer.Option(None, "--out", help="JSON results (a .md table and a .png of UA against SNR and T60 are written "
                                 "beside it); if it holds results of the same model, seed and clips, their conditions are not rerun"),
    ) -> None:
        """UA of the shipped model (or --model) on its held-out speakers under listening conditions."""
        from physioser.backbones.ct2 import CheckpointError
        from physioser.build_default import heldout_rows
        from physioser.conditions.spec import ConditionError, parse
        from physioser.paths import corpora_root as default_root, default_model_dir, portable
        from physioser.runtime import Engine

        for spec in conditions:
            try:
                parse(spec)
            except ConditionError as exc:
                raise typer.BadParameter(str(exc), param_hint="--condition") from exc
        from physioser.paths import noise_root as default_noise_root

        try:
            adapt_k = None if adapt == "all" else int(adapt)
            if adapt_k is not None and adapt_k < 0:
                raise ValueError
        except ValueError:
            raise typer.BadParameter(f"{adapt!r}: give a number of clips >= 0 or 'all'", param_hint="--adapt") from None
        if window_s is not None and not stream:
            raise typer.BadParameter("a window is for --stream only (whole files are analysed whole)", param_hint="--window-s")
        running = stream and adapt == "all"
        if unnamed and not stream:
            raise typer.BadParameter("unnamed speakers are for --stream only", param_hint="--unnamed")
        if mix_corpora and not unnamed:
            raise typer.BadParameter("corpora are mixed in one stream of unnamed speakers only: add --unnamed", param_hint="--mix-corpora")
        if adapt_tau != STREAM_TAU and not running:
            raise typer.BadParameter("a shrinkage is for the stream's running adaptation only (--stream --adapt all)",
                                     param_hint="--adapt-tau")
        if adapt_reference and not running:
            raise typer.BadParameter("a reference is for the stream's running adaptation (--stream --adapt all); whole "
                                     "files are measured against it wherever the model carries one", param_hint="--adapt-reference")
        if stream and adapt not in ("0", "all"):
            raise typer.BadParameter(f"{adapt!r}: the stream adapts from everything heard of the speaker: give 0 or 'all'",
                                     param_hint="--adapt")
        root = corpora_root or default_root()
        noise_root = noise_root or default_noise_root()
        try:
            rows = heldout_rows(heldout_of or default_model_dir(), root)
        except CheckpointError as exc:
            raise typer.BadParameter(str(exc), param_hint="--heldout-of") from None
        if limit:
            keep, seen = [], {}
            for r in rows:
                seen[r.corpus] = seen.get(r.corpus, 0) + 1
                if seen[r.corpus] <= limit:
                    keep.append(r)
            rows = keep
        engine = Engine.from_path(model)
        if adapt_k != 0 and not engine.adaptation_dim:
            raise typer.BadParameter(f"{engine.source} is not speaker-adaptive", param_hint="--adapt")
        speakers = sorted({f"{r.corpus}/{r.speaker}" for r in rows})
        name = portable(model or engine.source)
        encoder = engine.voice_encoder() if unnamed and running and voice_encoder else None
        voices = encoder.name if encoder is not None else None  # what names the voices of an unnamed stream: None = the model's statistics
        earlier = json.loads(out.read_text()) if out and out.is_file() else {}
        same = (earlier.get("model"), earlier.get("seed"), earlier.get("heldout_speakers"), earlier.get("clips"), earlier.get("adapt", "0"),
                earlier.get("stream", False), earlier.get("window_s"), earlier.get("adapt_tau"), earlier.get("unnamed", False),
                earlier.get("mix_corpora", False), earlier.get("voice_encoder"), earlier.get("adapt_reference", False)) == (
                    name, seed, speakers, len(rows), adapt, stream, window_s, adapt_tau if running else None, unnamed, mix_corpora, voices,
                    adapt_reference)
        result = {"command": "physioser robustness " + " ".join(f"-c {c}" for c in conditions)
                  + (f" --model {name}" if model else "") + (f" --heldout-of {portable(heldout_of)}" if heldout_of else "")
                  + (f" --limit {limit}" if limit else "") + (f" --seed {seed}" if seed else "")
                  + (f" --adapt {adapt}" if adapt != "0" else "") + (" --stream" if stream else "")
                  + (f" --window-s {window_s:g}" if window_s is not None else "")
                  + (f" --adapt-tau {adapt_tau:g}" if adapt_tau != STREAM_TAU else "") + (" --unnamed" if unnamed else "")
                  + (" --mix-corpora" if mix_corpora else "") + (" --no-voice-encoder" if unnamed and not voice_encoder else "")
                  + (" --adapt-reference" if adapt_reference else ""),
                  "model": name, "seed": seed, "adapt": adapt, "stream": stream, "window_s": window_s,
                  **({"adapt_tau": adapt_tau} if running else {}), **({"unnamed": True} if unnamed else {}),
                  **({"mix_corpora": True} if mix_corpora else {}), **({"voice_encoder": voices} if voices else {}),
                  **({"adapt_reference": True} if adapt_reference else {}),
                  "heldout_speakers": speakers,
                  **evaluate(engine, rows, conditions, seed, root, noise_root, done=earlier["conditions"] if same else None,
                             adapt_k=adapt_k, stream=stream, window_s=window_s, adapt_tau=adapt_tau, named=not unnamed, mixed=mix_corpora,
                             streamer_options={"voice_encoder": voice_encoder, "adapt_reference": adapt_reference})}
        table = markdown(result)
        typer.echo(table)
        if out:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=1) + "\n")
            out.with_suffix(".md").write_text(f"`{result['command']}`\n\n{table}")
            if curves(result):
                plot(result, out.with_suffix(".png"))
