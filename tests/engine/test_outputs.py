"""The server's outputs from the settings (``livelink``, ``record`` and ``outputs`` URLs), in one place."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from facecast.config import Settings, load_settings
from facecast.engine.livelink import LiveLinkTarget
from facecast.engine.outputs import LiveLinkOutput, RecorderOutput, outputs_from_settings, run_outputs
from facecast.errors import ConfigError


def _kinds(settings: Settings) -> list[dict[str, object]]:
    return [output.describe() for output in outputs_from_settings(settings)]


def test_the_default_is_live_link_to_localhost_and_no_recorder() -> None:
    assert _kinds(Settings()) == [{"output": "livelink", "targets": ["127.0.0.1:11111"], "subjects": []}]
    assert _kinds(replace(Settings(), livelink=("off",))) == []


def test_output_urls_join_the_older_settings_in_one_pacer(tmp_path: Path) -> None:
    settings = replace(
        Settings(),
        livelink=("127.0.0.1:11111",),
        record=str(tmp_path / "a"),
        outputs=(
            "livelink://10.0.0.2:11112",
            "LIVELINK://[::1]:9000",
            "livelink://127.0.0.1:11111",
            f"record://{tmp_path}/b",
            f"record://{tmp_path}/a",
        ),
    )
    outputs = outputs_from_settings(settings)
    [livelink, *recorders] = outputs
    assert isinstance(livelink, LiveLinkOutput)
    assert livelink.pacer.subjects == ()
    assert livelink.describe()["targets"] == ["127.0.0.1:11111", "10.0.0.2:11112", "[::1]:9000"]
    assert all(isinstance(r, RecorderOutput) for r in recorders)
    assert [r.describe()["folder"] for r in recorders] == [str(tmp_path / "a"), str(tmp_path / "b")]


def test_the_subject_linger_comes_from_the_settings(tmp_path: Path) -> None:
    [livelink] = outputs_from_settings(Settings())
    assert isinstance(livelink, LiveLinkOutput) and livelink.linger == 30.0
    config = tmp_path / "facecast.toml"
    config.write_text("subject_linger_s = 5\n")
    settings = load_settings(config, environ={})
    assert settings.subject_linger_s == 5.0
    assert load_settings(None, environ={"FACECAST_SUBJECT_LINGER_S": "0"}).subject_linger_s == 0.0
    [livelink] = outputs_from_settings(settings)
    assert isinstance(livelink, LiveLinkOutput) and livelink.linger == 5.0


def test_record_url_with_three_slashes_is_an_absolute_folder() -> None:
    [recorder] = outputs_from_settings(replace(Settings(), livelink=("off",), outputs=("record:///srv/takes",)))
    assert recorder.describe() == {"output": "recorder", "folder": "/srv/takes"}


def test_live_link_off_keeps_the_output_urls() -> None:
    [livelink] = outputs_from_settings(replace(Settings(), livelink=("off",), outputs=("livelink://h:1",)))
    assert isinstance(livelink, LiveLinkOutput) and livelink.describe()["targets"] == [str(LiveLinkTarget("h", 1))]


@pytest.mark.parametrize(
    "url",
    [
        "vmc://127.0.0.1:39539",
        "127.0.0.1:11111",
        "record:",
        "record://",
        "livelink://host:notaport",
        "livelink://:11111",
    ],
)
def test_unknown_schemes_and_malformed_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError, match="output"):
        outputs_from_settings(replace(Settings(), outputs=(url,)))


def test_outputs_setting_from_toml_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "facecast.toml"
    config.write_text('outputs = ["livelink://127.0.0.1:11111", "record:///takes"]\n')
    assert load_settings(config, environ={}).outputs == ("livelink://127.0.0.1:11111", "record:///takes")
    env = {"FACECAST_OUTPUTS": "record:///a, livelink://h:2"}
    assert load_settings(None, environ=env).outputs == ("record:///a", "livelink://h:2")


async def test_run_outputs_runs_each_output_and_stops_it(tmp_path: Path) -> None:
    class Counting(RecorderOutput):
        started = stopped = 0

        async def run(self) -> None:
            Counting.started += 1
            try:
                await super().run()
            finally:
                Counting.stopped += 1

    async with run_outputs([Counting(tmp_path), Counting(tmp_path)]):
        await asyncio.sleep(0)
        assert Counting.started == 2 and Counting.stopped == 0
    assert Counting.stopped == 2


async def test_a_live_link_target_that_does_not_resolve_stops_the_start() -> None:
    settings = replace(Settings(), livelink=("no-such-host.invalid:11111",))
    with pytest.raises(ConfigError, match="does not resolve"):
        async with run_outputs(outputs_from_settings(settings)):
            pass
