"""The browser page's choices, in real headless Chromium against a real server: hold-to-talk or hands-free
(the hello's ``turns``), the workflow and the character (the hello's ``workflow`` and ``character``), what
the page shows for each (hint, listening indicator, emotion badge), and its layout on a phone-sized window.

The browser kit (fixtures, helpers) is in this folder's conftest.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from tests.web.conftest import (
    LEAD_SILENCE_S,
    QUESTION,
    TAIL_SILENCE_S,
    PageUnderTest,
    Question,
    check_utterance_played,
    chromium,
    light_services,
    light_settings,
    mic_file,
    open_page,
    require_browser,
    save_artifact,
)

from facecast.characters import Character
from facecast.face.learned import LearnedAnimator
from facecast.server import BackgroundServer

PAUSE_S = 2.5
"""A pause in the middle of what the player says: far longer than the server's endpoint (300 ms)."""


@pytest.fixture(scope="module")
def two_part_question(tmp_path_factory: pytest.TempPathFactory) -> Question:
    """The player asks, pauses PAUSE_S, and goes on, before TAIL_SILENCE_S of silence."""
    require_browser()
    parts = [LEAD_SILENCE_S, QUESTION, PAUSE_S, "Tell me about the weather.", TAIL_SILENCE_S]
    return mic_file(tmp_path_factory.mktemp("mic") / "two-part.wav", parts)


async def choose(p: PageUnderTest, select: str, value: str) -> None:
    """Pick ``value`` in the ``select`` element and wait for the new session it opens."""
    sessions = await p.state("return facecast.sessions")
    await p.page.select_option(select, value)
    await p.wait(f"facecast.sessions > {sessions} && facecast.welcome !== null", timeout_s=10)


def hellos(log: list[dict[str, object]]) -> list[dict[str, object]]:
    return [e for e in log if e["type"] == "hello" and e["dir"] == "out"]


# -- hold-to-talk and hands-free ---------------------------------------------------------------------------


async def test_hold_to_talk_turn_ends_only_when_the_button_is_released(
    two_part_question: Question, server: BackgroundServer
) -> None:
    """A pause while the button is held is not the end of the turn: no reply starts during it, and what comes
    after the pause does not interrupt one. The whole held stretch is one turn, ended by end_of_speech."""
    async with chromium(two_part_question) as browser:
        p = await open_page(browser, server.http_url + "/")
        await p.wait("facecast.status === 'connected'")
        await p.page.locator("#talk").hover()
        await p.page.mouse.down()
        await p.wait("document.body.classList.contains('talking') && facecast.counters.micChunks > 0")
        _, second_end = two_part_question.spans[1]
        await p.page.wait_for_timeout((second_end + 0.6) * 1000)
        released_at = await p.state("return performance.now()")
        heard_while_held = await p.state("return facecast.log.filter(e => e.dir === 'in').map(e => e.type)")
        await p.page.mouse.up()
        await p.wait("facecast.transcript.some(t => t.who === 'player' && !t.typed)", timeout_s=20)
        await p.wait("facecast.utterances.length === 1", timeout_s=25)
        await p.page.wait_for_timeout(500)  # anything else the server would send
        state = await p.state("""return {log: facecast.log, u: facecast.utterances, transcript: facecast.transcript,
            welcome: facecast.welcome, serverTurns: facecast.serverTurns, micRate: facecast.micRate,
            micSamples: facecast.counters.micSamples}""")
        await p.page.close()
    log = state["log"]
    # nothing was decided while the button was held: no final transcript, no reply, no barge-in
    assert "utterance_start" not in heard_while_held and "clear_buffer" not in heard_while_held
    finals = [e for e in log if e["type"] == "transcript" and e["dir"] == "in" and e["final"]]
    assert len(finals) == 1 and finals[0]["at"] > released_at
    ends = [e for e in log if e["type"] == "end_of_speech"]
    assert len(ends) == 1 and ends[0]["at"] >= released_at
    assert not any(e["type"] in ("clear_buffer", "error") for e in log)
    [u] = state["u"]
    check_utterance_played(u)
    heard = next(t["text"] for t in state["transcript"] if t["who"] == "player")
    reply = next(t["text"] for t in state["transcript"] if t["who"] == "character")
    assert reply.startswith(f"You said: {heard}")  # one reply, to all of it
    # all of the held stretch went to the server, both parts of the question and the pause between them
    assert state["micSamples"] >= (second_end + 0.5) * state["micRate"]
    [hello] = hellos(log)
    assert hello["turns"] == "client" and state["welcome"]["turns"] == "client" and not state["serverTurns"]
    assert not p.errors()


@pytest.fixture(scope="module")
def long_question(tmp_path_factory: pytest.TempPathFactory) -> Question:
    """Three seconds of speech: the server's partial transcripts (every 250 ms of audio) come while it lasts."""
    require_browser()
    parts = [LEAD_SILENCE_S, "Tell me a long story about the lighthouse keeper and the ships he counts.", 8.0]
    return mic_file(tmp_path_factory.mktemp("mic") / "long.wav", parts)


async def test_hands_free_says_so_and_shows_when_it_listens(long_question: Question, server: BackgroundServer) -> None:
    """The hint follows the mode; the listening indicator shows while the microphone streams, and that the
    server is hearing speech while its partial transcripts arrive; switching back to hold-to-talk is clean."""
    async with chromium(long_question) as browser:
        p = await open_page(browser, server.http_url + "/")
        await p.wait("facecast.status === 'connected'")
        hold_hint = await p.page.locator("#talk-hint").inner_text()
        indicator_at_rest = await p.page.locator("#listening").is_visible()
        await p.page.evaluate("""() => {
            window.__listening = [];
            setInterval(() => {
                const el = document.getElementById('listening');
                window.__listening.push([performance.now(), facecast.listening, el.checkVisibility(), el.innerText]);
            }, 20);
        }""")
        await p.page.check("#handsfree")  # the fake microphone starts its file: the speech after 0.6 s
        await p.wait("facecast.welcome !== null && facecast.welcome.turns === 'server'", timeout_s=10)
        free_hint = await p.page.locator("#talk-hint").inner_text()
        # the server found the end of the turn by itself
        await p.wait("facecast.transcript.some(t => t.who === 'player' && !t.typed)", timeout_s=25)
        await p.page.uncheck("#handsfree")
        await p.wait("facecast.welcome !== null && facecast.welcome.turns === 'client'", timeout_s=10)
        await p.page.wait_for_timeout(200)
        back = await p.state("""return {hint: document.getElementById('talk-hint').innerText,
            listening: facecast.listening, shown: document.getElementById('listening').checkVisibility(),
            talkShown: document.getElementById('talk').checkVisibility(), log: facecast.log,
            sessions: facecast.sessions, connects: facecast.counters.connects, samples: window.__listening}""")
        await p.page.close()
    assert "Hold the button" in hold_hint and not indicator_at_rest
    assert "Hold the button" not in free_hint and "Hands-free" in free_hint
    samples = back["samples"]
    assert all(shown == (state != "off") for _, state, shown, _ in samples)  # shown exactly while the mic is live
    assert any(state == "live" and text == "Listening" for _, state, _, text in samples)
    # each partial transcript turned the indicator to "hearing you"
    partials = [e["at"] for e in back["log"] if e["type"] == "transcript" and e["dir"] == "in" and not e["final"]]
    assert partials, "the server sent no partial transcript of three seconds of speech"
    for at in partials:
        after = [(state, text) for t, state, _, text in samples if at < t < at + 200]
        assert ("hearing", "Hearing you…") in after, at
    assert "Hold the button" in back["hint"] and back["talkShown"]
    assert back["listening"] == "off" and not back["shown"]
    assert [h["turns"] for h in hellos(back["log"])] == ["client", "server", "client"]
    assert back["sessions"] == back["connects"] == 3
    assert not any(e["type"] == "end_of_speech" for e in back["log"])  # hands-free: the server's turns
    assert not p.errors()


async def test_emotion_badge_clears_when_the_reply_has_played(question: Question, server: BackgroundServer) -> None:
    async with chromium(question) as browser:
        p = await open_page(browser, server.http_url + "/")
        await p.wait("facecast.status === 'connected'")
        await p.page.fill("#text", "[happy] What a lovely morning.")
        await p.page.press("#text", "Enter")
        await p.wait("facecast.acks.some(a => a.type === 'playback_started')", timeout_s=15)
        during = await p.state("""return [document.getElementById('emotion').textContent,
            document.getElementById('emotion').checkVisibility()]""")
        await p.wait("facecast.utterances.length === 1", timeout_s=20)
        after = await p.state("""return [document.getElementById('emotion').textContent,
            document.getElementById('emotion').checkVisibility(), facecast.emotion]""")
        log = await p.state("return facecast.log")
        await p.page.close()
    assert any(e["type"] == "emotion" and e["emotion"] == "happy" for e in log)
    assert during == ["happy", True]
    assert after == ["", False, None]
    assert not p.errors()


async def test_phone_sized_window_keeps_the_message_box_clear(question: Question, server: BackgroundServer) -> None:
    async with chromium(question) as browser:
        p = await open_page(browser, server.http_url + "/", viewport=(390, 844))
        await p.wait("facecast.status === 'connected'")
        layout = await p.state("""
            const hit = (id) => {
                if (!document.getElementById(id)) return {id: null};
                const r = document.getElementById(id).getBoundingClientRect();
                const el = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
                return {id: el && (el.id || el.closest('[id]').id), top: r.top, bottom: r.bottom, left: r.left,
                        right: r.right};
            };
            const form = document.getElementById('typed').getBoundingClientRect();
            const panel = document.querySelector('.conversation').getBoundingClientRect();
            return {text: hit('text'), talk: hit('talk'), workflow: hit('workflow'),
                    formBottom: form.bottom, panelTop: panel.top, width: document.documentElement.scrollWidth,
                    height: innerHeight};
        """)
        save_artifact("page-390x844.png", await p.page.screenshot())
        await p.page.fill("#text", "Hello there.")  # typing works there
        await p.page.press("#text", "Enter")
        await p.wait("facecast.transcript.some(t => t.who === 'character')", timeout_s=15)
        await p.page.close()
    text = layout["text"]
    assert text["id"] == "text", layout  # the message box itself is under its centre, nothing on top
    assert 0 <= text["top"] and text["bottom"] <= layout["height"] and 0 <= text["left"] and text["right"] <= 390
    assert layout["talk"]["id"] == "talk" and layout["workflow"]["id"] == "workflow"
    assert layout["panelTop"] >= layout["formBottom"]  # the conversation comes after the message box
    assert layout["width"] <= 390  # no sideways scrolling
    assert not p.errors()


# -- workflows and characters --------------------------------------------------------------------------------


async def test_say_workflow_speaks_the_typed_text_as_is(question: Question, server: BackgroundServer) -> None:
    typed = "Maybe we should buy a map."
    async with chromium(question) as browser:
        p = await open_page(browser, server.http_url + "/")
        await p.wait("facecast.status === 'connected'")
        await choose(p, "#workflow", "say")
        hint = await p.page.locator("#talk-hint").inner_text()
        await p.page.fill("#text", typed)
        await p.page.press("#text", "Enter")
        await p.wait("facecast.utterances.length === 1", timeout_s=20)
        state = await p.state("return {log: facecast.log, u: facecast.utterances, welcome: facecast.welcome}")
        await p.page.close()
    log = state["log"]
    assert [h["workflow"] for h in hellos(log)] == ["conversation", "say"]
    assert state["welcome"]["workflow"] == "say"
    [end] = [e for e in log if e["type"] == "utterance_end"]
    assert end["text"] == typed  # said as it was typed: no language model in between
    assert [e["text"] for e in log if e["type"] == "reply_text"] == [typed]
    check_utterance_played(state["u"][0])
    assert "as they are" in hint
    assert not p.errors()


@pytest.fixture
async def cast_server() -> AsyncIterator[BackgroundServer]:
    characters = {name: Character(name, persona=f"You are {name}.") for name in ("mora", "ada")}
    async with BackgroundServer(light_settings(characters=characters), light_services()) as running:
        yield running


async def test_character_selector_lists_the_servers_characters_and_opens_a_session_as_one(
    question: Question, cast_server: BackgroundServer
) -> None:
    async with chromium(question) as browser:
        p = await open_page(browser, cast_server.http_url + "/")
        await p.wait("facecast.status === 'connected' && facecast.characters !== null")
        options = await p.state("return [...document.querySelectorAll('#character option')].map(o => o.value)")
        shown = await p.page.locator("#character").is_visible()
        before = {s.character.name for s in cast_server.state.sessions}
        await choose(p, "#character", "mora")
        chosen = {s.character.name for s in cast_server.state.sessions}
        await p.page.fill("#text", "Hello there.")
        await p.page.press("#text", "Enter")
        await p.wait("facecast.utterances.length === 1", timeout_s=20)
        first_log = await p.state("return facecast.log")
        # the choice is kept: a reload opens its session as mora straight away
        await p.page.reload()
        await p.wait("window.facecast && facecast.welcome !== null", timeout_s=10)
        reloaded = await p.state("""return {hello: facecast.log.find(e => e.type === 'hello'),
            selected: document.getElementById('character').value}""")
        again = {s.character.name for s in cast_server.state.sessions}
        # a stored character the server no longer has: said so, and the default character is used
        await p.page.evaluate("""localStorage.setItem('facecast.prefs',
            JSON.stringify({workflow: 'conversation', character: 'ghost', handsFree: false}))""")
        await p.page.reload()
        await p.wait("window.facecast && facecast.welcome !== null", timeout_s=10)
        ghost = await p.state("""return {log: facecast.log, character: facecast.character,
            notes: [...document.querySelectorAll('.line.note')].map(n => n.textContent)}""")
        await p.page.close()
    assert shown and options == ["", "ada", "mora"]
    assert before == {"default"} and chosen == {"mora"} and again == {"mora"}
    assert [h.get("character") for h in hellos(first_log)] == [None, "mora"]
    assert reloaded["hello"]["character"] == "mora" and reloaded["selected"] == "mora"
    assert [h.get("character") for h in hellos(ghost["log"])] == ["ghost", None]
    assert ghost["character"] == "" and any("ghost" in n for n in ghost["notes"])
    assert not p.errors()


async def test_audio_workflow_without_its_model_falls_back_to_conversation(
    question: Question, server: BackgroundServer
) -> None:
    async with chromium(question) as browser:
        p = await open_page(browser, server.http_url + "/")
        await p.wait("facecast.status === 'connected'")
        await choose(p, "#workflow", "lipsync")
        state = await p.state("""return {log: facecast.log, workflow: facecast.workflow,
            selected: document.getElementById('workflow').value,
            notes: [...document.querySelectorAll('.line.note')].map(n => n.textContent)}""")
        await p.page.close()
    assert [h["workflow"] for h in hellos(state["log"])] == ["conversation", "lipsync", "conversation"]
    assert any(e["type"] == "error" and e["code"] == "bad_config" for e in state["log"])
    assert state["workflow"] == state["selected"] == "conversation"
    assert any("lipsync workflow is not available" in n for n in state["notes"])
    assert not p.errors()


@pytest.fixture
async def puppet_server() -> AsyncIterator[BackgroundServer]:
    services = replace(light_services(), audio_face=LearnedAnimator())
    async with BackgroundServer(light_settings(), services) as running:
        yield running


async def test_puppet_workflow_moves_the_face_with_the_microphone(
    question: Question, puppet_server: BackgroundServer
) -> None:
    async with chromium(question) as browser:
        p = await open_page(browser, puppet_server.http_url + "/")
        await p.wait("facecast.status === 'connected'")
        await choose(p, "#workflow", "puppet")
        typing_off = await p.page.locator("#text").is_disabled()
        await p.page.evaluate("""() => {
            window.__mouth = [];
            setInterval(() => window.__mouth.push([performance.now(), facecast.faceSource, facecast.mouthOpen]), 20);
        }""")
        await p.page.locator("#talk").hover()
        await p.page.mouse.down()
        await p.wait("facecast.faceSource === 'live' && facecast.mouthOpen > 0.2", timeout_s=10)
        await p.page.wait_for_timeout((question.lead_s + question.speech_s + 0.4) * 1000)
        await p.page.mouse.up()
        await p.wait("facecast.log.some(e => e.type === 'utterance_end')", timeout_s=10)
        await p.page.wait_for_timeout(500)
        state = await p.state("""return {log: facecast.log, counters: facecast.counters, mouth: window.__mouth,
            source: facecast.faceSource}""")
        await p.page.close()
    log = state["log"]
    [hello] = [h for h in hellos(log) if h["workflow"] == "puppet"]
    assert hello["acks"] is False  # nothing plays: nothing to acknowledge
    faces = [e for e in log if e["type"] == "face"]
    assert faces and state["counters"]["audioChunks"] == 0  # the player's voice drives the face; nothing plays
    assert not any(e["type"] in ("playback_started", "playback_finished") for e in log)
    [end] = [e for e in log if e["type"] == "utterance_end"]
    assert end["frames"] == sum(f["count"] for f in faces)
    live = [m for _, source, m in state["mouth"] if source == "live"]
    assert live and max(live) > 0.3  # the mouth opened with the question
    assert state["source"] == "idle"  # and the face went back to idle after the stream ended
    assert typing_off
    assert not p.errors()
