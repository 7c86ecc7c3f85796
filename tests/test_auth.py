"""The access rules (facecast.auth): Host, Origin, token, redaction, token strength. Pure functions."""

from __future__ import annotations

import pytest

from facecast.auth import (
    MIN_TOKEN_LENGTH,
    AccessPolicy,
    check_token_rule,
    check_token_strength,
    offered_tokens,
    redact_query,
    redact_url,
)
from facecast.errors import ConfigError


@pytest.mark.parametrize(
    "host",
    [
        None,
        "127.0.0.1:8765",
        "localhost:8765",
        "LOCALHOST",
        "[::1]:8765",
        "localhost.",
        "10.0.0.12:8765",
        "[fe80::1]",
        "game.lan:8765",
    ],
)
def test_accepted_hosts(host: str | None) -> None:
    assert AccessPolicy(bound_host="127.0.0.1", allowed_hosts=("Game.LAN",)).host_ok(host)


@pytest.mark.parametrize(
    "host",
    [
        "attacker.example",
        "attacker.example:8765",
        "127.0.0.1.attacker.example",
        "localhost.attacker.example:8765",
        "",
        "[::1",
        "a:b:c",
        "x:99999",
        "a@b",
        "evil/127.0.0.1",
    ],
)
def test_refused_hosts(host: str) -> None:
    assert not AccessPolicy(bound_host="127.0.0.1").host_ok(host)


def test_bound_host_and_wildcard() -> None:
    assert AccessPolicy(bound_host="facecast.lan").host_ok("facecast.lan:8765")
    assert not AccessPolicy(bound_host="0.0.0.0").host_ok("facecast.lan:8765")
    assert AccessPolicy(allowed_hosts=("*",)).host_ok("anything.example")


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://127.0.0.1:8765", "127.0.0.1:8765"),
        ("http://localhost:8765", "127.0.0.1:8765"),
        ("http://[::1]:8765", "localhost:8765"),
        ("https://facecast.lan", "facecast.lan"),
        ("http://10.0.0.12:8765", "10.0.0.12:8765"),
        ("https://game.example.com", "127.0.0.1:8765"),  # listed in allowed_origins
        (None, "127.0.0.1:8765"),  # not a browser
    ],
)
def test_trusted_origins(origin: str | None, host: str) -> None:
    policy = AccessPolicy(bound_host="facecast.lan", allowed_origins=("https://Game.example.com/",))
    assert policy.origin_ok(origin, host)


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://127.0.0.1:9999", "127.0.0.1:8765"),  # another local page on another port
        ("http://localhost", "localhost:8765"),
        ("http://attacker.example:8765", "127.0.0.1:8765"),
        ("http://attacker.example:8765", "attacker.example:8765"),  # rebinding: same-origin but a foreign name
        ("null", "127.0.0.1:8765"),
        ("file://", "127.0.0.1:8765"),
        ("http://127.0.0.1:8765/path", "127.0.0.1:8765"),
        ("http://127.0.0.1:x", "127.0.0.1:8765"),
        ("https://game.example.com:8443", "127.0.0.1:8765"),
    ],
)
def test_untrusted_origins(origin: str, host: str) -> None:
    policy = AccessPolicy(allowed_origins=("https://game.example.com",))
    assert not policy.origin_ok(origin, host)


def test_any_origin_when_listed_as_star() -> None:
    assert AccessPolicy(allowed_origins=("*",)).origin_ok("https://anything.example", "127.0.0.1:8765")


def test_token_is_taken_from_every_documented_place() -> None:
    policy = AccessPolicy(token="0123456789abcdef")
    good = "0123456789abcdef"
    assert policy.token_ok({"authorization": f"Bearer {good}"}, b"")
    assert policy.token_ok({"authorization": f"bearer  {good} "}, b"")
    assert policy.token_ok({"api-key": good}, b"")
    assert policy.token_ok({"x-api-key": good}, b"")
    assert policy.token_ok({}, f"a=1&token={good}".encode())
    assert policy.token_ok({"authorization": "Basic dXNlcjpwdw=="}, f"token={good}")  # a proxy's Basic auth
    assert not policy.token_ok({}, b"")
    assert not policy.token_ok({"authorization": "Bearer nope"}, b"token=nope")
    assert not policy.token_ok({"authorization": good}, b"")  # no scheme
    assert AccessPolicy().token_ok({}, b"")
    assert offered_tokens({"api-key": "a", "authorization": "Bearer b"}, b"token=c&token=d") == ["b", "a", "c", "d"]


def test_redact_query() -> None:
    assert redact_query(b"token=s3cret&x=1") == b"token=REDACTED&x=1"
    assert redact_query(b"x=1&TOKEN=a&api_key=b&%74oken=c") == b"x=1&TOKEN=REDACTED&api_key=REDACTED&%74oken=REDACTED"
    query = b"x=1&tokenizer=2"
    assert redact_query(query) is query
    assert redact_query(b"") == b""


@pytest.mark.parametrize(
    ("spec", "shown"),
    [
        ("ws://user:pa55@10.0.0.1:8766,ws://10.0.0.2:8766", "ws://***@10.0.0.1:8766,ws://10.0.0.2:8766"),
        ("http://localhost:11434/v1?api_key=sk-123&model=x", "http://localhost:11434/v1?api_key=***&model=x"),
        ("openai:https://api.example/v1?token=abc", "openai:https://api.example/v1?token=***"),
        ("ws://h:1/?access_token=t#f", "ws://h:1/?access_token=***#f"),
        ("pocketsphinx", "pocketsphinx"),
        ("neurosync:/models/model.pth", "neurosync:/models/model.pth"),
    ],
)
def test_redact_url(spec: str, shown: str) -> None:
    assert redact_url(spec) == shown


def test_token_rules() -> None:
    check_token_rule("127.0.0.1", "")
    check_token_strength("127.0.0.1", "short")  # any token on loopback
    check_token_rule("0.0.0.0", "x" * MIN_TOKEN_LENGTH)
    with pytest.raises(ConfigError, match="access token"):
        check_token_rule("0.0.0.0", "")
    with pytest.raises(ConfigError, match=f"at least {MIN_TOKEN_LENGTH} characters"):
        check_token_strength("10.0.0.12", "s3cret")
    with pytest.raises(ConfigError, match="whitespace"):
        check_token_strength("10.0.0.12", " " + "x" * 20)


async def test_service_server_applies_the_same_rules() -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    from facecast.llm.echo import EchoLLM
    from facecast.protocol import service as sp
    from facecast.remote.server import start_server

    token = "0123456789abcdef-svc"
    async with await start_server("llm", EchoLLM(), token=token, allowed_origins=("https://tools.example",)) as srv:
        url = f"ws://127.0.0.1:{srv.port}/"
        auth = {"Authorization": f"Bearer {token}"}
        refusals = [
            (url, {}, None, 401),
            (url, auth, "http://attacker.example", 403),
            (url, auth, f"http://127.0.0.1:{srv.port + 1}", 403),
            (f"ws://attacker.example:{srv.port}/", auth, None, 421),
        ]
        for target, headers, origin, status in refusals:
            with pytest.raises(InvalidStatus) as refused:
                async with connect(
                    target,
                    additional_headers=headers,
                    origin=origin,  # type: ignore[arg-type]
                    host="127.0.0.1",
                    port=srv.port,
                ):
                    pass
            assert refused.value.response.status_code == status, (target, origin)
        for headers, origin in ((auth, None), (auth, "https://tools.example"), ({"API-Key": token}, None)):
            async with connect(url, additional_headers=headers, origin=origin) as ws:  # type: ignore[arg-type]
                await ws.send(sp.encode(sp.Hello("llm")))
                assert isinstance(sp.decode_server(await ws.recv()), sp.Welcome)
