"""Benchmark and physics figures of the VAP branch -> eval/bench/vap.json (+ a figure of the synthetic vowel).

    OMP_NUM_THREADS=1 .venv/bin/python -m physioser.bench.vap

Speed: milliseconds of compute per second of audio on 1 CPU thread, PyTorch eager vs onnxruntime,
measured side by side in one run (interleaved, median of repeats), for the whole branch, the
front end alone, and the front end with the measured "centroid" group delay. Physics: on a synthetic vowel (F0 120 Hz, formants 700/1220/2600 Hz) the peaks
of M and of each tau_g definition, their correlation with the true vocal-tract group delay, and
the F0 read from f_inst; the tau_g definitions also at F0 220 Hz.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import scipy.signal as ss
import torch

from physioser.vap import VAPBranch, VAPConfig, VAPFrontEnd
from physioser.vap.plot import plot_quartet
from physioser.synthesis import F0, FORMANTS, synthetic_vowel, vocal_tract

HERE = Path(__file__).resolve().parent
LENGTHS_S = (2.0, 7.3)
REPEATS = 15


class _Quartet(torch.nn.Module):
    def __init__(self, frontend: VAPFrontEnd) -> None:
        super().__init__()
        self.frontend = frontend

    def forward(self, waveforms, lengths):
        return self.frontend(waveforms, lengths)[0]


def _export(model: torch.nn.Module, path: Path, outputs: list[str]) -> None:
    x = torch.from_numpy(synthetic_vowel(seconds=1.0))[None]
    axes = {"waveforms": {0: "batch", 1: "samples"}, "lengths": {0: "batch"}}
    axes.update({name: {0: "batch"} for name in outputs})
    torch.onnx.export(model, (x, torch.tensor([x.shape[1]])), str(path), dynamo=False, opset_version=17,
                      input_names=["waveforms", "lengths"], output_names=outputs, dynamic_axes=axes)
    model.eval()


def speed() -> dict:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    branch = VAPBranch().eval()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        models = {
            "branch": (branch, ["z_v", "frames", "frame_lengths"]),
            "frontend": (_Quartet(branch.frontend).eval(), ["quartet"]),
            "frontend_tau_g_centroid": (_Quartet(VAPFrontEnd(VAPConfig(group_delay="centroid"))).eval(), ["quartet"]),
        }
        for name, (model, outputs) in models.items():
            path = Path(tmp) / f"{name}.onnx"
            _export(model, path, outputs)
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            per_length = {}
            for seconds in LENGTHS_S:
                x = synthetic_vowel(f0=110, glide_to=180, seconds=seconds, noise=0.01)[None]
                n = np.array([x.shape[1]])
                xt, nt = torch.from_numpy(x), torch.from_numpy(n)
                times = {"torch_eager": [], "onnxruntime": []}
                with torch.inference_mode():
                    model(xt, nt)
                    session.run(None, {"waveforms": x, "lengths": n})
                    for _ in range(REPEATS):  # interleaved: both see the same machine load
                        t0 = time.perf_counter()
                        model(xt, nt)
                        t1 = time.perf_counter()
                        session.run(None, {"waveforms": x, "lengths": n})
                        t2 = time.perf_counter()
                        times["torch_eager"].append(t1 - t0)
                        times["onnxruntime"].append(t2 - t1)
                per_length[f"{seconds}s"] = {
                    k: round(1000 * statistics.median(v) / seconds, 2) for k, v in times.items()
                }
            results[name] = {
                "ms_per_audio_second": per_length,
                "onnxruntime_speedup": {
                    k: round(v["torch_eager"] / v["onnxruntime"], 2) for k, v in per_length.items()
                },
            }
    results["trainable_parameters"] = branch.num_trainable_parameters()
    return results


def physics() -> dict:
    out: dict = {"signal": {"f0_hz": [F0, 220.0], "formants_hz": list(FORMANTS)}}
    b, a = vocal_tract()
    for f0, gd, pooling in [(f, g, p) for f in (F0, 220.0) for g in ("minphase", "plain", "modified", "centroid") for p in ("none", "mel")]:
        x = synthetic_vowel(f0=f0)
        n = torch.tensor([len(x)])
        row = out.setdefault(f"f0={f0:.0f} tau_g={gd}", {})
        fe = VAPFrontEnd(VAPConfig(normalize="none", pooling=pooling, group_delay=gd))
        q = dict(zip(fe.component_names, fe.raw(torch.from_numpy(x)[None], n)[0][0].numpy()))
        centres = fe.band_centres.numpy()
        delay = q["tau_g"][:, 2:-2].mean(1)
        peaks = ss.find_peaks(delay)[0]
        top3 = np.sort(centres[peaks[np.argsort(-delay[peaks])[:3]]])
        truth = ss.group_delay((b, a), w=centres, fs=16000)[1]
        row[pooling] = {
            "tau_g_top3_peaks_hz": [round(float(f), 1) for f in top3],
            "corr_with_true_vocal_tract_group_delay": round(float(np.corrcoef(delay, truth)[0, 1]), 3),
        }
        if gd == "minphase" and f0 == F0:
            envelope = q["M"][:, 2:-2].mean(1)
            m_peaks = ss.find_peaks(envelope)[0]
            top = m_peaks[np.argsort(-envelope[m_peaks])[:3]]
            row[pooling]["M_top3_peaks_hz"] = [round(float(f), 1) for f in np.sort(centres[top])]
            k = int(np.argmin(np.abs(centres - F0)))
            estimate = centres[k] + q["f_inst"][k, 2:-2]
            row[pooling]["f0_from_f_inst_hz"] = {"mean": round(float(estimate.mean()), 3), "std": round(float(estimate.std()), 3)}
    plot_quartet(synthetic_vowel(), HERE / "vap_synthetic_vowel.png", title="synthetic vowel F0 120 Hz, F1-F3 700/1220/2600 Hz")
    return out


def main() -> None:
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    report = {
        "command": "OMP_NUM_THREADS=1 .venv/bin/python -m physioser.bench.vap",
        "config": "VAPConfig() defaults (64 mel bands, tau_g minphase, quaternion encoder, D_v 256)",
        "environment": {"cpu": cpu, "threads": 1, "torch": torch.__version__, "onnxruntime": ort.__version__,
                        "python": sys.version.split()[0], "git": git, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "speed": speed(),
        "physics": physics(),
    }
    path = HERE / "vap.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
