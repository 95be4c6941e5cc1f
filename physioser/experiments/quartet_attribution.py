"""Drop-one-component attribution of trained PhysioSER models under listening conditions.

On the held-out clips of ``physioser robustness`` (the shipped model's held-out speakers; the models
must hold out the same ones) and the audio each condition makes of them (seeded per clip: what the
robustness sweep hears), whole utterances through the PyTorch model: UA with the quartet intact and
with each component {M, ρ, f_inst, τ_g} (and all four) replaced by its utterance mean, which is
zero after the front end's utterance normalisation, so the encoder's component mask does it::

    python -m physioser.experiments.quartet_attribution RUN [RUN ...] -c clean -c reverb:0.9 --out X.json

writes the UA lost per component, per model (e.g. one per training seed) and condition, and a
markdown table beside the JSON: mean ± std over the models.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

__all__ = ["attribute", "markdown"]

ABLATIONS = ("M", "rho", "f_inst", "tau_g", "all four")


def _masks(axes: tuple[str, ...], base: "torch.Tensor") -> "torch.Tensor":  # noqa: F821
    """[1 + len(ABLATIONS), 4, 1, 1]: the model's own mask, then each ablation's."""
    import torch

    rows = [torch.ones(4)]
    for name in ABLATIONS:
        keep = torch.ones(4)
        if name == "all four":
            keep.zero_()
        else:
            keep[axes.index(name)] = 0.0
        rows.append(keep)
    return torch.stack(rows)[:, :, None, None] * base.reshape(1, 4, 1, 1)


def attribute(model, rows, conditions: list[str], seed: int, corpora_root: Path, noise_root: Path,
              progress: bool = True) -> dict[str, dict[str, float]]:
    """{condition: {"full": UA, <ablation>: UA lost with it}} of one PhysioSER model with a VAP branch.

    Each clip runs as a batch of 1 + len(ABLATIONS) copies, copy i with mask i of :func:`_masks`."""
    import torch
    from sklearn.metrics import balanced_accuracy_score
    from tqdm import tqdm

    from physioser.audio import load_audio
    from physioser.conditions.spec import Condition
    from physioser.data.labels import to_four_class

    if not getattr(model, "use_vap", False):
        raise ValueError("the model has no VAP branch: nothing to attribute")
    names = list(model.class_names)
    y = np.array([names.index(to_four_class(r.canonical)) for r in rows])
    keys = [str(Path(r.path).relative_to(corpora_root)) for r in rows]
    audio = [load_audio(r.path) for r in rows]
    encoder = model.vap.encoder
    own = encoder.component_mask.clone()
    masks = _masks(tuple(encoder.config.axes), own)
    out = {}
    try:
        encoder.component_mask = masks
        for spec in conditions:
            cond = Condition(spec, seed=seed, noise_root=noise_root, corpora_root=corpora_root)
            pred = []
            for r, x, key in tqdm(list(zip(rows, audio, keys)), desc=spec, disable=not progress, mininterval=5):
                w = torch.as_tensor(np.asarray(cond.apply(x, key, corpus=r.corpus), np.float32))
                with torch.no_grad():
                    logits = model(w.expand(len(masks), -1).contiguous(), torch.full((len(masks),), len(w)))["logits"]
                pred.append(logits.argmax(1).numpy())
            pred = np.stack(pred)  # [clips, 1 + ablations]
            full = balanced_accuracy_score(y, pred[:, 0])
            out[spec] = {"full": float(full), **{name: float(full - balanced_accuracy_score(y, pred[:, i + 1]))
                                                 for i, name in enumerate(ABLATIONS)}}
            print(f"{spec}: UA {full:.3f}, lost without " + ", ".join(f"{k} {v:+.3f}" for k, v in out[spec].items() if k != "full"),
                  flush=True)
    finally:
        encoder.component_mask = own
    return out


def markdown(result: dict) -> str:
    """One row per condition: full UA and the UA lost per ablation, mean ± std over the models."""
    specs = list(next(iter(result["models"].values())))
    n = len(result["models"])
    lines = [f"| condition | UA, quartet intact ({n} models) | " + " | ".join(f"UA lost without {a}" for a in ABLATIONS) + " |",
             "|" + "---|" * (2 + len(ABLATIONS))]
    for spec in specs:
        cells = []
        for key in ("full", *ABLATIONS):
            v = np.array([m[spec][key] for m in result["models"].values()])
            cells.append(f"{v.mean():+.3f} ± {v.std():.3f}" if key != "full" else f"{v.mean():.3f} ± {v.std():.3f}")
        lines.append(f"| {spec} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m physioser.experiments.quartet_attribution", description=__doc__.splitlines()[0])
    ap.add_argument("models", type=Path, nargs="+", help="model directories of `physioser train` (PhysioSER with its VAP branch)")
    ap.add_argument("-c", "--condition", dest="conditions", action="append", required=True, help="condition string, repeatable")
    ap.add_argument("--seed", type=int, default=0, help="the conditions' seed (as physioser robustness --seed)")
    ap.add_argument("--corpora-root", type=Path, default=None, help="default: ../shared/corpora")
    ap.add_argument("--noise-root", type=Path, default=None, help="default: $PHYSIOSER_NOISE or ../shared/noise")
    ap.add_argument("--out", type=Path, required=True, help="JSON results (a .md table is written beside it)")
    a = ap.parse_args(argv)

    import torch

    from physioser.build_default import heldout_rows
    from physioser.conditions.spec import ConditionError, parse
    from physioser.model import read_config
    from physioser.model.directory import load_checkpoint
    from physioser.paths import corpora_root, default_model_dir, noise_root
    from physioser.runtime.contract import EngineError

    for spec in a.conditions:
        try:
            parse(spec)
        except ConditionError as exc:
            raise SystemExit(f"--condition {spec}: {exc}") from exc
    torch.set_num_threads(1)
    root, noise = a.corpora_root or corpora_root(), a.noise_root or noise_root()
    split = read_config(default_model_dir()).train.heldout_seed
    rows = heldout_rows(default_model_dir(), root)
    result = {"command": "python -m physioser.experiments.quartet_attribution " + " ".join(map(str, a.models))
              + "".join(f" -c {c}" for c in a.conditions) + (f" --seed {a.seed}" if a.seed else ""),
              "seed": a.seed, "clips": len(rows), "models": {}}
    for path in a.models:
        try:
            model, _ = load_checkpoint(path)
        except EngineError as exc:
            raise SystemExit(str(exc)) from exc
        if read_config(path).train.heldout_seed != split:
            raise SystemExit(f"{path}: holds out other speakers than the shipped model (its train.split_seed differs)")
        t0 = time.perf_counter()
        try:
            result["models"][str(path)] = attribute(model, rows, a.conditions, a.seed, root, noise)
        except ValueError as exc:
            raise SystemExit(f"{path}: {exc}") from exc
        print(f"{path}: {time.perf_counter() - t0:.0f} s", flush=True)
    table = markdown(result)
    print(table, end="")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    a.out.with_suffix(".md").write_text(f"`{result['command']}`\n\n{table}")


if __name__ == "__main__":
    main()
