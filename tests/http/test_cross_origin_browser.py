"""A real web page from another origin (a plain http.server on another port) cannot drive the character: in
real headless Chromium its WebSocket to ``/ws/engine`` never opens and its blind POST of audio is not
processed, while the server's own page opens the same socket. Skipped without Chromium and Playwright
(``FACECAST_REQUIRE_BROWSER=1`` makes that a failure, as in tests/web)."""

from __future__ import annotations

import base64
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.web.conftest import require_browser

from .test_neurosync_api import LoudnessFace, make_backends, start, wav_file

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.timeout(120)


ATTACK = """<!doctype html><title>not facecast</title><script>
const target = "127.0.0.1:%(port)d";
window.socket = new Promise((resolve) => {
  const ws = new WebSocket(`ws://${target}/ws/engine`);
  ws.onopen = () => { ws.send(JSON.stringify({type: "hello"})); ws.onmessage = (e) => resolve({opened: true}); };
  ws.onclose = (e) => resolve({opened: false, code: e.code});
});
const wav = Uint8Array.from(atob("%(wav)s"), (c) => c.charCodeAt(0));
window.posts = Promise.all([
  fetch(`http://${target}/audio_to_blendshapes`, {method: "POST", mode: "no-cors", body: wav}),
  fetch(`http://${target}/audio_to_blendshapes`, {method: "POST", mode: "no-cors", body: wav,
                                                 headers: {"Content-Type": "text/plain"}}),
  fetch(`http://${target}/audio_to_blendshapes`, {method: "POST", body: wav,
                                                 headers: {"Content-Type": "application/octet-stream"}}),
].map((p) => p.then((r) => "answered " + r.type, (e) => "failed"))).then((all) => all);
</script>"""


@pytest.fixture
def foreign_site(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    try:
        yield tmp_path, int(site.server_address[1])
    finally:
        site.shutdown()
        site.server_close()


async def test_a_page_from_another_origin_cannot_drive_the_character(foreign_site: tuple[Path, int]) -> None:
    require_browser()
    from playwright.async_api import async_playwright

    face = LoudnessFace()
    server = await start(backends=make_backends(audio_face=face))
    folder, site_port = foreign_site
    wav = base64.b64encode(wav_file(0.3 * np.sin(np.arange(16000) / 5).astype(np.float32), 16000)).decode()
    (folder / "attack.html").write_text(ATTACK % {"port": server.port, "wav": wav})
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            try:
                page = await browser.new_page()
                await page.goto(f"http://127.0.0.1:{site_port}/attack.html")
                socket: dict[str, Any] = await page.evaluate("window.socket")
                posts: list[str] = await page.evaluate("window.posts")
                own = await browser.new_page()
                await own.goto(f"http://127.0.0.1:{server.port}/")
                welcome = await own.evaluate("""() => new Promise((resolve) => {
                  const ws = new WebSocket(`ws://${location.host}/ws/engine`);
                  ws.onopen = () => ws.send(JSON.stringify({type: "hello"}));
                  ws.onmessage = (e) => { resolve(JSON.parse(e.data).type); ws.close(); };
                  ws.onclose = (e) => resolve("closed " + e.code);
                })""")
            finally:
                await browser.close()
    finally:
        await server.__aexit__(None, None, None)
    assert socket == {"opened": False, "code": 1006}  # refused during the handshake
    assert posts[2] == "failed"  # a CORS request: its preflight is refused
    assert face.samples == 0  # no blind (no-cors) upload was animated
    assert welcome == "welcome"  # the server's own page still works
