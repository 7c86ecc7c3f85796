"""The live paused-player benchmark (``facecast.bench.turns_bench.paused_players``): a real recording with a pause
inside its sentence, through the real server and engine-sim, with and without ``wait_for_player``."""

from __future__ import annotations

from dataclasses import replace

from tests.conftest import LIGHT
from tests.engine.test_turns_live import HANGING, Thinking

from facecast.bench.turns_bench import paused_players
from facecast.bench.turnset import paused_recording
from facecast.config import Settings
from facecast.face.phonetic import PhoneticAnimator
from facecast.services import Services
from facecast.stt.pocketsphinx import PocketSphinxConfig, PocketSphinxSTT
from facecast.tts.espeak import EspeakTTS


async def test_the_floor_keeps_a_slow_reply_from_talking_over_a_player_who_went_on() -> None:
    """The silence endpoint cuts the turn 300 ms into an 800 ms pause; the reply takes 1.2 s to think, and the
    player speaks on for 2 s: with the floor it waits for the player and is never heard over them, without it
    engine-sim plays it before the player finished (barge-in kept out: ``barge_in_ms`` is longer than the second
    half)."""
    item = paused_recording("mfa_reallylong", 4, 800)  # "m f a is" ... "like this is so many words right here"

    def services() -> Services:
        stt = PocketSphinxSTT(PocketSphinxConfig(grammar=HANGING))
        return Services(stt, Thinking(1.2), EspeakTTS(), PhoneticAnimator())

    settings = replace(Settings(**LIGHT), turn_detector="silence", barge_in_ms=5000)  # type: ignore[arg-type]
    recordings = [("mfa", item.audio, item.speech_end)]
    table, raw = await paused_players(services, recordings, settings, label="light, slow LLM")
    [on], [off] = raw["wait_for_player_on"], raw["wait_for_player_off"]  # type: ignore[misc]
    assert len(on["finals"]) == 2 and len(off["finals"]) == 2  # cut at the pause both times
    assert not on["talked_over"] and on["replies_played"] == 1 and on["answer_ms"] > 0
    assert off["talked_over"], off
    assert [row[:5] for row in table.rows] == [
        ["on", "1", "1 of 1", "0 of 1", "0 of 1"],
        ["off", "1", "1 of 1", "1 of 1", "0 of 1"],
    ]
