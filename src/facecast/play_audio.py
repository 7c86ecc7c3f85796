"""Local audio output for ``facecast play --audio``: the take's sound on this machine's speakers.

Facecast never plays audio in a conversation (the engine does); ``play --audio`` is for checking a recorded
take by eye and ear, its face streaming to Live Link while its audio plays here. :func:`open_player` picks
the first output that works:

1. `sounddevice <https://python-sounddevice.readthedocs.io>`_ (PortAudio; the ``audio`` extra, and a
   dependency of pocketsphinx): an output stream whose latency PortAudio reports, so the sound is started
   that much before the face;
2. a sound server's or ALSA's command-line player on ``PATH``: ``paplay`` (PulseAudio / PipeWire),
   ``pw-play`` (PipeWire), ``aplay`` (ALSA), given a temporary WAV file; their latency is not reported, and
   :data:`COMMAND_LATENCY_S` is assumed.

Where none works (no output device, no PortAudio library, no player command) it raises
:class:`~facecast.errors.ConfigError` saying what is missing and how to get it, before anything is streamed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from .audio import resample, write_wav
from .errors import ConfigError
from .types import Float32Array

__all__ = ["AudioPlayer", "PlayerFactory", "open_player", "PLAYER_COMMANDS", "COMMAND_LATENCY_S"]

PLAYER_COMMANDS: tuple[tuple[str, ...], ...] = (("paplay",), ("pw-play",), ("aplay", "-q"))
"""The command-line players tried after sounddevice, in order (each is given a WAV file as its last argument)."""

COMMAND_LATENCY_S = 0.05
"""Assumed time from starting a command-line player to its first sample being heard (process start and the
sound server's buffer; none of them reports it)."""


class AudioPlayer(Protocol):
    """One take's audio, ready to play on an output device: the device is open, nothing sounds yet."""

    @property
    def latency(self) -> float:
        """Seconds from :meth:`start` to the first sample being heard (start it that much before the face)."""
        ...

    def start(self) -> None:
        """Start playing; returns at once."""
        ...

    def wait(self) -> None:
        """Block until the audio has played out, then release the device. Raises
        :class:`~facecast.errors.ConfigError` if the output failed while playing."""
        ...

    def stop(self) -> None:
        """Stop now (if playing) and release the device; harmless after :meth:`wait` or a second time."""
        ...


PlayerFactory = Callable[[Float32Array, int], AudioPlayer]
"""Opens a player for (float32 mono audio, its rate): :func:`open_player`, or a fake in tests."""


def open_player(audio: Float32Array, rate: int) -> AudioPlayer:
    """A player for ``audio`` (float32 mono at ``rate``) on the first output that works (see the module's
    docstring). Raises :class:`~facecast.errors.ConfigError` naming every output tried and why none works."""
    reasons: list[str] = []
    try:
        return _SoundDevicePlayer(audio, rate)
    except _Unavailable as exc:
        reasons.append(f"sounddevice: {exc}")
    for command in PLAYER_COMMANDS:
        path = shutil.which(command[0])
        if path is not None:
            return _CommandPlayer((path, *command[1:]), audio, rate)
    reasons.append(f"no {', '.join(c[0] for c in PLAYER_COMMANDS[:-1])} or {PLAYER_COMMANDS[-1][0]} command on PATH")
    raise ConfigError(
        "no audio output on this machine ("
        + "; ".join(reasons)
        + "). Drop --audio to stream the face alone, or play the take's audio.wav elsewhere"
    )


class _Unavailable(Exception):
    """sounddevice cannot play here (the reason is the message)."""


class _SoundDevicePlayer:
    """A PortAudio output stream fed from the whole take by a callback (PortAudio's own thread)."""

    def __init__(self, audio: Float32Array, rate: int) -> None:
        sd = _sounddevice()
        try:
            device: dict[str, Any] = sd.query_devices(kind="output")
        except (sd.PortAudioError, ValueError) as exc:
            raise _Unavailable(f"no output device ({exc})") from None
        out_rate = int(device.get("default_samplerate") or rate)
        self._audio = np.ascontiguousarray(resample(audio, rate, out_rate) if out_rate != rate else audio, np.float32)
        self._position = 0
        self._done = threading.Event()
        self._stop_callback = sd.CallbackStop
        try:
            self._stream = sd.OutputStream(
                samplerate=out_rate,
                channels=1,
                dtype="float32",
                latency="low",
                callback=self._fill,
                finished_callback=self._done.set,
            )
        except (sd.PortAudioError, ValueError) as exc:
            raise _Unavailable(f"cannot open the output device ({exc})") from None
        self._closed = False

    @property
    def latency(self) -> float:
        return float(self._stream.latency)

    def _fill(self, outdata: Any, frames: int, time: Any, status: Any) -> None:
        chunk = self._audio[self._position : self._position + frames]
        outdata[: len(chunk), 0] = chunk
        outdata[len(chunk) :] = 0
        self._position += frames
        if len(chunk) < frames:
            raise self._stop_callback

    def start(self) -> None:
        self._stream.start()

    def wait(self) -> None:
        seconds = len(self._audio) / float(self._stream.samplerate)
        self._done.wait(seconds + self.latency + 5.0)
        self.stop()

    def stop(self) -> None:
        if not self._closed:
            self._closed = True
            self._stream.abort()
            self._stream.close()


def _sounddevice() -> Any:
    try:
        import sounddevice
    except ImportError:
        raise _Unavailable("not installed (pip install 'facecast[audio]')") from None
    except OSError as exc:  # the module loads PortAudio when imported
        raise _Unavailable(f"{exc} (install PortAudio: apt-get install libportaudio2)") from None
    return sounddevice


class _CommandPlayer:
    """A command-line player given the take as a temporary WAV file."""

    def __init__(self, command: tuple[str, ...], audio: Float32Array, rate: int) -> None:
        handle, name = tempfile.mkstemp(prefix="facecast-play-", suffix=".wav")
        os.close(handle)
        write_wav(name, audio, rate)
        self._file = name
        self._command = (*command, name)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def latency(self) -> float:
        return COMMAND_LATENCY_S

    def start(self) -> None:
        self._process = subprocess.Popen(self._command, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait(self) -> None:
        try:
            if self._process is None:
                return
            _, err = self._process.communicate()
            if self._process.returncode != 0:
                why = err.decode(errors="replace").strip().splitlines()[-1:] or [f"exit {self._process.returncode}"]
                raise ConfigError(f"{os.path.basename(self._command[0])} could not play the audio: {why[0]}")
        finally:
            self._remove()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.communicate()
        self._remove()

    def _remove(self) -> None:
        try:
            os.unlink(self._file)
        except FileNotFoundError:
            pass
