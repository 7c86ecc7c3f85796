from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from hypothesis import given
from hypothesis import strategies as st

from facecast.text import SentenceSplitter, SplitterConfig, split_sentences


def split_all(text: str, step: int = 1, config: SplitterConfig | None = None) -> list[str]:
    splitter = SentenceSplitter(config or SplitterConfig(first_clause_words=0))
    out: list[str] = []
    for i in range(0, len(text), step):
        out += splitter.push(text[i : i + step])
    return out + splitter.flush()


def test_plain_sentences() -> None:
    assert split_all("Hello there. How are you? I am fine!") == ["Hello there.", "How are you?", "I am fine!"]


def test_sentence_is_released_as_soon_as_next_char_shows_it_ended() -> None:
    splitter = SentenceSplitter(SplitterConfig(first_clause_words=0))
    assert splitter.push("It is done.") == []  # could still be a decimal or a URL
    assert splitter.push(" And") == ["It is done."]
    assert splitter.flush() == ["And"]


def test_abbreviations_decimals_urls_ellipses_do_not_end_sentences() -> None:
    text = (
        "Dr. Smith paid 3.50 dollars at example.com today... then left. "
        "See e.g. the U.S. office of J. R. Tolkien. Mail me at bob@mail.example.org now."
    )
    assert split_all(text, step=3) == [
        "Dr. Smith paid 3.50 dollars at example.com today... then left.",
        "See e.g. the U.S. office of J. R. Tolkien.",
        "Mail me at bob@mail.example.org now.",
    ]


def test_closing_quotes_stay_with_their_sentence() -> None:
    assert split_all('He said "stop!" Then he left.') == ['He said "stop!"', "Then he left."]


def test_stage_directions_are_not_spoken() -> None:
    assert split_all("*smiles warmly* Nice to see you. *waves* Bye now.", step=2) == [
        "Nice to see you.",
        "Bye now.",
    ]


def test_markdown_bold_keeps_words_and_lone_asterisk_is_literal_space() -> None:
    assert split_all("This is **very** good. Five * three is fifteen.") == [
        "This is very good.",
        "Five three is fifteen.",
    ]


def test_first_piece_can_end_at_a_clause_for_latency() -> None:
    splitter = SentenceSplitter(SplitterConfig(first_clause_words=4))
    out = splitter.push("Well, you know, I think that is right, and more. Then, later, we go.")
    out += splitter.flush()
    assert out == ["Well, you know, I think that is right,", "and more.", "Then, later, we go."]


def test_emotion_tags_pass_through() -> None:
    assert split_all("[happy] That is great news! [sad] But I must go.") == [
        "[happy] That is great news!",
        "[sad] But I must go.",
    ]


def test_long_run_without_punctuation_is_cut_at_a_space() -> None:
    words = " ".join(["word"] * 200)
    pieces = split_all(words, config=SplitterConfig(first_clause_words=0, max_chars=100))
    assert len(pieces) > 5
    assert all(len(p) <= 100 for p in pieces)
    assert " ".join(pieces) == words


def test_punctuation_only_reply_gives_nothing_speakable() -> None:
    assert split_all("... !!! *nods*") == []


async def test_async_split_streams_pieces() -> None:
    async def tokens():  # type: ignore[no-untyped-def]
        for t in ["Hi", " there", ".", " Bye", "."]:
            yield t

    assert [p async for p in split_sentences(tokens())] == ["Hi there.", "Bye."]


@given(
    st.lists(st.sampled_from(["Hello", " world", ".", " ", "Dr.", "3.5", "!", "?", "\n", "ok", ","]), max_size=40),
    st.integers(min_value=1, max_value=7),
)
def test_chunking_does_not_change_the_result(parts: list[str], step: int) -> None:
    text = "".join(parts)
    assert split_all(text, step=step) == split_all(text, step=len(text) or 1)


@given(st.text(alphabet="abc .!?,", max_size=80))
def test_no_word_is_lost(text: str) -> None:
    words = [w.strip(".!?,") for w in text.split()]
    spoken = [w.strip(".!?,") for p in split_all(text) for w in p.split()]
    assert [w for w in spoken if w] == [w for w in words if w]


async def test_urls_and_emoji_are_not_spelled_out_by_the_tts() -> None:
    """Through the real pipeline and espeak-ng: what is spoken is the host or "a link", never the address."""
    from facecast.events import SentenceOut, UtteranceEnded
    from facecast.face.phonetic import PhoneticAnimator
    from facecast.offline import collect
    from facecast.pipeline import say_text
    from facecast.tts.espeak import EspeakTTS

    reply = (
        "Have a look at https://www.example.com/docs/page?id=3&x=%20y for the map 😀. "
        "The server is at http://192.168.1.20:8765/docs 👍🏽! Read [the guide](https://example.org/g) ❤️."
    )
    tts = EspeakTTS()
    said = await collect(say_text(1, reply, tts, PhoneticAnimator()))
    assert said.sentences == ["Have a look at example.com for the map.", "The server is at a link!", "Read the guide."]
    plain = await collect(say_text(1, " ".join(said.sentences), tts, PhoneticAnimator()))
    # the speech of the words above (give or take espeak-ng's pauses): nothing else was read out
    assert abs(len(said.audio) - len(plain.audio)) < 0.1 * said.rate
    events = [e async for e in say_text(1, "👍 😀", tts, PhoneticAnimator())]
    assert not any(isinstance(e, SentenceOut) for e in events)  # emoji alone: nothing to say
    assert isinstance(events[-1], UtteranceEnded) and events[-1].samples == 0


class _Playback:
    """A listener's playback for :func:`split_sentences`' runway: ``left`` seconds of the reply not yet heard
    when it was made, running down with the clock."""

    def __init__(self, left: float) -> None:
        self.left, self.since = left, time.monotonic()

    def __call__(self) -> float:
        return self.left - (time.monotonic() - self.since)


async def _slow_model(parts: list[str], gate: asyncio.Event, hold_after: int) -> AsyncIterator[str]:
    """Yields ``parts``; after the first ``hold_after`` it waits for ``gate`` (a model that stalls)."""
    for k, part in enumerate(parts):
        if k == hold_after:
            await gate.wait()
        yield part


async def test_a_starving_listener_gets_the_words_already_written() -> None:
    gate = asyncio.Event()
    parts = ["Well, I think ", "the old mill", " is by the river", " and the harbour.", " Yes."]
    pieces = split_sentences(_slow_model(parts, gate, 3), SplitterConfig(), _Playback(0.1))  # under 400 ms
    assert await anext(pieces) == "Well, I think"  # the first clause (4 words), as before
    # less than 400 ms left to play: the whole words written so far are spoken at once; the last one, which
    # may still grow ("river" -> "riverside"), is kept
    assert await asyncio.wait_for(anext(pieces), 10) == "the old mill is by the"
    gate.set()
    assert [p async for p in pieces] == ["river and the", "harbour.", "Yes."]


async def test_no_early_release_while_the_listener_has_audio_enough() -> None:
    gate = asyncio.Event()
    parts = ["The old mill is ", "by the river", " and the harbour."]
    pieces = split_sentences(_slow_model(parts, gate, 2), SplitterConfig(first_clause_words=0), _Playback(0.9))
    first = asyncio.ensure_future(anext(pieces))
    await asyncio.sleep(0.2)
    assert not first.done()  # 0.7 s left to play: the sentence is awaited whole
    # ... until the audio left runs under 400 ms (0.5 s after it was 0.9 s)
    assert await asyncio.wait_for(first, 10) == "The old mill is by the"
    gate.set()
    assert [p async for p in pieces] == ["river and the", "harbour."]
    gate2 = asyncio.Event()
    calm = split_sentences(_slow_model(parts, gate2, 3), SplitterConfig(first_clause_words=0), _Playback(60.0))
    assert [p async for p in calm] == ["The old mill is by the river and the harbour."]


async def test_a_starving_release_never_cuts_a_tag_or_a_stage_direction() -> None:
    for parts, expected in (
        (["Oh [ happy ", "] what a day."], ["Oh [ happy ] what a", "day."]),
        (["Oh *smiles ", "widely* what a day."], ["Oh what a", "day."]),
    ):
        gate = asyncio.Event()
        pieces = split_sentences(_slow_model(parts, gate, 1), SplitterConfig(first_clause_words=0), _Playback(0.0))
        first = asyncio.ensure_future(anext(pieces))
        await asyncio.sleep(0.2)
        assert not first.done(), parts  # the tag / stage direction is still open: nothing to release
        gate.set()
        assert [await first, *[p async for p in pieces]] == expected


async def test_closing_the_pieces_closes_the_model_stream() -> None:
    closed = asyncio.Event()

    async def model() -> AsyncIterator[str]:
        try:
            yield "One two three four "
            await asyncio.Event().wait()
            yield "never"
        finally:
            closed.set()

    pieces = split_sentences(model(), SplitterConfig(first_clause_words=0), _Playback(0.0))
    assert await anext(pieces) == "One two three four"
    await pieces.aclose()
    assert closed.is_set()
