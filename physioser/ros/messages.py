"""Pure decoding of ROS audio messages into float32 mono samples (no ROS runtime needed).

One function per message type. Each takes the message object — an rclpy message on a robot or a
`rosbags` dataclass when reading a bag; both expose the same field names — and returns a
`DecodedAudio`: float32 mono samples in [-1, 1] plus the format that was declared (sample rate,
channels, encoding) so the caller can resample to 16 kHz. Anything that cannot be decoded raises
`MessageDecodeError`, naming the message type, a short machine-readable `reason` (counted in the
node's diagnostics) and what is wrong.

Supported types (see docs/ros.md):

- `audio_common_msgs/AudioData` (ros-drivers/audio_common): `uint8[] data` of raw PCM, format from
  an `audio_common_msgs/AudioInfo` (ros-drivers) or parameters; default S16LE.
- `audio_common_msgs/AudioDataStamped` (ros-drivers): header + AudioData.
- `audio_common_msgs/AudioStamped` (mgonzs13/audio_common): header + typed arrays + its own
  `AudioInfo` (PortAudio format flag, channels, rate, chunk) in every message.
- `std_msgs/Int16MultiArray` (PCM16 values), `std_msgs/Float32MultiArray` (floats in [-1, 1]),
  `std_msgs/UInt8MultiArray` (raw PCM bytes like AudioData, default S16LE).

Multi-channel audio is interleaved and mixed down to mono by averaging.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

MIN_RATE = 1000
MAX_RATE = 384_000
MAX_CHANNELS = 64

# Raw PCM encodings accepted in byte arrays: numpy dtype and full-scale divisor.
PCM_ENCODINGS: dict[str, tuple[str, float]] = {
    "S16LE": ("<i2", 32768.0),
    "S32LE": ("<i4", 2147483648.0),
    "F32LE": ("<f4", 1.0),
    "U8": ("u1", 128.0),
    "S8": ("i1", 128.0),
}

# PortAudio sample-format flags used by mgonzs13/audio_common's AudioInfo.format.
PORTAUDIO_FORMATS: dict[int, tuple[str, str]] = {
    1: ("float32_data", "F32"),
    2: ("int32_data", "S32"),
    8: ("int16_data", "S16"),
    16: ("int8_data", "S8"),
    32: ("uint8_data", "U8"),
}
_TYPED_SCALE = {"F32": 1.0, "S32": 2147483648.0, "S16": 32768.0, "S8": 128.0, "U8": 128.0}


class MessageDecodeError(ValueError):
    """A ROS message that cannot be turned into audio. `reason` is a short key for counting."""

    def __init__(self, message_type: str, reason: str, detail: str):
        self.message_type = message_type
        self.reason = reason
        self.detail = detail
        super().__init__(f"{message_type}: {detail} [{reason}]")


@dataclass(frozen=True)
class AudioFormat:
    """A declared audio format: from parameters, an AudioInfo message or the message itself."""

    sample_rate: int
    channels: int = 1
    encoding: str = "S16LE"


@dataclass(frozen=True)
class DecodedAudio:
    """float32 mono samples in [-1, 1] and the format they were declared in (before resampling)."""

    samples: np.ndarray
    format: AudioFormat


def check_format(fmt: AudioFormat, source: str) -> AudioFormat:
    """Validate a declared format; raise MessageDecodeError naming `source` if it is unusable."""
    if not isinstance(fmt.sample_rate, (int, np.integer)) or not MIN_RATE <= int(fmt.sample_rate) <= MAX_RATE:
        raise MessageDecodeError(source, "bad_rate", f"sample rate {fmt.sample_rate!r} Hz is outside {MIN_RATE}..{MAX_RATE}")
    if not isinstance(fmt.channels, (int, np.integer)) or not 1 <= int(fmt.channels) <= MAX_CHANNELS:
        raise MessageDecodeError(source, "bad_channels", f"channel count {fmt.channels!r} is outside 1..{MAX_CHANNELS}")
    return AudioFormat(int(fmt.sample_rate), int(fmt.channels), fmt.encoding)


def _as_array(data: Any, dtype: str) -> np.ndarray:
    """A message's sequence field (rclpy array.array/bytes/list, rosbags ndarray) as a numpy array."""
    if isinstance(data, np.ndarray):
        return data.astype(dtype, copy=False).reshape(-1)
    try:
        view = memoryview(data)
    except TypeError:
        return np.asarray(list(data), dtype=dtype)
    if view.itemsize == np.dtype(dtype).itemsize:
        return np.frombuffer(view, dtype=dtype)
    return np.asarray(view.tolist(), dtype=dtype)


def _finish(frames: np.ndarray, fmt: AudioFormat, source: str) -> DecodedAudio:
    """Check interleaved float samples, mix down to mono, and wrap with their format."""
    if frames.size == 0:
        raise MessageDecodeError(source, "empty", "message carries no samples")
    if frames.size % fmt.channels:
        raise MessageDecodeError(
            source, "channel_mismatch", f"{frames.size} samples do not split into {fmt.channels} interleaved channels"
        )
    if not np.all(np.isfinite(frames)):
        bad = int(np.count_nonzero(~np.isfinite(frames)))
        raise MessageDecodeError(source, "non_finite", f"{bad} of {frames.size} samples are NaN or Inf")
    peak = float(np.max(np.abs(frames)))
    if peak > 1.0:
        raise MessageDecodeError(
            source, "out_of_range", f"float samples reach {peak:.3g}; audio must be normalised to [-1, 1]"
        )
    mono = frames.reshape(-1, fmt.channels).mean(axis=1, dtype=np.float64) if fmt.channels > 1 else frames
    return DecodedAudio(np.ascontiguousarray(mono, dtype=np.float32), fmt)


def decode_pcm_bytes(data: Any, fmt: AudioFormat, source: str) -> DecodedAudio:
    """Raw interleaved PCM bytes (`uint8[]`) in `fmt.encoding` -> DecodedAudio."""
    fmt = check_format(fmt, source)
    encoding = fmt.encoding.upper()
    if encoding not in PCM_ENCODINGS:
        raise MessageDecodeError(
            source, "unsupported_format", f"sample format {fmt.encoding!r} is not one of {sorted(PCM_ENCODINGS)}"
        )
    dtype, scale = PCM_ENCODINGS[encoding]
    raw = _as_array(data, "u1")
    width = np.dtype(dtype).itemsize
    if raw.size == 0:
        raise MessageDecodeError(source, "empty", "message carries no bytes")
    if raw.size % width:
        raise MessageDecodeError(
            source, "odd_byte_count", f"{raw.size} bytes is not a whole number of {width}-byte {encoding} samples"
        )
    values = raw.view(dtype).astype(np.float32)
    if encoding == "U8":
        values -= 128.0
    if scale != 1.0:
        values /= np.float32(scale)
    return _finish(values, fmt, source)


def decode_audio_data(msg: Any, fmt: AudioFormat) -> DecodedAudio:
    """ros-drivers `audio_common_msgs/AudioData` (`uint8[] data`, raw PCM, S16LE by default)."""
    if not hasattr(msg, "data"):
        raise MessageDecodeError(
            "audio_common_msgs/AudioData", "wrong_type", "no `data` field (is this the mgonzs13 flavour? use AudioStamped)"
        )
    return decode_pcm_bytes(msg.data, fmt, "audio_common_msgs/AudioData")


def decode_audio_data_stamped(msg: Any, fmt: AudioFormat) -> DecodedAudio:
    """ros-drivers `audio_common_msgs/AudioDataStamped` (header + AudioData)."""
    return decode_pcm_bytes(msg.audio.data, fmt, "audio_common_msgs/AudioDataStamped")


def decode_ros_drivers_audio_info(msg: Any) -> AudioFormat:
    """ros-drivers `audio_common_msgs/AudioInfo` -> AudioFormat (raw PCM only: coding_format wave/raw)."""
    source = "audio_common_msgs/AudioInfo"
    coding = str(msg.coding_format).strip().lower()
    if coding not in ("", "wave", "wav", "raw", "pcm"):
        raise MessageDecodeError(
            source, "unsupported_format",
            f"coding_format {msg.coding_format!r} is compressed; run audio_capture with format:=wave",
        )
    encoding = str(msg.sample_format).strip().upper() or "S16LE"
    if encoding not in PCM_ENCODINGS:
        raise MessageDecodeError(
            source, "unsupported_format", f"sample_format {msg.sample_format!r} is not one of {sorted(PCM_ENCODINGS)}"
        )
    return check_format(AudioFormat(int(msg.sample_rate), int(msg.channels), encoding), source)


def decode_mgonzs13_audio_info(msg: Any) -> AudioFormat:
    """mgonzs13 `audio_common_msgs/AudioInfo` (PortAudio format flag, channels, rate, chunk) -> AudioFormat."""
    source = "audio_common_msgs/AudioInfo (mgonzs13)"
    flag = int(msg.format)
    if flag not in PORTAUDIO_FORMATS:
        raise MessageDecodeError(
            source, "unsupported_format",
            f"PortAudio format flag {flag} is not one of {sorted(PORTAUDIO_FORMATS)} (1=float32, 8=int16, ...)",
        )
    return check_format(AudioFormat(int(msg.rate), int(msg.channels), PORTAUDIO_FORMATS[flag][1]), source)


def decode_audio_stamped(msg: Any, fmt: AudioFormat | None = None) -> DecodedAudio:
    """mgonzs13 `audio_common_msgs/AudioStamped`: typed arrays, format declared in `audio.info`.

    `fmt` is ignored: this type declares its own format in every message.
    """
    source = "audio_common_msgs/AudioStamped"
    audio = msg.audio
    declared = decode_mgonzs13_audio_info(audio.info)
    field, kind = PORTAUDIO_FORMATS[int(audio.info.format)]
    dtype = {"F32": "<f4", "S32": "<i4", "S16": "<i2", "S8": "i1", "U8": "u1"}[kind]
    values = _as_array(getattr(audio.audio_data, field), dtype)
    if values.size == 0:
        others = [name for name, _ in PORTAUDIO_FORMATS.values() if name != field and len(getattr(audio.audio_data, name))]
        detail = f"info.format says {field} but it is empty" + (f" ({', '.join(others)} carry data)" if others else "")
        raise MessageDecodeError(source, "empty", detail)
    values = values.astype(np.float32)
    if kind == "U8":
        values -= 128.0
    if _TYPED_SCALE[kind] != 1.0:
        values /= np.float32(_TYPED_SCALE[kind])
    return _finish(values, declared, source)


def _layout_channels(msg: Any, fmt: AudioFormat, source: str) -> AudioFormat:
    """Channels from a MultiArray layout: none or [samples] keep `fmt`, [frames, channels] sets them."""
    dims = list(msg.layout.dim)
    if len(dims) > 2:
        raise MessageDecodeError(source, "bad_layout", f"layout has {len(dims)} dimensions; expected [samples] or [frames, channels]")
    if len(dims) == 2:
        channels = int(dims[1].size)
        if channels < 1 or channels > MAX_CHANNELS:
            raise MessageDecodeError(source, "bad_channels", f"layout declares {channels} channels")
        fmt = AudioFormat(fmt.sample_rate, channels, fmt.encoding)
    return fmt


def _multiarray_values(msg: Any, dtype: str, source: str) -> np.ndarray:
    values = _as_array(msg.data, dtype)
    offset = int(msg.layout.data_offset)
    if offset < 0 or offset > values.size:
        raise MessageDecodeError(source, "bad_layout", f"layout.data_offset {offset} is outside the {values.size} values")
    values = values[offset:]
    dims = list(msg.layout.dim)
    if dims:
        expected = int(np.prod([int(d.size) for d in dims]))
        if expected != values.size:
            raise MessageDecodeError(
                source, "bad_layout", f"layout declares {expected} values but the message carries {values.size}"
            )
    return values


def decode_int16_multiarray(msg: Any, fmt: AudioFormat) -> DecodedAudio:
    """`std_msgs/Int16MultiArray`: PCM16 values, interleaved if several channels."""
    source = "std_msgs/Int16MultiArray"
    fmt = _layout_channels(msg, check_format(fmt, source), source)
    values = _multiarray_values(msg, "<i2", source)
    return _finish(values.astype(np.float32) / np.float32(32768.0), AudioFormat(fmt.sample_rate, fmt.channels, "S16"), source)


def decode_float32_multiarray(msg: Any, fmt: AudioFormat) -> DecodedAudio:
    """`std_msgs/Float32MultiArray`: float samples in [-1, 1], interleaved if several channels."""
    source = "std_msgs/Float32MultiArray"
    fmt = _layout_channels(msg, check_format(fmt, source), source)
    values = _multiarray_values(msg, "<f4", source)
    return _finish(values.astype(np.float32, copy=True), AudioFormat(fmt.sample_rate, fmt.channels, "F32"), source)


def decode_uint8_multiarray(msg: Any, fmt: AudioFormat) -> DecodedAudio:
    """`std_msgs/UInt8MultiArray`: raw PCM bytes like AudioData (encoding and channels from `fmt`,
    S16LE by default); a layout, if any, counts bytes."""
    source = "std_msgs/UInt8MultiArray"
    return decode_pcm_bytes(_multiarray_values(msg, "u1", source), fmt, source)


@dataclass(frozen=True)
class AudioMessageType:
    """One supported audio message type: its ROS name, Python import and decoder."""

    name: str  # e.g. "std_msgs/Int16MultiArray"
    module: str  # Python module of the rclpy message class
    cls: str
    decode: Callable[[Any, AudioFormat], DecodedAudio]
    flavour: str  # "std_msgs", "ros-drivers" or "mgonzs13"
    info_type: str | None  # name of the AudioInfo that declares its format on `audio_info`, if any


AUDIO_TYPES: dict[str, AudioMessageType] = {
    t.name: t
    for t in (
        AudioMessageType("audio_common_msgs/AudioData", "audio_common_msgs.msg", "AudioData", decode_audio_data, "ros-drivers", "audio_common_msgs/AudioInfo"),
        AudioMessageType("audio_common_msgs/AudioDataStamped", "audio_common_msgs.msg", "AudioDataStamped", decode_audio_data_stamped, "ros-drivers", "audio_common_msgs/AudioInfo"),
        AudioMessageType("audio_common_msgs/AudioStamped", "audio_common_msgs.msg", "AudioStamped", decode_audio_stamped, "mgonzs13", None),
        AudioMessageType("std_msgs/Int16MultiArray", "std_msgs.msg", "Int16MultiArray", decode_int16_multiarray, "std_msgs", "audio_common_msgs/AudioInfo"),
        AudioMessageType("std_msgs/Float32MultiArray", "std_msgs.msg", "Float32MultiArray", decode_float32_multiarray, "std_msgs", "audio_common_msgs/AudioInfo"),
        AudioMessageType("std_msgs/UInt8MultiArray", "std_msgs.msg", "UInt8MultiArray", decode_uint8_multiarray, "std_msgs", "audio_common_msgs/AudioInfo"),
    )
}


def audio_type(name: str) -> AudioMessageType:
    """Look up a supported type by `pkg/Type` or `pkg/msg/Type`; clear error listing the choices."""
    parts = name.strip().split("/")
    key = f"{parts[0]}/{parts[-1]}" if len(parts) in (2, 3) and (len(parts) == 2 or parts[1] == "msg") else name
    if key not in AUDIO_TYPES:
        raise ValueError(f"audio message type {name!r} is not supported; choose one of {sorted(AUDIO_TYPES)}")
    return AUDIO_TYPES[key]


# Message definitions (verbatim from the upstream packages) for rosbags, which has neither flavour.
ROS_DRIVERS_MSGS = {
    "audio_common_msgs/msg/AudioData": "uint8[] data\n",
    "audio_common_msgs/msg/AudioDataStamped": "std_msgs/Header header\naudio_common_msgs/AudioData audio\n",
    "audio_common_msgs/msg/AudioInfo": (
        "# Number of channels\nuint8 channels\n# Sampling rate [Hz]\nuint32 sample_rate\n"
        "# Audio format (e.g. S16LE)\nstring sample_format\n# Amount of audio data per second [bits/s]\n"
        "uint32 bitrate\n# Audio coding format (e.g. WAVE, MP3)\nstring coding_format\n"
    ),
}
MGONZS13_MSGS = {
    "audio_common_msgs/msg/AudioData": (
        "float32[] float32_data\nint32[] int32_data\nint16[] int16_data\nint8[] int8_data\nuint8[] uint8_data\n"
    ),
    "audio_common_msgs/msg/AudioInfo": "int32 format\nint32 channels\nint32 rate\nint32 chunk\n",
    "audio_common_msgs/msg/Audio": "audio_common_msgs/AudioData audio_data\naudio_common_msgs/AudioInfo info\n",
    "audio_common_msgs/msg/AudioStamped": "std_msgs/Header header\naudio_common_msgs/Audio audio\n",
}


@functools.lru_cache(maxsize=None)
def typestore(flavour: str = "ros-drivers"):
    """A rosbags Typestore (ROS 2 Kilted) with one flavour of audio_common_msgs registered (cached:
    do not register other types in it).

    The two upstream packages share the name `audio_common_msgs` but not their definitions, so a
    store holds one of them: "ros-drivers" or "mgonzs13" ("std_msgs" gets the ros-drivers one).
    """
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    definitions = {"ros-drivers": ROS_DRIVERS_MSGS, "std_msgs": ROS_DRIVERS_MSGS, "mgonzs13": MGONZS13_MSGS}[flavour]
    types: dict = {}
    for name, text in definitions.items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store
