"""Exceptions with messages meant for the user."""

from __future__ import annotations

__all__ = ["FacecastError", "InputError", "ServiceError", "BusyError", "ConfigError"]


class FacecastError(Exception):
    """Base of every error Facecast raises on purpose. ``code`` is a stable machine-readable name."""

    code = "error"


class InputError(FacecastError, ValueError):
    """The caller's input cannot be used (unreadable audio, empty or oversized text, bad voice...)."""

    code = "bad_input"


class ServiceError(FacecastError):
    """A service (LLM, remote STT/TTS/face) could not be reached or failed while answering."""

    code = "service_unavailable"


class BusyError(ServiceError):
    """A per-process limit is reached (all recognisers in use...): retry after ``retry_after`` seconds, or
    elsewhere (a failover list moves on to its next member)."""

    code = "busy"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConfigError(FacecastError):
    """The configuration names something that does not exist or is not installed."""

    code = "bad_config"
