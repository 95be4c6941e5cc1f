"""`physioser ros ...` commands (no ROS runtime needed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from physioser import SAMPLE_RATE

ros_app = typer.Typer(no_args_is_help=True, help="ROS 2: replay recorded bags through the emotion node's logic; play audio onto a topic.")


@ros_app.command("replay")
def replay_command(
    bag: Path = typer.Argument(..., help="rosbag2 directory (sqlite3 or MCAP) or .mcap file"),
    topic: Optional[str] = typer.Option(None, help="audio topic (default: the only audio topic in the bag)"),
    msg_type: Optional[str] = typer.Option(None, "--type", help="override the recorded type, e.g. audio_common_msgs/AudioStamped"),
    out: Optional[Path] = typer.Option(None, help="write the timeline to .csv or .json (default: CSV on stdout)"),
    model: str = typer.Option("", help="model bundle or .onnx graph (default: the default bundle)"),
    profile: str = typer.Option("", help="installed hardware profile name"),
    allow_profile_path: bool = typer.Option(False, "--allow-profile-path", help="let --profile name a YAML file"),
    window_s: float = typer.Option(0.0, help="window in seconds (0 = the model's)"),
    hop_s: float = typer.Option(0.0, help="hop in seconds (0 = the model's)"),
    vad: str = typer.Option("auto", help="speech gate: auto (silero where installed, else energy), silero, energy or none"),
    vad_threshold_db: float = typer.Option(-45.0, help="level (dBFS) below which the energy gate (and silero's voicing cue) hear no speech"),
    smoothing: float = typer.Option(0.5, help="EMA weight of past probabilities (0 = off)"),
    adapt: bool = typer.Option(True, help="adapt to the speaker (speaker-adaptive models)"),
    adapt_unnamed: bool = typer.Option(False, help="also adapt to the voices the stream names itself (a bag's audio names "
                                       "no speaker: without this the windows are strict)"),
    voice_encoder: bool = typer.Option(True, help="with --adapt-unnamed: name the voices by the bundle's speaker encoder "
                                       "where it has one (else by the model's own statistics)"),
    sample_rate: int = typer.Option(SAMPLE_RATE, help="declared rate when the bag has no audio_info / AudioStamped"),
    channels: int = typer.Option(1, help="declared channels when the bag does not say"),
    sample_format: str = typer.Option("S16LE", help="PCM encoding of byte messages"),
) -> None:
    """Print or write the emotion timeline of the audio recorded in BAG."""
    from physioser.ros.core import NodeConfig
    from physioser.ros.replay import BagError, replay, write_timeline

    try:
        config = NodeConfig(
            model_path=model, profile=profile, allow_profile_paths=allow_profile_path, window_s=window_s, hop_s=hop_s, vad=vad,
            vad_threshold_db=vad_threshold_db, smoothing=smoothing, adapt=adapt, adapt_unnamed=adapt_unnamed,
            voice_encoder=voice_encoder, sample_rate=sample_rate,
            channels=channels, sample_format=sample_format,
        )
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


@ros_app.command("play")
def play_command(
    audio: list[Path] = typer.Argument(..., help="audio files to publish (any rate; resampled to --rate)"),
    msg_type: str = typer.Option("std_msgs/Int16MultiArray", "--type", help="std_msgs/Int16MultiArray, Float32MultiArray, "
                                 "UInt8MultiArray, or (in that flavour's environment) audio_common_msgs/AudioData, AudioDataStamped, AudioStamped"),
    topic: str = typer.Option("audio", help="audio topic"),
    emotion_topic: str = typer.Option("emotion", help="the node's output topic (its estimates are printed)"),
    rate: int = typer.Option(SAMPLE_RATE, help="sample rate to publish at (set the node's sample_rate to match)"),
    chunk_ms: float = typer.Option(20.0, help="milliseconds of audio per message"),
    speed: float = typer.Option(1.0, help="1 = real time; 10 = ten times faster"),
    loop: bool = typer.Option(False, help="start again at the end, until interrupted"),
    wait_s: float = typer.Option(30.0, help="seconds to wait for the node before starting (0 = don't wait)"),
    out: Optional[Path] = typer.Option(None, help="write the emotion messages received (and latencies) to this JSON"),
) -> None:
    """Publish audio files on a topic as a microphone driver would (needs rclpy: the ros extra)."""
    import numpy as np

    from physioser.audio import load_audio
    from physioser.ros.play import Audio, Player

    try:
        player = Player(msg_type, topic=topic, emotion_topic=emotion_topic)
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    try:
        if wait_s > 0:
            player.wait_for_node(wait_s)
        clips = [load_audio(path, target_sr=rate) for path in audio]
        while True:
            for clip in clips:
                player.run([Audio(clip, rate=rate, chunk_ms=chunk_ms, speed=speed)])
            if not loop:
                break
        player.wait_quiet()
        session = player.session
        for _, record in session.estimates:
            typer.echo(json.dumps(record))
        latencies = session.stamp_latencies_ms()
        if latencies:
            typer.echo(f"{len(latencies)} windows; latency from the window's end p50 {np.percentile(latencies, 50):.1f} ms, "
                       f"p95 {np.percentile(latencies, 95):.1f} ms, max {max(latencies):.1f} ms", err=True)
        if out is not None:
            out.write_text(json.dumps({"estimates": [r for _, r in session.estimates], "latency_ms": latencies,
                                       "first_stamp_ns": session.sent[0].stamp_ns if session.sent else None,
                                       "messages_sent": len(session.sent)}, indent=1))
    except KeyboardInterrupt:
        pass
    except TimeoutError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    finally:
        player.close()


@ros_app.command("env")
def env_command(
    flavour: str = typer.Argument(..., help="audio_common_msgs flavour: ros-drivers or mgonzs13"),
) -> None:
    """Print `export` lines that put one built audio_common_msgs flavour on this shell's paths:
    eval "$(physioser ros env ros-drivers)"."""
    from physioser.ros.interfaces import BuildError, shell_exports

    try:
        sys.stdout.write(shell_exports(flavour))
    except (BuildError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    app.add_typer(ros_app, name="ros")


if __name__ == "__main__":  # `python -m physioser.ros.cli play ...`: without loading the other areas' commands
    ros_app()
