"""The text cue of end-of-turn detection: each rule, with the neighbouring case that the rule must not catch."""

from __future__ import annotations

import pytest

from facecast.turncues import TextTurnCue, judge


@pytest.mark.parametrize(
    ("text", "cue"),
    [
        # Whisper's full stop, question and exclamation marks on a word a sentence may end on: complete
        ("I'd like to buy the red one.", "complete"),
        ("Where is the harbour?", "complete"),
        ("Get out!", "complete"),
        ("Yes.", "complete"),
        # articles and possessives never end a sentence, full stop or not
        ("I'd like to buy the", "incomplete"),
        ("I'd like to buy the.", "incomplete"),
        ("Give me a.", "incomplete"),
        ("That is my.", "incomplete"),
        ("Have you seen their", "incomplete"),
        # conjunctions
        ("I need bread, milk and.", "incomplete"),
        ("We could go north or", "incomplete"),
        ("I would come because.", "incomplete"),
        ("I'll open the door if.", "incomplete"),
        # "of" and "than" in any case
        ("The king of.", "incomplete"),
        ("It is bigger than", "incomplete"),
        # fillers
        ("I'd like to buy um.", "incomplete"),
        ("I was going to ask you about uh", "incomplete"),
        ("Hmm.", "incomplete"),
        # open punctuation: comma, colon, semicolon, dash, ellipsis
        ("The sword, the shield,", "incomplete"),
        ("I need three things:", "incomplete"),
        ("I was going to -", "incomplete"),
        ("I was going to \u2014", "incomplete"),
        ("Well...", "incomplete"),
        ("Well\u2026", "incomplete"),
        # a punctuated sentence of three words or more left without its full stop
        ("My brother said that", "incomplete"),
        ("The sword, the shield", "incomplete"),
        # ... but a one- or two-word answer often comes without one
        ("Yes", "unsure"),
        ("Okay", "unsure"),
        ("Not today", "unsure"),
    ],
)
def test_whisper_style_transcripts(text: str, cue: str) -> None:
    assert judge(text) == cue


@pytest.mark.parametrize(
    ("text", "cue"),
    [
        ("I want to talk to.", "incomplete"),  # a stranded preposition in a statement
        ("Who are you talking to?", "complete"),  # ... is fine in a question
        ("I'd pay for.", "incomplete"),
        ("What is it for?", "complete"),
        ("I'd like.", "incomplete"),  # "like" as a verb left without its object
        ("Come in.", "complete"),  # particles of phrasal verbs are not judged
        ("Turn it on.", "complete"),
    ],
)
def test_prepositions_end_only_questions(text: str, cue: str) -> None:
    assert judge(text) == cue


@pytest.mark.parametrize(
    ("text", "cue"),
    [
        ("The sword is.", "incomplete"),  # an auxiliary after a noun: the predicate is missing
        ("My brother would.", "incomplete"),
        ("Is.", "incomplete"),
        ("Yes, it is.", "complete"),  # after a subject pronoun it is an answer
        ("I can.", "complete"),
        ("Yes, there is.", "complete"),
        ("No, I don't think it is.", "complete"),
        ("No, I do not.", "complete"),
        ("No, they weren't.", "complete"),
        ("I didn't, but she did.", "complete"),
    ],
)
def test_auxiliaries_end_a_sentence_only_after_a_subject(text: str, cue: str) -> None:
    assert judge(text) == cue


@pytest.mark.parametrize(
    ("text", "cue"),
    [
        ("i would like to buy the", "incomplete"),  # pocketsphinx: no capitals, no punctuation; words still count
        ("i need bread milk and", "incomplete"),
        ("i would like to buy um", "incomplete"),
        ("m f a is like this is so many words right here", "unsure"),  # no full stop to miss
        ("yes", "unsure"),
        ("what is your name", "unsure"),
    ],
)
def test_text_without_punctuation_is_judged_on_its_words_alone(text: str, cue: str) -> None:
    assert judge(text) == cue


@pytest.mark.parametrize("text", ["", "   ", "...", "?", "123"])
def test_no_words_is_unsure(text: str) -> None:
    assert judge(text) == "unsure"


def test_quotes_and_brackets_after_the_sentence_are_looked_through() -> None:
    assert judge('He said "go to the"') == "incomplete"
    assert judge('He said "go away."') == "complete"
    assert judge("(and then the)") == "incomplete"


def test_only_english_is_judged() -> None:
    assert TextTurnCue("en").judge("I'd like to buy the") == "incomplete"
    assert TextTurnCue("en-GB").judge("I'd like to buy the") == "incomplete"
    assert TextTurnCue("fr").judge("Je voudrais acheter le") == "unsure"
    assert TextTurnCue("de").judge("Ich möchte den roten.") == "unsure"
    assert judge("I'd like to buy the", "es") == "unsure"
