"""The browser-page sync benchmark (WebSocket beside WebRTC): real Chromium against the real server."""

from __future__ import annotations

from pathlib import Path

import pytest

from facecast.bench import page_sync_bench
from facecast.bench.page_sync_bench import page_sync


async def test_page_sync_measures_both_transports_in_the_page() -> None:
    missing = page_sync_bench._missing()
    if missing is not None:
        pytest.skip(f"needs Chromium, playwright and aiortc: {missing}")
    table, raw = await page_sync(1)
    assert [row[0] for row in table.rows] == ["websocket", "webrtc"]
    for transport in ("websocket", "webrtc"):
        data = raw[transport]
        [utterance] = data["utterances"]
        assert utterance["started"] and not utterance["interrupted"]
        assert len(data["sync"]) > 0  # one measurement per face packet, taken by the page itself
    assert raw["webrtc"]["playout_delay_ms"] and all(d > 0 for d in raw["webrtc"]["playout_delay_ms"])
    assert not raw["websocket"]["playout_delay_ms"]


async def test_page_sync_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(page_sync_bench, "CHROMIUM", Path("/nonexistent/chromium"))
    table, raw = await page_sync(1)
    assert not table.rows and "chromium is missing" in table.note and raw == {"skipped": table.note[9:]}
