"""``facecast play --audio``: the take's audio starts its output latency before frame 0, every frame is sent
while it plays, and a machine without an audio output gets a clear message before anything is streamed."""

from __future__ import annotations

import shutil
import socket
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from facecast.cli import main
from facecast.engine.livelink import LiveLinkTarget, VirtualClock
from facecast.engine.play import play
from facecast.errors import ConfigError, InputError
from facecast.face.arkit import INDEX
from facecast.face.takes import write_livelink_app_csv
from facecast.play_audio import AudioPlayer, open_player
from facecast.protocol.livelink import decode_frame
from facecast.takefolder import write_session
from facecast.types import Float32Array

RATE = 16000


def _session(folder: Path) -> Float32Array:
    """Half a second of a tone with a jaw ramp (recognisable on the wire); returns the audio."""
    frames = np.zeros((30, 68), np.float32)
    frames[:, INDEX["JawOpen"]] = np.linspace(0, 1, 30)
    audio = (0.1 * np.sin(np.arange(RATE // 2) * 0.05)).astype(np.float32)
    write_session(folder, audio, RATE, frames)
    return audio


def _udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def _jaw_frames_received(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            packet = decode_frame(sock.recv(4096))
        except BlockingIOError:
            return count
        count += packet.values[INDEX["JawOpen"]] > 0


class FakePlayer:
    """Records, on the play's clock, when it was started and waited for, and what the face had sent by then."""

    def __init__(self, clock: VirtualClock, sock: socket.socket, latency: float) -> None:
        self.clock, self.sock, self._latency = clock, sock, latency
        self.audio: Float32Array | None = None
        self.rate = 0
        self.started_at: float | None = None
        self.waited_at: float | None = None
        self.frames_before_start = -1
        self.frames_before_wait = 0
        self.stopped = False

    def open(self, audio: Float32Array, rate: int) -> AudioPlayer:
        self.audio, self.rate = audio, rate
        return self

    @property
    def latency(self) -> float:
        return self._latency

    def start(self) -> None:
        self.started_at = self.clock.now()
        self.frames_before_start = _jaw_frames_received(self.sock)

    def wait(self) -> None:
        self.waited_at = self.clock.now()
        self.frames_before_wait = _jaw_frames_received(self.sock)

    def stop(self) -> None:
        self.stopped = True


@pytest.mark.parametrize("latency", [0.02, 0.3])  # under and over the default 0.1 s lead-in
async def test_audio_is_started_its_latency_before_frame_0(tmp_path: Path, latency: float) -> None:
    audio = _session(tmp_path)
    clock = VirtualClock(100.0)
    sock = _udp()
    fake = FakePlayer(clock, sock, latency)
    try:
        target = (LiveLinkTarget("127.0.0.1", sock.getsockname()[1]),)
        result = await play(tmp_path, target, subject="Player", clock=clock, audio_out=fake.open)
    finally:
        sock.close()
    assert fake.rate == RATE and fake.audio is not None
    np.testing.assert_allclose(fake.audio, audio, atol=1 / 32767)  # the session's own audio (PCM16 in the file)
    assert result.start >= 100.0 + latency  # there was time to start the audio before frame 0
    assert fake.started_at == pytest.approx(result.start - latency)
    assert fake.frames_before_start == 0  # no frame of the take went out before the audio started
    assert fake.waited_at is not None and fake.waited_at >= result.start + 29 / 60
    assert fake.frames_before_wait == 29  # the whole ramp (frame 0 is 0.0) was sent while the audio played
    assert result.skipped == 0 and not fake.stopped


async def test_a_take_csv_has_no_audio_to_play(tmp_path: Path) -> None:
    csv = tmp_path / "take.csv"
    write_livelink_app_csv(csv, np.zeros((60, 68), np.float32), fps=60)
    fake = FakePlayer(VirtualClock(), _udp(), 0.0)
    try:
        with pytest.raises(InputError, match="without audio"):
            await play(csv, (LiveLinkTarget("127.0.0.1", 9),), clock=fake.clock, audio_out=fake.open)
    finally:
        fake.sock.close()
    assert fake.audio is None


def _no_outputs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """This machine as one without sound: sounddevice missing, no player command on PATH."""
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import sounddevice -> ImportError
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_no_output_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _no_outputs(monkeypatch, tmp_path)
    with pytest.raises(ConfigError) as info:
        open_player(np.zeros(100, np.float32), RATE)
    message = str(info.value)
    assert message.startswith("no audio output on this machine")
    assert "facecast[audio]" in message and "paplay" in message and "aplay" in message
    assert "Drop --audio" in message


def test_play_audio_without_output_fails_before_streaming(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _session(tmp_path / "take")
    _no_outputs(monkeypatch, tmp_path)
    sock = _udp()
    try:
        code = main(["play", str(tmp_path / "take"), "--audio", "--livelink", f"127.0.0.1:{sock.getsockname()[1]}"])
        received = _jaw_frames_received(sock)
    finally:
        sock.close()
    err = capsys.readouterr().err
    assert code == 1 and "facecast play: error: no audio output on this machine" in err
    assert received == 0


def test_this_machine_without_sound_says_so(tmp_path: Path) -> None:
    """The real look-up, unpatched: where there is no output at all (as on the CI machines) the message says
    so; where there is one, a player opens."""
    try:
        player = open_player(np.zeros(1600, np.float32), RATE)
    except ConfigError as exc:
        assert "no audio output on this machine" in str(exc)
    else:
        player.stop()


def test_a_command_line_player_gets_the_take_as_a_wav(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With sounddevice unavailable, an ``aplay`` on PATH plays a WAV of the take (a fake aplay that copies it)."""
    cp = shutil.which("cp")
    _no_outputs(monkeypatch, tmp_path)
    copy = tmp_path / "played.wav"
    fake = tmp_path / "bin" / "aplay"
    fake.write_text(f'#!/bin/sh\nfor last; do :; done\n{cp} "$last" {copy}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    audio = (0.2 * np.sin(np.arange(RATE) * 0.01)).astype(np.float32)
    player = open_player(audio, RATE)
    player.start()
    player.wait()
    from facecast.audio import read_audio

    played, rate = read_audio(copy)
    assert rate == RATE
    np.testing.assert_allclose(played, audio, atol=1 / 32767)


def test_a_failing_command_line_player_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _no_outputs(monkeypatch, tmp_path)
    fake = tmp_path / "bin" / "aplay"
    fake.write_text("#!/bin/sh\necho 'aplay: main:831: audio open error: No such file or directory' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    player = open_player(np.zeros(1600, np.float32), RATE)
    player.start()
    with pytest.raises(ConfigError, match="aplay could not play the audio: aplay: main:831: audio open error"):
        player.wait()


class FakeSoundDevice:
    """Stands in for the sounddevice module: one output device at 48 kHz whose stream, once started, pulls
    256-frame blocks through the player's callback (on a thread, as PortAudio does) until it stops."""

    class PortAudioError(Exception):
        pass

    class CallbackStop(Exception):
        pass

    def __init__(self) -> None:
        self.played: list[np.ndarray] = []
        self.streams: list[dict[str, object]] = []

    def query_devices(self, kind: str) -> dict[str, object]:
        assert kind == "output"
        return {"name": "fake", "default_samplerate": 48000.0}

    def OutputStream(self, **kwargs: object) -> object:
        self.streams.append(kwargs)
        device = self

        class Stream:
            latency = 0.042
            samplerate = kwargs["samplerate"]

            def start(self) -> None:
                import threading

                self._thread = threading.Thread(target=self._run)
                self._thread.start()

            def _run(self) -> None:
                callback = kwargs["callback"]
                while True:
                    block = np.full((256, 1), np.nan, np.float32)
                    try:
                        callback(block, 256, None, None)
                    except device.CallbackStop:
                        device.played.append(block[:, 0].copy())
                        break
                    device.played.append(block[:, 0].copy())
                kwargs["finished_callback"]()

            def abort(self) -> None:
                pass

            def close(self) -> None:
                self._thread.join()

        return Stream()


def test_sounddevice_plays_the_whole_take_at_the_device_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSoundDevice()
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    audio = (0.2 * np.sin(np.arange(RATE) * 0.01)).astype(np.float32)  # 1 s at 16 kHz
    player = open_player(audio, RATE)
    assert player.latency == 0.042  # what PortAudio reports for the opened stream
    [stream] = fake.streams
    assert stream["samplerate"] == 48000 and stream["channels"] == 1 and stream["latency"] == "low"
    player.start()
    player.wait()
    played = np.concatenate(fake.played)
    assert not np.isnan(played).any()  # every block filled, the last one padded with silence
    assert 48000 <= len(played) < 48000 + 256 and not played[48000:].any()
    np.testing.assert_allclose(played[:48000:3], audio, atol=0.02)  # the same sound, resampled
