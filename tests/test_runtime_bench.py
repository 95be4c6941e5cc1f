"""The runtime benchmark's statistics and the README text it writes from runtime.json (no timing)."""

from __future__ import annotations

from physioser.bench.runtime import readme
from physioser.bench.timing import paired


def _stats(p50: float, p95: float | None = None) -> dict:
    return {"p50_ms": p50, "p95_ms": p95 if p95 is not None else p50 * 1.1}


def _data(speedup_1: float, speedup_2: float, p95_2s_2thr: float, added_1: float, added_2: float) -> dict:
    latency = []
    for threads, speedup in ((1, speedup_1), (2, speedup_2)):
        for window in (1.0, 2.0, 4.0):
            ort = 10.0 * window
            latency.append({"window_s": window, "threads": threads,
                            "torch": {**_stats(ort * speedup), "rtf": 0.1},
                            "onnxruntime": {**_stats(ort, p95_2s_2thr if (window, threads) == (2.0, 2) else None), "rtf": 0.01},
                            "speedup_p50": speedup, "speedup_paired": speedup})
    vap = [{"threads": th, "ort_full": _stats(20 * (1 + a)), "ort_without_vap": _stats(20.0), "ort_added_ms": 20 * a,
            "ort_added_over_without_vap": a, "ort_vap_branch": _stats(5.0), "ort_backbone_branch": _stats(19.0),
            "ort_vap_over_backbone": 0.26} for th, a in ((1, added_1), (2, added_2))]
    int8 = [{"threads": th, "fp32": _stats(20.0), "int8": _stats(13.0), "speedup_p50": 1.54} for th in (1, 2)]
    return {"latency": latency, "vap_cost": vap, "int8": int8, "load_avg_at_start": 0.7,
            "peak_rss_mib": {"onnxruntime": 400.0, "torch": 330.0}}


def test_paired_statistics_are_medians_of_per_round_differences_and_ratios():
    assert paired([12.0, 30.0, 14.0], [10.0, 10.0, 10.0]) == (4.0, 1.4)
    # a slow drift that hits both runtimes alike leaves the paired ratio unchanged
    assert paired([2.0, 4.0, 8.0], [1.0, 2.0, 4.0])[1] == 2.0


def test_readme_verdicts_follow_the_targets():
    text = readme(_data(speedup_1=1.43, speedup_2=1.83, p95_2s_2thr=27.3, added_1=0.24, added_2=0.31))
    assert "— met (27.3 ms)" in text
    assert "**not met** on 1 thread (1.43×), met on 2 threads (1.83×)" in text
    assert "met on 1 thread (+24.0%), **not met** on 2 threads (+31.0%)" in text
    assert "| 2 s | 2 | 36.6 / 40.3 | 20.0 / 27.3 | 0.010 | 1.83× / 1.83× |" in text
    text = readme(_data(speedup_1=1.6, speedup_2=1.7, p95_2s_2thr=55.0, added_1=0.2, added_2=0.2))
    assert "**not met** (55.0 ms)" in text and "met on 1 thread (1.60×)" in text


def test_gpu_results_merge_under_their_own_keys(tmp_path):
    import json

    from physioser.bench.runtime import main

    out = tmp_path / "runtime.json"
    out.write_text(json.dumps(_data(1.6, 1.7, 30.0, 0.2, 0.2)))
    torch_gpu, ort_gpu = tmp_path / "gpu.json", tmp_path / "gpu_ort.json"
    torch_gpu.write_text(json.dumps({"device": "GPU", "rows": [{"precision": "fp32", "batch": 1}]}))
    ort_gpu.write_text(json.dumps({"profiles": {"desktop-gpu fp32": {"providers": ["CUDAExecutionProvider"]}}, "rows": []}))
    main(["--out", str(out), "--merge-gpu", str(torch_gpu)])
    main(["--out", str(out), "--merge-gpu", str(ort_gpu)])
    data = json.loads(out.read_text())
    assert data["gpu"]["device"] == "GPU"
    assert data["gpu_onnxruntime"]["profiles"]["desktop-gpu fp32"]["providers"] == ["CUDAExecutionProvider"]
    assert data["vap_cost"][1]["ort_added_over_without_vap"] == 0.2
