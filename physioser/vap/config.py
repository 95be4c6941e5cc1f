"""Configuration of the VAP branch (front end + quaternion encoder): one flat dataclass."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

__all__ = ["COMPONENTS", "FRONTEND_FIELDS", "FRONTEND_VERSION", "VAPConfig"]

# The quartet: (amplitude, phase) x (filter, source).
COMPONENTS = ("M", "rho", "f_inst", "tau_g")

# Fields that determine the front end's output (the quartet), e.g. for the key of a quartet cache.
FRONTEND_FIELDS = (
    "sample_rate", "win_length", "hop_length", "n_fft", "lifter_ms", "power_floor", "dynamic_range_db",
    "group_delay", "mgd_alpha", "mgd_gamma", "gd_window_ms", "gd_subwindows", "gd_weight_power",
    "pooling", "n_bands", "fmin", "fmax", "phase_weight_power", "normalize", "norm_eps", "axes",
)
# Bumped whenever the front end computes different numbers for the same config.
FRONTEND_VERSION = 3

_GROUP_DELAYS = ("minphase", "plain", "modified", "centroid")
_POOLINGS = ("mel", "erb", "none")
_NORMALIZATIONS = ("utterance", "utterance_band", "dataset", "none")
_ENCODER_POOLINGS = ("attentive", "mean_std")


@dataclass
class VAPConfig:
    """All options of the VAP front end and encoder. Defaults are the project's reading of PhysioSER.

    Front end
      sample_rate, win_length (25 ms Hann), hop_length (10 ms -> 100 Hz frames), n_fft (512).
      lifter_ms: cepstral cut-off quefrency of the source-filter split (the envelope keeps quefrencies
        below it; 2 ms is the shortest pitch period considered, F0 <= 500 Hz).
      power_floor: added to |X|^2 before any log or division (silence stays finite).
      dynamic_range_db: |X|^2 is also floored at this many dB below the frame's mean power, so
        deep spectral nulls (whose log is rounding noise) do not dominate M, rho and tau_g.
      group_delay: definition of tau_g. "minphase" (default): group delay of the minimum-phase filter
        whose log magnitude is the envelope M, from the causal cepstrum. "plain": per-cell
        (X_R Y_R + X_I Y_I)/|X|^2 with Y = DFT(n x[n]). "modified": Hegde-Murthy modified group delay,
        denominator the cepstrally smoothed |X|^(2 gamma), compressed by sign(t)|t|^alpha.
        "centroid": measured group delay on short sub-windows (gd_window_ms, about one pitch period;
        gd_subwindows of them per hop), time from each sub-window's energy centroid, averaged with
        weights |X|^gd_weight_power.
      mgd_alpha, mgd_gamma: exponents of the modified group delay.
      pooling: "mel" or "erb" triangular bands (n_bands of them, fmin..fmax), or "none" (FFT bins).
      phase_weight_power: f_inst and tau_g are pooled with weights w_bk |X_k|^p.
      normalize: "utterance" (per component, mean/std over all valid cells of the utterance),
        "utterance_band" (per component and band), "dataset" (fixed statistics set with
        VAPFrontEnd.set_statistics / fit_statistics), or "none".
      axes: assignment of components to quaternion axes (r, i, j, k), a permutation of COMPONENTS.
      min_seconds: shorter waveforms are rejected with a clear error.

    Encoder
      quaternion: quaternion layers (True) or their real twins of equal width (False).
      components: components fed to the encoder; the others are zeroed (e.g. ("M", "rho") for
        amplitude only, ("f_inst", "tau_g") for phase only), which keeps the parameter count fixed.
      channels_2d: real channel counts of the 2-D conv stack over (band, time); each layer halves bands.
      channels_1d, kernels_1d, dilations_1d: the 1-D conv stack over time after folding bands into channels.
      dim: D_v, width of frames and of z_v.
      pooling_type: "attentive" (attentive statistics pooling) or "mean_std".
      attention_dim: hidden width of the attention of the attentive pooling.
      input_stats: also feed the mean and std over time of each component and band of the encoder's
        input (the quartet itself) to the output projection, beside the pooled conv features: the
        utterance statistics a linear probe on the quartet sees reach the classifier directly.
      dropout: dropout between layers (training only).
    """

    sample_rate: int = 16000
    win_length: int = 400
    hop_length: int = 160
    n_fft: int = 512
    lifter_ms: float = 2.0
    power_floor: float = 1e-10
    dynamic_range_db: float = 50.0
    group_delay: str = "minphase"
    mgd_alpha: float = 0.4
    mgd_gamma: float = 0.9
    gd_window_ms: float = 8.0
    gd_subwindows: int = 10
    gd_weight_power: float = 4.0
    pooling: str = "mel"
    n_bands: int = 64
    fmin: float = 0.0
    fmax: float | None = None
    phase_weight_power: float = 1.0
    normalize: str = "utterance"
    norm_eps: float = 1e-5
    axes: tuple[str, ...] = COMPONENTS
    min_seconds: float = 0.1

    quaternion: bool = True
    components: tuple[str, ...] = COMPONENTS
    channels_2d: tuple[int, ...] = (32, 64, 64)
    channels_1d: tuple[int, ...] = (256, 256)
    kernels_1d: tuple[int, ...] = (5, 3)
    dilations_1d: tuple[int, ...] = (1, 2)
    dim: int = 256
    pooling_type: str = "attentive"
    attention_dim: int = 128
    input_stats: bool = False
    dropout: float = 0.1

    def __post_init__(self) -> None:
        self.axes = tuple(self.axes)
        self.components = tuple(self.components)
        for name in ("channels_2d", "channels_1d", "kernels_1d", "dilations_1d"):
            setattr(self, name, tuple(int(v) for v in getattr(self, name)))
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) must not exceed n_fft ({self.n_fft})")
        if self.hop_length <= 0 or self.win_length <= 0:
            raise ValueError("win_length and hop_length must be positive")
        lifter = round(self.lifter_ms * self.sample_rate / 1000)
        if not 1 <= lifter < self.n_fft // 2:
            raise ValueError(f"lifter_ms={self.lifter_ms} gives {lifter} quefrency samples; need 1..{self.n_fft // 2 - 1}")
        for name, value, allowed in (
            ("group_delay", self.group_delay, _GROUP_DELAYS),
            ("pooling", self.pooling, _POOLINGS),
            ("normalize", self.normalize, _NORMALIZATIONS),
            ("pooling_type", self.pooling_type, _ENCODER_POOLINGS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if sorted(self.axes) != sorted(COMPONENTS):
            raise ValueError(f"axes must be a permutation of {COMPONENTS}, got {self.axes}")
        if not self.components or any(c not in COMPONENTS for c in self.components):
            raise ValueError(f"components must be a non-empty subset of {COMPONENTS}, got {self.components}")
        if any(c % 4 for c in self.channels_2d + self.channels_1d) or self.dim % 4:
            raise ValueError("channels_2d, channels_1d and dim count real channels: multiples of 4")
        if not (len(self.channels_1d) == len(self.kernels_1d) == len(self.dilations_1d)):
            raise ValueError("channels_1d, kernels_1d and dilations_1d must have the same length")
        if any(k % 2 == 0 for k in self.kernels_1d):
            raise ValueError(f"kernels_1d must be odd (same-length padding), got {self.kernels_1d}")
        if not 2 <= self.gd_window_samples <= self.n_fft or self.gd_subwindows < 1:
            raise ValueError(f"gd_window_ms must give 2..{self.n_fft} samples and gd_subwindows >= 1")
        if self.min_seconds * self.sample_rate < self.win_length:
            raise ValueError(f"min_seconds={self.min_seconds} is shorter than one analysis window")
        if self.pooling != "none" and self.n_bands < 1:
            raise ValueError(f"n_bands must be >= 1, got {self.n_bands}")

    @property
    def lifter_samples(self) -> int:
        """Cepstral cut-off in samples: quefrencies 0 .. lifter_samples-1 form the envelope."""
        return round(self.lifter_ms * self.sample_rate / 1000)

    @property
    def gd_window_samples(self) -> int:
        return int(round(self.gd_window_ms * self.sample_rate / 1000))

    @property
    def min_samples(self) -> int:
        return int(round(self.min_seconds * self.sample_rate))

    @property
    def num_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def num_bands(self) -> int:
        """F_bands of the quartet."""
        return self.num_bins if self.pooling == "none" else self.n_bands

    def frontend_key(self) -> dict:
        """What determines the quartet: the front-end fields and FRONTEND_VERSION (for cache keys)."""
        d = {name: getattr(self, name) for name in FRONTEND_FIELDS}
        d["axes"] = list(self.axes)
        d["frontend_version"] = FRONTEND_VERSION
        return d

    def to_dict(self) -> dict:
        d = asdict(self)
        for key, value in d.items():
            if isinstance(value, tuple):
                d[key] = list(value)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "VAPConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown VAP config keys: {sorted(unknown)}")
        return cls(**d)
