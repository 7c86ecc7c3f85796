"""Model weights from packages, assembled once into the cache (with a small real package: pocketsphinx's)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from facecast.errors import ConfigError
from facecast.modelcache import ModelSpec, Part, assemble, package_file

# Two real files inside an installed package, concatenated like a split model.
_A = Part("pocketsphinx", "model/en-us/en-us/mdef")
_B = Part("pocketsphinx", "model/en-us/en-us/feat.params")


def _expected() -> bytes:
    return package_file(_A).read_bytes() + package_file(_B).read_bytes()


def test_parts_are_concatenated_once_and_then_reused(tmp_path: Path) -> None:
    digest = hashlib.sha256(_expected()).hexdigest()
    spec = ModelSpec("demo", {"model.bin": (_A, _B)}, sha256={"model.bin": digest})
    said: list[str] = []
    folder = assemble(spec, announce=said.append, root=tmp_path)
    assert (folder / "model.bin").read_bytes() == _expected()
    assert len(said) == 2 and "assembling model demo" in said[0] and "assembled model demo" in said[1]
    stamp = (folder / "model.bin").stat().st_mtime_ns
    again: list[str] = []
    assert assemble(spec, announce=again.append, root=tmp_path) == folder
    assert again == [] and (folder / "model.bin").stat().st_mtime_ns == stamp  # nothing copied twice


def test_a_truncated_file_is_assembled_again(tmp_path: Path) -> None:
    spec = ModelSpec("demo", {"model.bin": (_A, _B)})
    folder = assemble(spec, announce=lambda _: None, root=tmp_path)
    with (folder / "model.bin").open("r+b") as handle:
        handle.truncate(10)
    assemble(spec, announce=lambda _: None, root=tmp_path)
    assert (folder / "model.bin").read_bytes() == _expected()


def test_checksum_mismatch_leaves_nothing_behind(tmp_path: Path) -> None:
    spec = ModelSpec("bad", {"model.bin": (_A,)}, sha256={"model.bin": "0" * 64}, install="pip install x-model")
    with pytest.raises(ConfigError, match="does not match its checksum.*pip install x-model"):
        assemble(spec, announce=lambda _: None, root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_missing_package_or_file_names_the_install_line(tmp_path: Path) -> None:
    spec = ModelSpec("gone", {"model.bin": (Part("facecast-no-such-model", "data/x"),)}, install="pip install y")
    with pytest.raises(ConfigError, match="'facecast-no-such-model' is not installed: pip install y"):
        assemble(spec, root=tmp_path)
    spec = ModelSpec("gone", {"model.bin": (Part("pocketsphinx", "no/such/file"),)})
    with pytest.raises(ConfigError, match="has no file 'no/such/file'.*pip install pocketsphinx"):
        assemble(spec, root=tmp_path)
