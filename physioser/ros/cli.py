"""`physioser ros ...` commands (no ROS runtime needed)."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

ros_app = typer.Typer(no_args_is_help=True, help="ROS 2: replay recorded bags through the emotion node's logic.")


@ros_app.command("replay")
def replay_command(
    bag: Path = typer.Argument(..., help="rosbag2 directory (sqlite3 or MCAP) or .mcap file"),
    topic: Optional[str] = typer.Option(None, help="audio topic (default: the only audio topic in the bag)"),
    msg_type: Optional[str] = typer.Option(None, "--type", help="override the recorded type, e.g. audio_common_msgs/AudioStamped"),
    out: Optional[Path] = typer.Option(None, help="write the timeline to .csv or .json (default: CSV on stdout)"),
    model: str = typer.Option("", help="ONNX model or model directory (default: the default model)"),
    profile: str = typer.Option("", help="hardware profile"),
    window_s: float = typer.Option(2.0, help="window in seconds"),
    hop_s: float = typer.Option(0.5, help="hop in seconds"),
    vad: str = typer.Option("energy", help="voice activity gate: energy, silero or none"),
    vad_threshold_db: float = typer.Option(-45.0, help="energy gate threshold (dBFS)"),
    smoothing: float = typer.Option(0.5, help="EMA weight of past probabilities (0 = off)"),
    sample_rate: int = typer.Option(16000, help="declared rate when the bag has no audio_info / AudioStamped"),
    channels: int = typer.Option(1, help="declared channels when the bag does not say"),
    sample_format: str = typer.Option("S16LE", help="PCM encoding of byte messages"),
) -> None:
    """Print or write the emotion timeline of the audio recorded in BAG."""
    from physioser.ros.core import NodeConfig
    from physioser.ros.replay import BagError, replay, write_timeline

    try:
        config = NodeConfig(
            model_path=model, profile=profile, window_s=window_s, hop_s=hop_s, vad=vad,
            vad_threshold_db=vad_threshold_db, smoothing=smoothing, sample_rate=sample_rate,
            channels=channels, sample_format=sample_format,
        )
        if msg_type:
            config = replace(config, msg_type=msg_type)
        result = replay(bag, topic=topic, msg_type=msg_type, config=config)
    except (BagError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    text = write_timeline(result, out)
    if out is None:
        sys.stdout.write(text)
    diag = result.diagnostics
    typer.echo(
        f"{result.topic} ({result.msg_type}): {diag['messages_accepted']}/{diag['messages_received']} messages, "
        f"{diag['audio_received_s']} s of audio, {len(result.timeline)} windows"
        + (f", rejected {json.dumps(diag['rejected_by_reason'])}" if diag["messages_rejected"] else "")
        + (f" → {out}" if out else ""),
        err=True,
    )


def register(app: typer.Typer) -> None:
    app.add_typer(ros_app, name="ros")
