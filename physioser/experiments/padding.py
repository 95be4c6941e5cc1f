"""Whisper's own 30 s padding against the encoder's unpadded, masked input, under the recipe.

Whisper was trained on 30 s windows: a short clip is zero-padded to 30 s and every frame attends to
the padding. :class:`~physioser.backbones.whisper.WhisperEncoder` instead encodes only the clip and
masks nothing else in, so its features do not depend on how a batch was padded and a 2 s window costs
a fifteenth of a 30 s one. This measures what that choice costs in accuracy:

* ``pack`` (where the corpora are): the recipe pack of :mod:`physioser.experiments.recipe` with each
  row's per-layer frame statistics taken from the clip zero-padded to ``--seconds``, over the clip's
  own frames only (the padding's frames are not pooled), computed in ``--workers`` processes;
* train both packs with ``recipe run`` (same variant, tasks, folds and seeds);
* ``compare``: UA per corpus and protocol of the two runs, and their paired per-fold differences.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

__all__ = ["padded_statistics", "pack", "compare"]


def padded_statistics(backbone, waveform: np.ndarray, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) [L, D] over the clip's frames of ``backbone`` run on the clip zero-padded to ``seconds``
    (a longer clip is encoded as it is)."""
    import torch

    from physioser.audio import SAMPLE_RATE
    from physioser.model.pooling import frame_statistics

    size = max(int(seconds * SAMPLE_RATE), len(waveform))
    wave = torch.zeros(1, size)
    wave[0, : len(waveform)] = torch.as_tensor(waveform)
    with torch.inference_mode():
        hidden, _ = backbone(wave, torch.tensor([size]))
        frames = backbone.output_lengths(torch.tensor([len(waveform)]))
        mean, std = frame_statistics(torch.stack(hidden).float(), frames)  # [L, 1, D]
    return mean[:, 0].numpy(), std[:, 0].numpy()


def _worker(args: tuple[str, float, list[str]]) -> tuple[np.ndarray, np.ndarray]:
    import torch

    from physioser.audio import load_audio
    from physioser.backbones import build_backbone

    name, seconds, paths = args
    torch.set_num_threads(1)
    backbone = build_backbone(name).eval()
    stats = [padded_statistics(backbone, load_audio(p), seconds) for p in paths]
    return np.stack([m for m, _ in stats]), np.stack([s for _, s in stats])


def pack(corpora: list[str], out: Path, corpora_root: Path, seconds: float, backbone: str = "whisper-tiny.en",
         workers: int = 2, chunk: int = 50) -> Path:
    """Write the recipe pack of ``corpora`` (same rows and tasks as ``recipe pack``) from ``seconds``-padded clips."""
    import multiprocessing as mp

    from physioser.backbones import build_backbone
    from physioser.experiments.recipe import pack_meta, read_rows, task_plan

    bb = build_backbone(backbone)
    rows, spans = read_rows(corpora, corpora_root)
    paths = [str(r.path) for r in rows]
    jobs = [(backbone, seconds, paths[i:i + chunk]) for i in range(0, len(paths), chunk)]
    parts, t0 = [], time.perf_counter()
    with mp.get_context("spawn").Pool(workers) as pool:
        for i, part in enumerate(pool.imap(_worker, jobs)):
            parts.append(part)
            print(f"{min((i + 1) * chunk, len(paths))}/{len(paths)} clips, {time.perf_counter() - t0:.0f} s", flush=True)
    mean = np.concatenate([m for m, _ in parts]).astype(np.float16)
    std = np.concatenate([s for _, s in parts]).astype(np.float16)
    meta = pack_meta(bb, corpora, rows, task_plan(rows, spans, corpora))
    meta["pad_seconds"] = seconds
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, mean=mean, std=std, meta=np.array(json.dumps(meta)))
    return out


PROTOCOLS = (("0", "strict"), ("10@1/balanced", "adapted k = 10"), ("all@1/balanced", "adapted k = all"))


def compare(padded: Path, unpadded: Path) -> list[str]:
    """Markdown rows: UA (mean ± std over folds, mean over seeds per fold) of each run and the paired
    per-fold difference padded − unpadded, per corpus and protocol."""
    from physioser.experiments.recipe import _diff, _pm, score

    (a,), (b,) = score([padded]).values(), score([unpadded]).values()
    lines = ["| corpus, protocol | unpadded | padded | Δ padded − unpadded (folds ahead / folds, worst fold) |",
             "|---|---|---|---|"]
    for corpus in a:
        for key, label in PROTOCOLS:
            pa, pb = a[corpus].get(key), b.get(corpus, {}).get(key)
            if pa and pb:
                lines.append(f"| {corpus}, {label} | {_pm(pb)} | {_pm(pa)} | {_diff(pa, pb)} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    """``python -m physioser.experiments.padding pack|compare`` (see the module doc)."""
    import argparse

    from physioser.experiments.recipe import CORPUS_ORDER, pack_parser

    ap = argparse.ArgumentParser(prog="python -m physioser.experiments.padding", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = pack_parser(sub)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--workers", type=int, default=2)
    c = sub.add_parser("compare")
    c.add_argument("padded", type=Path, help="recipe run (.json.gz) on the padded pack")
    c.add_argument("unpadded", type=Path, help="the same variant, tasks, folds and seeds on the recipe pack")
    a = ap.parse_args(argv)
    if a.cmd == "pack":
        print(pack(a.corpus or list(CORPUS_ORDER), a.out, a.corpora_root, a.seconds, a.backbone, a.workers))
    else:
        print("\n".join(compare(a.padded, a.unpadded)))


if __name__ == "__main__":
    main()
