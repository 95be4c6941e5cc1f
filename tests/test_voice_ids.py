"""The speaker-embedding voice vectors of physioser.experiments.voice_ids on real speech."""

import numpy as np

from physioser.audio import load_audio
from tests.conftest import corpus_dir


def test_dvectors_of_one_actor_are_closer_than_of_two():
    """Two takes of one RAVDESS actor (same sentence, same emotion) are closer than the same take by
    another actor: the vector names speakers, not words."""
    from physioser.experiments.voice_ids import dvector_embedding

    root = corpus_dir("RAVDESS")
    embed = dvector_embedding()
    take = lambda actor, rep: embed(load_audio(root / f"Actor_{actor:02d}" / f"03-01-01-01-01-{rep:02d}-{actor:02d}.flac")[:32000])
    a1, a2, b1 = take(1, 1), take(1, 2), take(3, 1)
    assert a1.shape == (256,) and np.isfinite(a1).all()
    cos = lambda x, y: float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))
    assert cos(a1, a2) > cos(a1, b1) and cos(a1, a2) > cos(a2, b1)
