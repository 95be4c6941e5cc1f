"""Benchmark of the built-in frozen backbones, side by side in one run, on 1 CPU thread.

Per backbone: parameters, real-time factor (compute seconds / audio seconds, one clip at a
time, clips interleaved across backbones so that machine load hits all alike) and feature-cache
extraction throughput (loading + hashing + compute + writing, into a fresh temporary cache).
Clips: the first ``--per-corpus`` files of each corpus in ../shared/corpora.

    OMP_NUM_THREADS=1 .venv/bin/python -m physioser.bench.backbones   # writes eval/bench/backbones.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from physioser.audio import load_audio
from physioser.backbones import BUILTIN, FeatureCache, build_backbone

REPO = Path(__file__).resolve().parents[2]
CORPORA = ("RAVDESS", "EMOVO", "URDU", "KoreanEmotionTTS")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", type=Path, default=REPO.parent / "shared" / "corpora")
    parser.add_argument("--per-corpus", type=int, default=6)
    parser.add_argument("--backbones", nargs="+", default=list(BUILTIN))
    parser.add_argument("--out", type=Path, default=REPO / "eval" / "bench" / "backbones.json")
    args = parser.parse_args()
    torch.set_num_threads(1)

    files = []
    for corpus in CORPORA:
        found = sorted(p for p in (args.corpora / corpus).rglob("*") if p.suffix.lower() in (".flac", ".wav"))
        files += found[: args.per_corpus]
    if not files:
        raise SystemExit(f"no audio under {args.corpora}")
    waves = [torch.from_numpy(load_audio(path))[None] for path in files]
    audio_seconds = sum(w.shape[1] for w in waves) / 16000

    backbones = {name: build_backbone(name) for name in args.backbones}
    for backbone in backbones.values():  # warm-up
        backbone(waves[0])
    compute = dict.fromkeys(backbones, 0.0)
    for wave in waves:
        for name, backbone in backbones.items():
            start = time.perf_counter()
            backbone(wave)
            compute[name] += time.perf_counter() - start

    results = {}
    for name, backbone in backbones.items():
        with tempfile.TemporaryDirectory() as root:
            report = FeatureCache(root).extract(files, backbone, progress=False)
        results[name] = {
            "parameters": backbone.num_parameters(),
            "num_layers": backbone.num_layers,
            "dim": backbone.dim,
            "frame_rate_hz": backbone.frame_rate,
            "real_time_factor": round(compute[name] / audio_seconds, 5),
            "extraction_files_per_second": round(report.files_per_second, 2),
            "extraction_audio_seconds_per_second": round(report.audio_seconds_per_second, 2),
        }
        print(name, results[name], flush=True)

    payload = {
        "command": "OMP_NUM_THREADS=1 .venv/bin/python -m physioser.bench.backbones",
        "clips": len(files),
        "audio_seconds": round(audio_seconds, 2),
        "corpora": list(CORPORA),
        "threads": torch.get_num_threads(),
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "torch": torch.__version__,
        },
        "notes": (
            "real_time_factor = compute seconds / audio seconds, one clip at a time, interleaved across backbones; "
            "extraction = FeatureCache.extract into an empty cache (load + sha256 + compute + safetensors write). "
            "parameters = learned weights (pesto's fixed HCQT kernels, 2.06 M values, not counted). "
            "The machine may be shared with other jobs: absolute times carry their load, the ratios are side by side."
        ),
        "backbones": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
