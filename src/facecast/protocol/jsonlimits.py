"""JSON text from untrusted peers, parsed within limits: one helper for the engine protocol, the service
protocol and the HTTP endpoints (sans-I/O).

:func:`loads` refuses, with a :class:`JsonLimitError` instead of anything else:

* a text over ``max_bytes`` **UTF-8 bytes** (not characters: 80 KB of three-byte characters is 27 K characters);
* text that is not JSON, including nesting too deep for the parser (60,000 ``[`` raises no
  ``RecursionError`` here, it is ``bad_json``);
* a value nested deeper than ``max_depth`` arrays/objects;
* a string (value or key) holding a lone UTF-16 surrogate escape such as ``"\\ud800"``, which is not Unicode
  text and could not be encoded again (echoing it back would fail mid-session);
* NaN and Infinity, which are not JSON.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_DEPTH", "JsonLimitError", "utf8_length", "loads", "has_control_chars"]

MAX_DEPTH = 32
"""Deepest nesting of arrays/objects accepted by default (the protocols need 3)."""


class JsonLimitError(ValueError):
    """JSON refused by :func:`loads`. ``code`` is ``too_large`` (over the byte limit) or ``bad_json``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def utf8_length(text: str | bytes) -> int:
    """Length of ``text`` in UTF-8 bytes (a ``bytes`` value is its own length); cheap when it is ASCII."""
    if isinstance(text, bytes | bytearray | memoryview):
        return len(text)
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _check(value: Any, max_depth: int) -> None:
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict | list):
            if depth >= max_depth:
                raise JsonLimitError("bad_json", f"JSON nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                for key, inner in item.items():
                    _check_text(key)
                    stack.append((inner, depth + 1))
            else:
                stack.extend((inner, depth + 1) for inner in item)


def _check_text(text: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise JsonLimitError(
            "bad_json", "a JSON string holds a lone surrogate escape (e.g. \\ud800), which is not Unicode text"
        ) from None


def loads(text: str | bytes, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``text`` (``str``, or ``bytes`` in UTF-8) within the limits above.

    Raises :class:`JsonLimitError` (``too_large`` or ``bad_json``); never ``RecursionError`` or
    ``UnicodeDecodeError``."""
    size = utf8_length(text)
    if size > max_bytes:
        raise JsonLimitError("too_large", f"JSON text of {size} bytes exceeds the limit of {max_bytes}")
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise JsonLimitError("bad_json", "JSON nested too deeply to parse") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise JsonLimitError("bad_json", f"not valid JSON: {exc}") from None
    _check(data, max_depth)
    return data


def has_control_chars(text: str, allow: str = "") -> bool:
    """Whether ``text`` holds a C0 control character (NUL, ESC...) or DEL other than those in ``allow``."""
    return any((ord(c) < 32 or ord(c) == 127) and c not in allow for c in text)
