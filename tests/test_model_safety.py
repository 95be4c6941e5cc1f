"""Model-file safety: nothing a user hands in is unpickled, ONNX graphs are checked before use,
and the shipped default model is verified against its SHA256SUMS.

1. A static audit of physioser/ and ros/: every ``torch.load`` passes ``weights_only=True``, and
   no other deserialiser that can run code (pickle, numpy ``allow_pickle``, ``yaml.load``,
   ``torch.jit.load``, joblib, dill, marshal, shelve) is called.
2. A pickle carrying a payload (``__reduce__`` -> ``exec`` writing a marker file) is refused,
   without the payload running, by every public loading path: model directories (Engine, model
   loader, training resume), ONNX paths, backbone checkpoints (crepe-tiny, resemblyzer, pesto,
   transformers wav2vec2) and the feature cache. The payload is first shown to be live.
3. ONNX graphs outside the contract get a clear EngineError.
4. Integrity: the default model needs SHA256SUMS covering its files; a changed file is refused;
   a cached ONNX graph that no longer matches its hash is rebuilt.
"""

from __future__ import annotations

from dataclasses import replace
import ast
import json
import pickle
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from physioser.runtime import Engine, EngineError
from physioser.export import cached_onnx, open_engine
from physioser.runtime.integrity import verify_integrity, write_integrity
from tests.tinyser import export_tiny

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ 1. static audit

UNSAFE_CALLS = {
    ("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"), ("cPickle", "load"), ("cPickle", "loads"),
    ("dill", "load"), ("dill", "loads"), ("joblib", "load"), ("marshal", "load"), ("marshal", "loads"),
    ("shelve", "open"), ("jit", "load"), ("yaml", "load"), ("yaml", "unsafe_load"), ("yaml", "full_load"),
    ("yaml", "load_all"), ("yaml", "unsafe_load_all"), ("yaml", "full_load_all"), ("pd", "read_pickle"),
    ("pandas", "read_pickle"),
}


def _dotted(node: ast.AST) -> tuple[str, ...]:
    """``torch.jit.load`` -> ("torch", "jit", "load"); a call on an expression: ("<expr>", ..., "eval")."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    parts.append(node.id if isinstance(node, ast.Name) else "<expr>")
    return tuple(reversed(parts))


def audit(paths: list[Path]) -> list[str]:
    """Unsafe deserialisation calls in the given Python files, as 'file:line: what'."""
    problems = []
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _dotted(node.func)
            where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{node.lineno}"
            if name[-2:] in UNSAFE_CALLS or (len(name) == 1 and name[0] in ("eval", "exec")):
                problems.append(f"{where}: {'.'.join(name)}()")
            if name[-1:] == ("load",) and name[-2:-1] == ("torch",):
                weights_only = next((k.value for k in node.keywords if k.arg == "weights_only"), None)
                if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                    problems.append(f"{where}: torch.load() without weights_only=True")
            if name[-1:] == ("load",) and name[-2:-1] in (("np",), ("numpy",)):
                allow = next((k.value for k in node.keywords if k.arg == "allow_pickle"), None)
                if allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False):
                    problems.append(f"{where}: numpy.load(allow_pickle=...)")
    return problems


def test_audit_finds_no_unsafe_deserialisation_in_the_project():
    files = sorted(p for d in ("physioser", "ros") for p in (ROOT / d).rglob("*.py"))
    assert len(files) > 50
    assert audit(files) == []


def test_audit_catches_unsafe_calls(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import pickle, torch, numpy as np, yaml\n"
        "a = torch.load('x')\nb = torch.load('x', weights_only=False)\nc = pickle.loads(b'')\n"
        "d = np.load('x', allow_pickle=True)\ne = yaml.load('a')\nf = torch.jit.load('m')\n"
        "ok = torch.load('x', weights_only=True)\nok2 = yaml.safe_load('a')\n"
    )
    found = audit([bad])
    assert [f.split(": ", 1)[1] for f in found] == [
        "torch.load() without weights_only=True", "torch.load() without weights_only=True", "pickle.loads()",
        "numpy.load(allow_pickle=...)", "yaml.load()", "torch.jit.load()",
    ]


# ------------------------------------------------------------------ 2. pickles carrying a payload

class Payload:
    """Unpickling this runs ``exec`` of code that writes ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('payload ran')",)


@pytest.fixture
def evil(tmp_path):
    """(raw pickle path, torch.save zip path, marker path): both files carry the payload."""
    marker = tmp_path / "PAYLOAD_RAN"
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps({"weight": Payload(marker)}))
    zipped = tmp_path / "evil.pt"
    torch.save({"state_dict": {"weight": Payload(marker)}}, zipped)
    return raw, zipped, marker


def test_the_payload_is_live(evil):
    """Control: plain unpickling does run the payload, so the refusals below are meaningful."""
    raw, zipped, marker = evil
    pickle.loads(raw.read_bytes())
    assert marker.read_text() == "payload ran"
    marker.unlink()
    torch.load(zipped, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("backbone", ["crepe-tiny", "resemblyzer", "pesto"])
def test_backbone_checkpoints_refuse_payload_pickles(evil, backbone):
    from physioser.backbones import build_backbone
    from physioser.backbones.ct2 import CheckpointError

    raw, zipped, marker = evil
    for path in (raw, zipped):
        with pytest.raises(CheckpointError, match=str(path.name)):
            build_backbone(backbone, checkpoint=path)
        assert not marker.exists(), f"{backbone}: the payload ran while loading {path.name}"


@pytest.mark.slow  # imports transformers (about 10 s)
def test_transformers_checkpoint_refuses_a_payload_pytorch_model_bin(evil, tmp_path):
    pytest.importorskip("transformers")
    from physioser.backbones import build_backbone
    from physioser.backbones.hf import _import_transformers

    transformers = _import_transformers()
    raw, zipped, marker = evil
    directory = tmp_path / "w2v"
    config = transformers.Wav2Vec2Config(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
                                         conv_dim=(8,), conv_stride=(5,), conv_kernel=(10,), num_conv_pos_embeddings=4,
                                         num_conv_pos_embedding_groups=2)
    config.save_pretrained(directory)
    (directory / "pytorch_model.bin").write_bytes(zipped.read_bytes())
    from physioser.backbones.ct2 import CheckpointError

    with pytest.raises(CheckpointError, match="pytorch_model.bin"):
        build_backbone("wav2vec2", checkpoint=directory)
    assert not marker.exists(), "the payload ran inside transformers"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A real (small) physioser model directory: fbank backbone, random weights."""
    from physioser.model import build_backbone_for, build_model, load_config
    from physioser.model.checkpoint import save_model

    cfg = replace(load_config(None, ["backbone.name=fbank"]), class_names=["neutral", "happy", "angry", "sad"])
    backbone = build_backbone_for(cfg)
    cfg = cfg.with_backbone_shape(backbone.num_layers, backbone.dim)
    directory = tmp_path_factory.mktemp("model") / "fbank-model"
    save_model(build_model(cfg, backbone).eval(), cfg, directory)
    return directory


def _copy_dir(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_model_directories_refuse_payload_pickles(evil, model_dir, tmp_path, monkeypatch):
    from physioser.model import load_model
    from physioser.model.checkpoint import CheckpointError, load_train_state

    raw, zipped, marker = evil
    monkeypatch.setenv("PHYSIOSER_CACHE", str(tmp_path / "cache"))
    for payload in (raw, zipped):
        d = _copy_dir(model_dir, tmp_path / f"m-{payload.suffix[1:]}")
        (d / "model.safetensors").write_bytes(payload.read_bytes())
        with pytest.raises(CheckpointError, match="model.safetensors is corrupt"):
            load_model(d)
        for backend in ("torch", "auto"):
            with pytest.raises(EngineError, match="model.safetensors"):
                open_engine(d, backend=backend)
        (d / "last.safetensors").write_bytes(payload.read_bytes())
        (d / "last.json").write_text(json.dumps({"epoch": 1, "param_groups": []}))
        model = load_model(model_dir)
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
        with pytest.raises(CheckpointError, match="last.safetensors is corrupt"):
            load_train_state(d, model, opt, torch.Generator())
        # the same bytes named as an ONNX graph, and as the ROS node's model_path
        onnx_path = tmp_path / f"evil-{payload.suffix[1:]}.onnx"
        onnx_path.write_bytes(payload.read_bytes())
        with pytest.raises(EngineError, match="not a valid ONNX model"):
            Engine.from_path(onnx_path)
        assert not marker.exists()


def test_feature_cache_ignores_a_payload_entry(evil, tmp_path):
    import soundfile as sf

    from physioser.backbones import FeatureCache, build_backbone

    raw, zipped, marker = evil
    clip = tmp_path / "a.wav"
    sf.write(clip, 0.1 * np.sin(np.arange(8000) / 5.0), 16000)
    cache, fbank = FeatureCache(tmp_path / "cache"), build_backbone("fbank")
    entry = cache.entry_path(cache.content_hash(clip), fbank)
    entry.parent.mkdir(parents=True)
    entry.write_bytes(zipped.read_bytes())
    features, hit = cache.get_or_compute_entry(clip, fbank)
    assert not hit and features.hidden_states.shape[0] == fbank.num_layers
    assert not marker.exists()


# ------------------------------------------------------------------ 3. ONNX graphs outside the contract

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp("safety"))[1]


def _edited(tiny: Path, out: Path, edit) -> Path:
    proto = onnx.load(str(tiny))
    edit(proto)
    onnx.save(proto, str(out))
    return out


def test_wrong_graphs_get_clear_errors(tiny, tmp_path):
    def drop_probs(p):
        keep = [o for o in p.graph.output if o.name != "probs"]
        del p.graph.output[:]
        p.graph.output.extend(keep)

    def int_waveform(p):
        p.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.INT16

    def extra_class(p):
        meta = {m.key: m.value for m in p.metadata_props}
        for m in p.metadata_props:
            if m.key == "class_names":
                m.value = json.dumps(json.loads(meta["class_names"]) + ["bored"])

    def static_logits(p):
        out = next(o for o in p.graph.output if o.name == "logits")
        out.type.tensor_type.shape.dim[-1].dim_value = 7

    cases = [
        (drop_probs, r"graph outputs \['probs'\] missing"),
        (int_waveform, "input 'waveform' must be float32 of rank 2"),
        (static_logits, "logits have 7 classes but metadata names 4"),
        (extra_class, "logits have 4 classes but metadata names 5"),
    ]
    for i, (edit, message) in enumerate(cases):
        path = _edited(tiny, tmp_path / f"wrong{i}.onnx", edit)
        with pytest.raises(EngineError, match=f"wrong{i}.onnx.*{message}"):
            Engine.from_path(path)


def test_external_data_outside_the_graph_is_not_read(tiny, tmp_path):
    """A graph whose weights point at a file elsewhere (external data) is refused: graphs are
    loaded from bytes, so no path in a model file can make the engine read another file."""
    from onnx.external_data_helper import set_external_data

    proto = onnx.load(str(tiny))
    tensor = max(proto.graph.initializer, key=lambda t: len(t.raw_data))
    set_external_data(tensor, location="../../../../etc/passwd", offset=0, length=len(tensor.raw_data))
    tensor.ClearField("raw_data")
    path = tmp_path / "external.onnx"
    with open(path, "wb") as fh:
        fh.write(proto.SerializeToString())
    with pytest.raises(EngineError, match="external.onnx"):
        Engine.from_path(path)


def _external(proto, tensor, location: str, folder: Path) -> bytes:
    """Move `tensor`'s bytes to `folder/location` and point the tensor at that relative location."""
    from onnx.external_data_helper import set_external_data

    target = folder / location
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(tensor.raw_data)
    set_external_data(tensor, location=location, offset=0, length=len(tensor.raw_data))
    tensor.ClearField("raw_data")
    return proto.SerializeToString()


@pytest.mark.parametrize("where", ["initializer", "attribute"])
def test_external_data_is_refused_from_any_working_directory(tiny, tmp_path, monkeypatch, where):
    """Finding: onnxruntime resolves external data of a graph loaded from bytes against the working
    directory: a graph whose weights point at `ms/outside/secret.bin` loaded and ran when started
    from the directory holding that file. Any external tensor (an initializer, or a tensor in a
    node attribute) is now refused before onnxruntime sees the graph, from wherever it is started."""
    proto = onnx.load(str(tiny))
    if where == "initializer":
        tensor = max(proto.graph.initializer, key=lambda t: len(t.raw_data))
    else:  # the same weights as a Constant node's value
        init = max(proto.graph.initializer, key=lambda t: len(t.raw_data))
        proto.graph.initializer.remove(init)
        proto.graph.node.insert(0, onnx.helper.make_node("Constant", [], [init.name], value=init))
        tensor = proto.graph.node[0].attribute[0].t
    cwd = tmp_path / "cwd"
    blob = _external(proto, tensor, "ms/outside/secret.bin", cwd)
    path = tmp_path / "models" / "external.onnx"
    path.parent.mkdir()
    path.write_bytes(blob)
    for start_in in (cwd, path.parent, tmp_path):
        monkeypatch.chdir(start_in)
        with pytest.raises(EngineError, match="external.onnx: 1 tensor.*outside the graph"):
            Engine.from_path(path)


# ------------------------------------------------------------------ 4. integrity of the default model

def _default_from(model_dir: Path, target: Path, monkeypatch, sums: list[str] | None) -> Path:
    d = _copy_dir(model_dir, target)
    if sums is not None:
        write_integrity(d, sums)
    monkeypatch.setenv("PHYSIOSER_DEFAULT_MODEL", str(d))
    return d


def test_default_model_without_sha256sums_is_refused(model_dir, tmp_path, monkeypatch):
    _default_from(model_dir, tmp_path / "default", monkeypatch, None)
    with pytest.raises(EngineError, match="SHA256SUMS is missing"):
        open_engine(None, backend="torch")
    # an ordinary model directory may come without one
    open_engine(model_dir, backend="torch")


def test_default_model_sums_must_cover_weights_and_config(model_dir, tmp_path, monkeypatch):
    _default_from(model_dir, tmp_path / "default", monkeypatch, ["config.yaml"])
    with pytest.raises(EngineError, match=r"does not list \['model.safetensors'\]"):
        open_engine(None, backend="torch")


def test_default_model_with_a_changed_file_is_refused(model_dir, tmp_path, monkeypatch):
    d = _default_from(model_dir, tmp_path / "default", monkeypatch, ["model.safetensors", "config.yaml"])
    assert open_engine(None, backend="torch").class_names == ["neutral", "happy", "angry", "sad"]
    with open(d / "config.yaml", "a") as fh:
        fh.write("# edited\n")
    with pytest.raises(EngineError, match="config.yaml: integrity check failed"):
        open_engine(None, backend="torch")


@pytest.mark.parametrize("line, message", [
    ("not a hash  model.safetensors", "not a sha256sum line"),
    ("0" * 64 + "  ../model.safetensors", "is not a file of the model directory"),
    ("0" * 64 + "  /etc/passwd", "is not a file of the model directory"),
])
def test_malformed_sha256sums_are_clear_errors(model_dir, tmp_path, line, message):
    """Finding: a malformed line raised a bare 'not enough values to unpack'; '../x' read outside the folder."""
    d = _copy_dir(model_dir, tmp_path / "m")
    (d / "SHA256SUMS").write_text(line + "\n")
    with pytest.raises(EngineError, match=f"SHA256SUMS, line 1: .*{message}"):
        verify_integrity(d)


def test_cached_onnx_graph_that_no_longer_matches_is_rebuilt(model_dir, tmp_path, monkeypatch, tiny):
    monkeypatch.setenv("PHYSIOSER_CACHE", str(tmp_path / "cache"))
    first = cached_onnx(model_dir)
    good = first.read_bytes()
    first.write_bytes(tiny.read_bytes())  # another (valid, contract-conforming) graph put in its place
    again = cached_onnx(model_dir)
    assert again == first and again.read_bytes() == good
