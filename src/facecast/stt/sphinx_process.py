"""A PocketSphinx decoder in a process of its own, driven through a pipe as if it were in-process.

PocketSphinx's Python binding holds the GIL while it decodes, so in the server's process every decoder ran on
the one core the GIL allows and the event loop waited behind them: with four players speaking at once the
decoders could not keep up (finals seconds late) and replies to the other sessions played late. In processes
of their own, decoders run on every core and the server's loop only writes their audio into a pipe.

:class:`ProcessDecoder` has the methods :mod:`facecast.stt.pocketsphinx` calls on a ``pocketsphinx.Decoder``.
Calls that return nothing (``start_utt``, ``process_raw``, ``set_cmn``) are written and not waited for; the
others wait for the answer. The child (``python -m facecast.stt.sphinx_process``) builds its decoder exactly as
the in-process path does, answers in order, exits when its pipe closes (so it never outlives the server), and
exits after reporting any failure, so a decoder that failed is never used again.

Frames, both ways: one byte (the operation, or ``k``/``e`` for an answer that is a value or an error), four
bytes of little-endian length, the payload (audio bytes, or a pickle: both ends are the same program).
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import subprocess
import sys
import time
from typing import IO, Any

__all__ = ["ProcessDecoder"]

_HEADER = struct.Struct("<cI")


def _write(stream: IO[bytes], op: bytes, payload: bytes = b"") -> None:
    frame = memoryview(_HEADER.pack(op, len(payload)) + payload)
    while frame:  # an unbuffered write may take part of a large frame
        written = stream.write(frame)
        frame = frame[written if written is not None else len(frame) :]


def _read(stream: IO[bytes]) -> tuple[bytes, bytes]:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    op, size = _HEADER.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        raise EOFError
    return op, payload


class _Hypothesis:
    __slots__ = ("hypstr",)

    def __init__(self, text: str) -> None:
        self.hypstr = text


class ProcessDecoder:
    """A configured decoder in a child process (``kwargs`` and ``grammar`` as for the in-process one).

    Construction starts the child and waits until its decoder exists, raising what creating it raised
    (:class:`~facecast.errors.ConfigError`, :class:`~facecast.errors.InputError`). Any later failure,
    including a child that died, raises :class:`RuntimeError`. Not thread-safe: one worker thread owns it."""

    def __init__(self, kwargs: dict[str, Any], grammar: str | None) -> None:
        self.utterance_cpu = 0.0
        """CPU seconds the child spent on the last utterance (set by :meth:`end_utt`)."""
        self._child = subprocess.Popen(
            [sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
        )
        assert self._child.stdin is not None and self._child.stdout is not None
        self._to = self._child.stdin  # unbuffered: each frame is one write, delivered at once
        self._from = io.BufferedReader(self._child.stdout)  # type: ignore[type-var]  # read(n) waits for n bytes
        try:
            self._ask(b"I", pickle.dumps((kwargs, grammar)))
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        return self._child.pid

    def _send(self, op: bytes, payload: bytes = b"") -> None:
        try:
            _write(self._to, op, payload)
        except (BrokenPipeError, ValueError, OSError) as exc:
            raise RuntimeError(f"the pocketsphinx process is gone ({self._exit()})") from exc

    def _ask(self, op: bytes, payload: bytes = b"") -> Any:
        self._send(op, payload)
        try:
            kind, answer = _read(self._from)
        except (EOFError, BrokenPipeError, ValueError, OSError) as exc:
            raise RuntimeError(f"the pocketsphinx process is gone ({self._exit()})") from exc
        value = pickle.loads(answer)  # noqa: S301 - from our own child process
        if kind == b"e":
            raise value
        return value

    def _exit(self) -> str:
        try:
            code = self._child.wait(1.0)
        except subprocess.TimeoutExpired:
            return "not answering"
        return f"exit status {code}"

    # -- the pocketsphinx.Decoder methods the recogniser uses
    def start_utt(self) -> None:
        self._send(b"S")

    def process_raw(self, data: bytes, no_search: bool = False, full_utt: bool = False) -> None:
        self._send(b"R", data)

    def hyp(self) -> _Hypothesis | None:
        text = self._ask(b"H")
        return None if text is None else _Hypothesis(text)

    def end_utt(self) -> None:
        self.utterance_cpu = self._ask(b"E")

    def get_cmn(self, update: bool = False) -> str:
        return str(self._ask(b"G"))

    def set_cmn(self, cmn: str) -> None:
        self._send(b"C", cmn.encode())

    def close(self) -> None:
        """End the child (it exits when its input closes) and reap it."""
        try:
            self._to.close()
        except OSError:
            pass
        try:
            self._child.wait(2.0)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()
        self._from.close()


def _serve(inp: IO[bytes], out: IO[bytes]) -> int:
    """The child: build the decoder from the first frame, then answer frames until the input closes."""
    from .pocketsphinx import _DecoderFactory

    decoder: Any = None
    started = 0.0
    while True:
        try:
            op, payload = _read(inp)
        except EOFError:
            return 0
        try:
            if op == b"R":
                decoder.process_raw(payload, False, False)
                continue
            if op == b"S":
                started = time.process_time()
                decoder.start_utt()
                continue
            if op == b"C":
                decoder.set_cmn(payload.decode())
                continue
            if op == b"I":
                kwargs, grammar = pickle.loads(payload)  # noqa: S301 - from our own parent process
                decoder = _DecoderFactory(kwargs, grammar, in_process=True)()
                value: Any = None
            elif op == b"H":
                hyp = decoder.hyp()
                value = None if hyp is None else str(hyp.hypstr)
            elif op == b"E":
                decoder.end_utt()
                value = time.process_time() - started
            elif op == b"G":
                value = decoder.get_cmn(False)
            else:
                raise RuntimeError(f"unknown operation {op!r}")
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, then this decoder is done
            try:
                data = pickle.dumps(exc)
            except Exception:  # noqa: BLE001 - an exception that does not pickle goes back as text
                data = pickle.dumps(RuntimeError(repr(exc)))
            _write(out, b"e", data)
            out.flush()
            return 1
        _write(out, b"k", pickle.dumps(value))
        out.flush()


if __name__ == "__main__":
    sys.exit(_serve(os.fdopen(sys.stdin.fileno(), "rb", buffering=1 << 16), sys.stdout.buffer))
