"""Facecast: a real-time conversational character backend."""

__version__ = "0.1.0"
__all__ = ["__version__"]
