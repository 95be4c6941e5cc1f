"""Figure of the quartet: four aligned spectrogram-style panels with labelled axes and units."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from physioser.vap.config import VAPConfig
from physioser.vap.frontend import VAPFrontEnd

__all__ = ["plot_quartet"]

_TITLES = {
    "M": "M: vocal-tract envelope (amplitude, filter)",
    "rho": "ρ: excitation fine structure (amplitude, source)",
    "f_inst": "f_inst: instantaneous frequency (phase, source)",
    "tau_g": "τ_g: group delay (phase, filter)",
}
_NORMALISED_UNIT = "normalised (z-score)"


def plot_quartet(waveform: np.ndarray, output: str | Path, *, config: VAPConfig | None = None, normalised: bool = False, title: str = "") -> Path:
    """Compute the quartet of one waveform (float32 mono 16 kHz) and save a 4-panel figure to ``output``.

    Physical units by default (log amplitude in nepers, Hz, ms); ``normalised=True`` shows what
    the encoder sees. Diverging colour maps (centred on 0) for rho and f_inst.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = config or VAPConfig()
    fe = VAPFrontEnd(cfg)
    x = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))[None]
    n = torch.tensor([x.shape[1]])
    with torch.no_grad():
        quartet, _ = fe(x, n) if normalised else fe.raw(x, n)
    q = quartet[0].numpy()
    centres = fe.band_centres.numpy()
    times = np.arange(q.shape[-1]) / fe.frames_per_second
    bands = np.arange(len(centres))
    fig, axes = plt.subplots(4, 1, figsize=(11, 10), sharex=True, constrained_layout=True)
    for ax, values, name, unit in zip(axes, q, fe.component_names, fe.units):
        if name in ("rho", "f_inst") or normalised:
            lim = float(np.percentile(np.abs(values), 99)) or 1.0
            image = ax.pcolormesh(times, bands, values, shading="nearest", cmap="RdBu_r", vmin=-lim, vmax=lim)
        else:
            lo, hi = np.percentile(values, [1, 99.5])
            image = ax.pcolormesh(times, bands, values, shading="nearest", cmap="magma", vmin=lo, vmax=hi)
        ticks = np.linspace(0, len(centres) - 1, 6).round().astype(int)
        ax.set_yticks(ticks, [f"{centres[t]:.0f}" for t in ticks])
        ax.set_ylabel(f"{cfg.pooling} band centre (Hz)" if cfg.pooling != "none" else "frequency (Hz)")
        ax.set_title(_TITLES[name], loc="left", fontsize=10)
        fig.colorbar(image, ax=ax, pad=0.01).set_label(_NORMALISED_UNIT if normalised else unit)
    axes[-1].set_xlabel("time (s)")
    gd = {"minphase": "minimum-phase (cepstral)", "plain": "plain", "modified": "modified"}[cfg.group_delay]
    fig.suptitle(f"{title}  —  VAP quartet, {cfg.win_length / cfg.sample_rate * 1000:.0f} ms window, "
                 f"{cfg.hop_length / cfg.sample_rate * 1000:.0f} ms hop, τ_g {gd}".strip(" —"))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output
