"""Experiment configuration: one frozen dataclass per part, YAML files in ``configs/`` and dotted
command-line overrides.

``load_config(path, ["train.lr=3e-4", "model.fusion.attention=moh"])`` deep-merges the YAML file onto
the defaults, applies each override (values parsed as YAML, so ``3e-4`` is a float, ``[vap]`` a list
and ``null`` None) and returns a :class:`Config`. Each part checks its own fields when it is built
(``ConfigError`` naming the dotted key); unknown keys are an error, so a typo never silently trains
the default. Checkpoints, run directories and results store :meth:`Config.to_dict`, which
:meth:`Config.from_dict` reads back (keys a stored dict lacks take their defaults).
"""

from __future__ import annotations

import copy
import math
import re
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

import yaml

from physioser.vap.config import VAPConfig

__all__ = ["AdaptConfig", "BackboneConfig", "CPAConfig", "Config", "ConfigError", "FusionConfig", "ModelConfig",
           "TrainConfig", "apply_overrides", "load_config"]


class ConfigError(ValueError):
    """A config file, override or stored config that does not fit the schema."""


FREE_SECTIONS = ("model.vap", "backbone.options", "model.fusion.options")
"""Sections whose keys belong to another module's options (checked there, not by the override parser)."""

_RESOLVED = {"resolved": True}
"""Field metadata: set from the data when a model is built; written by ``to_dict`` only once set."""

_ADDED = {"omit_default": True}
"""Field metadata: a field added after models were stored; ``to_dict`` writes it only when it differs
from its default, so stored configs (and the keys of runs made before it) stay the same."""


class _Part:
    """Reading and writing one config section; ``SECTION`` is its dotted key in the whole config."""

    SECTION: ClassVar[str]

    @classmethod
    def from_dict(cls, data: Any):
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.SECTION or 'a config'!r} is a config section (a mapping), got {data!r}")
        kinds = typing.get_type_hints(cls)
        names = [f.name for f in fields(cls)]
        for key in data:
            if key not in names:
                raise ConfigError(f"unknown config key {_key(cls.SECTION, key)!r} (known here: {names})")
        return cls(**{key: _read(kinds[key], value, _key(cls.SECTION, key)) for key, value in data.items()})

    def to_dict(self, full: bool = False) -> dict:
        """The dict form (``full``: also the added fields at their defaults, e.g. to list every key)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.metadata.get("resolved"):
                continue
            if not full and f.metadata.get("omit_default") and value == f.default:
                continue
            out[f.name] = _write(value, full)
        return out

    def _check_kinds(self) -> None:
        """Every field holds its annotated kind; lists become tuples (the dict form writes lists)."""
        kinds = typing.get_type_hints(type(self))
        for f in fields(self):
            where = _key(self.SECTION, f.name)
            value = _check_kind(where, getattr(self, f.name), kinds[f.name])
            object.__setattr__(self, f.name, value)


def _key(section: str, name: Any) -> str:
    return f"{section}.{name}" if section else str(name)


def _read(kind: Any, value: Any, where: str) -> Any:
    if isinstance(kind, type) and issubclass(kind, _Part):
        return kind.from_dict(value)
    if kind is VAPConfig:
        if not isinstance(value, dict):
            raise ConfigError(f"{where!r} is a config section (a mapping), got {value!r}")
        try:
            return VAPConfig.from_dict(value)
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return value


def _write(value: Any, full: bool = False) -> Any:
    if isinstance(value, _Part):
        return value.to_dict(full)
    if isinstance(value, VAPConfig):
        # only what differs from VAPConfig's own defaults, as configs have always stored model.vap
        defaults = VAPConfig().to_dict()
        return {k: v for k, v in value.to_dict().items() if v != defaults[k]}
    if isinstance(value, tuple):
        return list(value)
    return copy.deepcopy(value)


_SCALARS = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}
_PLURALS = {int: "integers", str: "strings"}


def _check_kind(where: str, value: Any, kind: Any) -> Any:
    args = typing.get_args(kind)
    if type(None) in args:  # X | None
        if value is None:
            return None
        kind = next(a for a in args if a is not type(None))
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        if not isinstance(value, (list, tuple)) or not all(_is_scalar(v, item) for v in value):
            raise ConfigError(f"{where} must be a list of {_PLURALS[item]}, got {value!r}")
        return tuple(value)
    if typing.get_origin(kind) is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where!r} is a config section (a mapping), got {value!r}")
        return value
    if kind in _SCALARS:
        if not _is_scalar(value, kind):
            raise ConfigError(f"{where} must be {_SCALARS[kind]}, got {value!r}")
        return value
    if not isinstance(value, kind):
        raise ConfigError(f"{where} must be a {kind.__name__}, got {value!r}")
    return value


def _is_scalar(value: Any, kind: type) -> bool:
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    if kind is float:  # an integer is a number too; it is kept as written (stored dicts stay byte-identical)
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, kind)


def _one_of(where: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{where} must be {', '.join(map(str, allowed[:-1]))} or {allowed[-1]}, got {value!r}")


@dataclass(frozen=True)
class BackboneConfig(_Part):
    """The frozen encoder: a registered backbone ``name`` and its ``options`` (checked by the backbone)."""

    SECTION: ClassVar[str] = "backbone"
    name: str = "whisper-tiny.en"
    options: dict[str, Any] = field(default_factory=dict)
    num_layers: int | None = field(default=None, metadata=_RESOLVED)  # hidden states the encoder returns
    dim: int | None = field(default=None, metadata=_RESOLVED)

    def __post_init__(self) -> None:
        self._check_kinds()


@dataclass(frozen=True)
class FusionConfig(_Part):
    """The fusion head's attention block: a variant of the attention backend and its ``options``."""

    SECTION: ClassVar[str] = "model.fusion"
    attention: str = "mha"
    heads: int = 4
    mlp_ratio: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._check_kinds()


def _small_vap() -> VAPConfig:
    """The VAP branch the project trains: these keep an epoch of RAVDESS to seconds on a 2-core CPU."""
    return VAPConfig(n_bands=32, channels_2d=(16, 16), channels_1d=(64,), kernels_1d=(3,), dilations_1d=(1,), dim=64)


@dataclass(frozen=True)
class ModelConfig(_Part):
    """Branches, backbone pathway, VAP branch and head.

    branches: any non-empty subset of (vap, backbone). dim: width of branch tokens, fusion block and
    classifier input. featurizer: learned softmax layer weights (False: last layer only).
    projector: shared (SUPERB: weighted layer sum -> projector) | per_layer (projections mixed by the
    layer weights). statistics: pooling of each backbone layer's mean and standard deviation over
    the frames (False: segment means only); needs segments 0. input_dropout: dropout on the
    standardised backbone statistics. segments: pooled frame tokens per branch fed to the fusion
    block (0 = utterance vectors only; 4 overfits here). head: fusion | linear | mlp.
    branch_dropout: training only: each utterance's backbone tokens are zeroed with this
    probability, so the head has to classify those from the VAP branch alone (needs both branches).
    late_fusion: none | gated: logits = (1 - g) * head logits + g * logits of a linear classifier
    on z_v, with a per-utterance gate g = sigmoid(w . [z_v, z_s] + b) (needs both branches).
    """

    SECTION: ClassVar[str] = "model"
    branches: tuple[str, ...] = ("vap", "backbone")
    dim: int = 128
    featurizer: bool = True
    projector: str = "per_layer"
    statistics: bool = False
    input_dropout: float = 0.0
    segments: int = 0
    vap: VAPConfig = field(default_factory=_small_vap)
    head: str = "fusion"
    fusion: FusionConfig = field(default_factory=FusionConfig)
    dropout: float = 0.3
    branch_dropout: float = 0.0
    late_fusion: str = "none"

    def __post_init__(self) -> None:
        self._check_kinds()
        if not self.branches or any(b not in ("vap", "backbone") for b in self.branches):
            raise ConfigError(f"model.branches must be a non-empty subset of [vap, backbone], got {list(self.branches)}")
        _one_of("model.head", self.head, ("fusion", "linear", "mlp"))
        _one_of("model.projector", self.projector, ("shared", "per_layer"))
        _one_of("model.late_fusion", self.late_fusion, ("none", "gated"))
        if self.statistics and (self.segments or not self.uses("backbone")):
            raise ConfigError("model.statistics needs the backbone branch and model.segments: 0")
        if not 0.0 <= self.branch_dropout < 1.0:
            raise ConfigError(f"model.branch_dropout must be in [0, 1), got {self.branch_dropout}")
        if (self.branch_dropout or self.late_fusion != "none") and not self.uses("vap", "backbone"):
            raise ConfigError("model.branch_dropout and model.late_fusion need both branches (model.branches: [vap, backbone])")
        if self.segments not in (0, 1, 2, 4):
            raise ConfigError(f"model.segments must be 0, 1, 2 or 4 (divisors of the cached 4 segments), got {self.segments}")

    def uses(self, *branches: str) -> bool:
        """Whether the model has every one of ``branches``."""
        return all(b in self.branches for b in branches)


@dataclass(frozen=True)
class CPAConfig(_Part):
    """Contrastive physiological alignment: loss ``weight`` (0 = off) and its projection heads."""

    SECTION: ClassVar[str] = "cpa"
    weight: float = 0.1
    dim: int = 128
    hidden: int = 0
    temperature: float = 0.07
    max_logit_scale: float = 100.0
    supervised: bool = False

    def __post_init__(self) -> None:
        self._check_kinds()


@dataclass(frozen=True)
class TrainConfig(_Part):
    """The optimiser, schedule and training data.

    warmup: fraction of all steps. patience: epochs without a better validation UA before stopping.
    early_stopping: false: no early stopping; the validation speakers join the training rows and the
    model of the last epoch of the full schedule is kept (validation UA on speakers that share the
    training sentences, as in sentence-tied corpora, picks epochs badly). device: auto (CUDA when
    available, else CPU) | cpu | cuda | cuda:N; torchrun ranks use their own GPU. aux_weight: weight
    of the attention variant's auxiliary losses. vap_aux_weight: weight of an auxiliary
    cross-entropy on a linear classifier over the VAP utterance vector alone (training only; with
    late_fusion gated that classifier is the gated one). max_seconds: utterances are cropped
    (centre) to this length when caching quartets. vap_crop_seconds: training crops each VAP
    quartet to a random window this long (0 = off). mixup: mixup Beta(alpha, alpha) of the cached
    inputs and the loss (0 = off). augment: augmented copies of every training clip added to the
    training rows (0 = off), same label and speaker: copy e is
    :class:`physioser.conditions.augment.Augmenter` (seed ``seed``, epoch e: speed, a simulated room,
    babble / fan / real noise) of the clip, its backbone statistics cached
    (:func:`physioser.conditions.statistics.augmented_statistics`); validation and test rows are
    never augmented. Needs statistics pooling on the backbone branch alone (the copies exist as
    utterance statistics only). stream_windows: likewise, copies of every training clip cut as the
    stream hears it (:class:`physioser.conditions.augment.StreamWindow`: one window of the stream's
    length between silences; :func:`physioser.conditions.statistics.window_statistics`).
    augmented_windows: likewise, stream windows cut from augmented audio (an Augmenter copy, then a
    StreamWindow; :func:`physioser.conditions.statistics.augmented_window_statistics`). split_seed: the
    seed of the speakers held out by ``physioser train --fold all`` (default: seed), so that models
    trained with several seeds share one held-out set.
    """

    SECTION: ClassVar[str] = "train"
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1.0e-3
    weight_decay: float = 0.5
    warmup: float = 0.05
    grad_clip: float = 1.0
    label_smoothing: float = 0.1
    class_weighting: bool = False
    patience: int = 5
    early_stopping: bool = True
    seed: int = 0
    device: str = "auto"
    aux_weight: float = 1.0
    vap_aux_weight: float = 0.0
    max_seconds: float = 12.0
    vap_crop_seconds: float = 2.0
    mixup: float = 0.0
    augment: int = field(default=0, metadata=_ADDED)
    stream_windows: int = field(default=0, metadata=_ADDED)
    augmented_windows: int = field(default=0, metadata=_ADDED)
    split_seed: int | None = field(default=None, metadata=_ADDED)

    @property
    def heldout_seed(self) -> int:
        """The seed of the held-out speakers of ``--fold all``: ``split_seed``, else ``seed``."""
        return self.seed if self.split_seed is None else self.split_seed

    @property
    def copies(self) -> int:
        """Training copies added per training clip (augment + stream_windows + augmented_windows)."""
        return self.augment + self.stream_windows + self.augmented_windows

    def __post_init__(self) -> None:
        self._check_kinds()
        for name, what in (("augment", "augmented copies"), ("stream_windows", "stream windows"),
                           ("augmented_windows", "augmented stream windows")):
            if not 0 <= getattr(self, name) <= 16:
                raise ConfigError(f"train.{name} must be an integer from 0 to 16 ({what} per training clip), got {getattr(self, name)!r}")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"train.device must be auto, cpu, cuda or cuda:N, got {self.device!r}")


@dataclass(frozen=True)
class AdaptConfig(_Part):
    """Unsupervised speaker adaptation (statistics pooling).

    A speaker's offset is the shrunk mean (``tau`` utterances of shrinkage) of their statistics,
    the predicted emotion removed in proportion to how little the speaker is likely to span the
    emotions (physioser.runtime.adaptation); training feeds each utterance
    with probability ``train_prob`` the offset of k other random utterances of its speaker, k drawn
    from ``train_k`` (0 = all of them), so one model serves the strict (zero offset) and adapted
    protocols.
    """

    SECTION: ClassVar[str] = "adapt"
    tau: float = 1.0
    train_prob: float = 0.0
    train_k: tuple[int, ...] = (5, 10, 20, 0)

    def __post_init__(self) -> None:
        self._check_kinds()
        if self.tau < 0 or not 0 <= self.train_prob <= 1:
            raise ConfigError("adapt.tau must be >= 0 and adapt.train_prob in [0, 1]")


@dataclass(frozen=True)
class Config(_Part):
    """A whole experiment config.

    classes: None = the corpus's own class set; or an explicit list of canonical names, e.g.
    [neutral, happy, angry, sad] (the four-class cross-corpus set). ``class_names`` and
    ``corpora`` (and the backbone's shape) are set when the data is loaded.
    """

    SECTION: ClassVar[str] = ""
    name: str = "physioser"
    classes: tuple[str, ...] | None = None
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    cpa: CPAConfig = field(default_factory=CPAConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    class_names: tuple[str, ...] | None = field(default=None, metadata=_RESOLVED)
    corpora: tuple[str, ...] | None = field(default=None, metadata=_RESOLVED)

    def __post_init__(self) -> None:
        self._check_kinds()
        if self.cpa.weight and not self.model.uses("vap", "backbone"):
            raise ConfigError("cpa.weight > 0 needs both branches (model.branches: [vap, backbone])")
        if self.adapt.train_prob and not self.model.statistics:
            raise ConfigError("adapt.train_prob > 0 needs model.statistics: true (the adapted features are its statistics)")
        if self.train.vap_aux_weight and not self.model.uses("vap"):
            raise ConfigError("train.vap_aux_weight > 0 needs the VAP branch")
        if self.train.copies and (self.model.uses("vap") or not self.model.statistics):
            raise ConfigError("train.augment, train.stream_windows and train.augmented_windows need model.branches: [backbone] "
                              "and model.statistics: true "
                              "(their copies are cached as backbone utterance statistics only)")

    def with_backbone_shape(self, num_layers: int, dim: int) -> Config:
        """This config with the shape of its built backbone (what the backbone pathway is sized for)."""
        return replace(self, backbone=replace(self.backbone, num_layers=int(num_layers), dim=int(dim)))


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults ← YAML file (optional) ← dotted overrides."""
    cfg = Config().to_dict(full=True)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping, got {type(data).__name__}")
        cfg = _merge(cfg, data)
    cfg = apply_overrides(cfg, overrides)
    try:
        return Config.from_dict(cfg)
    except ConfigError as exc:
        where = [f"config file {path}"] * (path is not None) + [f"with overrides {list(overrides)}"] * bool(overrides)
        raise ConfigError(f"{' '.join(where)}: {exc}" if where else str(exc)) from None


def _merge(base: dict, update: dict) -> dict:
    """``update`` deep-merged onto a copy of ``base`` (unknown keys are left to :meth:`Config.from_dict`)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_overrides(cfg: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Apply ``key.sub=value`` overrides (value parsed as YAML) to a copy of the dict form of a config."""
    out = copy.deepcopy(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        dotted, raw = item.split("=", 1)
        keys = dotted.strip().split(".")
        node = out
        for i, key in enumerate(keys[:-1]):
            if not isinstance(node.get(key), dict):
                raise ConfigError(f"override {item!r}: {'.'.join(keys[: i + 1])!r} is not a config section")
            node = node[key]
        last = keys[-1]
        if last not in node and ".".join(keys[:-1]) not in FREE_SECTIONS:
            raise ConfigError(f"override {item!r}: unknown key {dotted!r} (known here: {sorted(node)})")
        node[last] = _parse_value(raw, item)
    return out


def _parse_value(raw: str, item: str = "") -> Any:
    """YAML value, with YAML 1.1's dotless exponent floats (``3e-4``) read as floats too."""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item or raw!r}: the value is not valid YAML: {exc}") from exc
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value
