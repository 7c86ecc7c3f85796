"""Optional models behind NeuroSync's extra endpoints: text embeddings and image understanding.

Each lives behind a pip extra (``facecast[embeddings]``, ``facecast[images]``) and is imported only when
first used, so Facecast runs without them; a missing extra raises :class:`ExtraUnavailable`, which the HTTP
layer answers with 501 and the install hint. The heavy libraries (torch, transformers,
sentence-transformers, Pillow) are reached through :func:`require`, so the rest of the package is type
checked without them.
"""

from __future__ import annotations

import importlib
from typing import Any

from ...errors import ConfigError

__all__ = ["ExtraUnavailable", "require"]


class ExtraUnavailable(ConfigError):
    """An optional feature cannot run here; ``hint`` says what to install or configure."""

    code = "not_available"

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(f"{message}. {hint}")
        self.reason = message
        self.hint = hint


def require(module: str, hint: str) -> Any:
    """Import ``module``, or raise :class:`ExtraUnavailable` naming it together with ``hint``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ExtraUnavailable(f"the Python package {module!r} is not installed ({exc})", hint) from None
