"""Typed configs: every shipped YAML round-trips through the dict form, each part refuses what it
cannot build with a message naming the dotted key, stored configs of older models still load, and
build_model sizes the model from its backbone."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from physioser.model import Config, build_model, load_model, read_config
from physioser.model.config import AdaptConfig, ConfigError, ModelConfig, TrainConfig, load_config
from physioser.paths import default_model_dir

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_round_trip_through_the_dict_form(path: Path) -> None:
    config = load_config(path)
    stored = yaml.safe_load(yaml.safe_dump(config.to_dict(), sort_keys=False))
    assert Config.from_dict(stored) == config
    assert Config.from_dict(stored).to_dict() == stored


def test_overrides_reach_the_typed_fields() -> None:
    config = load_config("configs/physioser.yaml", ["train.lr=3e-4", "model.branches=[backbone]", "cpa.weight=0",
                                                    "model.vap.quaternion=false", "model.fusion.options={groups: 2}"])
    assert config.train.lr == pytest.approx(3e-4) and config.model.branches == ("backbone",)
    assert config.model.vap.quaternion is False and config.model.vap.n_bands == 32  # the rest of the project's VAP
    assert config.model.fusion.options == {"groups": 2}
    assert config.to_dict()["model"]["vap"]["quaternion"] is False


@pytest.mark.parametrize("overrides, message", [
    (["model.branches=[]"], "model.branches must be a non-empty subset of [vap, backbone]"),
    (["model.branches=[vap, ears]"], "model.branches must be a non-empty subset of [vap, backbone]"),
    (["model.head=deep"], "model.head must be fusion, linear or mlp"),
    (["model.branches=[vap]"], "cpa.weight > 0 needs both branches"),
    (["model.projector=mixed"], "model.projector must be shared or per_layer"),
    (["train.device=gpu0"], "train.device must be auto, cpu, cuda or cuda:N"),
    (["model.statistics=true", "model.segments=4"], "model.statistics needs the backbone branch and model.segments: 0"),
    (["adapt.train_prob=0.5"], "adapt.train_prob > 0 needs model.statistics: true"),
    (["adapt.tau=-1"], "adapt.tau must be >= 0 and adapt.train_prob in [0, 1]"),
    (["adapt.train_prob=1.5"], "adapt.tau must be >= 0 and adapt.train_prob in [0, 1]"),
    (["model.late_fusion=sum"], "model.late_fusion must be none or gated"),
    (["model.branch_dropout=1.0"], "model.branch_dropout must be in [0, 1)"),
    (["model.branches=[vap]", "cpa.weight=0", "model.branch_dropout=0.3"], "model.branch_dropout and model.late_fusion need both branches"),
    (["model.branches=[backbone]", "cpa.weight=0", "train.vap_aux_weight=0.5"], "train.vap_aux_weight > 0 needs the VAP branch"),
    (["model.segments=3"], "model.segments must be 0, 1, 2 or 4"),
    (["model.vap.n_fft=100"], "model.vap: win_length"),
    (["adapt.train_k=[5, all]"], "adapt.train_k must be a list of integers"),
])
def test_each_rule_is_refused_naming_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, overrides)


def test_parts_check_their_fields_when_built_directly() -> None:
    with pytest.raises(ConfigError, match="train.lr must be a finite number"):
        TrainConfig(lr="fast")
    with pytest.raises(ConfigError, match="model.segments must be 0, 1, 2 or 4"):
        ModelConfig(segments=3)
    with pytest.raises(ConfigError, match="adapt.tau must be >= 0"):
        AdaptConfig(tau=-0.5)
    with pytest.raises(ConfigError, match="unknown config key 'model.bogus'"):
        Config.from_dict({"model": {"bogus": 1}})
    with pytest.raises(ConfigError, match="'cpa' is a config section"):
        Config.from_dict({"cpa": 0.1})
    assert ModelConfig(branches=["vap", "backbone"]).branches == ("vap", "backbone")  # lists become tuples


def test_the_shipped_default_models_stored_config_loads_unchanged() -> None:
    directory = default_model_dir()
    stored = yaml.safe_load((directory / "config.yaml").read_text())
    config = read_config(directory)
    assert config.to_dict() == stored
    assert config.class_names == ("neutral", "happy", "angry", "sad") and config.backbone.num_layers == 5
    model = load_model(directory, with_backbone=False)  # the stored weights fit the model the config builds
    assert model.class_names == list(config.class_names) and model.statistics


def test_a_stored_config_without_later_keys_reads_as_those_models_were_built(tmp_path) -> None:
    stored = load_config("configs/backbone_only_per_layer.yaml").to_dict()
    stored["class_names"] = ["a", "b"]
    del stored["model"]["projector"], stored["train"]["vap_crop_seconds"]  # keys added after the first models
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(stored))
    config = read_config(tmp_path)
    assert config.model.projector == "shared"  # as models were built before the key existed
    assert config.train.vap_crop_seconds == TrainConfig().vap_crop_seconds  # other keys: today's defaults


def test_build_model_sizes_the_backbone_pathway_from_the_backbone(tmp_path) -> None:
    from physioser.model import build_backbone_for

    config = replace(load_config(None, ["backbone.name=fbank", "model.branches=[backbone]", "cpa.weight=0"]),
                     class_names=["a", "b"])
    backbone = build_backbone_for(config)
    model = build_model(config, backbone)
    assert model.num_layers == backbone.num_layers and model.layer_mean.shape[-1] == backbone.dim
    with pytest.raises(ConfigError, match="the config was made for 3 of width 7"):
        build_model(config.with_backbone_shape(3, 7), backbone)
    with pytest.raises(ValueError, match="no backbone shape"):
        build_model(config)  # the cached training path needs the shape in the config


def test_the_split_seed_keeps_the_held_out_speakers_across_training_seeds() -> None:
    assert load_config(None, ["train.seed=2"]).train.heldout_seed == 2  # default: the training seed
    config = load_config(None, ["train.seed=2", "train.split_seed=0"])
    assert (config.train.seed, config.train.heldout_seed) == (2, 0)
    assert config.to_dict()["train"]["split_seed"] == 0
    assert "split_seed" not in load_config(None, ["train.seed=2"]).to_dict()["train"]  # stored configs unchanged
