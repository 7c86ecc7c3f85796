"""``facecast doctor``: OK on the light providers; FAIL, saying what to fix, for a busy port, a language model
that does not answer, a weak token off loopback, a Live Link host that does not resolve; WARN for a port
held by a running Facecast (found by its ``/health``)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace

import pytest

from facecast.cli import main
from facecast.config import Settings
from facecast.doctor import Check, run_checks
from facecast.face.phonetic import PhoneticAnimator
from facecast.llm import EchoLLM
from facecast.server import BackgroundServer
from facecast.services import Services, make_stt
from facecast.tts.espeak import EspeakTTS

LIGHT_FLAGS = ["--stt", "pocketsphinx", "--tts", "espeak", "--llm", "echo", "--face", "phonetic"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def listening() -> Iterator[int]:
    """A port held by a program that is not Facecast (it accepts connections and never answers)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _light(**changes: object) -> Settings:
    base = Settings(stt="pocketsphinx", llm="echo", tts="espeak", face="phonetic", livelink=("off",))
    changes.setdefault("port", _free_port())
    return replace(base, **changes)  # type: ignore[arg-type]


def _by_name(checks: list[Check], prefix: str) -> Check:
    [check] = [c for c in checks if c.name.startswith(prefix)]
    return check


def test_light_providers_pass(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["doctor", *LIGHT_FLAGS, "--port", str(_free_port()), "--livelink", "127.0.0.1:11111"])
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert code == 0, out
    for start in (
        "OK    token",
        "OK    port 127.0.0.1:",
        "OK    livelink 127.0.0.1:11111",
        "OK    stt pocketsphinx: ready",
    ):
        assert any(line.startswith(start) for line in lines), (start, out)
    for role in ("llm echo", "tts espeak", "face phonetic"):
        assert any(line.startswith(f"OK    {role}: built in") for line in lines), (role, out)
    assert any(line.startswith("OK    model cache: ") for line in lines)
    assert any(line.startswith("OK    extras: installed: ") for line in lines)
    assert lines[-1].endswith(" OK, 0 WARN, 0 FAIL")


def test_a_busy_port_fails(listening: int, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["doctor", *LIGHT_FLAGS, "--no-warm", "--livelink", "off", "--port", str(listening), "--timeout", "1"])
    out = capsys.readouterr().out
    assert code == 1
    [line] = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert f"port 127.0.0.1:{listening}: port {listening} is in use" in line and "--port" in line
    assert "another program" in line


async def test_a_running_facecast_is_recognised_by_its_health() -> None:
    services = Services(make_stt("pocketsphinx"), EchoLLM(), EspeakTTS(), PhoneticAnimator())
    async with BackgroundServer(_light(), services) as server:
        checks = await run_checks(_light(port=server.port), warm=False)
        tokened = await run_checks(_light(port=server.port, token="x" * 20), warm=False)
    port = _by_name(checks, "port ")
    assert port.status == "WARN" and "a Facecast" in port.detail and "already serving" in port.detail
    assert "another --port" in port.detail
    assert _by_name(tokened, "port ").status == "WARN"  # a token it does not accept: still Facecast


async def test_an_llm_url_that_does_not_answer_fails() -> None:
    url = f"http://127.0.0.1:{_free_port()}/v1"
    checks = await run_checks(_light(llm=url), warm=False, timeout=1.0)
    llm = _by_name(checks, "llm ")
    assert llm.status == "FAIL"
    assert f"the language model at {url} does not answer" in llm.detail and "fix --llm" in llm.detail


async def test_a_remote_service_that_does_not_answer_fails() -> None:
    url = f"ws://127.0.0.1:{_free_port()}"
    checks = await run_checks(_light(tts=url), warm=False, timeout=1.0)
    tts = _by_name(checks, "tts ")
    assert tts.status == "FAIL" and "does not answer" in tts.detail and "facecast serve tts" in tts.detail


@pytest.mark.parametrize(
    ("token", "expected"),
    [("", "set an access token"), ("short", "at least 16 characters"), ("aaaaaaaaaaaaaaaaaaaa", "")],
)
async def test_a_token_off_loopback(token: str, expected: str) -> None:
    checks = await run_checks(_light(host="0.0.0.0", token=token), warm=False)
    check = _by_name(checks, "token")
    if expected:
        assert check.status == "FAIL" and expected in check.detail
    else:  # long enough, but one letter repeated
        assert check.status == "WARN" and "openssl rand" in check.detail


def test_the_command_reports_a_weak_token_with_the_other_checks(capsys: pytest.CaptureFixture[str]) -> None:
    """Loading the settings does not stop at the token rule (as 'run' does): it is one check among the rest."""
    flags = [*LIGHT_FLAGS, "--no-warm", "--livelink", "off", "--host", "0.0.0.0", "--port", str(_free_port())]
    code = main(["doctor", *flags, "--token", "short"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL  token: binding to 0.0.0.0 needs an access token of at least 16 characters" in out
    assert "OK    stt pocketsphinx: built (its model not loaded: --no-warm)" in out


async def test_a_strong_token_off_loopback_passes() -> None:
    checks = await run_checks(_light(host="0.0.0.0", token="3f9c2a7e1b6d4058c9e2"), warm=False)
    assert _by_name(checks, "token").status == "OK"


async def test_a_live_link_host_that_does_not_resolve_fails() -> None:
    checks = await run_checks(_light(livelink=("no-such-host.invalid:11111", "127.0.0.1:11112")), warm=False)
    bad = _by_name(checks, "livelink no-such-host")
    assert bad.status == "FAIL" and "cannot resolve" in bad.detail and "--livelink" in bad.detail
    assert _by_name(checks, "livelink 127.0.0.1:11112").status == "OK"
