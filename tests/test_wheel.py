"""The core installs alone from the wheel: no PyTorch, and it predicts with an exported bundle.

Builds the wheel from this checkout, installs it with its core dependencies only into a fresh
venv (from a wheelhouse in the cache, filled from the package index the first time), then runs
`physioser predict`, `physioser demo FILE` and the ROS node's core (fed std_msgs-shaped messages;
rclpy itself comes with the ros extra) there on a bundle of the tiny test model, and loads a
hardware profile shipped inside the wheel.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from physioser.paths import cache_dir
from physioser.synthesis import synth_utterance
from tests.tinyser import bundle_tiny

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "-q", "--disable-pip-version-check", *args],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "physioser", src / "physioser", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    built = _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(src))
    assert built.returncode == 0, built.stderr
    wheel = next((tmp / "dist").glob("physioser-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    wheelhouse = cache_dir() / "wheelhouse"
    offline = _pip("--python", python, "install", "--no-index", "--find-links", str(wheelhouse), str(wheel))
    if offline.returncode != 0:  # first run (or a new dependency): fetch the core's wheels once
        fetched = _pip("download", "-d", str(wheelhouse), str(wheel))
        assert fetched.returncode == 0, fetched.stderr
        offline = _pip("--python", python, "install", "--no-index", "--find-links", str(wheelhouse), str(wheel))
    assert offline.returncode == 0, offline.stderr
    return venv


def test_the_core_alone_predicts_with_a_bundle(core_venv, tmp_path):
    python = core_venv / "bin" / "python"
    assert subprocess.run([python, "-c", "import torch"], capture_output=True).returncode != 0, "torch was installed"
    bundle = bundle_tiny(tmp_path)
    clip = tmp_path / "clip.wav"
    sf.write(clip, synth_utterance(3.0), 16000)
    env = {"PATH": f"{core_venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "PHYSIOSER_CACHE": str(tmp_path / "cache")}
    physioser = str(core_venv / "bin" / "physioser")
    out = subprocess.run([physioser, "predict", str(clip), "--model", str(bundle), "--json"],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)["results"][0]
    assert result["label"] in ("neutral", "happy", "angry", "sad") and result["seconds"] == pytest.approx(3.0)
    demo = subprocess.run([physioser, "demo", str(clip), "--model", str(bundle), "--fast"],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert demo.returncode == 0 and "estimates; most frequent" in demo.stdout, demo.stdout + demo.stderr
    missing = subprocess.run([physioser, "predict", str(clip)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert missing.returncode != 0 and "physioser export --checkpoint default" in missing.stdout + missing.stderr


ROS_CORE = """
import sys
from types import SimpleNamespace
import numpy as np
from physioser.ros.core import EmotionCore, NodeConfig, load_engine
from physioser.synthesis import synth_utterance

core = EmotionCore(NodeConfig(model_path=sys.argv[1], msg_type="std_msgs/Int16MultiArray", vad="none"),
                   load_engine(sys.argv[1], ""))
pcm = (synth_utterance(3.0) * 32767).astype(np.int16)
events = []
for i in range(0, len(pcm), 320):  # 20 ms messages, as a microphone driver publishes them
    message = SimpleNamespace(layout=SimpleNamespace(dim=[], data_offset=0), data=pcm[i : i + 320].tolist())
    core.accept(message, i / 16000)
    events += [t.event for t in core.process()]
print(len(events), events[0].label)
"""


def test_the_ros_node_core_runs_a_bundle_without_torch(core_venv, tmp_path):
    bundle = bundle_tiny(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([core_venv / "bin" / "python", "-c", ROS_CORE, str(bundle)], capture_output=True, text=True,
                         cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    count, label = out.stdout.split()
    assert int(count) >= 2 and label in ("neutral", "happy", "angry", "sad")


def test_profiles_and_protocols_come_from_the_wheel(core_venv, tmp_path):
    code = ("from physioser.runtime import load_profile\nfrom physioser.paths import PACKAGE_DIR\n"
            "p = load_profile('jetson-orin')\nprint(p.source.is_relative_to(PACKAGE_DIR), 'site-packages' in str(p.source))\n"
            "print(sorted(x.name for x in (PACKAGE_DIR / 'data' / 'protocols').glob('*.yaml'))[:1])")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no PYTHONPATH: the installed package
    out = subprocess.run([core_venv / "bin" / "python", "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "True True" and out.stdout.splitlines()[1] != "[]"
