"""Who may talk to a Facecast server: the access token, the ``Host`` check and the ``Origin`` check, in one place.

Every server (``facecast run``'s HTTP + WebSocket app, through :mod:`facecast.http.security`, and the
``facecast serve`` service servers) applies the same three rules, in this order:

1. **Host** (DNS rebinding): the request's ``Host`` name must be a loopback name (``127.0.0.1``,
   ``localhost``, ``::1``), an IP address literal (a page can only reach it under that same address, so it
   cannot be a rebinding), the bound host, or a name in ``allowed_hosts`` (``*`` there accepts any name).
   A request without a ``Host`` header (HTTP/1.0 tools) passes: browsers always send one.
2. **Origin** (another web page driving the character): a request that carries an ``Origin`` header (every
   browser WebSocket, every cross-origin or non-GET browser request) must come from the server's own origin,
   i.e. a loopback name, the bound host or the request's own (accepted) ``Host`` name on the same port as
   the ``Host`` header names, or from an origin listed in ``allowed_origins`` (exact ``scheme://host[:port]``;
   ``*`` accepts any). Clients that send no ``Origin`` (game engines, scripts) are not browsers and pass.
3. **Token**: when a token is set, the request must present it as ``Authorization: Bearer TOKEN``,
   ``API-Key: TOKEN`` (NeuroSync's header), ``X-API-Key: TOKEN`` or ``?token=TOKEN``; compared in constant
   time. :func:`redact_query` removes it from the query string before anything can log it.

The rules are pure functions (no I/O, no framework) so each server wraps them in its own refusal.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlsplit

from .config import LOOPBACK_HOSTS
from .errors import ConfigError

__all__ = [
    "MIN_TOKEN_LENGTH",
    "TOKEN_PARAMS",
    "AccessPolicy",
    "header",
    "offered_tokens",
    "redact_query",
    "redact_url",
    "check_token_rule",
    "check_token_strength",
]

MIN_TOKEN_LENGTH = 16
"""Shortest access token accepted when a server binds to anything but loopback."""

TOKEN_PARAMS = frozenset({"token", "access_token", "api_key", "api-key", "apikey", "key"})
"""Query parameters redacted from logged URLs (``token`` is the one Facecast reads)."""

_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The single value of header ``name`` (case-insensitive), ``None`` when absent.

    A header sent several times (which a websockets ``Headers`` refuses to collapse) counts as malformed
    and is returned as ``""``, which every rule below refuses where a value matters."""
    try:
        return headers.get(name)
    except LookupError:
        return ""


def _split_host(value: str) -> tuple[str, int | None] | None:
    """``Host`` header value -> (lower-case name without brackets or trailing dot, port or None); None if malformed."""
    value = value.strip()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else ""
    elif value.count(":") == 1:
        name, _, port_text = value.partition(":")
    elif ":" in value:
        name, port_text = value, ""  # a bare IPv6 literal (not valid in Host, tolerated)
    else:
        name, port_text = value, ""
    port: int | None = None
    if port_text:
        if not port_text.isdigit() or int(port_text) > 65535:
            return None
        port = int(port_text)
    name = name.lower().rstrip(".")
    if not name or any(c in name for c in "/?#@ \t\\"):
        return None
    return name, port


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _normal_origin(origin: str) -> str:
    return origin.strip().lower().rstrip("/")


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """The access rules of one server (see the module docstring). Build it with :meth:`from_settings`."""

    token: str = ""
    bound_host: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Any) -> AccessPolicy:
        """From a :class:`~facecast.config.Settings` (``token``, ``host``, ``allowed_hosts``, ``allowed_origins``)."""
        return cls(settings.token, settings.host, tuple(settings.allowed_hosts), tuple(settings.allowed_origins))

    def _own_names(self) -> set[str]:
        names = {n.lower() for n in LOOPBACK_HOSTS}
        bound = self.bound_host.strip().strip("[]").lower()
        if bound not in _WILDCARD_HOSTS:
            names.add(bound)
        return names

    def host_ok(self, host: str | None) -> bool:
        """Whether a request with this ``Host`` header value may be served (``None``: no header, allowed)."""
        if host is None:
            return True
        parsed = _split_host(host)
        if parsed is None:
            return False
        name = parsed[0]
        allowed = {h.strip().lower().rstrip(".") for h in self.allowed_hosts}
        return "*" in allowed or name in allowed or name in self._own_names() or _is_ip(name)

    def origin_ok(self, origin: str | None, host: str | None) -> bool:
        """Whether a request carrying ``Origin: origin`` (``None``: no header, not a browser) to ``Host: host``
        comes from a page this server trusts (a ``host`` refused by :meth:`host_ok` never makes an origin own)."""
        if origin is None:
            return True
        normal = _normal_origin(origin)
        allowed = {_normal_origin(o) for o in self.allowed_origins}
        if "*" in allowed or normal in allowed:
            return True
        try:
            parts = urlsplit(normal)
            origin_port = parts.port
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
            return False  # "null" (sandboxed frames, file: pages) and anything odd
        target = _split_host(host) if host else None
        if target is None:
            return False
        names = self._own_names()
        if self.host_ok(host):
            names.add(target[0])
        if parts.hostname not in names:
            return False
        if target[1] is None:  # Host without a port: the scheme's default port on both sides
            return origin_port is None
        return (origin_port if origin_port is not None else _DEFAULT_PORTS[parts.scheme]) == target[1]

    def token_ok(self, headers: Mapping[str, str], query: bytes | str) -> bool:
        """Whether the request presents the token (always true when none is set); constant time per candidate."""
        if not self.token:
            return True
        want = self.token.encode()
        matched = False
        for offered in offered_tokens(headers, query):
            matched |= hmac.compare_digest(offered.encode("utf-8", "surrogateescape"), want)
        return matched


def offered_tokens(headers: Mapping[str, str], query: bytes | str) -> list[str]:
    """Every token the request offers: ``Authorization: Bearer``, ``API-Key``, ``X-API-Key``, ``?token=``."""
    found: list[str] = []
    auth = header(headers, "authorization") or ""
    scheme, _, value = auth.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        found.append(value.strip())
    for name in ("api-key", "x-api-key"):
        value = (header(headers, name) or "").strip()
        if value:
            found.append(value)
    text = query.decode("latin-1") if isinstance(query, bytes) else query
    found.extend(value for key, value in parse_qsl(text, keep_blank_values=True) if key == "token" and value)
    return found


def redact_query(query: bytes) -> bytes:
    """``query`` (a raw query string) with the value of every token-like parameter replaced by ``REDACTED``;
    unchanged (the same object) when it has none."""
    if not query:
        return query
    parts = query.split(b"&")
    changed = False
    for i, part in enumerate(parts):
        key, sep, _ = part.partition(b"=")
        if sep and unquote_plus(key.decode("latin-1")).lower() in TOKEN_PARAMS:
            parts[i] = key + b"=REDACTED"
            changed = True
    return b"&".join(parts) if changed else query


_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#@\s,]*@")
_SECRET_PARAM = re.compile(
    r"(?P<key>[?&;](?:[^=&#\s,]*(?:key|token|secret|passw|auth|sig|credential)[^=&#\s,]*)=)[^&#\s,]*", re.IGNORECASE
)


def redact_url(text: str) -> str:
    """``text`` (a URL, a provider spec, or a comma-separated failover list of them) with credentials removed:
    ``user:password@`` becomes ``***@`` and the values of key/token/secret/password-like query parameters
    become ``***``. For anything the server reports about itself (``/health``, failover events)."""
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    return _SECRET_PARAM.sub(r"\g<key>***", text)


def check_token_rule(host: str, token: str) -> None:
    """Raise :class:`ConfigError` when ``host`` is not loopback and no token is set, or the token is weak
    (:func:`check_token_strength`)."""
    if host not in LOOPBACK_HOSTS and not token:
        raise ConfigError(
            f"binding to {host} exposes Facecast beyond this machine: set an access token with "
            "--token or FACECAST_TOKEN"
        )
    check_token_strength(host, token)


def check_token_strength(host: str, token: str) -> None:
    """Raise :class:`ConfigError` when ``host`` is not loopback and ``token`` is shorter than
    :data:`MIN_TOKEN_LENGTH` characters or has surrounding whitespace. On loopback any token is accepted."""
    if host in LOOPBACK_HOSTS or not token:
        return
    if token != token.strip():
        raise ConfigError("the access token starts or ends with whitespace, which HTTP headers do not carry")
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"binding to {host} needs an access token of at least {MIN_TOKEN_LENGTH} characters "
            f"(this one has {len(token)}); make one with: openssl rand -hex 24"
        )
