"""The realtime codecs against golden messages written from the public API references (pure: no sockets)."""

from __future__ import annotations

import base64
import json

from hypothesis import given
from hypothesis import strategies as st

from facecast.actions import Action
from facecast.realtime.events import (
    AppendAudio,
    AudioDelta,
    CancelResponse,
    FunctionCall,
    InputTranscript,
    RealtimeFailure,
    RealtimeSetup,
    ResponseDone,
    ResponseStarted,
    SessionReady,
    SpeechStarted,
    SpeechStopped,
    ToolResult,
    TranscriptDelta,
    UserInput,
)
from facecast.realtime.gemini_codec import GeminiCodec
from facecast.realtime.openai_codec import OpenAICodec

WAVE = Action("wave", "Wave at the player", {"type": "object", "properties": {"hand": {"type": "string"}}})


def test_openai_session_update_is_the_ga_shape_with_server_vad_deciding_turns_and_tools_flat() -> None:
    [update] = OpenAICodec("whisper-1", 600).setup(RealtimeSetup("Be Ada.", (WAVE,), "coral"))
    assert update["type"] == "session.update"
    session = update["session"]
    assert session["type"] == "realtime" and session["instructions"] == "Be Ada."
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["output"] == {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "coral"}
    assert session["audio"]["input"]["transcription"] == {"model": "whisper-1"}
    assert session["audio"]["input"]["turn_detection"] == {
        "type": "server_vad",
        "silence_duration_ms": 600,
        "create_response": True,
        "interrupt_response": False,
    }
    assert session["tools"] == [
        {"type": "function", "name": "wave", "description": "Wave at the player", "parameters": WAVE.schema()}
    ]


def test_openai_commands() -> None:
    codec = OpenAICodec()
    assert codec.encode(AppendAudio(b"\x01\x00\xff\x7f")) == [
        {"type": "input_audio_buffer.append", "audio": "AQD/fw=="}
    ]
    assert codec.encode(CancelResponse("item_1", 1234, in_progress=True)) == [
        {"type": "response.cancel"},
        {"type": "conversation.item.truncate", "item_id": "item_1", "content_index": 0, "audio_end_ms": 1234},
    ]
    # a response already complete is only truncated
    assert [e["type"] for e in codec.encode(CancelResponse("item_1", 10, in_progress=False))] == [
        "conversation.item.truncate"
    ]
    [output] = codec.encode(ToolResult("call_9", "wave", {"status": "ok"}))
    assert output == {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": "call_9", "output": '{"status": "ok"}'},
    }
    typed = codec.encode(UserInput("hello"))
    assert typed[0]["item"]["content"] == [{"type": "input_text", "text": "hello"}]
    assert typed[1] == {"type": "response.create"}


def test_openai_server_events_in_both_interfaces() -> None:
    codec = OpenAICodec()
    pcm = b"\x00\x10" * 4
    b64 = base64.b64encode(pcm).decode()
    for name in ("response.output_audio.delta", "response.audio.delta"):
        [delta] = codec.decode({"type": name, "item_id": "it", "delta": b64})
        assert isinstance(delta, AudioDelta) and delta.pcm16 == pcm and delta.rate == 24000 and delta.item_id == "it"
    for name in ("response.output_audio_transcript.delta", "response.audio_transcript.delta"):
        assert codec.decode({"type": name, "delta": "Hi"}) == [TranscriptDelta("Hi")]
    assert codec.decode({"type": "session.updated", "session": {}}) == [SessionReady()]
    assert codec.decode({"type": "session.created", "session": {}}) == []
    assert codec.decode({"type": "input_audio_buffer.speech_started", "audio_start_ms": 5}) == [SpeechStarted()]
    assert codec.decode({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 9}) == [SpeechStopped()]
    done = {"type": "conversation.item.input_audio_transcription.completed", "transcript": " hello there "}
    assert codec.decode(done) == [InputTranscript("hello there", True)]
    assert codec.decode({"type": "response.created", "response": {"id": "r1"}}) == [ResponseStarted("r1")]
    assert codec.decode({"type": "response.done", "response": {"status": "cancelled"}}) == [ResponseDone("cancelled")]
    call = {"type": "response.function_call_arguments.done", "call_id": "c", "name": "wave", "arguments": '{"a": 1}'}
    assert codec.decode(call) == [FunctionCall("c", "wave", {"a": 1})]
    assert codec.decode({"type": "rate_limits.updated", "rate_limits": []}) == []


def test_openai_errors_that_end_the_session_are_fatal_and_keep_their_meaning() -> None:
    codec = OpenAICodec()
    [bad_key] = codec.decode({"type": "error", "error": {"code": "invalid_api_key", "message": "Incorrect API key"}})
    assert isinstance(bad_key, RealtimeFailure) and bad_key.fatal and bad_key.code == "unauthorized"
    [limited] = codec.decode({"type": "error", "error": {"code": "rate_limit_exceeded", "message": "slow down"}})
    assert isinstance(limited, RealtimeFailure) and limited.fatal and limited.code == "rate_limited"
    [other] = codec.decode({"type": "error", "error": {"code": "response_cancel_not_active", "message": "none"}})
    assert isinstance(other, RealtimeFailure) and not other.fatal
    [garbled] = codec.decode({"type": "response.output_audio.delta", "delta": "%%%"})
    assert isinstance(garbled, RealtimeFailure) and not garbled.fatal


def test_gemini_setup_and_client_messages() -> None:
    codec = GeminiCodec("gemini-live-x")
    [setup] = codec.setup(RealtimeSetup("Be Ada.", (WAVE,), "Puck"))
    body = setup["setup"]
    assert body["model"] == "models/gemini-live-x"
    assert body["generationConfig"] == {
        "responseModalities": ["AUDIO"],
        "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Puck"}}},
    }
    assert body["systemInstruction"] == {"parts": [{"text": "Be Ada."}]}
    assert body["tools"] == [
        {"functionDeclarations": [{"name": "wave", "description": "Wave at the player", "parameters": WAVE.schema()}]}
    ]
    assert body["inputAudioTranscription"] == {} and body["outputAudioTranscription"] == {}
    assert codec.encode(AppendAudio(b"\x01\x00")) == [
        {"realtimeInput": {"audio": {"data": "AQA=", "mimeType": "audio/pcm;rate=16000"}}}
    ]
    assert codec.encode(CancelResponse("", 100)) == []  # the server interrupts itself
    assert codec.encode(ToolResult("id1", "wave", {"ok": True})) == [
        {"toolResponse": {"functionResponses": [{"id": "id1", "name": "wave", "response": {"ok": True}}]}}
    ]
    assert codec.encode(UserInput("hi")) == [
        {"clientContent": {"turns": [{"role": "user", "parts": [{"text": "hi"}]}], "turnComplete": True}}
    ]


def test_gemini_server_messages_make_one_response_per_model_turn() -> None:
    codec = GeminiCodec("m")
    b64 = base64.b64encode(b"\x00\x01\x00\x02").decode()
    assert codec.decode({"setupComplete": {}}) == [SessionReady()]
    assert codec.decode({"serverContent": {"inputTranscription": {"text": " hello"}}}) == [
        InputTranscript(" hello", final=False)
    ]
    codec.decode({"serverContent": {"inputTranscription": {"text": " there"}}})
    audio = {
        "serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": b64}}]}}
    }
    first = codec.decode(audio)
    assert first[:2] == [InputTranscript("hello there", final=True), ResponseStarted()]
    assert isinstance(first[2], AudioDelta) and first[2].rate == 24000 and first[2].pcm16 == b"\x00\x01\x00\x02"
    second = codec.decode(audio)  # the same turn: no new response
    assert len(second) == 1 and isinstance(second[0], AudioDelta)
    assert codec.decode({"serverContent": {"outputTranscription": {"text": "Hi."}}}) == [TranscriptDelta("Hi.")]
    assert codec.decode({"serverContent": {"turnComplete": True}}) == [ResponseDone("completed")]
    codec.decode(audio)
    assert codec.decode({"serverContent": {"interrupted": True}}) == [SpeechStarted(), ResponseDone("interrupted")]
    call = {"toolCall": {"functionCalls": [{"id": "f1", "name": "wave", "args": {"hand": "left"}}]}}
    assert codec.decode(call) == [ResponseStarted(), FunctionCall("f1", "wave", {"hand": "left"})]


@given(st.binary(max_size=64).map(lambda b: b[: len(b) // 2 * 2]))
def test_audio_survives_both_codecs(pcm: bytes) -> None:
    openai = OpenAICodec()
    [append] = openai.encode(AppendAudio(pcm))
    echoed = {"type": "response.output_audio.delta", "delta": append["audio"]}
    [delta] = openai.decode(json.loads(json.dumps(echoed)))
    assert isinstance(delta, AudioDelta) and delta.pcm16 == pcm
    gemini = GeminiCodec("m")
    [message] = gemini.encode(AppendAudio(pcm))
    blob = message["realtimeInput"]["audio"]
    events = gemini.decode({"serverContent": {"modelTurn": {"parts": [{"inlineData": blob}]}}})
    assert isinstance(events[-1], AudioDelta) and events[-1].pcm16 == pcm and events[-1].rate == 16000
