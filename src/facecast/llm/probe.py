"""Is the configured language-model server there? A start-up check that warns and never stops the server.

An OpenAI-compatible server given as ``--llm http(s)://...`` (or a character's ``llm``) is contacted only at
the first turn; one that is not running would otherwise show up as a failed reply minutes later. At start-up
:func:`warn_unreachable_llms` asks each such URL once for its model list: any HTTP answer (even 401 or 404)
means the server is there; no answer is logged as one warning naming the URL without its credentials.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from ..auth import redact_url

__all__ = ["llm_urls", "probe_llm", "warn_unreachable_llms"]

log = logging.getLogger(__name__)


def llm_urls(specs: Iterable[str]) -> list[str]:
    """The distinct ``http://`` / ``https://`` language-model specs among ``specs`` (others are not servers)."""
    found = [spec.strip() for spec in specs if spec.strip().lower().startswith(("http://", "https://"))]
    return list(dict.fromkeys(found))


async def probe_llm(url: str, timeout: float = 3.0) -> str | None:
    """Why the OpenAI-compatible server at ``url`` (its API root) does not answer (``connection refused``,
    ``no answer within 3 s``...), or None when it answers anything. Sends no credentials but those written in
    ``url``; never raises for a network problem."""
    import httpx

    from .openai_compat import connection_reason

    try:
        root = httpx.URL(url)
        target = root.copy_with(path=root.path.rstrip("/") + "/models")
        async with httpx.AsyncClient(timeout=timeout) as client:
            await client.get(target)
    except httpx.TimeoutException:
        return f"no answer within {timeout:g} s"
    except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
        return connection_reason(exc)
    return None


async def warn_unreachable_llms(specs: Iterable[str], timeout: float = 3.0) -> list[str]:
    """Probe every language-model URL of ``specs`` at once and log one warning for each that does not answer
    (its URL without credentials). Returns those warnings; the server goes on either way."""
    urls = llm_urls(specs)
    reasons = await asyncio.gather(*(probe_llm(url, timeout) for url in urls))
    warnings = [
        redact_url(
            f"the language model at {url} does not answer ({reason}); Facecast starts anyway, and replies "
            "fail until that server runs (start it, or fix --llm / the character's llm)"
        )
        for url, reason in zip(urls, reasons, strict=True)
        if reason is not None
    ]
    for warning in warnings:
        log.warning("%s", warning)
    return warnings
