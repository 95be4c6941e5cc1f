"""Voices named by a speaker-embedding model in the adapted stream, against the model's own statistics.

With no speaker named, the Streamer names each window's voice (:class:`~physioser.runtime.adaptation.VoiceIds`)
and adapts to it. By default the vector it compares is the emotion model's own ``features``, which
move with the emotion as well as the speaker. Here the vector is resemblyzer's GE2E d-vector of the
window (its speaker encoder's projection at the window's last frame, PyTorch), passed as the
Streamer's ``voice_embedding``; the rest is ``physioser robustness --stream --adapt all --unnamed``
on the same held-out clips, so ``python -m physioser.conditions.compare`` pairs the two per clip:

    OMP_NUM_THREADS=1 python -m physioser.experiments.voice_ids -c clean -c babble:10 -c fan:10 -c reverb:0.6 \\
        --mix-corpora --threshold 0.7 --out eval/results/robustness/default_model_windows_stream_adapted_mixed_dvector.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def dvector_embedding(backbone: str = "resemblyzer"):
    """``samples [S] float32 -> d-vector [256]``: the speaker encoder's last valid frame."""
    from physioser.backbones import build_backbone

    encoder = build_backbone(backbone)

    @torch.no_grad()
    def embed(samples: np.ndarray) -> np.ndarray:
        wave = torch.as_tensor(np.asarray(samples, dtype=np.float32))[None]
        hidden, frames = encoder(wave, torch.tensor([wave.shape[1]]))
        return hidden[-1][0, int(frames[0]) - 1].numpy()

    return embed


def main(argv: list[str] | None = None) -> None:
    from physioser.build_default import heldout_rows
    from physioser.conditions.evaluate import evaluate, markdown
    from physioser.paths import corpora_root, default_model_dir, noise_root, portable
    from physioser.runtime import Engine

    ap = argparse.ArgumentParser(prog="python -m physioser.experiments.voice_ids", description=__doc__.splitlines()[0])
    ap.add_argument("-c", "--condition", action="append", default=None, help="condition (physioser.conditions.spec), repeatable")
    ap.add_argument("--model", default=None, help="model bundle or .onnx graph (default: the shipped model)")
    ap.add_argument("--threshold", type=float, default=0.7, help="least cosine to a voice's centroid to be that voice")
    ap.add_argument("--mix-corpora", action="store_true", help="every corpus's held-out speakers in one stream")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    conditions = a.condition or ["clean", "babble:10", "fan:10", "reverb:0.6"]
    torch.set_num_threads(1)
    engine = Engine.from_path(a.model)
    rows = heldout_rows(default_model_dir(), corpora_root())
    name = portable(a.model or engine.source)
    command = ("python -m physioser.experiments.voice_ids " + " ".join(f"-c {c}" for c in conditions)
               + (f" --model {name}" if a.model else "") + (" --mix-corpora" if a.mix_corpora else "")
               + f" --threshold {a.threshold:g}" + (f" --seed {a.seed}" if a.seed else ""))
    options = {"voice_embedding": dvector_embedding(), "voice_threshold": a.threshold}
    result = {"command": command, "model": name, "seed": a.seed, "adapt": "all", "stream": True, "unnamed": True,
              "mix_corpora": a.mix_corpora, "voice_embedding": "resemblyzer", "voice_threshold": a.threshold,
              "heldout_speakers": sorted({f"{r.corpus}/{r.speaker}" for r in rows}),
              **evaluate(engine, rows, conditions, a.seed, corpora_root(), noise_root(), adapt_k=None, stream=True,
                         named=False, mixed=a.mix_corpora, streamer_options=options)}
    table = markdown(result)
    print(table)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    a.out.with_suffix(".md").write_text(f"`{command}`\n\n{table}")


if __name__ == "__main__":
    main()
