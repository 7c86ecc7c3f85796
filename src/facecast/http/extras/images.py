"""Image understanding for ``/process_image`` (captioning) and ``/process_clip`` (CLIP), from local folders.

Both load Hugging Face ``transformers`` models from a folder the user gives (``save_pretrained`` layout:
``config.json``, weights, and the processor's tokenizer / image-processor files), never from the Hub:

* captioning (``caption_model``): a BLIP-style image-to-text model, e.g. a local copy of
  ``Salesforce/blip-image-captioning-large`` (what NeuroSync uses), loaded with ``AutoProcessor`` and
  ``AutoModelForImageTextToText``;
* CLIP (``clip_model``): a CLIP model, e.g. a local copy of ``openai/clip-vit-large-patch14``, loaded with
  ``AutoProcessor`` and ``AutoModel``; it scores an image against text labels (zero-shot) and gives the
  image's unit-length embedding.

The ``images`` extra installs transformers, torch and Pillow. Calls block (run them in a thread) and are
serialised per model.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError
from ...types import Float32Array
from . import ExtraUnavailable, require

__all__ = [
    "IMAGES_HINT",
    "MAX_IMAGE_PIXELS",
    "MAX_LABELS",
    "ClipResult",
    "ImageDecodeError",
    "Captioner",
    "ClipScorer",
    "decode_image",
    "load_captioner",
    "load_clip",
]

IMAGES_HINT = (
    "Install the images extra (pip install torch==2.13.0 && pip install 'facecast[images]') and set "
    "caption_model / clip_model (FACECAST_CAPTION_MODEL, FACECAST_CLIP_MODEL) to a local model folder"
)

MAX_IMAGE_PIXELS = 50_000_000
"""Largest decoded image accepted (width x height); bigger ones are rejected before decoding."""

MAX_LABELS = 256
"""Most labels one ``/process_clip`` call scores."""

_MAX_CAPTION_TOKENS = 60


class ImageDecodeError(InputError):
    """The bytes are not an image Pillow can decode (or one over :data:`MAX_IMAGE_PIXELS`)."""

    code = "bad_image"


def decode_image(data: bytes) -> Any:
    """Decode PNG/JPEG/WebP/... bytes into an RGB ``PIL.Image``; :class:`ImageDecodeError` if they are not one."""
    image_module = require("PIL.Image", IMAGES_HINT)
    if not data:
        raise ImageDecodeError("the image is empty")
    try:
        image = image_module.open(io.BytesIO(data))
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS:
            raise ImageDecodeError(f"the image has {width}x{height} pixels; the limit is {MAX_IMAGE_PIXELS:,}")
        image.load()
        return image.convert("RGB")
    except ImageDecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for undecodable data
        raise ImageDecodeError(f"cannot decode the image: {exc}") from None


def _folder(path: str, setting: str) -> Path:
    if not path:
        raise ExtraUnavailable(f"no {setting.replace('_', ' ')} is configured", IMAGES_HINT)
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise ExtraUnavailable(f"{setting} {folder} is not a model folder (no config.json)", IMAGES_HINT)
    return folder


def _offline() -> tuple[Any, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return require("torch", IMAGES_HINT), require("transformers", IMAGES_HINT)


class Captioner:
    """Caption images with a local image-to-text model (see the module docstring)."""

    def __init__(self, processor: Any, model: Any, torch: Any, name: str) -> None:
        self._processor = processor
        self._model = model
        self._torch = torch
        self.name = name
        self._lock = threading.Lock()

    def caption(self, image: bytes, prompt: str | None = None, max_new_tokens: int = 30) -> str:
        """The caption of ``image`` (encoded bytes); ``prompt`` starts the caption (conditional captioning).

        Raises :class:`InputError` for bytes that are not an image.
        """
        picture = decode_image(image)
        tokens = max(1, min(int(max_new_tokens), _MAX_CAPTION_TOKENS))
        with self._lock, self._torch.inference_mode():
            if prompt:
                inputs = self._processor(images=picture, text=prompt, return_tensors="pt")
            else:
                inputs = self._processor(images=picture, return_tensors="pt")
            ids = self._model.generate(**inputs, max_new_tokens=tokens)
        texts = self._processor.batch_decode(ids, skip_special_tokens=True)
        return str(texts[0]).strip() if texts else ""


@dataclass(frozen=True, slots=True)
class ClipResult:
    """CLIP's answer: ``scores[i]`` is the softmax probability of ``labels[i]`` (empty without labels)."""

    labels: tuple[str, ...]
    scores: tuple[float, ...]
    image_embedding: Float32Array

    @property
    def best(self) -> str | None:
        return self.labels[int(np.argmax(self.scores))] if self.labels else None


def _tensor(output: Any) -> Any:
    """``get_image_features`` returns a tensor in transformers 4 and a pooled output object in 5."""
    pooled = getattr(output, "pooler_output", None)
    return output if pooled is None else pooled


class ClipScorer:
    """Zero-shot labels and image embeddings from a local CLIP model (see the module docstring)."""

    def __init__(self, processor: Any, model: Any, torch: Any, name: str) -> None:
        self._processor = processor
        self._model = model
        self._torch = torch
        self.name = name
        self._lock = threading.Lock()

    def score(self, image: bytes, labels: Sequence[str] = ()) -> ClipResult:
        """Score ``image`` (encoded bytes) against ``labels``; raises :class:`InputError` for a bad image."""
        picture = decode_image(image)
        if len(labels) > MAX_LABELS:
            raise InputError(f"at most {MAX_LABELS} labels, got {len(labels)}")
        with self._lock, self._torch.inference_mode():
            if labels:
                inputs = self._processor(text=list(labels), images=picture, return_tensors="pt", padding=True)
                output = self._model(**inputs)
                scores = output.logits_per_image.softmax(dim=-1)[0].float().cpu().numpy()
                embedding = output.image_embeds[0].float().cpu().numpy()
            else:
                inputs = self._processor(images=picture, return_tensors="pt")
                features = _tensor(self._model.get_image_features(pixel_values=inputs["pixel_values"]))
                scores = np.zeros(0)
                embedding = features[0].float().cpu().numpy()
        vector = np.asarray(embedding, dtype=np.float32)
        norm = float(np.linalg.norm(vector))
        if norm > 0:
            vector = vector / norm
        return ClipResult(tuple(labels), tuple(float(s) for s in scores), vector.astype(np.float32))


def load_captioner(path: str) -> Captioner:
    """Load the captioning model in folder ``path``. Raises :class:`ExtraUnavailable` (with the hint)."""
    folder = _folder(path, "caption_model")
    torch, transformers = _offline()
    model_class = getattr(transformers, "AutoModelForImageTextToText", None) or transformers.AutoModelForVision2Seq
    try:
        processor = transformers.AutoProcessor.from_pretrained(str(folder))
        model = model_class.from_pretrained(str(folder))
    except Exception as exc:  # noqa: BLE001 - any loader failure means the same thing to the user
        raise ExtraUnavailable(f"cannot load the captioning model at {folder}: {exc}", IMAGES_HINT) from exc
    model.eval()
    return Captioner(processor, model, torch, folder.name)


def load_clip(path: str) -> ClipScorer:
    """Load the CLIP model in folder ``path``. Raises :class:`ExtraUnavailable` (with the hint)."""
    folder = _folder(path, "clip_model")
    torch, transformers = _offline()
    try:
        processor = transformers.AutoProcessor.from_pretrained(str(folder))
        model = transformers.AutoModel.from_pretrained(str(folder))
    except Exception as exc:  # noqa: BLE001 - any loader failure means the same thing to the user
        raise ExtraUnavailable(f"cannot load the CLIP model at {folder}: {exc}", IMAGES_HINT) from exc
    if not hasattr(model, "get_image_features"):
        raise ExtraUnavailable(f"the model at {folder} is not a CLIP model", IMAGES_HINT)
    model.eval()
    return ClipScorer(processor, model, torch, folder.name)
