"""The word error rate scorer of ``facecast bench`` (:mod:`facecast.bench.stt_bench`): both sides normalised
alike, in the spirit of Whisper's English normaliser."""

from __future__ import annotations

import pytest

from facecast.bench.stt_bench import normalise, rescore, wer


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("We're here, uh, at 3 o'clock.", "we are here at three oclock"),
        ("Mr. Smith can't come in 2020", "mister smith can not come in twenty twenty"),
        ("M F A is like this", "mfa is like this"),
        ("the MFA is like this", "the mfa is like this"),
        ("U S A", "usa"),
        # "I" after spelled letters is the pronoun, not part of them (multilingual_ipa_us_4's reference)
        ("in n a i think this is uh", "in na i think this is"),
        ("in NA. I think this is", "in na i think this is"),
        ("a cat and i", "a cat and i"),
        ("[laughter] okay <cutoff-x> gonna", "okay going to"),
    ],
)
def test_normalise(text: str, words: str) -> None:
    assert normalise(text) == words.split()


def test_wer_counts_substitutions_insertions_and_deletions() -> None:
    assert wer("the red one", "the red one") == 0.0
    assert wer("the red one", "the bed one") == pytest.approx(1 / 3)
    assert wer("the red one", "the red one please") == pytest.approx(1 / 3)
    assert wer("the red one", "red one") == pytest.approx(1 / 3)
    assert wer("in n a i think", "in NA I think") == 0.0


def test_a_source_transcript_with_words_the_audio_lacks_gets_a_row_of_its_own() -> None:
    def row(clip: str, reference: str, hypothesis: str, **more: str) -> dict[str, object]:
        return {"clip": clip, "category": "conversational", "audio_s": 2.0, "decode_s": 0.1,
                "reference": reference, "hypothesis": hypothesis, **more}  # fmt: skip

    raw = {
        "engine": [
            row(
                "a",
                "finished it he just left",
                "finish it he just left",
                source_reference="hey josh finished it he just left",
            ),
            row("b", "very good team", "very good team"),
        ]
    }
    rows = {r[1]: r for r in rescore(raw).rows}
    assert rows["conversational"][2:5] == ["2", "8", "12.5"]  # 1 error in 8 words
    assert rows["conversational, the source's transcripts"][2:5] == ["2", "10", "30.0"]  # + "hey josh" missed
    assert "read, the source's transcripts" not in rows
    assert rows["read + conversational"][3] == "8"
