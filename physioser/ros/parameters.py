"""The emotion node's parameters: one table (name, default, meaning, range or choices, read-only).

The node turns each entry into a ROS parameter descriptor (rclpy then refuses read-only changes,
out-of-range numbers and wrong types by itself), the core checks its configuration against the same
ranges and choices, and `docs/ros.md`'s parameter table is generated from it
(`python -m physioser.ros.parameters`). No ROS needed to import this module.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from physioser import SAMPLE_RATE
from physioser.ros.messages import AUDIO_TYPES, MAX_CHANNELS, MAX_RATE, MIN_RATE, PCM_ENCODINGS
from physioser.runtime.streamer import MAX_WINDOW_S

SPEAKER_TYPES = ("hri_msgs/IdsList", "std_msgs/String")


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    read_only: bool = False  # fixed for the node's life: set it at start (params file, -p, launch)
    range: tuple[float, float] | None = None  # inclusive bounds of a number
    choices: tuple[str, ...] | None = None
    core: bool = True  # part of the core's NodeConfig (else read by the ROS wiring only)

    def check(self, value: Any) -> None:
        """Raise ValueError naming the parameter if `value` is outside its range or choices."""
        if self.range is not None and not self.range[0] <= value <= self.range[1]:
            raise ValueError(f"{self.name} {value!r} must be within {self.range[0]:g}..{self.range[1]:g}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{self.name} {value!r} is not one of {list(self.choices)}")


PARAMETERS: tuple[Param, ...] = (
    Param("model_path", "", "model bundle (from `physioser export`) or .onnx graph; empty = the default bundle. "
          "Loaded and verified at configure; a change at run time reloads it, and is refused (old model kept) if that fails"),
    Param("profile", "", "installed hardware profile name (physioser/hardware/*.yaml); empty = the default profile; "
          "a file path only with allow_profile_paths"),
    Param("allow_profile_paths", False, "let `profile` name a YAML file instead of an installed profile", read_only=True),
    Param("msg_type", "std_msgs/Int16MultiArray", "type of the audio messages: " + ", ".join(f"`{t}`" for t in AUDIO_TYPES),
          read_only=True),
    Param("sample_rate", SAMPLE_RATE, "declared input rate in Hz (an `audio_info` topic or AudioStamped overrides it)",
          range=(MIN_RATE, MAX_RATE)),
    Param("channels", 1, "declared interleaved channels (overridden as `sample_rate` is)", range=(1, MAX_CHANNELS)),
    Param("sample_format", "S16LE", "PCM encoding of byte messages (AudioData, UInt8MultiArray)",
          choices=tuple(sorted(PCM_ENCODINGS))),
    Param("window_s", 0.0, "analysis window in seconds; 0 = the model's (its bundle's metadata)", range=(0.0, MAX_WINDOW_S)),
    Param("hop_s", 0.0, "seconds between windows (at most the window); 0 = the model's", range=(0.0, MAX_WINDOW_S)),
    Param("vad", "auto", "speech gate: auto (silero where installed, else energy), silero, energy or none",
          choices=("auto", "silero", "energy", "none")),
    Param("vad_threshold_db", -45.0, "level in dBFS below which the energy gate (and silero's voicing cue) hear no speech", range=(-120.0, 0.0)),
    Param("adapt", True, "adapt to the speaker (speaker-adaptive models): each window is corrected by the running "
          "mean of its speaker's voice, growing over about a minute of their speech; false = every window on its own"),
    Param("adapt_unnamed", False, "with adapt, while no speaker is named on speaker_topic: adapt to the voices the stream "
          "names itself (measured level with strict windows by the speaker encoder, slightly below by the model's statistics, "
          "never ahead); false = strict windows until a speaker is named"),
    Param("voice_encoder", True, "with adapt_unnamed: name the voices by the bundle's speaker encoder (voice.onnx, "
          "physioser export --voice-encoder) where it has one; false = by the model's own statistics"),
    Param("smoothing", 0.5, "weight of the past in the moving average of probabilities; 0 = off", range=(0.0, 0.99)),
    Param("gap_s", 1.0, "a pause between audio messages longer than this is counted as a gap", range=(0.05, 3600.0)),
    Param("max_backlog_s", 5.0, "most audio queued for inference (at least one window); beyond it the oldest is dropped and counted",
          range=(0.1, 600.0)),
    Param("latency_history", 1000, "windows kept for the latency statistics", range=(10, 100_000)),
    Param("audio_topic", "audio", "audio input topic", read_only=True, core=False),
    Param("audio_info_topic", "audio_info", "ros-drivers AudioInfo topic declaring rate, channels and format "
          "(for AudioData, AudioDataStamped and the std_msgs types)", read_only=True, core=False),
    Param("speaker_topic", "", "topic naming who speaks (a voice or person id); empty = none. The estimates carry "
          "the id", read_only=True, core=False),
    Param("speaker_msg_type", SPEAKER_TYPES[0], "type of `speaker_topic`: an IdsList (first id = the speaker, "
          "empty = unknown) or a String (empty = unknown)", read_only=True, choices=SPEAKER_TYPES, core=False),
    Param("emotion_topic", "emotion", "output topic (physioser_msgs/EmotionEstimate); the others are under it",
          read_only=True, core=False),
    Param("publish_json", False, "also publish each estimate as JSON (std_msgs/String) on `<emotion_topic>/json`",
          read_only=True, core=False),
    Param("qos_depth", 500, "history depth of the audio subscription (sensor-data QoS: best effort, volatile)",
          read_only=True, range=(1, 100_000), core=False),
    Param("diagnostics_period_s", 1.0, "seconds between diagnostics messages", read_only=True, range=(0.05, 3600.0), core=False),
    Param("model_watch_s", 2.0, "seconds between checks of the model file for changes; 0 = off", read_only=True,
          range=(0.0, 3600.0), core=False),
    Param("autostart", True, "configure and activate at start-up; false = wait for a lifecycle manager",
          read_only=True, core=False),
)
BY_NAME = {p.name: p for p in PARAMETERS}


def markdown_table() -> str:
    """The parameters as a Markdown table (docs/ros.md)."""
    rows = ["| parameter | default | allowed | changes at run time | meaning |", "|---|---|---|---|---|"]
    for p in PARAMETERS:
        if p.range is not None:
            allowed = f"{p.range[0]:g} .. {p.range[1]:g}"
        elif p.choices is not None:
            allowed = ", ".join(f"`{c}`" for c in p.choices)
        else:
            allowed = "bool" if isinstance(p.default, bool) else "string"
        default = f"`{str(p.default).lower() if isinstance(p.default, bool) else p.default}`" if p.default != "" else '`""`'
        rows.append(f"| `{p.name}` | {default} | {allowed} | {'no (read-only)' if p.read_only else 'yes'} | {p.description} |")
    return "\n".join(rows) + "\n"


BEGIN, END = "<!-- parameters: generated by `python -m physioser.ros.parameters --update docs/ros.md` -->", "<!-- end of parameters -->"


def with_table(doc: str) -> str:
    """`doc` with the text between the BEGIN and END markers replaced by the current table."""
    head, sep, rest = doc.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not (sep and sep2):
        raise ValueError("the document has no parameter table markers")
    return f"{head}{BEGIN}\n{markdown_table()}{END}{tail}"


def main(argv: list[str]) -> int:
    if argv[:1] == ["--update"] and len(argv) == 2:
        path = Path(argv[1])
        path.write_text(with_table(path.read_text()))
        return 0
    if argv:
        print("usage: python -m physioser.ros.parameters [--update docs/ros.md]", file=sys.stderr)
        return 2
    sys.stdout.write(markdown_table())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
