"""A bundle's speaker encoder (``voice.onnx``): who speaks, when the robot does not say.

``physioser export --voice-encoder`` (:func:`physioser.export.add_voice_encoder`) adds resemblyzer's
GE2E d-vector to a model bundle as a second graph (``waveform`` float32 [batch, samples], ``lengths``
int64 [batch] -> ``dvector`` [batch, 256]), listed in the bundle's SHA256SUMS. With ``Streamer(adapt_unnamed=True)`` and no speaker named, each
window's voice is then named from its d-vector instead of from the emotion model's own statistics,
which move with the emotion as well as with the speaker (docs/adaptation.md: with 21 held-out
speakers in one stream, d-vectors named voices closer to their speakers and lost less UA).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from physioser.runtime.contract import EngineError
from physioser.runtime.integrity import read_verified

VOICE_GRAPH = "voice.onnx"
VOICE_INPUTS = ("waveform", "lengths")
VOICE_OUTPUT = "dvector"
DVECTOR_THRESHOLD = 0.7
"""Least cosine of a window's d-vector to a voice's centroid to be that voice (the threshold of the
held-out measurement in docs/adaptation.md); written into the graph's metadata at export."""


class VoiceEncoder:
    """``encoder(samples [S] float32 16 kHz) -> vector [D]`` over an onnxruntime session of ``path``
    (``options``: its session options; ``providers``: its execution providers, those of the engine's
    profile; its bytes checked against ``sha256``, the digest the bundle's SHA256SUMS lists)."""

    def __init__(self, path: Path, options, providers, sha256: str | None = None) -> None:
        import onnxruntime as ort

        blob = read_verified(path, sha256, "the speaker encoder")
        try:
            self.session = ort.InferenceSession(blob, options, providers=providers)
        except Exception as exc:
            raise EngineError(f"onnxruntime could not load the speaker encoder {path}: {exc}") from exc
        inputs = tuple(i.name for i in self.session.get_inputs())
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != VOICE_INPUTS or VOICE_OUTPUT not in outputs:
            raise EngineError(f"{path}: a speaker encoder takes {list(VOICE_INPUTS)} and returns '{VOICE_OUTPUT}', "
                              f"this graph takes {list(inputs)} and returns {outputs}")
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            self.threshold = float(meta.get("threshold", DVECTOR_THRESHOLD))
        except ValueError as exc:
            raise EngineError(f"{path}: metadata 'threshold' is not a number") from exc
        self.name = meta.get("voice_encoder", "speaker encoder")
        self.providers = self.session.get_providers()
        self.path = path

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1)
        try:
            (vector,) = self.session.run([VOICE_OUTPUT], {"waveform": x, "lengths": np.array([x.shape[1]], dtype=np.int64)})
        except Exception as exc:
            raise EngineError(f"{self.path}: onnxruntime failed on a window of {x.shape[1]} samples: {exc}") from exc
        return vector[0]
