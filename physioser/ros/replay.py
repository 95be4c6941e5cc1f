"""Offline replay of a recorded rosbag2 (sqlite3 or MCAP) through the node's logic, without ROS.

The audio topic's messages are read with `rosbags`, decoded by `physioser.ros.messages`, and fed to
the same `EmotionCore` as the live node, in bag order with the bag timestamps as arrival times; an
`audio_info` topic in the bag (ros-drivers AudioInfo) updates the declared format as it would live.
The result is the emotion timeline: one record per window.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable

from physioser.ros.core import EmotionCore, NodeConfig, event_record
from physioser.ros.messages import AUDIO_TYPES, MessageDecodeError, audio_type, decode_ros_drivers_audio_info, typestore

TIMELINE_FIELDS = ["stamp_s", "window_start_s", "window_end_s", "label", "confidence", "valence", "arousal"]


class BagError(ValueError):
    """A bag that cannot be replayed (missing, no audio topic, unknown type), naming the bag."""


@dataclass
class ReplayResult:
    timeline: list[dict[str, Any]]
    diagnostics: dict[str, Any]
    topic: str
    msg_type: str
    class_names: list[str]


def _ros_type(msgtype: str) -> str:
    """rosbags' `pkg/msg/Type` → `pkg/Type`."""
    parts = msgtype.split("/")
    return f"{parts[0]}/{parts[-1]}"


def _open(bag: Path):
    from rosbags.rosbag2 import Reader

    if not bag.exists():
        raise BagError(f"{bag}: no such bag (a rosbag2 directory with metadata.yaml, or an .mcap file)")
    try:
        reader = Reader(bag)
        reader.open()
    except Exception as err:  # noqa: BLE001 - rosbags raises several types for unreadable bags
        raise BagError(f"{bag}: cannot be read as a rosbag2 bag: {err}") from err
    return reader


def replay(
    bag: str | Path,
    *,
    topic: str | None = None,
    msg_type: str | None = None,
    config: NodeConfig | None = None,
    engine=None,
) -> ReplayResult:
    """Run a bag's audio topic through EmotionCore; returns the timeline and the diagnostics.

    `topic`: the audio topic (default: the only topic with a supported audio type).
    `msg_type`: overrides the type recorded in the bag (e.g. to pick the audio_common flavour).
    """
    bag = Path(bag)
    reader = _open(bag)
    try:
        audio_conns = [c for c in reader.connections if _ros_type(c.msgtype) in AUDIO_TYPES]
        if topic is not None:
            chosen = [c for c in reader.connections if c.topic == topic]
            if not chosen:
                raise BagError(f"{bag}: no topic {topic!r}; topics: {sorted({c.topic for c in reader.connections})}")
        else:
            chosen = audio_conns
            if len({c.topic for c in chosen}) != 1:
                found = sorted({f'{c.topic} ({c.msgtype})' for c in reader.connections})
                raise BagError(f"{bag}: pass --topic: {len({c.topic for c in chosen})} audio topics among {found}")
        spec = audio_type(msg_type or _ros_type(chosen[0].msgtype))
        store = typestore(spec.flavour)
        info_conns = [
            c for c in reader.connections
            if spec.info_type and _ros_type(c.msgtype) == spec.info_type and c.topic.rsplit("/", 1)[-1] == "audio_info"
        ]
        base = config or NodeConfig()
        core = EmotionCore(replace(base, msg_type=spec.name), engine)
        timeline = []
        for conn, stamp, raw in reader.messages(connections=chosen + info_conns):
            t = stamp / 1e9
            if conn in info_conns:
                try:
                    core.set_format(decode_ros_drivers_audio_info(store.deserialize_cdr(raw, conn.msgtype)))
                except MessageDecodeError as err:
                    core.reject(err)
                except Exception as err:  # noqa: BLE001 - a corrupt AudioInfo record, counted like a corrupt audio one
                    core.reject(MessageDecodeError(spec.info_type, "corrupt_cdr", f"cannot deserialise a record: {err}"))
                continue
            try:
                msg = store.deserialize_cdr(raw, conn.msgtype)
            except Exception as err:  # noqa: BLE001 - a corrupt record is counted like a bad message
                core.reject(MessageDecodeError(spec.name, "corrupt_cdr", f"cannot deserialise a record: {err}"))
                continue
            core.accept(msg, t, received_ns=stamp)
            for timed in core.process():
                timeline.append({"stamp_s": round(timed.stamp_ns / 1e9, 6), **event_record(timed.event)})
        for timed in core.end_stream():  # the recording's last utterance
            timeline.append({"stamp_s": round(timed.stamp_ns / 1e9, 6), **event_record(timed.event)})
        return ReplayResult(timeline, core.diagnostics(), chosen[0].topic, spec.name, list(core.engine.class_names))
    finally:
        reader.close()


def timeline_csv(timeline: Iterable[dict[str, Any]], class_names: list[str]) -> str:
    """The timeline as CSV: fixed columns then one probability column per class (p_<name>)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(TIMELINE_FIELDS + [f"p_{n}" for n in class_names])
    for row in timeline:
        writer.writerow([row[k] for k in TIMELINE_FIELDS] + [row["probabilities"].get(n, "") for n in class_names])
    return out.getvalue()


def write_timeline(result: ReplayResult, out: Path | None) -> str:
    """Write to `out` (.csv or .json) or return CSV text for stdout."""
    if out is None or out.suffix.lower() == ".csv":
        text = timeline_csv(result.timeline, result.class_names)
    elif out.suffix.lower() == ".json":
        text = json.dumps(
            {"topic": result.topic, "msg_type": result.msg_type, "class_names": result.class_names, "timeline": result.timeline,
             "diagnostics": result.diagnostics}, indent=1
        )
    else:
        raise ValueError(f"{out}: the timeline is written as .csv or .json")
    if out is not None:
        out.write_text(text)
    return text
