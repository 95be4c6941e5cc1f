"""The VAP front end: waveform -> the quartet {M, rho, f_inst, tau_g} per time-frequency cell.

Pure tensor ops (framing by reshape and slices, the DFT as matmuls of the even and odd halves of
each windowed frame with fixed Fourier bases, the cepstral maps as matmuls of rank
``lifter_samples``, atan2 from Atan and arithmetic), so it traces to ONNX and runs as a few cheap
nodes there. Precision: float32 with the default minimum-phase group delay; float64 for the DFT and
the cepstral maps with the measured group delays ("plain", "modified", "centroid"), whose ratio of
two spectra near a spectral null turns float32 summation-order noise into errors of several us.
Frames: Hann window of ``win_length`` samples centred on sample ``t * hop_length`` (the signal is
zero-padded on both sides by at least ``win_length // 2``), time inside a frame measured from the
window centre, ``n_fft``-point DFT. ``T = 1 + S // hop``, and an item of
``n`` samples has ``1 + n // hop`` valid frames; frames past that are zeroed. Samples past an item's
length are zeroed first, so an item gives the same valid frames alone or inside a padded batch.

Per bin k (frequency f_k) and frame t, with X = DFT(w x) and the power floored per frame,
P = |X|^2 + power_floor + 10^(-dynamic_range_db/10) * mean_k |X|^2, log|X| = 0.5 log P (deep spectral
nulls, whose log is mostly rounding noise, are lifted to dynamic_range_db below the frame's mean power):

* M (amplitude, filter): the cepstral envelope. c = real cepstrum of log|X|; keep quefrencies
  |n| < lifter (2 ms); M = DFT of the liftered cepstrum. Computed as one matmul ``log|X| @ A``.
* rho (amplitude, source): log|X| - M, the excitation fine structure (harmonics, noise).
* f_inst (phase, source): instantaneous frequency from the principal value of the phase advance
  between frames t-1 and t, ``IF_k = f_k + princarg(angle(X_t conj X_{t-1}) - 2 pi f_k hop/sr)
  * sr / (2 pi hop)``, in Hz (no unwrapping). Frame 0 copies frame 1. Pooled to band b:
  ``f_inst_b = sum_k W_bk a_k IF_k / sum_k W_bk a_k - c_b`` with ``a_k = |X_k|^p`` and c_b the band's
  centre (centroid of its weights); without pooling this is the deviation from the bin centre.
* tau_g (phase, filter), in ms, by ``config.group_delay``:
  - "minphase" (default): group delay of the minimum-phase filter whose log magnitude is the
    envelope M: from the causal cepstrum, tau(w) = sum_{1<=n<lifter} 2 n c[n] cos(w n). It isolates
    one vocal-tract response however many pitch periods the frame holds, and peaks at the
    formants (the physics test checks it). It is a fixed linear map of the liftered cepstrum, so it
    shows the envelope's resonances in phase form rather than adding phase information.
  - "plain": (X_R Y_R + X_I Y_I) / |X|^2 with Y = DFT(n w x), the measured per-cell group delay.
    With 25 ms frames (about three pitch periods) it does not follow the formants (DESIGN §1).
  - "modified": Hegde-Murthy modified group delay, (X_R Y_R + X_I Y_I) / exp(M)^(2 gamma),
    compressed as sign(t) |t|^alpha (unit-less).
  - "centroid": a measured group delay that sees one excitation response: ``gd_subwindows``
    short Hann windows (``gd_window_ms``, about one pitch period) spread over each hop; in each,
    the plain group delay minus the window's energy centroid (so the position of the glottal
    pulse in the window cancels); averaged over the sub-windows with weights |X|^gd_weight_power,
    which favours windows that hold a whole pulse response. Formant peaks are coarser (the short
    window's resolution) and it degrades at high F0 (see eval/bench/vap.json).
  Pooled with the same magnitude weights as f_inst.

M and rho are pooled by plain weighted means over the band's triangle (weights summing to 1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from physioser.nn.masking import valid_mask
from physioser.vap.config import VAPConfig

__all__ = ["VAPFrontEnd", "filterbank", "quartet_statistics"]

UNITS = {"M": "log amplitude (Np)", "rho": "log amplitude (Np)", "f_inst": "Hz from band centre", "tau_g": "ms"}


def _hz_to_scale(f: np.ndarray, scale: str) -> np.ndarray:
    if scale == "mel":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    return 21.4 * np.log10(1.0 + 0.00437 * f)  # ERB-rate (Glasberg & Moore 1990)


def _scale_to_hz(s: np.ndarray, scale: str) -> np.ndarray:
    if scale == "mel":
        return 700.0 * (10.0 ** (s / 2595.0) - 1.0)
    return (10.0 ** (s / 21.4) - 1.0) / 0.00437


def filterbank(scale: str, n_bands: int, n_fft: int, sample_rate: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular filters [K bins, n_bands], equally spaced on the mel or ERB-rate scale.

    A triangle that catches no FFT bin (narrower than the bin spacing) gets weight 1 on the bin
    nearest its centre, so every band has data.
    """
    if scale not in ("mel", "erb"):
        raise ValueError(f"filterbank scale must be 'mel' or 'erb', got {scale!r}")
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise ValueError(f"need 0 <= fmin < fmax <= {sample_rate / 2}, got fmin={fmin}, fmax={fmax}")
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    edges = _scale_to_hz(np.linspace(_hz_to_scale(np.array(fmin), scale), _hz_to_scale(np.array(fmax), scale), n_bands + 2), scale)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lo) / (mid - lo)
    falling = (hi - freqs[None, :]) / (hi - mid)
    w = np.clip(np.minimum(rising, falling), 0.0, None)  # [n_bands, K]
    for b in np.flatnonzero(w.sum(axis=1) == 0):
        w[b, np.argmin(np.abs(freqs - mid[b, 0]))] = 1.0
    return w.T.copy()


def _atan2(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """atan2 in (-pi, pi] from Atan and elementwise arithmetic (ONNX has no Atan2), so eager and
    onnxruntime agree (also at y = 0, x < 0, and at x = y = 0, which gives 0 instead of NaN).

    The quadrant correction is added as pi * [x < 0] * (+1 if y >= 0 else -1), which equals the
    select it replaces bit for bit (adding 0 or exactly +-pi) and runs faster than Where."""
    x = x + (x == 0).to(x.dtype) * 1e-30
    a = torch.atan(y / x)
    return a + (x < 0).to(x.dtype) * ((y >= 0).to(x.dtype) * (2 * math.pi) - math.pi)


def quartet_statistics(quartet: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
    """Utterance statistics of a quartet [B, 4, F, T] over its valid frames -> [B, 4, F, 2] (mean, std)."""
    mask = valid_mask(frame_lengths.to(quartet.device), quartet.shape[-1]).to(quartet.dtype)[:, None, None, :]
    count = mask.sum(-1).clamp(min=1.0)
    mean = (quartet * mask).sum(-1) / count
    var = ((quartet - mean[..., None]).pow(2) * mask).sum(-1) / count
    return torch.stack([mean, var.sqrt()], dim=-1)


class VAPFrontEnd(nn.Module):
    """Waveform -> quartet. ``forward(waveforms [B, S] float32, lengths [B] int64) -> (quartet [B, 4, F, T], frame_lengths [B])``.

    Channel c of the quartet is component ``component_names[c]`` (= ``config.axes``: quaternion
    axes r, i, j, k). F = ``config.num_bands``; ``band_centres`` [F] holds each band's centre in Hz.
    No trainable parameters; buffers ``stat_mean``/``stat_std`` [4, F] hold dataset statistics.
    """

    def __init__(self, config: VAPConfig | None = None) -> None:
        super().__init__()
        cfg = config or VAPConfig()
        self.config = cfg
        self.component_names = tuple(cfg.axes)
        self.units = tuple(UNITS[c] for c in self.component_names)
        sr, n_fft, win, hop = cfg.sample_rate, cfg.n_fft, cfg.win_length, cfg.hop_length
        K = cfg.num_bins
        self.frames_per_second = sr / hop
        self.relative_floor = 10.0 ** (-cfg.dynamic_range_db / 10.0)
        # float32 keeps the pooled quartet within ~1e-6 of float64 (the default model's logits move
        # <= 5e-7) and runs the DFT as one single-precision GEMM per half in onnxruntime.
        self.precision = torch.float32 if cfg.group_delay == "minphase" else torch.float64

        # Fourier basis, time measured from the window centre c = win // 2. A frame holds the 2c + 1
        # samples at offsets m = -c..c from the centre (the window is zero past win), so the DFT splits
        # into the even and odd parts of the windowed frame, e(m) = wx(m) + wx(-m), o(m) = wx(m) - wx(-m):
        # Re X = [wx(0), e(1..c)] @ cos(w m), Im X = o(1..c) @ -sin(w m) (half the work of one full
        # matmul); Y = DFT(m w x) for the measured group delays: Re Y = o @ m cos, Im Y = e @ -m sin.
        centre = win // 2
        self.centre = centre
        self.frame_samples = 2 * centre + 1
        n = np.arange(win, dtype=np.float64)
        window = np.zeros(self.frame_samples)
        window[:win] = 0.5 - 0.5 * np.cos(2 * np.pi * n / win)  # periodic Hann
        # A window symmetric about the centre (even win_length) is folded into the bases below, which
        # saves a multiply over every frame sample (onnxruntime runs it badly on 2 threads).
        fold = np.allclose(window, window[::-1], rtol=0.0, atol=1e-12)
        self.register_buffer("window", None if fold else torch.tensor(window, dtype=self.precision), persistent=False)
        omega = 2 * np.pi * np.arange(K)[:, None] / n_fft  # [K, 1]
        m = np.arange(centre + 1, dtype=np.float64)[None, :]  # [1, c + 1]
        cos_m, sin_m = np.cos(omega * m).T, np.sin(omega * m).T  # [c + 1, K]
        even_basis, odd_basis = [cos_m], [-sin_m[1:]]
        if cfg.group_delay in ("plain", "modified"):
            even_basis.append(-m.T * sin_m)
            odd_basis.append(m.T[1:] * cos_m[1:])
        even_basis, odd_basis = np.concatenate(even_basis, axis=1), np.concatenate(odd_basis, axis=1)
        if fold:  # e(m) = w(m) (x(m) + x(-m)), o(m) = w(m) (x(m) - x(-m))
            even_basis, odd_basis = window[centre:, None] * even_basis, window[centre + 1 :, None] * odd_basis
        self.register_buffer("even_basis", torch.tensor(even_basis, dtype=self.precision), persistent=False)  # [c + 1, K or 2K]
        self.register_buffer("odd_basis", torch.tensor(odd_basis, dtype=self.precision), persistent=False)  # [c, K or 2K]
        # Zero padding on both sides: half a window, or the reach of the centroid sub-windows.
        sub_len = cfg.gd_window_samples
        sub_centres = np.round((np.arange(cfg.gd_subwindows) - (cfg.gd_subwindows - 1) / 2) * hop / cfg.gd_subwindows).astype(int)
        self.pad = max(win // 2, int(np.abs(sub_centres).max()) + sub_len // 2 + 1)
        # Framing by reshape: the padded signal cut into hop-long blocks; a frame is `frame_blocks`
        # consecutive blocks (then cut to frame_samples), taken as shifted slices of the block matrix.
        self.frame_start = self.pad - centre
        self.frame_blocks = -(-self.frame_samples // hop)
        self.tail_pad = max(0, self.frame_start + hop * self.frame_blocks - 2 * self.pad)
        if cfg.group_delay == "centroid":
            m = np.arange(sub_len, dtype=np.float64)
            sub_window = 0.5 - 0.5 * np.cos(2 * np.pi * m / sub_len)
            sub_ramp = m - sub_len // 2
            sub_phase = omega * sub_ramp[None, :]
            sub_basis = [sub_window * np.cos(sub_phase), -sub_window * np.sin(sub_phase)]
            sub_basis += [sub_ramp * b for b in sub_basis]
            self.register_buffer("sub_basis", torch.tensor(np.concatenate(sub_basis).T), persistent=False)  # [L, 4K]
            energy = np.stack([sub_window**2, sub_ramp * sub_window**2], axis=1)  # [L, 2]
            self.register_buffer("sub_energy", torch.tensor(energy), persistent=False)
            offsets = self.pad + sub_centres[:, None] - sub_len // 2 + np.arange(sub_len)[None, :]
            self.register_buffer("sub_offsets", torch.tensor(offsets), persistent=False)  # [S, L]

        # Cepstral envelope and minimum-phase group delay: maps of rank Q = lifter_samples from log|X|
        # (registered below, once the pooling weights are known).
        q = np.arange(cfg.lifter_samples, dtype=np.float64)
        mult = np.full(K, 2.0)
        mult[0] = 1.0
        mult[-1] = 1.0 if n_fft % 2 == 0 else 2.0
        cos_kq = np.cos(2 * np.pi * np.arange(K)[:, None] * q[None, :] / n_fft)  # [K, Q]
        to_cepstrum = mult[:, None] * cos_kq / n_fft  # log|X| [.., K] @ this -> c[0..Q-1]
        sym = np.where(q == 0, 1.0, 2.0)
        cep_to_envelope = sym[:, None] * cos_kq.T  # [Q, K]
        cep_to_delay = (2.0 * q)[:, None] * cos_kq.T * 1000.0 / sr  # [Q, K], ms

        bin_hz = np.arange(K) * sr / n_fft
        advance = 2 * np.pi * bin_hz * hop / sr
        self.register_buffer("advance_cos", torch.tensor(np.cos(advance), dtype=torch.float32), persistent=False)
        self.register_buffer("advance_sin", torch.tensor(np.sin(advance), dtype=torch.float32), persistent=False)
        self.register_buffer("bin_hz", torch.tensor(bin_hz, dtype=torch.float32), persistent=False)

        if cfg.pooling == "none":
            centres = bin_hz
            self.pool = None
        else:
            fmax = cfg.fmax if cfg.fmax is not None else sr / 2
            w = filterbank(cfg.pooling, cfg.n_bands, n_fft, sr, cfg.fmin, fmax)  # [K, F]
            centres = (w * bin_hz[:, None]).sum(0) / w.sum(0)
            self.register_buffer("pool", torch.tensor(w, dtype=torch.float32), persistent=False)
            pool_mean = w / w.sum(0, keepdims=True)
            # W_kb (f_k - c_b): the bin-centre part of f_inst without subtracting large numbers in float32.
            offset = w * (bin_hz[:, None] - centres[None, :])
            self.register_buffer("pool_offset", torch.tensor(offset, dtype=torch.float32), persistent=False)
        self.register_buffer("band_centres", torch.tensor(centres, dtype=torch.float32), persistent=False)
        # The cepstral maps (in ``precision``): log|X| @ analysis -> Q cepstral coefficients (+ the
        # band means of log|X| when pooled); cepstrum @ synthesis -> per-bin envelope (unpooled or
        # modified group delay) and per-bin minimum-phase delay; cepstrum @ cep_to_bands -> the band
        # means of M.
        self.per_bin_envelope = self.pool is None or cfg.group_delay == "modified"
        analysis = [to_cepstrum] if self.pool is None else [to_cepstrum, pool_mean]
        synthesis = ([cep_to_envelope] if self.per_bin_envelope else []) + ([cep_to_delay] if cfg.group_delay == "minphase" else [])
        as_buffer = lambda a: torch.tensor(a, dtype=self.precision)  # noqa: E731
        self.register_buffer("analysis", as_buffer(np.concatenate(analysis, axis=1)), persistent=False)  # [K, Q (+ F)]
        self.register_buffer("synthesis", as_buffer(np.concatenate(synthesis, axis=1)) if synthesis else None,
                             persistent=False)  # [Q, K or 2K]
        self.register_buffer("cep_to_bands", None if self.pool is None else as_buffer(cep_to_envelope @ pool_mean),
                             persistent=False)  # [Q, F]
        F = cfg.num_bands
        self.register_buffer("stat_mean", torch.zeros(4, F))
        self.register_buffer("stat_std", torch.ones(4, F))

    # ------------------------------------------------------------------ helpers
    @property
    def num_bands(self) -> int:
        return self.config.num_bands

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid frames of items of ``lengths`` samples: 1 + lengths // hop."""
        return torch.div(lengths, self.config.hop_length, rounding_mode="trunc") + 1  # = floor: lengths >= 0

    def _check(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> None:
        if waveforms.dim() != 2:
            raise ValueError(f"VAP front end: waveforms must be [batch, samples], got shape {tuple(waveforms.shape)}")
        if lengths.dim() != 1 or lengths.shape[0] != waveforms.shape[0]:
            raise ValueError(f"VAP front end: lengths must be [batch={waveforms.shape[0]}], got shape {tuple(lengths.shape)}")
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return
        cfg = self.config
        need = cfg.min_samples
        if waveforms.shape[1] < need:
            raise ValueError(
                f"VAP front end: waveform too short: {waveforms.shape[1]} samples "
                f"({waveforms.shape[1] / cfg.sample_rate:.3f} s); needs at least {need} samples ({cfg.min_seconds:.3f} s)"
            )
        for b, n in enumerate(lengths.tolist()):
            if n < need or n > waveforms.shape[1]:
                raise ValueError(
                    f"VAP front end: waveform {b} has length {n} samples ({n / cfg.sample_rate:.3f} s); "
                    f"needs {need} <= length <= {waveforms.shape[1]} (min {cfg.min_seconds:.3f} s)"
                )
        if not bool(torch.isfinite(waveforms).all()):
            bad = (~torch.isfinite(waveforms)).any(dim=1).nonzero().flatten().tolist()
            raise ValueError(f"VAP front end: waveform(s) {bad} contain NaN or Inf samples")

    # ------------------------------------------------------------------ main computation
    def _frames(self, x: torch.Tensor, num_frames: torch.Tensor) -> torch.Tensor:
        """Frames [B, T, frame_samples] of the padded signal ``x``: frame t starts at ``frame_start + t * hop``.

        Reshape and slices instead of a Gather: the signal from ``frame_start`` on is cut into
        hop-long blocks, and frame t is blocks t .. t + frame_blocks - 1 laid end to end."""
        hop, nb = self.config.hop_length, self.frame_blocks
        blocks = x[:, self.frame_start : self.frame_start + hop * (num_frames + nb - 1)].reshape(x.shape[0], -1, hop)
        frames = torch.cat([blocks[:, j : j + num_frames] for j in range(nb)], dim=2)
        return frames[..., : self.frame_samples]

    def raw(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The un-normalised quartet in physical units (see ``units``) -> ([B, 4, F, T], frame_lengths)."""
        quartet, frame_lengths, _ = self._raw(waveforms, lengths)
        return quartet, frame_lengths

    def _raw(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(raw quartet with padded frames zeroed, frame_lengths, frame mask [B, 1, 1, T] float)."""
        self._check(waveforms, lengths)
        lengths = lengths.to(device=waveforms.device, dtype=torch.long)
        cfg = self.config
        K = cfg.num_bins
        c = self.centre
        samples = torch.arange(waveforms.shape[1], device=waveforms.device)
        x = waveforms.to(torch.float32) * valid_mask(lengths, waveforms.shape[1]).to(torch.float32)
        x = nn.functional.pad(x, (self.pad, self.pad + self.tail_pad))
        # The DFT of the even and odd parts (see __init__), in ``precision``.
        num_frames = torch.div(waveforms.shape[1], cfg.hop_length, rounding_mode="trunc") + 1  # = floor (S >= 0), one ONNX Div
        wx = self._frames(x, num_frames).to(self.precision)  # [B, T, 2c + 1], centre at c
        if self.window is not None:  # else folded into the bases
            wx = wx * self.window
        after, before = wx[..., c + 1 :], wx[..., :c].flip(-1)  # offsets m = 1..c and -1..-c
        even = torch.cat([wx[..., c : c + 1], after + before], dim=-1) @ self.even_basis  # [B, T, K or 2K]
        odd = (after - before) @ self.odd_basis
        dft_re, dft_im = (even, odd) if even.shape[-1] == K else (even[..., :K], odd[..., :K])
        # Past the DFT, float32 suffices: each elementwise op rounds once (and identically in eager
        # PyTorch and onnxruntime).
        re, im = dft_re.to(torch.float32), dft_im.to(torch.float32)
        power = re * re + im * im
        power = power + (cfg.power_floor + self.relative_floor * power.mean(dim=-1, keepdim=True))
        logmag = 0.5 * torch.log(power)
        analysed = logmag.to(self.precision) @ self.analysis
        Q = cfg.lifter_samples
        cepstrum = analysed if self.pool is None else analysed[..., :Q]  # [B, T, Q]
        per_bin = [] if self.synthesis is None else list((cepstrum @ self.synthesis).to(torch.float32).split(K, dim=-1))
        envelope = per_bin.pop(0) if self.per_bin_envelope else None  # M per bin [B, T, K]

        # f_inst: principal value of the phase advance minus the bin's expected advance.
        pr = re[:, 1:] * re[:, :-1] + im[:, 1:] * im[:, :-1]
        pi = im[:, 1:] * re[:, :-1] - re[:, 1:] * im[:, :-1]
        dev = _atan2(pi * self.advance_cos - pr * self.advance_sin, pr * self.advance_cos + pi * self.advance_sin)
        dev = torch.cat([dev[:, :1], dev], dim=1) * (cfg.sample_rate / (2 * math.pi * cfg.hop_length))

        if cfg.group_delay == "minphase":
            delay = per_bin.pop(0)
        elif cfg.group_delay == "centroid":
            delay = self._centroid_delay(x, num_frames)
        else:
            num = dft_re * odd[..., K:] + dft_im * even[..., K:]  # X_R Y_R + X_I Y_I
            if cfg.group_delay == "plain":
                dft_power = dft_re * dft_re + dft_im * dft_im
                dft_power = dft_power + cfg.power_floor + self.relative_floor * dft_power.mean(dim=-1, keepdim=True)
                delay = (num / dft_power).to(torch.float32) * (1000.0 / cfg.sample_rate)
            else:
                t = num.to(torch.float32) * torch.exp(-2.0 * cfg.mgd_gamma * envelope)
                delay = torch.sign(t) * torch.abs(t).pow(cfg.mgd_alpha)

        if self.pool is None:
            parts = {"M": envelope, "rho": logmag - envelope, "f_inst": dev, "tau_g": delay}
        else:
            weight = power.sqrt() if cfg.phase_weight_power == 1.0 else power.pow(0.5 * cfg.phase_weight_power)
            den = weight @ self.pool
            band_envelope = cepstrum @ self.cep_to_bands  # [B, T, F]
            parts = {
                "M": band_envelope.to(torch.float32),
                "rho": (analysed[..., Q:] - band_envelope).to(torch.float32),
                "f_inst": ((weight * dev) @ self.pool + weight @ self.pool_offset) / den,
                "tau_g": (weight * delay) @ self.pool / den,
            }
        quartet = torch.stack([parts[c] for c in self.component_names], dim=1).transpose(2, 3)  # [B, 4, F, T]
        frame_lengths = self.frame_lengths(lengths)
        mask = valid_mask(frame_lengths.to(quartet.device), quartet.shape[-1]).to(quartet.dtype)[:, None, None, :]
        return quartet * mask, frame_lengths, mask

    def _centroid_delay(self, x: torch.Tensor, num_frames: torch.Tensor) -> torch.Tensor:
        """Sub-pitch-period group delay from the energy centroid, |X|^p-weighted over sub-windows -> [B, T, K] ms."""
        cfg = self.config
        K = cfg.num_bins
        starts = torch.arange(num_frames, device=x.device) * cfg.hop_length
        sub = x[:, starts[:, None, None] + self.sub_offsets[None]].to(torch.float64)  # [B, T, S, L]
        spec = sub @ self.sub_basis  # [B, T, S, 4K]
        xr, xi, yr, yi = spec[..., :K], spec[..., K : 2 * K], spec[..., 2 * K : 3 * K], spec[..., 3 * K :]
        power = xr * xr + xi * xi + 1e-30
        energy = (sub * sub) @ self.sub_energy  # [B, T, S, 2]: sum w^2 x^2, sum n w^2 x^2
        centroid = energy[..., 1:] / (energy[..., :1] + 1e-30)
        delay = (xr * yr + xi * yi) / power - centroid  # [B, T, S, K] samples from the centroid
        weight = power.pow(0.5 * cfg.gd_weight_power)
        delay = (weight * delay).sum(dim=2) / weight.sum(dim=2)
        return delay.to(torch.float32) * (1000.0 / cfg.sample_rate)

    def _normalise(self, quartet: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Apply ``config.normalize`` to a raw quartet [B, 4, F, T] whose padded frames are zero
        (mask [B, 1, 1, T] float); they stay zero."""
        cfg = self.config
        if cfg.normalize == "none":
            return quartet
        if cfg.normalize == "dataset":
            return (quartet - self.stat_mean[..., None]) / self.stat_std[..., None] * mask
        dims = (-1,) if cfg.normalize == "utterance_band" else (-2, -1)
        count = (mask.sum(-1, keepdim=True) * (1.0 if len(dims) == 1 else quartet.shape[-2])).clamp(min=1.0)
        mean = quartet.sum(dims, keepdim=True) / count
        centred = (quartet - mean) * mask
        std = torch.sqrt(centred.pow(2).sum(dims, keepdim=True) / count + cfg.norm_eps)
        return centred / std

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        quartet, frame_lengths, mask = self._raw(waveforms, lengths)
        return self._normalise(quartet, mask), frame_lengths

    # ------------------------------------------------------------------ statistics
    @torch.no_grad()
    def utterance_statistics(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Mean and std over time of the raw quartet, per component and band -> [B, 4, F, 2]."""
        return quartet_statistics(*self.raw(waveforms, lengths))

    def set_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Dataset statistics [4, F] (component order ``component_names``) for normalize='dataset'."""
        shape = (4, self.num_bands)
        if tuple(mean.shape) != shape or tuple(std.shape) != shape:
            raise ValueError(f"statistics must be {shape}, got {tuple(mean.shape)} and {tuple(std.shape)}")
        if not bool((std > 0).all()):
            raise ValueError("dataset std must be positive")
        self.stat_mean.copy_(mean)
        self.stat_std.copy_(std)

    @torch.no_grad()
    def fit_statistics(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Set dataset statistics from (waveforms, lengths) batches: per component and band, over all valid frames."""
        total = torch.zeros(4, self.num_bands, dtype=torch.float64)
        total_sq = torch.zeros_like(total)
        count = 0
        for waveforms, lengths in batches:
            quartet, frame_lengths = self.raw(waveforms, lengths)
            q = quartet.to(torch.float64)
            total += q.sum(dim=(0, 3))
            total_sq += q.pow(2).sum(dim=(0, 3))
            count += int(frame_lengths.sum())
        if count == 0:
            raise ValueError("fit_statistics: no frames were given")
        mean = total / count
        std = (total_sq / count - mean.pow(2)).clamp(min=0).sqrt() + self.config.norm_eps
        self.set_statistics(mean.float(), std.float())

