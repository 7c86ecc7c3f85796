"""Actions: what a character may do in the game besides talking (hand over an item, open a door...).

The engine declares them (``hello.actions``, or a character's ``actions`` in the config): a name, a
description and a JSON Schema of the arguments. The language model is offered them as tools (OpenAI tool
calling where the provider has it) and, for every model, described in its system prompt (:func:`actions_prompt`):
"to act, write the call as one JSON object on its own line". :class:`ActionExtractor` takes the calls out
of the reply's text stream, wherever they come from, and leaves the words to be spoken. A call whose
arguments do not fit the schema is never sent (:func:`check_call`).

Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from .errors import ConfigError

__all__ = [
    "Action",
    "ActionCall",
    "ActionExtractor",
    "MAX_ACTIONS",
    "actions_from_json",
    "actions_prompt",
    "check_call",
    "marker",
    "split_markers",
]

MAX_ACTIONS = 32
"""Actions one character may declare."""
MAX_SCHEMA_BYTES = 4096
"""Size of one action's declaration (name, description and schema as JSON)."""
MAX_CALL_CHARS = 4096
"""A JSON object in the reply longer than this is not a call: it is dropped."""
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True, slots=True)
class Action:
    """One action a character may take: ``parameters`` is the JSON Schema of its arguments (an object)."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] | None = None

    def schema(self) -> dict[str, Any]:
        return dict(self.parameters) if self.parameters else {"type": "object", "properties": {}}

    def as_tool(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry of this action."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.schema()},
        }


@dataclass(frozen=True, slots=True)
class ActionCall:
    """The model's call of ``name`` with ``arguments`` (already checked against the action's schema)."""

    name: str
    arguments: dict[str, Any]


def actions_from_json(raw: Any, where: str = "actions") -> tuple[Action, ...]:
    """Declarations as JSON/TOML give them: a list of ``{name, description, parameters}``. Raises
    :class:`ConfigError` naming what is wrong (a bad name, a duplicate, an invalid schema, too many or too big)."""
    if not isinstance(raw, list):
        raise ConfigError(f"{where} must be a list of {{name, description, parameters}}")
    if len(raw) > MAX_ACTIONS:
        raise ConfigError(f"{where}: {len(raw)} actions; the limit is {MAX_ACTIONS}")
    found: dict[str, Action] = {}
    for item in raw:
        if not isinstance(item, Mapping):
            raise ConfigError(f"{where}: each action must be an object {{name, description, parameters}}")
        unknown = sorted(set(item) - {"name", "description", "parameters"})
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: name, description, parameters)")
        name, description, parameters = item.get("name"), item.get("description", ""), item.get("parameters")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{where}: action name {name!r} must be 1-64 letters, digits or '_' (not first a digit)")
        if name in found:
            raise ConfigError(f"{where}: action {name!r} is declared twice")
        if not isinstance(description, str):
            raise ConfigError(f"{where}: action {name!r}: description must be a string")
        if parameters is not None:
            if not isinstance(parameters, Mapping) or parameters.get("type", "object") != "object":
                raise ConfigError(f"{where}: action {name!r}: parameters must be a JSON Schema of type object")
            try:
                Draft202012Validator.check_schema(dict(parameters))
            except SchemaError as exc:
                raise ConfigError(
                    f"{where}: action {name!r}: parameters is not a valid JSON Schema ({exc.message})"
                ) from None
        if len(json.dumps(item, ensure_ascii=False).encode()) > MAX_SCHEMA_BYTES:
            raise ConfigError(f"{where}: action {name!r} is over {MAX_SCHEMA_BYTES} bytes")
        found[name] = Action(name, description.strip(), dict(parameters) if parameters is not None else None)
    return tuple(found.values())


def actions_prompt(actions: Sequence[Action]) -> str:
    """What the system prompt says about ``actions`` (the fallback every model understands): each action
    with its arguments in words and an example call; small models copy a JSON Schema instead of filling it."""
    if not actions:
        return ""
    lines = [
        "You can act in the game. To act, write the call as one JSON object on its own line, like the "
        "examples below, and say in words what you do. Only these actions exist:"
    ]
    for action in actions:
        about = action.description or "no description."
        lines.append(f"- {action.name}: {about}{_arguments_in_words(action.schema())}")
        example = {"name": action.name, "arguments": _example(action.schema())}
        lines.append(f"  Example: {json.dumps(example, ensure_ascii=False)}")
    return "\n".join(lines)


def _arguments_in_words(schema: Mapping[str, Any]) -> str:
    properties = schema.get("properties") or {}
    if not isinstance(properties, Mapping) or not properties:
        return " No arguments."
    required = set(schema.get("required") or ())
    parts = []
    for name, spec in properties.items():
        spec = spec if isinstance(spec, Mapping) else {}
        kind = " or ".join(json.dumps(v) for v in spec["enum"]) if "enum" in spec else str(spec.get("type", "any"))
        note = f", {spec['description']}" if isinstance(spec.get("description"), str) else ""
        parts.append(f"{name} ({kind}{note}{'' if name in required else ', optional'})")
    return " Arguments: " + "; ".join(parts) + "."


def _example(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments that fit ``schema``'s required properties (an enum's first value, a placeholder else)."""
    properties = schema.get("properties") or {}
    out: dict[str, Any] = {}
    for name in schema.get("required") or list(properties)[:1]:
        spec = properties.get(name, {}) if isinstance(properties, Mapping) else {}
        if not isinstance(spec, Mapping):
            spec = {}
        if spec.get("enum"):
            out[name] = spec["enum"][0]
        else:
            out[name] = {"integer": 1, "number": 1, "boolean": True, "array": [], "object": {}}.get(
                str(spec.get("type")), "..."
            )
    return out


def check_call(actions: Sequence[Action], name: str, arguments: Any) -> ActionCall:
    """``name(arguments)`` as a call of one of ``actions``; raises ValueError saying why it is not one."""
    action = next((a for a in actions if a.name == name), None)
    if action is None:
        raise ValueError(f"the model called {name!r}, which is not a declared action")
    if not isinstance(arguments, dict):
        raise ValueError(f"the arguments of {name!r} must be a JSON object, got {arguments!r}")
    errors = sorted(Draft202012Validator(action.schema()).iter_errors(arguments), key=lambda e: list(e.path))
    if errors:
        raise ValueError(f"the arguments of {name!r} do not fit its schema: {errors[0].message}")
    return ActionCall(name, arguments)


# -- the calls in a stream of text ----------------------------------------------------------------

_OPEN, _CLOSE = "\ue000", "\ue001"
_MARKER = re.compile(f"{_OPEN}(\\d+){_CLOSE}")
_TAGS = ("<tool_call>", "</tool_call>", "<function_call>", "</function_call>")
_WRAPPERS = re.compile("|".join(re.escape(tag) for tag in _TAGS))


def marker(index: int) -> str:
    """The placeholder of call ``index`` in a text stream: private-use characters the splitter keeps."""
    return f"{_OPEN}{index}{_CLOSE}"


def split_markers(text: str) -> Iterator[str | int]:
    """``text`` as its pieces of text and the indices of the call markers in it, in order."""
    pos = 0
    for match in _MARKER.finditer(text):
        if match.start() > pos:
            yield text[pos : match.start()]
        yield int(match.group(1))
        pos = match.end()
    if pos < len(text):
        yield text[pos:]


class ActionExtractor:
    """Takes the calls out of a reply's text as it streams.

    :meth:`feed` returns the text to pass on, where each JSON object is replaced by a :func:`marker` of its
    index in :attr:`found`: a valid call (``{"name": ..., "arguments": {...}}``, optionally inside
    ``<tool_call>`` tags) is an :class:`ActionCall` there; any other JSON object, or a call that does not fit
    its schema, is the reason it was refused. Neither is ever spoken. One instance per reply.
    """

    def __init__(self, actions: Sequence[Action]) -> None:
        self._actions = tuple(actions)
        self.found: list[ActionCall | str] = []
        """By marker index: each call, or why a JSON object in the text was not one (never spoken either)."""
        self._buf = ""  # a JSON object being collected ("" when outside one)
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._held = ""  # the start of a possible <tool_call> tag at the end of the last piece

    def feed(self, text: str) -> str:
        out: list[str] = [self._held]
        self._held = ""
        for ch in text:
            if not self._buf:
                if ch == "{":
                    self._buf, self._depth = ch, 1
                else:
                    out.append(ch)
                continue
            self._buf += ch
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif ch == "\\":
                    self._escaped = True
                elif ch == '"':
                    self._in_string = False
            elif ch == '"':
                self._in_string = True
            elif ch == "{":
                self._depth += 1
            elif ch == "}":
                self._depth -= 1
                if self._depth == 0:
                    out.append(self._take(self._buf))
                    self._buf = ""
            if len(self._buf) > MAX_CALL_CHARS:
                out.append(self._refuse(f"a JSON object of over {MAX_CALL_CHARS} characters in the reply"))
                self._buf, self._depth, self._in_string, self._escaped = "", 0, False, False
        return self._unwrap("".join(out))

    def _unwrap(self, text: str) -> str:
        """``text`` without ``<tool_call>``-style tags; a possible tag at its end is held for the next piece."""
        text = _WRAPPERS.sub("", text)
        start = text.rfind("<")
        if start >= 0 and any(tag.startswith(text[start:]) for tag in _TAGS):
            text, self._held = text[:start], text[start:]
        return text

    def flush(self) -> str:
        """The end of the reply: an unfinished JSON object is dropped (and reported)."""
        out, self._held = self._held, ""
        if self._buf:
            out += self._refuse(f"an unfinished JSON object at the end of the reply: {self._buf[:80]!r}")
        self._buf, self._depth, self._in_string, self._escaped = "", 0, False, False
        return out

    def _refuse(self, why: str) -> str:
        self.found.append(why)
        return marker(len(self.found) - 1)

    def _take(self, raw: str) -> str:
        try:
            data = json.loads(raw)
        except ValueError:
            return self._refuse(f"text in braces that is not JSON: {raw[:80]!r}")
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return self._refuse(f"a JSON object that is not an action call: {raw[:80]!r}")
        arguments = data.get("arguments", data.get("parameters", {}))
        if isinstance(arguments, str):  # OpenAI-style: the arguments as a JSON string
            try:
                arguments = json.loads(arguments)
            except ValueError:
                pass
        try:
            call = check_call(self._actions, data["name"], arguments)
        except ValueError as exc:
            return self._refuse(str(exc))
        self.found.append(call)
        return marker(len(self.found) - 1)
