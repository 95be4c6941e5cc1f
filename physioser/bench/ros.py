"""End-to-end latency of the ROS 2 node, measured from another process.

The node (`ros/physioser_ros`, real rclpy, its own process) listens to a stamped audio type
(default ros-drivers audio_common_msgs/AudioDataStamped, as built by `make ros-interfaces`; this
script re-runs itself in that flavour's environment); this process publishes real speech clips from
../shared/corpora as 20 ms chunks at real-time pace, stamped as a microphone driver would (a chunk's
stamp is the time of its first sample; it is published once its last sample is "captured"), and
receives the node's physioser_msgs/EmotionEstimate messages. Latency of a window = receive time of
its estimate − the estimate's stamp (the end of its window on the audio clock, computed by the node
from the audio stamps), both on this machine's system clock: DDS transport both ways, decoding,
queueing, inference and publishing. A lost chunk is counted (`messages_lost`). VAD is off so every
window is analysed. DDS stays on this machine (SHM transport).

    OMP_NUM_THREADS=1 .venv/bin/python -m physioser.bench.ros             # default model, writes eval/bench/ros.json
    .venv/bin/python -m physioser.bench.ros --model path/to/model.onnx     # another model
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from physioser.audio import load_audio
from physioser.paths import portable
from physioser.ros.interfaces import environment
from physioser.ros.messages import audio_type
from physioser.ros.parameters import BY_NAME
from physioser.ros.play import STAMPED_TYPES, Audio, NodeProcess, Player, keep_dds_local, quantise

REPO = Path(__file__).resolve().parents[2]
TARGET_P95_MS = 80.0


def clips(corpora: Path, seconds: float) -> tuple[np.ndarray, list[str]]:
    """Real RAVDESS speech, clip after clip, until `seconds` of audio."""
    files = sorted((corpora / "RAVDESS").glob("Actor_*/*.flac"))
    if not files:
        raise SystemExit(f"no RAVDESS clips under {corpora} (../shared/corpora)")
    rng = np.random.default_rng(0)
    audio, names, total = [], [], 0.0
    for i in rng.permutation(len(files)):
        x = load_audio(files[i])
        audio.append(x)
        names.append(str(files[i].relative_to(corpora)))
        total += len(x) / 16000
        if total >= seconds:
            break
    return quantise(np.concatenate(audio)), names


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="", help="ONNX graph or model directory (default: the shipped model)")
    parser.add_argument("--windows", type=int, default=210, help="windows to measure (hop 0.5 s)")
    parser.add_argument("--corpora", type=Path, default=REPO.parent / "shared" / "corpora")
    parser.add_argument("--domain-id", type=int, default=1 + os.getpid() % 100)
    parser.add_argument("--out", type=Path, default=REPO / "eval" / "bench" / "ros.json")
    parser.add_argument("--msg-type", default="audio_common_msgs/AudioDataStamped", choices=STAMPED_TYPES)
    parser.add_argument("--adapt", choices=("true", "false"), default=None,
                        help="the node's speaker adaptation; true: also to the voices it names itself (adapt_unnamed), "
                        "as no speaker is named here (default: the node's defaults, strict without a speaker)")
    args = parser.parse_args()
    flavour = audio_type(args.msg_type).flavour
    if os.environ.get("PHYSIOSER_BENCH_FLAVOUR") != flavour:  # the audio type's package is on the path only in its environment
        env = environment(flavour)
        env["PHYSIOSER_BENCH_FLAVOUR"] = flavour
        os.execve(sys.executable, [sys.executable, "-m", "physioser.bench.ros", *sys.argv[1:]], env)

    from physioser.runtime import Engine

    engine = Engine.from_path(args.model or None)  # resolves (and caches) the ONNX graph once
    model = engine.source
    seconds = 2.0 + 0.5 * (args.windows - 1) + 0.3
    audio, names = clips(args.corpora, seconds)
    audio = audio[: int(seconds * 16000)]
    params = {"model_path": model, "vad": "none", "msg_type": args.msg_type,
              "latency_history": 10000, "diagnostics_period_s": 1.0, **({"adapt": args.adapt, "adapt_unnamed": args.adapt} if args.adapt else {})}
    load_before = os.getloadavg()
    keep_dds_local()  # this process's player must use the node's DDS settings (shared memory only)
    with tempfile.TemporaryDirectory() as logs:
        node = NodeProcess("physioser_emotion", params, Path(logs), domain_id=args.domain_id, flavour=flavour)
        player = Player(args.msg_type, domain_id=args.domain_id)
        try:
            player.wait_for_node(120)
            player.run([Audio(audio)])
            player.wait_quiet(settle_s=2.0)
            diag = player.last_diagnostics()
        except TimeoutError:
            sys.exit(f"the node did not answer:\n{node.output()[-3000:]}")
        finally:
            player.close()
            node.stop()
    load_after = os.getloadavg()
    session = player.session
    lat = np.asarray(session.stamp_latencies_ms())
    if lat.size < args.windows:
        sys.exit(f"only {lat.size} of {args.windows} windows came back")

    def stats(values) -> dict:
        values = np.asarray(values, dtype=np.float64)
        return {"p50": round(float(np.percentile(values, 50)), 2), "p95": round(float(np.percentile(values, 95)), 2),
                "max": round(float(values.max()), 2), "mean": round(float(values.mean()), 2)}

    result = {
        "what": "ROS 2 node end-to-end latency: the estimate's stamp (end of its window on the audio clock, "
                f"from the audio stamps) -> the estimate received by another process ({args.msg_type}, 20 ms chunks "
                "stamped at their first sample and published at their last, real-time pace, VAD off)",
        "command": "OMP_NUM_THREADS=1 .venv/bin/python -m physioser.bench.ros" + (f" --model {args.model}" if args.model else "")
                   + (f" --msg-type {args.msg_type}" if args.msg_type != "audio_common_msgs/AudioDataStamped" else "")
                   + (f" --adapt {args.adapt}" if args.adapt else ""),
        "msg_type": args.msg_type,
        "stamps_are_window_ends": all(e["stamp_ns"] == session.sent[0].stamp_ns + round(k * 0.5e9 + 2e9)
                                      for k, (_, e) in enumerate(session.estimates)),
        "model": portable(model),
        "model_metadata": {k: engine.metadata.get(k) for k in ("backbone", "class_names", "physioser_version")},
        "profile": engine.profile.name if hasattr(engine.profile, "name") else str(engine.profile),
        "adapt": args.adapt == "true" if args.adapt else BY_NAME["adapt"].default,
        "adapt_unnamed": args.adapt == "true" if args.adapt else BY_NAME["adapt_unnamed"].default,
        "window_s": 2.0, "hop_s": 0.5, "chunk_ms": 20,
        "audio_s": round(len(audio) / 16000, 2),
        "clips": len(names),
        "windows": int(lat.size),
        "latency_ms": stats(lat),
        "node_latency_ms": diag["latency_ms"],
        "node_inference_ms": diag["inference_ms"],
        "messages_received": diag["messages_received"],
        "messages_published": len(session.sent),
        "messages_lost": len(session.sent) - diag["messages_received"],
        "dropped_audio_s": diag["dropped_audio_s"],
        "target_p95_ms": TARGET_P95_MS,
        "meets_target": bool(np.percentile(lat, 95) <= TARGET_P95_MS),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": [round(load_before[0], 2), round(load_after[0], 2)],
        "rmw": "rmw_fastrtps_cpp (Fast DDS over shared memory only: ros/config/fastdds_local.xml)",
        "executor": "node: single-threaded executor, inference in a worker thread woken by the audio callback",
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("windows", "latency_ms", "node_inference_ms", "meets_target")}, indent=1))
    lat_s, inf_s, load = result["latency_ms"], result["node_inference_ms"], result["load_average_1min"]
    print("README row (section ROS 2 node, Latency):\n"
          f"| {'shipped default model' if not args.model else args.model} | {result['windows']} | {lat_s['p50']:.0f} | "
          f"{lat_s['p95']:.0f} | {lat_s['max']:.0f} | {inf_s['p50']:.0f} / {inf_s['p95']:.0f} | {load[0]:.1f} → {load[1]:.1f} | "
          f"`{args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}` |")


if __name__ == "__main__":
    main()
