"""``facecast doctor``: check a configuration before ``facecast run`` meets it, one line per check.

It reads the same settings as ``facecast run`` (flags, ``FACECAST_*`` variables, ``--config``) and checks,
in this order: the access token (required off loopback, long enough), each port (free, or who holds it: a
running Facecast answers ``/health``), the Live Link targets (the name resolves, the address is routable:
nothing is sent to them), each configured provider (built and, unless ``warm`` is off, its model loaded,
timed; a ``http(s)://`` language model must answer; a ``ws://`` service must accept a connection), the model
cache (the embedded models in use assembled, free disk) and the optional extras installed.

Each :class:`Check` is ``OK``, ``WARN`` (it works, but probably not as meant) or ``FAIL`` (``facecast run``
would stop, or a turn would fail); a WARN or FAIL says what to do about it. :func:`main` prints the lines as
they come and returns exit status 1 when any check failed.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from .auth import MIN_TOKEN_LENGTH, check_token_rule, redact_url
from .config import LOOPBACK_HOSTS, Settings
from .errors import ConfigError, FacecastError
from .registry import ROLES, Role

__all__ = ["Check", "Status", "run_checks", "main", "format_check"]

Status = Literal["OK", "WARN", "FAIL"]

_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

LOW_DISK_MB = 1024
"""Free space under the model cache below which the cache check warns."""


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the report: what was checked (``name``), its ``status`` and ``detail`` (what was found
    and, for WARN and FAIL, what to do)."""

    name: str
    status: Status
    detail: str


def format_check(check: Check) -> str:
    return f"{check.status:<4}  {check.name}: {check.detail}"


async def run_checks(
    settings: Settings,
    *,
    warm: bool = True,
    timeout: float = 3.0,
    report: Callable[[Check], None] | None = None,
) -> list[Check]:
    """Every check of ``settings`` (see the module docstring), each handed to ``report`` as soon as it is
    done. ``warm``: load each provider's model (seconds to minutes for the embedded defaults; off: only
    build them). ``timeout``: seconds for each network probe. Never raises for what it checks."""
    checks: list[Check] = []

    def done(check: Check) -> None:
        checks.append(check)
        if report is not None:
            report(check)

    done(_token(settings))
    for check in await _ports(settings, timeout):
        done(check)
    for check in _livelink(settings):
        done(check)
    for role in ROLES:
        done(await _provider(role, settings, warm, timeout))
    done(_combination(settings))
    done(_model_cache(settings))
    done(_extras())
    return checks


def main(settings: Settings, *, warm: bool = True, timeout: float = 3.0) -> int:
    """Print every check (``facecast doctor``) and a summary; returns 1 when any check failed, else 0."""
    checks = asyncio.run(run_checks(settings, warm=warm, timeout=timeout, report=lambda c: print(format_check(c))))
    counts = {status: sum(c.status == status for c in checks) for status in ("OK", "WARN", "FAIL")}
    print(f"doctor: {counts['OK']} OK, {counts['WARN']} WARN, {counts['FAIL']} FAIL")
    return 1 if counts["FAIL"] else 0


# -- token ------------------------------------------------------------------------------------------------


def _token(settings: Settings) -> Check:
    host, token = settings.host, settings.token
    try:
        check_token_rule(host, token)
    except ConfigError as exc:
        return Check("token", "FAIL", str(exc))
    if host in LOOPBACK_HOSTS:
        return Check("token", "OK", f"{'set' if token else 'none'}; not required on loopback ({host})")
    if len(set(token)) < 6:
        return Check(
            "token",
            "WARN",
            f"{len(token)} characters but only {len(set(token))} different ones: easy to guess; "
            "make one with: openssl rand -hex 24",
        )
    return Check("token", "OK", f"{len(token)} characters (at least {MIN_TOKEN_LENGTH} needed off loopback)")


# -- ports ------------------------------------------------------------------------------------------------


async def _ports(settings: Settings, timeout: float) -> list[Check]:
    from .server import bind_sockets, serving_ports

    checks = []
    for port in serving_ports(settings):
        name = f"port {settings.host}:{port}"
        try:
            for sock in bind_sockets(settings.host, [port], listen=False):
                sock.close()
        except ConfigError as exc:
            who, facecast = await _who_serves(settings.host, port, settings.token, timeout)
            if facecast:
                detail = f"{who}: a second 'facecast run' here would fail; stop it or choose another --port"
                checks.append(Check(name, "WARN", detail))
            else:
                checks.append(Check(name, "FAIL", f"{exc} ({who})"))
            continue
        checks.append(Check(name, "OK", "free"))
    return checks


async def _who_serves(host: str, port: int, token: str, timeout: float) -> tuple[str, bool]:
    """Who holds ``port``: (a description, whether it is a Facecast server), from its ``/health`` answer."""
    import httpx

    probe = "127.0.0.1" if host in ("0.0.0.0", "", "localhost") else "::1" if host == "::" else host
    url = f"http://[{probe}]:{port}/health" if ":" in probe else f"http://{probe}:{port}/health"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.get(url, headers=headers)
        body = response.json()
    except (httpx.HTTPError, OSError, ValueError):
        return "held by another program, which does not answer HTTP /health like Facecast", False
    if not isinstance(body, dict):
        return f"held by another HTTP server (HTTP {response.status_code})", False
    if response.status_code == 200 and "version" in body and "services" in body:
        uptime = float(body.get("uptime_s", 0.0))
        return f"a Facecast {body['version']} is already serving here (up {uptime:.0f} s)", True
    if body.get("code") == "unauthorized":
        return "a Facecast server with another access token is already serving here", True
    return f"held by another HTTP server (HTTP {response.status_code})", False


# -- Live Link --------------------------------------------------------------------------------------------


def _livelink(settings: Settings) -> Iterator[Check]:
    from .engine.livelink import LiveLinkTarget, parse_targets

    specs = list(settings.livelink)
    specs += [url.partition("://")[2] for url in settings.outputs if url.lower().startswith("livelink://")]
    try:
        targets: tuple[LiveLinkTarget, ...] = parse_targets(specs)
    except ValueError as exc:
        yield Check("livelink", "FAIL", f"{exc}; fix --livelink (HOST:PORT, or off)")
        return
    if not targets:
        yield Check("livelink", "OK", "off")
        return
    for target in targets:
        yield _livelink_target(target.host, target.port)


def _livelink_target(host: str, port: int) -> Check:
    name = f"livelink {host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        return Check(name, "FAIL", f"cannot resolve {host!r} ({exc.strerror}); fix --livelink")
    family, kind, proto, _, address = infos[0]
    try:
        with socket.socket(family, kind, proto) as sock:
            sock.connect(address)  # a UDP connect sends nothing: it only finds the route
    except OSError as exc:
        return Check(name, "FAIL", f"cannot send to {address[0]} ({exc.strerror}); check the network or --livelink")
    note = "" if address[0] == host else f" ({address[0]})"
    return Check(
        name,
        "OK",
        f"sendable{note}; nothing was sent: Unreal's Live Link panel shows the subject once frames arrive",
    )


# -- providers --------------------------------------------------------------------------------------------


async def _provider(role: Role, settings: Settings, warm: bool, timeout: float) -> Check:
    from .llm import DEFAULT_PERSONA
    from .llm.probe import llm_urls, probe_llm
    from .services import make_role

    spec: str = getattr(settings, role)
    name = redact_url(f"{role} {spec}")
    members = [part.strip() for part in spec.split(",") if part.strip()]
    for url in llm_urls(members) if role == "llm" else []:
        reason = await probe_llm(url, timeout)
        if reason is not None:
            fix = "start that server, or fix --llm"
            return Check(name, "FAIL", redact_url(f"the language model at {url} does not answer ({reason}); {fix}"))
    for url in (m for m in members if m.lower().startswith(("ws://", "wss://"))):
        reason = await _tcp_reason(url, timeout)
        if reason is not None:
            fix = f"start it ('facecast serve {role}') or fix --{role}"
            return Check(name, "FAIL", redact_url(f"the service {url} does not answer ({reason}); {fix}"))
    started = time.monotonic()
    try:
        impl = make_role(role, spec, settings)
    except FacecastError as exc:
        return Check(name, "FAIL", str(exc))
    built = time.monotonic() - started
    try:
        warm_up = getattr(impl, "warm_up", None)
        if not warm or warm_up is None:
            what = "built" if warm_up is None else "built (its model not loaded: --no-warm)"
            return Check(name, "OK", f"{what} in {built:.2f} s")
        try:
            if role == "llm" and "persona" in inspect.signature(warm_up).parameters:
                await warm_up(settings.persona or DEFAULT_PERSONA)
            else:
                await warm_up()
        except (FacecastError, OSError, RuntimeError, ValueError) as exc:
            return Check(name, "FAIL", f"built, but loading its model failed: {exc}")
        return Check(name, "OK", f"ready in {time.monotonic() - started:.1f} s (built {built:.2f} s, then warmed)")
    finally:
        await _close(impl)


async def _tcp_reason(url: str, timeout: float) -> str | None:
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme.lower() == "wss" else 80)
    except ValueError as exc:
        return str(exc)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, port), timeout)
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as exc:
        return os.strerror(exc.errno).lower() if exc.errno else str(exc)
    writer.close()
    await writer.wait_closed()
    return None


async def _close(impl: Any) -> None:
    for method_name in ("aclose", "close"):
        method = getattr(impl, method_name, None)
        if method is not None:
            result = method()
            if inspect.isawaitable(result):
                await result
            return


def _combination(settings: Settings) -> Check:
    from .services import _check_combination  # the same rule build_services applies at start-up

    try:
        _check_combination(settings)
    except FacecastError as exc:
        return Check("phoneme timing", "FAIL", str(exc))
    return Check("phoneme timing", "OK", "the face gets the timing it animates from")


# -- model cache ------------------------------------------------------------------------------------------


def _models_in_use(settings: Settings) -> list[Any]:
    """The embedded :class:`~facecast.modelcache.ModelSpec` of the configured local Whisper and local LLM."""
    from . import registry
    from .services import resolve

    specs: list[Any] = []
    pairs: tuple[tuple[Role, str], ...] = (("stt", settings.stt), ("llm", settings.llm))
    for role, spec in pairs:
        for part in (p.strip() for p in spec.split(",") if p.strip()):
            if "://" in part:
                continue
            try:
                provider, _ = resolve(role, part)
                options = registry.make_options(provider, settings.providers.get(f"{role}.{provider.name}", {}))
            except FacecastError:
                continue  # the provider check says why
            if provider.name == "whisper" and not getattr(options, "model", ""):
                from .stt.whisper import WHISPER_BASE

                specs.append(WHISPER_BASE)
            elif provider.name == "local":
                from .llm.local import DEFAULT_MODEL, EMBEDDED_MODELS

                model = (getattr(options, "model", "") or DEFAULT_MODEL).lower()
                if model in EMBEDDED_MODELS:
                    specs.append(EMBEDDED_MODELS[model])
    return specs


def _model_cache(settings: Settings) -> Check:
    from .modelcache import cache_root, is_assembled, package_file

    root = cache_root()
    existing = next((p for p in (root, *root.parents) if p.exists()), Path("/"))
    free_mb = shutil.disk_usage(existing).free / 2**20
    waiting: list[str] = []
    needed_mb = 0.0
    ready = []
    for spec in _models_in_use(settings):
        if is_assembled(spec, root):
            ready.append(spec.name)
            continue
        try:
            size = sum(package_file(p, spec.install).stat().st_size for parts in spec.files.values() for p in parts)
        except ConfigError as exc:
            return Check("model cache", "FAIL", str(exc))
        needed_mb += size / 2**20
        waiting.append(f"{spec.name} ({size / 2**20:.0f} MB)")
    where = f"{root}, {free_mb:,.0f} MB free"
    if waiting and needed_mb > free_mb:
        return Check(
            "model cache",
            "FAIL",
            f"{where}; assembling {', '.join(waiting)} needs {needed_mb:,.0f} MB: free some space or set "
            "FACECAST_CACHE to a larger disk",
        )
    found = [f"assembled: {', '.join(ready)}"] if ready else []
    found += [f"assembled at the first start: {', '.join(waiting)}"] if waiting else []
    summary = "; ".join(found) or "no embedded model in use"
    if free_mb < LOW_DISK_MB:
        return Check("model cache", "WARN", f"{where} (low: free some space); {summary}")
    return Check("model cache", "OK", f"{where}; {summary}")


# -- extras -----------------------------------------------------------------------------------------------


def _extras() -> Check:
    try:
        dist = metadata.distribution("facecast")
    except metadata.PackageNotFoundError:
        return Check("extras", "WARN", "facecast is not installed as a package: pip install -e .")
    requirements: dict[str, list[str]] = {extra: [] for extra in dist.metadata.get_all("Provides-Extra") or []}
    for line in dist.requires or []:  # "torch==2.13.0; extra == 'neurosync'"
        extra = _EXTRA.search(line)
        name = _NAME.match(line)
        if extra is not None and name is not None and extra.group(1) in requirements:
            requirements[extra.group(1)].append(name.group(0))
    installed = [extra for extra, names in requirements.items() if all(_has(n) for n in names)]
    missing = [extra for extra in requirements if extra not in installed]
    detail = f"installed: {', '.join(installed) or 'none'}"
    if missing:
        detail += f"; not installed: {', '.join(missing)} (pip install 'facecast[NAME]' when one is needed)"
    return Check("extras", "OK", detail)


def _has(distribution: str) -> bool:
    try:
        metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True
