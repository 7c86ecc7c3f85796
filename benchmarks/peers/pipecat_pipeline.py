"""A Pipecat voice pipeline built from Facecast's real default components, for ``facecast bench --peers``.

Pipecat 1.14.0 (``pip install -e '.[bench]'``), one pipeline per simultaneous conversation, all in this
process on one event loop (how a Pipecat bot process serves several sessions):

    QuestionInput -> WhisperSTTService -> user aggregator (Silero VAD + turn strategies)
        -> OpenAILLMService -> FacecastTTSService -> ReplyOutput -> assistant aggregator

The components are the ones Facecast runs by default, so only the stack differs:

* speech-to-text: Pipecat's own ``WhisperSTTService`` (a segmented STT: it decodes each VAD segment) on the
  SAME faster-whisper weights (Whisper base int8, the folder Facecast assembles into its model cache), loaded
  with Facecast's thread settings (``cpu_threads=2``, one worker, ``local_files_only``); one model shared by
  every conversation, as Facecast shares its one. Decoding stays Pipecat's (its defaults: beam 5, the 30 s
  window, no-speech threshold 0.4).
* language model: Pipecat's ``OpenAILLMService`` against the ONE OpenAI-compatible server (llama-cpp-python
  on the Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF of Facecast's cache) that Facecast talks to in the same run,
  with the same system prompt, temperature and ``max_tokens`` (``supports_developer_role = False``: the
  llama.cpp server rejects that role, see :class:`LocalOpenAILLMService`).
* text-to-speech: Facecast's ``HibariTTS`` (its default voice, hibari ``heart``, 24 kHz) wrapped as a Pipecat
  ``TTSService`` (:class:`FacecastTTSService`). Pipecat's own Piper service needs ``piper-tts`` (GPL-3) and
  downloads voices; wrapping the same Python TTS keeps the voice, and its cost, identical.
* turn handling: Pipecat's own Silero VAD (``SileroVADAnalyzer``) in the user aggregator and its turn
  strategies. ``turn="default"``: everything at Pipecat's documented defaults (``VADParams()``: confidence
  0.7, start 0.2 s, stop 0.2 s; the default stop strategy, smart-turn v3 ``LocalSmartTurnAnalyzerV3``).
  ``turn="silence"``: the VAD's ``stop_secs`` = 0.3 (300 ms of silence) and
  ``SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0)``, i.e. the turn ends when the VAD has heard
  300 ms of silence and the transcript is in (like Facecast's ``--turn-detector silence``).

Input: :class:`QuestionInput`, a transport that streams each recorded question as the microphone in real time
(16 kHz, 20 ms chunks, each pushed once its last sample is captured, like engine-sim), keeps streaming silence
while the bot replies, and starts the next question once the bot has stopped speaking and sent no audio for 1 s
(so a pause between sentences is not taken for the end of the reply and the next question never barges in).
The end of the player's speech is the capture time of the last sample above 0.01 (engine-sim's definition).
Output: :class:`ReplyOutput`, a transport
that plays the reply in real time (it sleeps as a sound card would, keeping 50 ms queued) and records when
the first reply sample is written: the moment the reply leaves the pipeline. An observer records when each
stage's first frame of the turn is pushed.

Run as a child process: the fields of a :class:`Job` as a pickled dict on stdin, a pickled
``("ok", [[turn dict, ...] per conversation])`` or ``("error", traceback)`` on stdout
(``facecast.bench.peers_bench`` is the parent). Pipecat's log goes to stderr at WARNING.
"""

from __future__ import annotations

import asyncio
import pickle
import sys
import time
import traceback
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RATE_IN = 16_000
CHUNK_MS = 20
START_BUFFER_S = 0.05  # what the output keeps queued, like engine-sim's 50 ms playback start buffer
REPLY_GAP_S = 1.0  # the reply is over when the bot has stopped speaking and sent no audio for this long

STAGES = ("vad_stop", "transcript", "turn_end", "llm_first_token", "tts_first_audio")
"""The per-stage event times recorded (seconds from the end of speech), in pipeline order."""


@dataclass
class Job:
    """What the child runs: ``conversations`` (each a list of 16 kHz float32 questions, with their trailing
    silence) through one pipeline each, at the same time."""

    whisper_dir: str
    llm_url: str
    llm_model: str
    system_prompt: str
    conversations: list[list[np.ndarray]]
    turn: str = "default"  # or "silence"
    stop_secs: float = 0.3  # the VAD's stop_secs with turn="silence"
    temperature: float = 0.7
    max_tokens: int = 40
    whisper_threads: int = 2
    turn_timeout_s: float = 60.0


@dataclass
class TurnRecord:
    """One question's times (monotonic seconds) and what came of it."""

    speech_end: float = 0.0
    events: dict[str, float] = field(default_factory=dict)
    first_audio: float = 0.0
    samples: int = 0
    late_chunks: int = 0
    transcript: str = ""
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "speech_end": self.speech_end,
            "events": dict(self.events),
            "first_audio": self.first_audio,
            "samples": self.samples,
            "late_chunks": self.late_chunks,
            "transcript": self.transcript,
            "error": self.error,
        }


class Conversation:
    """The state one pipeline's input, output and observer share: the turn in progress."""

    def __init__(self) -> None:
        self.turns: list[TurnRecord] = []
        self.current: TurnRecord | None = None
        self.replied = asyncio.Event()
        self.last_audio = 0.0

    def start_turn(self) -> TurnRecord:
        self.current = TurnRecord()
        self.turns.append(self.current)
        self.replied.clear()
        return self.current


def build_pipeline(job: Job, questions: list[np.ndarray], conv: Conversation, whisper_model: Any) -> Any:
    """One conversation's Pipecat worker and its input transport (imports Pipecat: the ``bench`` extra)."""
    from loguru import logger
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.audio.vad.vad_analyzer import VADParams
    from pipecat.frames.frames import (
        BotStartedSpeakingFrame,
        BotStoppedSpeakingFrame,
        Frame,
        InputAudioRawFrame,
        LLMTextFrame,
        StartFrame,
        TranscriptionFrame,
        TTSAudioRawFrame,
        UserStoppedSpeakingFrame,
        VADUserStoppedSpeakingFrame,
    )
    from pipecat.observers.base_observer import BaseObserver, FramePushed
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import (
        LLMContextAggregatorPair,
        LLMUserAggregatorParams,
    )
    from pipecat.processors.frame_processor import FrameDirection
    from pipecat.services.openai.llm import OpenAILLMService
    from pipecat.services.settings import TTSSettings
    from pipecat.services.tts_service import TTSService
    from pipecat.services.whisper.stt import WhisperSTTService
    from pipecat.transports.base_input import BaseInputTransport
    from pipecat.transports.base_output import BaseOutputTransport
    from pipecat.transports.base_transport import TransportParams
    from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
    from pipecat.turns.user_turn_strategies import UserTurnStrategies

    from facecast.tts.hibari import HibariTTS

    class LocalOpenAILLMService(OpenAILLMService):  # type: ignore[misc]
        """Pipecat's OpenAI LLM service for a llama.cpp server, which accepts no ``developer`` role (Pipecat
        adds one, e.g. for an empty user turn): Pipecat's documented switch turns such messages into ``user``
        ones, as for its other OpenAI-compatible services that lack the role."""

        supports_developer_role = False

    class SharedWhisper(WhisperSTTService):  # type: ignore[misc]
        """Pipecat's Whisper service on an already loaded model (Facecast's weights and thread settings)."""

        def _load(self) -> None:
            self._model = whisper_model

    class FacecastTTSService(TTSService):  # type: ignore[misc]
        """Facecast's HibariTTS as a Pipecat TTS service: each sentence Pipecat aggregates is synthesised by
        the same code Facecast runs, its 24 kHz float chunks pushed as 16-bit ``TTSAudioRawFrame``."""

        def __init__(self, tts: HibariTTS) -> None:
            super().__init__(
                push_start_frame=True,
                push_stop_frames=True,
                sample_rate=tts.sample_rate,
                settings=TTSSettings(model=None, voice=tts.options.voice, language=None),
            )
            self._tts = tts

        def can_generate_metrics(self) -> bool:
            return True

        async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
            async for chunk in self._tts.synthesize(text):
                await self.stop_ttfb_metrics()
                pcm = np.clip(chunk.audio.pcm, -1.0, 1.0)
                yield TTSAudioRawFrame(
                    audio=(pcm * 32767).astype(np.int16).tobytes(),
                    sample_rate=chunk.audio.rate,
                    num_channels=1,
                    context_id=context_id,
                )

    class QuestionInput(BaseInputTransport):  # type: ignore[misc]
        """Streams the questions as a live microphone (see the module docstring)."""

        def __init__(self, questions: list[np.ndarray]) -> None:
            super().__init__(TransportParams(audio_in_enabled=True, audio_in_sample_rate=RATE_IN))
            self._questions = questions
            self._feeder: asyncio.Task[None] | None = None
            self.done = asyncio.Event()

        async def start(self, frame: StartFrame) -> None:
            await super().start(frame)
            await self.set_transport_ready(frame)
            if self._feeder is None:
                self._feeder = self.create_task(self._feed(), "question-feeder")

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, BotStoppedSpeakingFrame) and conv.current and conv.current.first_audio:
                conv.replied.set()
            elif isinstance(frame, BotStartedSpeakingFrame):
                conv.replied.clear()

        async def _send(self, pcm: np.ndarray) -> None:
            await self.push_audio_frame(
                InputAudioRawFrame(
                    audio=(np.clip(pcm, -1, 1) * 32767).astype(np.int16).tobytes(),
                    sample_rate=RATE_IN,
                    num_channels=1,
                )
            )

        async def _feed(self) -> None:
            step = RATE_IN * CHUNK_MS // 1000
            silence = np.zeros(step, np.float32)
            clock = time.monotonic()
            sent = 0

            async def pace() -> None:  # a chunk leaves once its last sample is captured, as from a microphone
                delay = clock + (sent + step) / RATE_IN - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)

            for question in self._questions:
                turn = conv.start_turn()
                voiced = np.flatnonzero(np.abs(question) > 0.01)
                last_voiced = int(voiced[-1]) + 1 if len(voiced) else 0
                for offset in range(0, len(question), step):
                    await pace()
                    await self._send(question[offset : offset + step])
                    if offset < last_voiced <= offset + step:
                        turn.speech_end = clock + (sent + last_voiced - offset) / RATE_IN  # its capture time
                    sent += step
                deadline = time.monotonic() + job.turn_timeout_s
                # the microphone stays live while the bot answers, until it has been quiet for REPLY_GAP_S
                while not conv.replied.is_set() or time.monotonic() - conv.last_audio < REPLY_GAP_S:
                    if time.monotonic() > deadline:
                        turn.error = f"no reply within {job.turn_timeout_s:g} s"
                        break
                    await pace()
                    await self._send(silence)
                    sent += step
            self.done.set()

    class ReplyOutput(BaseOutputTransport):  # type: ignore[misc]
        """Plays the reply in real time and records when its first sample leaves the pipeline."""

        def __init__(self) -> None:
            super().__init__(TransportParams(audio_out_enabled=True))
            self._play_start = 0.0
            self._queued = 0
            self._turn: TurnRecord | None = None

        async def start(self, frame: StartFrame) -> None:
            await super().start(frame)
            await self.set_transport_ready(frame)

        async def write_audio_frame(self, frame: Any) -> bool:
            now = time.monotonic()
            if not isinstance(frame, TTSAudioRawFrame):
                return True  # Pipecat's automatic silence between replies
            turn = conv.current
            if turn is None:
                return True
            samples = len(frame.audio) // 2
            if self._turn is not turn:  # the reply's first sample
                self._turn, self._play_start, self._queued = turn, now + START_BUFFER_S, 0
                turn.first_audio = now
            elif now > self._play_start + self._queued / self.sample_rate:
                turn.late_chunks += 1  # it arrived after the moment it was due to play
            self._queued += samples
            conv.last_audio = now
            turn.samples += samples
            # a sound card takes it in real time: keep at most START_BUFFER_S queued
            delay = self._play_start + self._queued / self.sample_rate - START_BUFFER_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            return True

    class StageObserver(BaseObserver):  # type: ignore[misc]
        """The first push of each stage's frame after the end of speech, per turn."""

        kinds = (
            ("vad_stop", VADUserStoppedSpeakingFrame),
            ("transcript", TranscriptionFrame),
            ("turn_end", UserStoppedSpeakingFrame),
            ("llm_first_token", LLMTextFrame),
            ("tts_first_audio", TTSAudioRawFrame),
        )

        async def on_push_frame(self, data: FramePushed) -> None:
            turn = conv.current
            if turn is None or not turn.speech_end:
                return
            for name, kind in self.kinds:
                if isinstance(data.frame, kind) and name not in turn.events:
                    turn.events[name] = time.monotonic()
                    if name == "transcript":
                        turn.transcript = data.frame.text

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    if job.turn == "default":
        vad = SileroVADAnalyzer()  # VADParams() defaults; stop strategy: smart-turn v3 (the default)
        strategies = UserTurnStrategies()
    elif job.turn == "silence":
        vad = SileroVADAnalyzer(params=VADParams(stop_secs=job.stop_secs))
        strategies = UserTurnStrategies(stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0.0)])
    else:
        raise ValueError(f"unknown turn setting {job.turn!r}: default or silence")
    stt = SharedWhisper(settings=SharedWhisper.Settings(model=job.whisper_dir), device="cpu", compute_type="int8")
    llm = LocalOpenAILLMService(
        api_key="not-needed",
        base_url=job.llm_url,
        settings=LocalOpenAILLMService.Settings(
            model=job.llm_model,
            system_instruction=job.system_prompt,
            temperature=job.temperature,
            max_tokens=job.max_tokens,
        ),
    )
    tts = FacecastTTSService(HibariTTS())
    context = LLMContext()
    aggregators = LLMContextAggregatorPair(
        context, user_params=LLMUserAggregatorParams(vad_analyzer=vad, user_turn_strategies=strategies)
    )
    source = QuestionInput(questions)
    pipeline = Pipeline([source, stt, aggregators.user(), llm, tts, ReplyOutput(), aggregators.assistant()])
    task = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=RATE_IN, audio_out_sample_rate=HibariTTS().sample_rate),
        observers=[StageObserver()],
        idle_timeout_secs=None,
        enable_rtvi=False,
    )
    return task, source


def load_whisper(job: Job) -> Any:
    """The Whisper model, loaded as Facecast loads it (same folder, int8, threads, one worker)."""
    from faster_whisper import WhisperModel

    return WhisperModel(
        job.whisper_dir,
        device="cpu",
        compute_type="int8",
        cpu_threads=job.whisper_threads,
        num_workers=1,
        local_files_only=True,
    )


async def run(job: Job) -> list[list[dict[str, Any]]]:
    """Every conversation of ``job`` through its own pipeline, at the same time; the turn records."""
    from pipecat.workers.runner import WorkerRunner

    from facecast.tts.hibari import HibariTTS

    whisper = load_whisper(job)
    await HibariTTS().warm_up()
    convs = [Conversation() for _ in job.conversations]
    pairs = zip(job.conversations, convs, strict=True)
    built = [build_pipeline(job, questions, conv, whisper) for questions, conv in pairs]

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(*(worker for worker, _ in built))
    running = asyncio.create_task(runner.run())
    fed = asyncio.gather(*(source.done.wait() for _, source in built))
    await asyncio.wait({running, fed}, return_when=asyncio.FIRST_COMPLETED)
    if not running.done():  # every question asked and answered: end the pipelines
        await runner.cancel("every question answered")
    await running
    fed.cancel()
    await asyncio.gather(fed, return_exceptions=True)
    return [[t.as_dict() for t in conv.turns] for conv in convs]


def main() -> None:
    """The child's side: a pickled Job on stdin, the pickled outcome on stdout."""
    job = Job(**pickle.load(sys.stdin.buffer))
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but the pickle goes to the parent
    try:
        result: Any = ("ok", asyncio.run(run(job)))
    except BaseException:  # noqa: BLE001 - every failure goes back to the parent, as text
        result = ("error", traceback.format_exc())
    out.write(pickle.dumps(result))
    out.flush()


if __name__ == "__main__":
    main()
