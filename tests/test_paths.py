"""Where results say a model came from: the cache by its variable, not by the machine's folders."""

from __future__ import annotations

from physioser.paths import portable


def test_portable_names_cache_paths_by_their_variable(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PHYSIOSER_CACHE", str(tmp_path / "cache"))
    bundle = tmp_path / "cache" / "bundles" / "default-0123456789abcdef"
    bundle.mkdir(parents=True)
    assert portable(bundle) == "$PHYSIOSER_CACHE/bundles/default-0123456789abcdef"
    assert portable("my.bundle") == "my.bundle"
    assert portable(tmp_path / "elsewhere.onnx") == str(tmp_path / "elsewhere.onnx")
