"""Action declarations, the prompt that describes them, and taking calls out of a streamed reply (pure)."""

from __future__ import annotations

import pytest
from openai.types.chat import ChatCompletionChunk

from facecast.actions import (
    Action,
    ActionCall,
    ActionExtractor,
    actions_from_json,
    actions_prompt,
    check_call,
    marker,
    split_markers,
)
from facecast.errors import ConfigError
from facecast.llm.openai_compat import _ToolCalls

GIVE = {
    "name": "give_item",
    "description": "Hand an item to the player.",
    "parameters": {
        "type": "object",
        "properties": {"item": {"type": "string", "enum": ["key", "bread"]}, "count": {"type": "integer"}},
        "required": ["item"],
    },
}
ACTIONS = actions_from_json([GIVE, {"name": "wave"}])


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"name": "x"}, "must be a list"),
        ([{"name": "1x"}], "letters, digits"),
        ([{"name": "a b"}], "letters, digits"),
        ([GIVE, GIVE], "declared twice"),
        ([{"name": "x", "parameters": {"type": "string"}}], "type object"),
        (
            [{"name": "x", "parameters": {"type": "object", "properties": {"a": {"type": 5}}}}],
            "not a valid JSON Schema",
        ),
        ([{"name": "x", "run": "rm -rf /"}], "unknown key 'run'"),
        ([{"name": "x", "description": "d" * 5000}], "over 4096 bytes"),
        ([{"name": f"a{k}"} for k in range(33)], "the limit is 32"),
    ],
)
def test_bad_declarations_are_refused_with_the_reason(raw: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        actions_from_json(raw)


def test_the_prompt_describes_each_action_with_an_example_that_fits_it() -> None:
    prompt = actions_prompt(ACTIONS)
    assert (
        'give_item: Hand an item to the player. Arguments: item ("key" or "bread"); count (integer, optional).'
        in prompt
    )
    assert 'Example: {"name": "give_item", "arguments": {"item": "key"}}' in prompt
    assert "wave: no description. No arguments." in prompt
    assert actions_prompt(()) == ""
    assert check_call(ACTIONS, "give_item", {"item": "key"}) == ActionCall("give_item", {"item": "key"})


def test_calls_are_checked_against_their_schema() -> None:
    assert check_call(ACTIONS, "give_item", {"item": "bread", "count": 2}).arguments == {"item": "bread", "count": 2}
    for name, arguments, why in [
        ("give_item", {"item": "sword"}, "'sword' is not one of"),
        ("give_item", {}, "'item' is a required property"),
        ("give_item", {"item": "key", "count": "two"}, "'two' is not of type 'integer'"),
        ("give_item", ["key"], "must be a JSON object"),
        ("fly", {}, "not a declared action"),
    ]:
        with pytest.raises(ValueError, match=why):
            check_call(ACTIONS, name, arguments)


def _extract(pieces: list[str]) -> tuple[str, list[ActionCall | str]]:
    extractor = ActionExtractor(ACTIONS)
    text = "".join(extractor.feed(p) for p in pieces) + extractor.flush()
    return text, extractor.found


def test_a_call_split_across_pieces_is_taken_out_and_the_words_stay() -> None:
    reply = 'Here you go. <tool_call>{"name": "give_item", "arguments": {"item": "key"}}</tool_call> Mind the {door}.'
    for size in (1, 3, 7, len(reply)):
        text, found = _extract([reply[i : i + size] for i in range(0, len(reply), size)])
        assert text == f"Here you go. {marker(0)} Mind the {marker(1)}."
        assert found[0] == ActionCall("give_item", {"item": "key"})
        assert isinstance(found[1], str) and "not JSON" in found[1]  # braces in speech are never spoken


def test_strings_with_braces_and_escaped_quotes_do_not_end_a_call_early() -> None:
    actions = actions_from_json([{"name": "say_sign", "parameters": {"type": "object"}}])
    extractor = ActionExtractor(actions)
    text = extractor.feed('{"name": "say_sign", "arguments": {"text": "a \\"}\\" b {"}} ok') + extractor.flush()
    assert text == f"{marker(0)} ok" and extractor.found == [ActionCall("say_sign", {"text": 'a "}" b {'})]


def test_unfinished_oversized_and_foreign_json_are_refused() -> None:
    text, found = _extract(['Sure. {"name": "give_item", "argu'])
    assert text == f"Sure. {marker(0)}" and "unfinished" in str(found[0])
    text, found = _extract(["{" + '"x": "' + "y" * 5000 + '"}'])
    assert "over 4096 characters" in str(found[0])
    text, found = _extract(['{"weather": "rain"} {"name": "give_item", "arguments": {"item": "sword"}}'])
    assert "not an action call" in str(found[0]) and "'sword' is not one of" in str(found[1])
    assert list(split_markers(text)) == [0, " ", 1]


def test_openai_tool_call_deltas_become_one_json_line_each() -> None:
    def chunk(*calls: dict[str, object]) -> ChatCompletionChunk:
        return ChatCompletionChunk.model_validate(
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "delta": {"tool_calls": list(calls)}, "finish_reason": None}],
            }
        )

    calls = _ToolCalls()
    out = calls.feed(
        chunk({"index": 0, "id": "a", "type": "function", "function": {"name": "give_item", "arguments": ""}})
    )
    out += calls.feed(chunk({"index": 0, "function": {"arguments": '{"item": '}}))
    out += calls.feed(chunk({"index": 0, "function": {"arguments": '"key"}'}}))
    out += calls.feed(
        chunk({"index": 1, "id": "b", "type": "function", "function": {"name": "wave", "arguments": "{}"}})
    )
    out += calls.flush()
    text, found = _extract([out])
    assert found == [ActionCall("give_item", {"item": "key"}), ActionCall("wave", {})]
    assert text.split() == [marker(0), marker(1)]
    assert Action("wave").as_tool()["function"]["parameters"] == {"type": "object", "properties": {}}
