"""Physics and numpy-reference tests of the VAP quartet front end."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal as ss
import torch

from physioser.vap import VAPConfig, VAPFrontEnd, filterbank, quartet_statistics
from physioser.synthesis import F0, FORMANTS, synthetic_vowel

SR = 16000


def raw_quartet(x: np.ndarray, **options) -> tuple[VAPFrontEnd, dict[str, np.ndarray]]:
    """Raw (physical units) quartet of one waveform: name -> [F, T]."""
    fe = VAPFrontEnd(VAPConfig(normalize="none", **options))
    q, fl = fe(torch.from_numpy(x)[None], torch.tensor([len(x)]))
    assert int(fl[0]) == 1 + len(x) // fe.config.hop_length == q.shape[-1]
    q = q[0].numpy()
    return fe, {name: q[c] for c, name in enumerate(fe.component_names)}


def reference(x: np.ndarray, group_delay: str = "minphase", win: int = 400, hop: int = 160) -> dict[str, np.ndarray]:
    """Straightforward float64 numpy quartet per FFT bin: name -> [K, T] (definitions of frontend.py)."""
    n_fft, lifter = 512, 32
    xp = np.pad(x.astype(np.float64), (win // 2, win - win // 2))
    T = 1 + len(x) // hop
    window = np.hanning(win + 1)[:-1]
    frames = np.stack([xp[t * hop : t * hop + win] for t in range(T)])
    k = np.arange(n_fft // 2 + 1)
    omega = 2 * np.pi * k / n_fft
    shift = np.exp(1j * omega * (win // 2))  # time measured from the window centre
    X = np.fft.rfft(frames * window, n_fft) * shift
    P = np.abs(X) ** 2
    P = P + 1e-10 + 1e-5 * P.mean(axis=1, keepdims=True)
    L = 0.5 * np.log(P)
    c = np.fft.irfft(L, n_fft)
    lifted = np.zeros_like(c)
    lifted[:, :lifter] = c[:, :lifter]
    lifted[:, n_fft - lifter + 1 :] = c[:, n_fft - lifter + 1 :]
    M = np.fft.rfft(lifted, n_fft).real
    dphi = np.angle(X[1:] * np.conj(X[:-1])) - omega * hop
    dev = np.angle(np.exp(1j * dphi)) * SR / (2 * np.pi * hop)
    dev = np.concatenate([dev[:1], dev])
    if group_delay == "minphase":
        causal = np.zeros_like(c)
        causal[:, 1:lifter] = 2 * np.arange(1, lifter) * c[:, 1:lifter]
        tau = np.fft.rfft(causal, n_fft).real / SR * 1000
    else:
        ramp = np.arange(win) - win // 2
        Y = np.fft.rfft(frames * window * ramp, n_fft) * shift
        tau = (X.real * Y.real + X.imag * Y.imag) / P / SR * 1000
    return {"M": M.T, "rho": (L - M).T, "f_inst": dev.T, "tau_g": tau.T, "power": P.T}


def nearest(centres: np.ndarray, f: float) -> int:
    return int(np.argmin(np.abs(centres - f)))


def local_maxima(v: np.ndarray) -> np.ndarray:
    return ss.find_peaks(v)[0]


# ---------------------------------------------------------------------------------- numpy reference
@pytest.mark.parametrize("group_delay, win, hop", [("minphase", 400, 160), ("plain", 400, 160), ("minphase", 401, 100), ("plain", 321, 128)])
def test_each_component_matches_numpy_reference_per_bin(group_delay, win, hop):
    x = synthetic_vowel(noise=0.01, seconds=0.5, glide_to=180)
    _, q = raw_quartet(x, pooling="none", group_delay=group_delay, win_length=win, hop_length=hop)
    ref = reference(x, group_delay, win, hop)
    np.testing.assert_allclose(q["M"], ref["M"], atol=2e-4)
    np.testing.assert_allclose(q["rho"], ref["rho"], atol=2e-4)
    # f_inst is a principal value with period sr / hop = 100 Hz; compare modulo the period (the
    # Nyquist bin is real, its deviation sits exactly on the +-50 Hz branch cut).
    period = SR / hop
    wrapped = (q["f_inst"] - ref["f_inst"] + period / 2) % period - period / 2
    # Hz; the float32 DFT of the minimum-phase configuration leaves ~3e-3 Hz of rounding noise in bins
    # 30-40 dB below the frame's mean power (1e-4 rad of phase advance).
    np.testing.assert_allclose(wrapped, 0.0, atol=5e-3 if group_delay == "minphase" else 2e-3)
    tol = 1e-4 if group_delay == "minphase" else 1e-3  # ms
    np.testing.assert_allclose(q["tau_g"], ref["tau_g"], atol=tol)


def test_pooled_components_match_numpy_reference():
    x = synthetic_vowel(noise=0.01, seconds=0.5)
    fe, q = raw_quartet(x)  # default: 64 mel bands, weights |X|^1 for the phase components
    ref = reference(x)
    W = filterbank("mel", 64, 512, SR, 0.0, 8000.0)  # [K, F]
    bin_hz = np.arange(257) * SR / 512
    centres = (W * bin_hz[:, None]).sum(0) / W.sum(0)
    np.testing.assert_allclose(fe.band_centres.numpy(), centres, rtol=1e-6)
    mean_w = W / W.sum(0)
    a = np.sqrt(ref["power"])  # [K, T]
    den = W.T @ a
    expected = {
        "M": mean_w.T @ ref["M"],
        "rho": mean_w.T @ ref["rho"],
        "f_inst": (W.T @ (a * (ref["f_inst"] + bin_hz[:, None]))) / den - centres[:, None],
        "tau_g": (W.T @ (a * ref["tau_g"])) / den,
    }
    for name, tol in (("M", 2e-4), ("rho", 2e-4), ("f_inst", 2e-3), ("tau_g", 1e-4)):
        np.testing.assert_allclose(q[name], expected[name], atol=tol, err_msg=name)


def test_mel_filterbank_matches_librosa_htk():
    librosa = pytest.importorskip("librosa")
    ours = filterbank("mel", 40, 512, SR, 0.0, 8000.0)
    theirs = librosa.filters.mel(sr=SR, n_fft=512, n_mels=40, fmin=0.0, fmax=8000.0, htk=True, norm=None).T
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def reference_centroid_delay(x: np.ndarray, sub_len=128, subwindows=10, power=4.0) -> np.ndarray:
    """tau_g "centroid" [K, T] in ms, one sub-window at a time."""
    hop, n_fft = 160, 512
    pad = 200
    xp = np.pad(x.astype(np.float64), pad)
    T = 1 + len(x) // hop
    window = np.hanning(sub_len + 1)[:-1]
    ramp = np.arange(sub_len) - sub_len // 2
    shift = np.exp(1j * 2 * np.pi * np.arange(n_fft // 2 + 1) / n_fft * (sub_len // 2))
    out = np.zeros((n_fft // 2 + 1, T))
    for t in range(T):
        num = den = 0.0
        for j in range(subwindows):
            centre = t * hop + pad + int(np.round((j - (subwindows - 1) / 2) * hop / subwindows))
            seg = xp[centre - sub_len // 2 : centre - sub_len // 2 + sub_len]
            X = np.fft.rfft(seg * window, n_fft) * shift
            Y = np.fft.rfft(seg * window * ramp, n_fft) * shift
            P = np.abs(X) ** 2 + 1e-30
            e = (seg * window) ** 2
            delay = (X.real * Y.real + X.imag * Y.imag) / P - (e * ramp).sum() / (e.sum() + 1e-30)
            num = num + P ** (power / 2) * delay
            den = den + P ** (power / 2)
        out[:, t] = num / den / SR * 1000
    return out


def test_centroid_group_delay_matches_numpy_reference():
    x = synthetic_vowel(noise=0.01, seconds=0.2, glide_to=150)
    _, q = raw_quartet(x, pooling="none", group_delay="centroid")
    np.testing.assert_allclose(q["tau_g"], reference_centroid_delay(x), atol=1e-4)


# ---------------------------------------------------------------------------------- physics
@pytest.fixture(scope="module")
def vowel_mel():
    return raw_quartet(synthetic_vowel())


@pytest.fixture(scope="module")
def vowel_bins():
    return raw_quartet(synthetic_vowel(), pooling="none")


def test_M_peaks_at_the_formants(vowel_mel):
    fe, q = vowel_mel
    centres = fe.band_centres.numpy()
    envelope = q["M"][:, 2:-2].mean(axis=1)
    peaks = local_maxima(envelope)
    for formant in FORMANTS:
        assert np.min(np.abs(peaks - nearest(centres, formant))) <= 1, (formant, centres[peaks])


@pytest.mark.parametrize("group_delay", ["minphase", "centroid"])
def test_tau_g_peaks_at_the_formants(group_delay, vowel_mel):
    fe, q = vowel_mel if group_delay == "minphase" else raw_quartet(synthetic_vowel(), group_delay=group_delay)
    centres = fe.band_centres.numpy()
    delay = q["tau_g"][:, 2:-2].mean(axis=1)
    peaks = local_maxima(delay)
    top3 = peaks[np.argsort(-delay[peaks])[:3]]  # the three strongest group-delay peaks
    for formant in FORMANTS:
        assert np.min(np.abs(top3 - nearest(centres, formant))) <= 1, (formant, centres[top3])


def test_rho_peaks_at_multiples_of_F0(vowel_bins):
    fe, q = vowel_bins
    bin_hz = fe.band_centres.numpy()
    fine = q["rho"][:, 2:-2].mean(axis=1)
    peaks = bin_hz[local_maxima(fine)]
    low = peaks[peaks < 1000]
    spacing = SR / 512
    for h in range(1, 9):  # every harmonic below 1 kHz has a peak within one bin
        assert np.min(np.abs(low - h * F0)) <= spacing, (h, low)
    harmonic_distance = np.abs(low - F0 * np.round(low / F0))
    assert np.all(harmonic_distance <= spacing), low  # and every peak is a harmonic


@pytest.mark.parametrize("pooling", ["none", "mel"])
def test_f_inst_recovers_F0_on_voiced_frames(pooling, vowel_bins, vowel_mel):
    fe, q = vowel_bins if pooling == "none" else vowel_mel
    centres = fe.band_centres.numpy()
    b = nearest(centres, F0)
    estimate = centres[b] + q["f_inst"][b, 2:-2]
    assert np.all(np.abs(estimate / F0 - 1) < 0.03), (estimate.min(), estimate.max())
    assert abs(np.median(estimate) / F0 - 1) < 0.005


@pytest.mark.parametrize("freq", [440.0, 1003.7, 3210.0])
def test_pure_tone_frequency_within_one_percent(freq):
    t = np.arange(SR // 2) / SR
    x = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    fe, q = raw_quartet(x, pooling="none")
    bin_hz = fe.band_centres.numpy()
    b = nearest(bin_hz, freq)
    estimate = bin_hz[b] + q["f_inst"][b, 2:-2]
    assert np.all(np.abs(estimate / freq - 1) < 0.01), (estimate.min(), estimate.max())


def test_f_inst_follows_an_F0_glide():
    x = synthetic_vowel(f0=100.0, glide_to=200.0, seconds=1.0)
    fe, q = raw_quartet(x, pooling="none")
    bin_hz = fe.band_centres.numpy()
    frames = np.arange(5, q["f_inst"].shape[1] - 5)
    true_f0 = 100.0 + 100.0 * (frames * 160 - 80) / len(x)  # between frames t-1 and t
    estimate = np.array([bin_hz[nearest(bin_hz, f)] + q["f_inst"][nearest(bin_hz, f), t] for f, t in zip(true_f0, frames)])
    assert np.all(np.abs(estimate / true_f0 - 1) < 0.03), np.max(np.abs(estimate / true_f0 - 1))
    assert np.corrcoef(estimate, true_f0)[0, 1] > 0.99


# ---------------------------------------------------------------------------------- bad input, options
def test_too_short_waveform_is_a_clear_error():
    fe = VAPFrontEnd()
    with pytest.raises(ValueError, match=r"too short.*0\.050 s.*0\.100 s"):
        fe(torch.zeros(1, 800), torch.tensor([800]))
    with pytest.raises(ValueError, match=r"waveform 1 has length 400 samples"):
        fe(torch.zeros(2, 4000), torch.tensor([4000, 400]))
    bad = torch.zeros(1, 4000)
    bad[0, 7] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        fe(bad, torch.tensor([4000]))


@pytest.mark.parametrize("group_delay", ["minphase", "plain", "modified", "centroid"])
@pytest.mark.parametrize("normalize", ["utterance", "utterance_band", "none"])
def test_silence_gives_finite_quartet(group_delay, normalize):
    fe = VAPFrontEnd(VAPConfig(group_delay=group_delay, normalize=normalize))
    q, fl = fe(torch.zeros(2, 8000), torch.tensor([8000, 3000]))
    assert torch.isfinite(q).all()
    assert q.shape == (2, 4, 64, 51) and fl.tolist() == [51, 19]
    assert (q[1, ..., 19:] == 0).all()


def test_axes_assignment_and_statistics():
    x = torch.from_numpy(synthetic_vowel(seconds=0.5))[None]
    n = torch.tensor([x.shape[1]])
    base = VAPFrontEnd(VAPConfig(normalize="none"))
    swapped = VAPFrontEnd(VAPConfig(normalize="none", axes=("tau_g", "f_inst", "rho", "M")))
    qa, fl = base(x, n)
    qb, _ = swapped(x, n)
    torch.testing.assert_close(qb, qa.flip(1))
    stats = base.utterance_statistics(x, n)
    assert stats.shape == (1, 4, 64, 2)
    torch.testing.assert_close(stats, quartet_statistics(qa, fl))
    torch.testing.assert_close(stats[..., 0], qa.mean(-1))


def test_normalisations():
    x = torch.from_numpy(synthetic_vowel(seconds=0.5, noise=0.01))[None].repeat(2, 1)
    n = torch.tensor([8000, 5000])
    q, fl = VAPFrontEnd(VAPConfig(normalize="utterance"))(x, n)
    for b in range(2):
        valid = q[b, ..., : fl[b]]
        torch.testing.assert_close(valid.mean(dim=(1, 2)), torch.zeros(4), atol=1e-4, rtol=0)
        torch.testing.assert_close(valid.std(dim=(1, 2), unbiased=False), torch.ones(4), atol=1e-3, rtol=0)
    fe = VAPFrontEnd(VAPConfig(normalize="dataset"))
    fe.fit_statistics([(x, n)])
    raw, _ = fe.raw(x, n)
    q, _ = fe(x, n)
    torch.testing.assert_close(q[0, ..., 10], (raw[0, ..., 10] - fe.stat_mean) / fe.stat_std)
