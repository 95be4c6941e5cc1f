"""Fuzzing model configuration loading (physioser.model.config): YAML files with any content and
dotted command-line overrides with any text. Each one gives a config whose dict form keeps the
schema of the defaults (sections stay mappings, numbers stay finite numbers, flags stay booleans)
or raises ConfigError naming the file or override.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from physioser.model.config import FREE_SECTIONS, Config, ConfigError, load_config
from tests.fuzzing import budget, check_rejection, only_warnings

DEFAULTS = Config().to_dict()
TMP = Path(tempfile.mkdtemp(prefix="physioser-fuzz-config-"))


def _leaves(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        where = f"{prefix}{key}"
        if isinstance(value, dict):
            yield where, value, True
            if where not in FREE_SECTIONS:
                yield from _leaves(value, where + ".")
        else:
            yield where, value, False


KEYS = [where for where, _, _ in _leaves(DEFAULTS)]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=10), st.sampled_from(["mha", "vap", "fusion", "whisper-tiny.en", "[vap]", "{}", "[", "]", ":",
                                                           "{a: 1", "'x", "nan", "inf", "-.inf", "3e-4", "*a", "!!python/object:os.system"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                      max_leaves=6)
overrides = st.lists(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS) | st.text(max_size=12), scalars.map(str) | st.text(max_size=12))
    | st.text(max_size=20), max_size=3)


def _check_config(config: Config) -> None:
    """The schema of the defaults holds in the dict form: every default section is still a mapping,
    numbers finite numbers."""
    cfg = config.to_dict()
    for where, default, is_section in _leaves(DEFAULTS):
        node = cfg
        for key in where.split("."):
            assert isinstance(node, dict), f"{where}: a section was replaced by {type(node).__name__}"
            node = node[key]
        if is_section:
            assert isinstance(node, dict), f"{where} must stay a mapping, got {node!r}"
        elif isinstance(default, bool):
            assert isinstance(node, bool), f"{where}: {node!r}"
        elif isinstance(default, (int, float)):
            assert isinstance(node, (int, float)) and not isinstance(node, bool) and math.isfinite(node), f"{where}: {node!r}"
            if isinstance(default, int):
                assert isinstance(node, int), f"{where}: {node!r}"
        elif isinstance(default, str):
            assert isinstance(node, str), f"{where}: {node!r}"


@settings(max_examples=budget(300))
@given(items=overrides)
@example(items=["model=5"])  # a section replaced by a number
@example(items=["model.branches=5"])
@example(items=["train.lr=["])  # YAML syntax error in the value
@example(items=["train.lr=nan"])
@example(items=["train.epochs=2.5"])
@example(items=["train.device=None"])  # a device name the trainer does not know
@example(items=["model.dropout=.inf"])
@example(items=["model.featurizer=maybe"])
def test_fuzz_overrides(items):
    with only_warnings():
        try:
            cfg = load_config(None, items)
        except ConfigError as exc:
            check_rejection(exc, (ConfigError,))
            text = str(exc)  # names the override, or the key that the final validation refused
            assert "override" in text or any(f"{section}." in text for section in ("model", "cpa", "train")), text
            return
    _check_config(cfg)


@settings(max_examples=budget(200))
@given(data=st.dictionaries(st.sampled_from(list(DEFAULTS)) | st.text(max_size=6), values, max_size=4)
       | st.fixed_dictionaries({}, optional={"model": st.dictionaries(st.sampled_from(list(DEFAULTS["model"])), values, max_size=3),
                                             "train": st.dictionaries(st.sampled_from(list(DEFAULTS["train"])), values, max_size=3)})
       | values, raw=st.none() | st.binary(max_size=200))
@example(data={"model": 5}, raw=None)
@example(data=None, raw=b"\xff\xfe: bad")  # not UTF-8
def test_fuzz_config_files(data, raw):
    path = TMP / "fuzz.yaml"
    path.write_bytes(raw if raw is not None else yaml.safe_dump(data).encode())
    with only_warnings():
        try:
            cfg = load_config(path)
        except ConfigError as exc:
            check_rejection(exc, (ConfigError,), str(path))
            return
    _check_config(cfg)


@pytest.mark.parametrize("items, message", [
    (["model=5"], "'model' is a config section"),  # was TypeError in validation
    (["model.branches=5"], "model.branches must be a list"),  # was TypeError ('int' is not iterable)
    (["train.lr=["], "not valid YAML"),  # was yaml's ParserError
    (["train.lr=nan"], "train.lr must be a finite number"),  # NaN trained silently to NaN losses
    (["train.epochs=2.5"], "train.epochs must be an integer"),
    (["model.featurizer=maybe"], "model.featurizer must be true or false"),
])
def test_override_findings(items, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, items)


def test_config_file_that_is_not_text(tmp_path):
    """Finding: a config file that is not UTF-8 raised a bare UnicodeDecodeError."""
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"\xff\xfe: bad")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        load_config(path)


def test_shipped_configs_still_load():
    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        _check_config(load_config(path))


def test_validation_errors_name_the_config_file(tmp_path):
    """Finding (long campaign): a file whose values fail the final validation (branches: []) gave an
    error that did not say which file."""
    path = tmp_path / "empty_branches.yaml"
    path.write_text("model:\n  branches: []\n")
    with pytest.raises(ConfigError, match="empty_branches.yaml: model.branches must be a non-empty subset"):
        load_config(path)
