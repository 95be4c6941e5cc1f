"""Attention-variant benchmark: parameters and latency per variant, side by side with MHA.

CPU part: PyTorch and onnxruntime on ``--threads`` threads (default 1), batch 1. GPU part
(``--gpu-only``): PyTorch on CUDA in fp32 and bf16. Within each part every variant is timed in
interleaved rounds (round r runs every variant once, in a rotated order), so the ratio to MHA
is measured side by side under the same machine load. The figure per variant is the minimum
over rounds on the CPU (robust to pre-emption on a shared machine) and the median on the GPU.

    python -m physioser.bench.attention --out eval/bench/attention.json          # CPU part
    python -m physioser.bench.attention --gpu-only --out attention_gpu.json       # on the GPU
    python -m physioser.bench.attention --merge-gpu attention_gpu.json --out eval/bench/attention.json
    python -m physioser.bench.attention --table eval/bench/attention.json         # README table
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from physioser.nn.attention import build_attention

LENGTHS = (50, 150, 500, 1500)
# label -> (variant, options): the settings a speech model at 50 frames/s would use
SETTINGS: dict[str, tuple[str, dict]] = {
    "mha": ("mha", {}),
    "gqa": ("gqa", dict(kv_heads=2)),
    "moh": ("moh", dict(shared_heads=2, top_k=4)),
    "gated_headwise": ("gated", dict(mode="headwise")),
    "gated_elementwise": ("gated", dict(mode="elementwise")),
    "affine": ("affine", {}),
    "single_head": ("single_head", dict(qk_dim=16, partial_ratio=0.25)),
    "neighborhood": ("neighborhood", dict(kernel_size=31)),
    "streaming": ("streaming", dict(sink=4, recent=32, alpha_init=0.5)),
    "strided": ("strided", dict(block_size=16, local_blocks=2, vert_stride=8)),
    "dynamic_mask": ("dynamic_mask", dict(keep_window=128, a_init=0.5)),
    "differential": ("differential", {}),
    "softpag": ("softpag", dict(u=0.3)),
}


class _Exported(nn.Module):
    def __init__(self, attn: nn.Module) -> None:
        super().__init__()
        self.attn = attn

    def forward(self, x):
        return self.attn(x)[0]


def build_all(dim: int, heads: int) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {label: build_attention(v, dim=dim, heads=heads, **o).eval() for label, (v, o) in SETTINGS.items()}


def interleaved(fns: dict[str, callable], rounds: int, warmup: int = 5, stat=statistics.median) -> dict[str, float]:
    """``stat`` (median) of the seconds per call of each fn, timed in rounds that run every fn once
    (rotated order)."""
    labels = list(fns)
    for _ in range(warmup):
        for label in labels:
            fns[label]()
    times: dict[str, list[float]] = {label: [] for label in labels}
    for r in range(rounds):
        for label in labels[r % len(labels):] + labels[: r % len(labels)]:
            times[label].append(fns[label]())
    return {label: stat(t) for label, t in times.items()}


def _rounds(n: int) -> int:
    return {50: 40, 150: 25, 500: 12}.get(n, 7)


def ratios(table: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {label: {n: round(t / table["mha"][n], 3) for n, t in row.items()} for label, row in table.items()}


def cpu_part(dim: int, heads: int, lengths: list[int], threads: int) -> dict:
    import onnxruntime as ort
    from tqdm import tqdm

    torch.set_num_threads(threads)
    modules = build_all(dim, heads)
    sessions = {}
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    with tempfile.TemporaryDirectory() as tmp:
        for label, m in tqdm(modules.items(), desc="ONNX export", file=sys.stderr):
            path = Path(tmp) / f"{label}.onnx"
            torch.onnx.export(_Exported(m).eval(), (torch.randn(1, 64, dim),), str(path), dynamo=False,
                              opset_version=17, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "b", 1: "n"}, "y": {0: "b", 1: "n"}})
            sessions[label] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    pt: dict[str, dict[str, float]] = {label: {} for label in modules}
    onnx_rt: dict[str, dict[str, float]] = {label: {} for label in modules}
    for n in tqdm(lengths, desc="CPU lengths", file=sys.stderr):
        x = torch.randn(1, n, dim)
        xn = x.numpy()

        def torch_call(m):
            def call():
                t0 = time.perf_counter()
                with torch.inference_mode():
                    m(x)
                return time.perf_counter() - t0
            return call

        def ort_call(s):
            def call():
                t0 = time.perf_counter()
                s.run(None, {"x": xn})
                return time.perf_counter() - t0
            return call

        fns = {f"pt/{k}": torch_call(m) for k, m in modules.items()}
        fns.update({f"ort/{k}": ort_call(s) for k, s in sessions.items()})
        # the minimum: on a shared machine a call of a few ms is often pre-empted by other
        # processes (medians jumped 2 → 6–10 ms between identical runs), the minimum does not
        best = interleaved(fns, _rounds(n), stat=min)
        for label in modules:
            pt[label][str(n)] = round(1e3 * best[f"pt/{label}"], 3)
            onnx_rt[label][str(n)] = round(1e3 * best[f"ort/{label}"], 3)
    return {
        "batch": 1, "threads": threads, "statistic": "minimum over interleaved rounds",
        "machine": f"{platform.processor() or platform.machine()}, {_cpu_model()}",
        "torch": torch.__version__, "onnxruntime": ort.__version__,
        "torch_ms": pt, "onnxruntime_ms": onnx_rt,
        "torch_ratio_to_mha": ratios(pt), "onnxruntime_ratio_to_mha": ratios(onnx_rt),
    }


def gpu_part(dim: int, heads: int, lengths: list[int], batch: int, device: str = "cuda") -> dict:
    if not torch.cuda.is_available():
        raise SystemExit("attention bench: --gpu-only needs CUDA, and torch.cuda.is_available() is False")
    dev = torch.device(device)
    out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "batch": batch,
           "statistic": "median over interleaved rounds of 10 calls each",
           "tf32_matmul": torch.backends.cuda.matmul.allow_tf32}
    for dtype_name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        modules = {k: m.to(dev, dtype) for k, m in build_all(dim, heads).items()}
        table: dict[str, dict[str, float]] = {label: {} for label in modules}
        for n in lengths:
            x = torch.randn(batch, n, dim, device=dev, dtype=dtype)
            iters = 10

            def call_for(m):
                def call():
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    with torch.inference_mode():
                        start.record()
                        for _ in range(iters):
                            m(x)
                        end.record()
                    torch.cuda.synchronize()
                    return start.elapsed_time(end) / 1e3 / iters
                return call

            med = interleaved({k: call_for(m) for k, m in modules.items()}, rounds=15, warmup=3)
            for label in modules:
                table[label][str(n)] = round(1e3 * med[label], 4)
            print(f"gpu {dtype_name} N={n}: mha {table['mha'][str(n)]} ms", file=sys.stderr, flush=True)
        out[f"{dtype_name}_ms"] = table
        out[f"{dtype_name}_ratio_to_mha"] = ratios(table)
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def params(dim: int, heads: int) -> dict[str, int]:
    return {k: sum(p.numel() for p in m.parameters()) for k, m in build_all(dim, heads).items()}


def table(result: dict) -> str:
    """Markdown: one table per backend (CPU torch, CPU ORT, GPU fp32, GPU bf16), cells "ms (ratio to MHA)"."""
    lengths = [str(n) for n in result["config"]["lengths"]]
    sections = []
    if "cpu" in result:
        cpu = result["cpu"]
        where = f"{cpu['threads']} CPU thread(s), batch {cpu['batch']}, {cpu['machine']}, {cpu['statistic']}"
        sections += [(f"PyTorch {cpu['torch']}, {where}", cpu["torch_ms"], cpu["torch_ratio_to_mha"]),
                     (f"onnxruntime {cpu['onnxruntime']}, {where}", cpu["onnxruntime_ms"], cpu["onnxruntime_ratio_to_mha"])]
    if "gpu" in result:
        gpu = result["gpu"]
        for dt in ("fp32", "bf16"):
            sections.append((f"PyTorch {gpu['torch']} {dt}, {gpu['device']}, batch {gpu['batch']}, "
                             f"{gpu.get('statistic', 'median over interleaved rounds of 10 calls each')}",
                             gpu[f"{dt}_ms"], gpu[f"{dt}_ratio_to_mha"]))
    out = []
    for title, ms, ratio in sections:
        head = ["variant", "params"] + [f"N={n}" for n in lengths]
        lines = [f"**{title}** — ms per call (ratio to MHA)", "", "| " + " | ".join(head) + " |",
                 "|" + "---|" * len(head)]
        for label, count in result["params"].items():
            cells = [f"{ms[label][n]:.3g} ({ratio[label][n]:.2f}×)" for n in lengths]
            lines.append("| " + " | ".join([label, f"{count / 1e3:.1f}k"] + cells) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("eval/bench/attention.json"))
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--gpu-batch", type=int, default=8)
    ap.add_argument("--gpu-only", action="store_true", help="run only the CUDA part (writes the gpu section)")
    ap.add_argument("--merge-gpu", type=Path, help="merge a --gpu-only JSON into --out instead of benchmarking")
    ap.add_argument("--table", type=Path, help="print the markdown table of a result JSON and exit")
    args = ap.parse_args(argv)
    if args.table:
        print(table(json.loads(args.table.read_text())))
        return
    if args.merge_gpu:
        result = json.loads(args.out.read_text())
        gpu = json.loads(args.merge_gpu.read_text())
        if gpu["config"] != result["config"]:
            raise SystemExit(f"attention bench: {args.merge_gpu} was run with {gpu['config']}, "
                             f"{args.out} with {result['config']}")
        result["gpu"] = gpu["gpu"]
        result["gpu"].setdefault("statistic", "median over interleaved rounds of 10 calls each")
    else:
        config = {"dim": args.dim, "heads": args.heads, "lengths": args.lengths,
                  "settings": {k: {"variant": v, "options": o} for k, (v, o) in SETTINGS.items()}}
        result = {"config": config, "params": params(args.dim, args.heads)}
        if args.gpu_only:
            result["gpu"] = gpu_part(args.dim, args.heads, args.lengths, args.gpu_batch)
        else:
            result["cpu"] = cpu_part(args.dim, args.heads, args.lengths, args.threads)
            if args.out.exists():  # keep a GPU section merged earlier with the same config
                old = json.loads(args.out.read_text())
                if "gpu" in old and old.get("config") == config:
                    result["gpu"] = old["gpu"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
