"""Data checks for one corpus folder: what `physioser corpora scan` reports.

Counts per label and speaker, duration statistics from the file headers (``--decode``: full
decode and validation instead), unreadable files with their paths, byte-identical duplicates
(SHA-1 of the file bytes), near-identical duplicates (files of the same length whose samples
differ by at most a few LSB: a byte-identical pair that went through a dithered conversion,
as the RAVDESS Actor_07 pair in the FLAC copy) and files that match no pattern of the layout.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from physioser.audio import MIN_SECONDS, AudioError, AudioWarning, audio_info, load_audio
from physioser.data.registry import Row, Unmatched, get_spec, list_corpus


@dataclass
class ScanReport:
    corpus: str
    root: Path
    rows: list[Row]
    unmatched: list[Unmatched]
    durations: dict[Path, float] = field(default_factory=dict)
    sample_rates: Counter = field(default_factory=Counter)
    channels: Counter = field(default_factory=Counter)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    too_short: list[tuple[Path, float]] = field(default_factory=list)
    audio_warnings: list[tuple[Path, str]] = field(default_factory=list)
    decoded: bool = False  # audio decoded (audio warnings looked for) or headers only
    duplicates: list[list[Path]] = field(default_factory=list)
    near_duplicates: list[list[Path]] = field(default_factory=list)

    @property
    def label_counts(self) -> Counter:
        return Counter(r.label for r in self.rows)

    @property
    def canonical_counts(self) -> Counter:
        return Counter(r.canonical for r in self.rows)

    @property
    def speaker_counts(self) -> Counter:
        return Counter(r.speaker for r in self.rows)

    def duration_stats(self) -> dict[str, float]:
        if not self.durations:
            return {}
        d = np.array(list(self.durations.values()))
        return {
            "files": int(d.size),
            "total_hours": float(d.sum() / 3600),
            "min_s": float(d.min()),
            "median_s": float(np.median(d)),
            "mean_s": float(d.mean()),
            "max_s": float(d.max()),
        }

    def to_dict(self) -> dict:
        return {
            "corpus": self.corpus,
            "root": str(self.root),
            "rows": len(self.rows),
            "labels": dict(sorted(self.label_counts.items())),
            "canonical": dict(sorted(self.canonical_counts.items())),
            "speakers": dict(sorted(self.speaker_counts.items())),
            "durations": self.duration_stats(),
            "sample_rates": {str(k): v for k, v in sorted(self.sample_rates.items())},
            "channels": {str(k): v for k, v in sorted(self.channels.items())},
            "unreadable": [{"path": str(p), "error": e} for p, e in self.unreadable],
            "too_short": [{"path": str(p), "seconds": s} for p, s in self.too_short],
            "decoded": self.decoded,
            # None: not looked for (headers only), which is not "no warnings"
            "audio_warnings": [{"path": str(p), "warning": w} for p, w in self.audio_warnings] if self.decoded else None,
            "duplicates": [[str(p) for p in group] for group in self.duplicates],
            "near_duplicates": [[str(p) for p in group] for group in self.near_duplicates],
            "unmatched": [{"path": str(u.path), "reason": u.reason} for u in self.unmatched],
        }


def _sha1(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha1").hexdigest()


NEAR_DUPLICATE_LSB = 4
"""Files whose 16-bit samples differ by at most this much everywhere count as near-identical."""
NEAR_DUPLICATE_WINDOW = 2048


def _near_duplicates(shapes: dict[Path, tuple], exact: list[list[Path]]) -> list[list[Path]]:
    """Groups of same-shape files whose int16 samples differ by ≤ NEAR_DUPLICATE_LSB (exact copies excluded)."""
    same_bytes = {p: group[0] for group in exact for p in group}
    candidates: dict[tuple, list[Path]] = defaultdict(list)
    for path, shape in shapes.items():
        if same_bytes.get(path, path) == path:  # one representative per byte-identical group
            candidates[shape].append(path)
    def window(path: Path, frames: int) -> np.ndarray:
        # a short excerpt from the middle rules out almost every pair without decoding whole files
        return sf.read(str(path), start=frames // 2, frames=NEAR_DUPLICATE_WINDOW, dtype="int16", always_2d=True)[0].astype(np.int32)

    def close(a: np.ndarray, b: np.ndarray) -> bool:
        return bool(np.abs(a - b).max() <= NEAR_DUPLICATE_LSB)

    groups = []
    for (frames, *_), paths in candidates.items():
        if len(paths) < 2:
            continue
        excerpts = {p: window(p, frames) for p in paths}
        remaining = sorted(paths)
        while remaining:
            first, rest = remaining[0], remaining[1:]
            group = [first] + [p for p in rest if close(excerpts[p], excerpts[first])]
            if len(group) > 1:
                whole = {p: sf.read(str(p), dtype="int16", always_2d=True)[0].astype(np.int32) for p in group}
                group = [first] + [p for p in group[1:] if close(whole[p], whole[first])]
            remaining = [p for p in rest if p not in group]
            if len(group) > 1:
                groups.append(group)
    return sorted(groups)


def scan_corpus(name: str, root: str | Path, *, decode: bool = False, progress: bool = True) -> ScanReport:
    """Check every row of corpus ``name`` under ``root`` (raises CorpusLayoutError on no rows).

    Without ``decode`` only headers are read (fast); with it every file is decoded and
    validated by :func:`physioser.audio.load_audio`, which also reports clipping and DC offset.
    """
    spec = get_spec(name)
    root = Path(root)
    listing = list_corpus(spec.name, root)
    report = ScanReport(spec.name, root, listing.rows, listing.unmatched, decoded=decode)
    by_hash: dict[str, list[Path]] = defaultdict(list)
    shapes: dict[Path, tuple] = {}
    for row in tqdm(listing.rows, desc=f"scan {spec.name}", unit="file", disable=not progress):
        path = row.path
        try:
            by_hash[_sha1(path)].append(path)
            info = audio_info(path)
            seconds = info.frames / info.samplerate if info.samplerate else 0.0
            report.sample_rates[info.samplerate] += 1
            report.channels[info.channels] += 1
            shapes[path] = (info.frames, info.samplerate, info.channels)
            if decode:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", AudioWarning)
                    load_audio(path, min_seconds=0.0)
                report.audio_warnings.extend((path, str(w.message)) for w in caught if issubclass(w.category, AudioWarning))
        except (AudioError, OSError) as error:
            report.unreadable.append((path, str(error)))
            continue
        report.durations[path] = seconds
        if seconds < MIN_SECONDS:
            report.too_short.append((path, seconds))
    report.duplicates = sorted(sorted(group) for group in by_hash.values() if len(group) > 1)
    report.near_duplicates = _near_duplicates(shapes, report.duplicates)
    return report
