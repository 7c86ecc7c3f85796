"""``facecast serve``'s command line with and without ``--ray`` (no cluster needed: these stop before one)."""

from __future__ import annotations

import pytest

from facecast.cli import build_parser, main


def test_serve_role_still_parses_and_ray_flags_parse() -> None:
    args = build_parser().parse_args(["serve", "tts", "--port", "0"])
    assert args.role == "tts" and not args.ray
    args = build_parser().parse_args(
        ["serve", "--ray", "--roles", "stt,tts", "--http-port", "8100"]
        + ["--min-replicas", "2", "--pool", "tts.num_gpus=1"]
    )
    assert args.ray and args.role is None and args.roles == "stt,tts" and args.http_port == 8100
    assert args.min_replicas == 2 and args.pool == ["tts.num_gpus=1"]


def test_serve_without_a_role_or_ray_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve"]) == 2
    assert "name a role" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--roles", "stt,video"], "--roles"),
        (["--roles", "tts", "--pool", "tts.replicas=2"], "unknown pool option"),
        (["--roles", "tts", "--pool", "stt.num_gpus=1"], "not one of the deployed roles"),
        (["--roles", "tts", "--min-replicas", "3", "--max-replicas", "2"], "below min_replicas"),
        (["--roles", "tts", "--http-host", "0.0.0.0"], "token"),
    ],
)
def test_bad_ray_options_are_refused_before_any_cluster(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FACECAST_TOKEN", raising=False)
    # an address nothing listens on: every case must fail on its own error before connecting
    assert main(["serve", "--ray", "--ray-address", "127.0.0.1:9", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("facecast serve: error:") and message in err
