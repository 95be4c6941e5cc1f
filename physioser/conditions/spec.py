"""A condition named by a string, applied to clips reproducibly from a seed.

Grammar: steps joined by ``+``, applied left to right, each ``kind`` or ``kind:value``:

==================  ==========================================================================
``clean``           nothing
``babble:SNR``      6 talkers from corpora other than the clip's own (see :class:`BabblePool`)
``fan:SNR``         generated fan/motor noise (:func:`physioser.conditions.sources.fan_noise`)
``noise:SNR``       the real recordings of :data:`REAL_NOISE_TEST` (``noise-train:SNR``: the others)
``white:SNR``       white noise; ``pink:SNR`` pink noise
``reverb:T60``      one of :data:`ROOMS` simulated rooms with this T60 (s), source 1-3 m from the microphone
``telephone``       300-3400 Hz, 8 kHz sampling; ``robotmic`` 250 Hz-4 kHz roll-off
``clip:FRACTION``   gain until this fraction of samples clip
==================  ==========================================================================

e.g. ``reverb:0.6+fan:10``. The random draws for a clip depend only on ``(seed, key)`` (``key``: the
clip's path or any stable name), so a condition is the same data on every run and machine.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from physioser import SAMPLE_RATE
from physioser.conditions import sources as S
from physioser.conditions import transforms as T

NOISE_KINDS = ("babble", "fan", "noise", "noise-train", "white", "pink")
KINDS = (*NOISE_KINDS, "clean", "reverb", "telephone", "robotmic", "clip")
BABBLE_TALKERS = 6
ROOMS = 8
"""Rooms simulated per T60 and seed (image-source RIRs take seconds each); each clip draws one."""
BABBLE_CORPORA = ("RAVDESS", "EMOVO", "URDU", "KoreanEmotionTTS", "ASED")
# Real noise split by file (../shared/noise, see its README). Left out of both: the street recordings
# (may hold distant speech) and the 100 unlabelled speechdnn sounds (they hold laughter, screams, cheering).
REAL_NOISE_TEST = (
    "SpeechCommands_background_noise/_background_noise_/doing_the_dishes.flac",
    "SpeechCommands_background_noise/_background_noise_/running_tap.flac",
    "Timgrau_Projektarbeit-1/noise_data/resampled/aircon_0.flac",
    "Timgrau_Projektarbeit-1/noise_data/resampled/dishwasher_0.flac",
    "Timgrau_Projektarbeit-1/noise_data/resampled/vacuuming_0.flac",
)
REAL_NOISE_TRAIN = (
    "SpeechCommands_background_noise/_background_noise_/dude_miaowing.flac",
    "SpeechCommands_background_noise/_background_noise_/exercise_bike.flac",
    "Timgrau_Projektarbeit-1/noise_data/resampled/aircon_1.flac",
    "Timgrau_Projektarbeit-1/noise_data/resampled/aircon_2.flac",
    "Timgrau_Projektarbeit-1/noise_data/resampled/dishwasher_1.flac",
    "Timgrau_Projektarbeit-1/noise_data/resampled/dishwasher_2.flac",
    "Timgrau_Projektarbeit-1/noise_data/resampled/dishwasher_3.flac",
    "Timgrau_Projektarbeit-1/noise_data/resampled/vacuuming_1.flac",
    "Timgrau_Projektarbeit-1/noise_data/resampled/vacuuming_2.flac",
)


class ConditionError(ValueError):
    """A condition string that does not parse or cannot be applied."""


@dataclass(frozen=True)
class Step:
    kind: str
    value: float | None = None


def parse(spec: str) -> list[Step]:
    """Steps of a condition string (see module docstring); raises ConditionError naming the bad step."""
    steps = []
    for part in spec.split("+"):
        kind, _, value = part.strip().partition(":")
        if kind not in KINDS:
            raise ConditionError(f"condition {spec!r}: unknown step {kind!r} (one of {', '.join(KINDS)})")
        needs = kind in NOISE_KINDS or kind in ("reverb", "clip")
        if needs != bool(value):
            raise ConditionError(f"condition {spec!r}: {kind!r} {'needs a value' if needs else 'takes no value'}")
        try:
            number = float(value) if value else None
        except ValueError:
            raise ConditionError(f"condition {spec!r}: {value!r} is not a number") from None
        if kind == "reverb" and not 0.1 <= number <= 3.0:
            raise ConditionError(f"condition {spec!r}: T60 must be within 0.1-3 s")
        steps.append(Step(kind, number))
    return steps


def clip_rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


@dataclass
class BabblePool:
    """Utterances of corpora other than the clip's own (``per_corpus`` per corpus, one per speaker
    first, the same selection for a seed), loaded once per excluded corpus."""

    corpora_root: Path
    seed: int = 0
    per_corpus: int = 40
    _pools: dict = field(default_factory=dict)

    def talkers(self, exclude: str | None) -> list[tuple[str, np.ndarray]]:
        if exclude not in self._pools:
            from physioser.audio import load_audio
            from physioser.data import read_corpus

            pool = []
            for corpus in BABBLE_CORPORA:
                if corpus == exclude or not (self.corpora_root / corpus).is_dir():
                    continue
                rows = read_corpus(corpus, self.corpora_root / corpus)
                order = clip_rng(self.seed, corpus).permutation(len(rows))
                seen, chosen = set(), []
                for i in order:  # one utterance per speaker first, then more
                    if rows[i].speaker not in seen:
                        seen.add(rows[i].speaker)
                        chosen.append(rows[i])
                chosen += [rows[i] for i in order if rows[i] not in chosen][: max(0, self.per_corpus - len(chosen))]
                pool += [(f"{corpus}/{r.speaker}", load_audio(r.path)) for r in chosen[: self.per_corpus]]
            if len({name for name, _ in pool}) < BABBLE_TALKERS:
                raise ConditionError(f"babble needs {BABBLE_TALKERS} talkers from corpora other than {exclude} "
                                     f"under {self.corpora_root}; found {len(pool)} utterances")
            self._pools[exclude] = pool
        return self._pools[exclude]

    def babble(self, n: int, exclude: str | None, rng: np.random.Generator) -> np.ndarray:
        """``BABBLE_TALKERS`` distinct talkers, each at equal RMS, summed over ``n`` samples."""
        pool = self.talkers(exclude)
        out, used = np.zeros(n), set()
        for i in rng.permutation(len(pool)):
            name, x = pool[i]
            if name in used:
                continue
            used.add(name)
            out += T.fit_length(x, n, rng) / np.sqrt(T.power(x) + 1e-12)
            if len(used) == BABBLE_TALKERS:
                break
        return out


@dataclass
class Condition:
    """A parsed condition with its sources; ``apply(x, key, corpus)`` is deterministic for (seed, key)."""

    spec: str
    seed: int = 0
    noise_root: Path = Path("../shared/noise")
    corpora_root: Path = Path("../shared/corpora")
    steps: list[Step] = field(init=False)
    _noise: dict = field(default_factory=dict, init=False)
    _babble: BabblePool | None = field(default=None, init=False)
    _rooms: dict = field(default_factory=dict, init=False)

    def __post_init__(self):
        self.steps = parse(self.spec)

    def _noise_files(self, kind: str) -> list[np.ndarray]:
        if kind not in self._noise:
            from physioser.audio import load_audio

            names = REAL_NOISE_TEST if kind == "noise" else REAL_NOISE_TRAIN
            missing = [n for n in names if not (self.noise_root / n).is_file()]
            if missing:
                raise ConditionError(f"condition {kind}: noise files missing under {self.noise_root}: {missing[:3]}")
            self._noise[kind] = [load_audio(self.noise_root / n) for n in names]
        return self._noise[kind]

    def noise(self, kind: str, n: int, rng: np.random.Generator, corpus: str | None) -> np.ndarray:
        seconds = n / SAMPLE_RATE
        if kind == "babble":
            if self._babble is None:
                self._babble = BabblePool(self.corpora_root, self.seed)
            return self._babble.babble(n, corpus, rng)
        if kind == "fan":
            return S.fan_noise(seconds, rng)
        if kind == "white":
            return S.white_noise(seconds, rng)
        if kind == "pink":
            return S.coloured_noise(seconds, rng)
        files = self._noise_files(kind)
        return T.fit_length(files[int(rng.integers(len(files)))], n, rng)

    def rooms(self, t60: float) -> list[np.ndarray]:
        if t60 not in self._rooms:
            self._rooms[t60] = [T.room_impulse_response(t60, float(r.uniform(1.0, 3.0)), r)
                                for r in (clip_rng(self.seed, f"room-{t60}-{k}") for k in range(ROOMS))]
        return self._rooms[t60]

    def apply(self, x: np.ndarray, key: str, corpus: str | None = None) -> np.ndarray:
        rng = clip_rng(self.seed, key)
        y = np.asarray(x, np.float32)
        for step in self.steps:
            if step.kind in NOISE_KINDS:
                y = T.add_noise(y, self.noise(step.kind, len(y), rng, corpus), step.value, rng)
            elif step.kind == "reverb":
                rooms = self.rooms(step.value)
                y = T.reverberate(y, rooms[int(rng.integers(len(rooms)))])
            elif step.kind == "telephone":
                y = T.telephone(y)
            elif step.kind == "robotmic":
                y = T.robot_mic(y)
            elif step.kind == "clip":
                y = T.clip(y, step.value)
        return y
