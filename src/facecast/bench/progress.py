"""Progress of ``facecast bench`` on stderr: one line per table group as it runs, with its time.

``[3/11] v2v: voice-to-voice latency through the real server... 41.2 s``, written when the group ends. On a
terminal the line is started when the group starts (so a slow group shows what is running) and finished with
its time; elsewhere (a log file, CI) it is written whole, so log lines from the benchmarks never land inside
it. A group that ``--quick`` leaves out gets its line too, saying why and how to run it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Collection, Mapping
from typing import TextIO

__all__ = ["DESCRIPTIONS", "QUICK_SKIPS", "Steps"]

DESCRIPTIONS: Mapping[str, str] = {
    "stt": "speech-to-text accuracy and latency on real speech, Whisper vs PocketSphinx",
    "tts": "text-to-speech speed, hibari vs piper vs espeak",
    "providers": "first audio / final transcript per provider path, and each cloud adapter's cost per message",
    "realtime": "speech-to-speech models through local protocol servers: latency, face, barge-in",
    "llm": "the embedded language models as a game character",
    "v2v": "voice-to-voice latency through the real server, and players who pause mid-sentence",
    "endpoint": "end-of-turn detection, silence vs smart turn, on complete and incomplete turns",
    "resources": "real-time factor, memory, first start and disk of each default component",
    "pipeline": "first output latency and speed of the light pipeline",
    "face": "face animators' speed",
    "livelink": "Live Link jitter and audio/face sync",
    "compare": "streaming vs NeuroSync's request/response",
    "scale": "concurrent conversations",
    "remote": "remote services' overhead",
    "soak": "the soak test: honest and hostile clients for minutes",
}
"""What each group measures, for its progress line."""

QUICK_SKIPS: Mapping[str, str] = {
    "llm": "each model loads in its own process, about a minute on two cores",
    "providers": "it starts the local protocol servers and feeds real speech in real time, minutes on two cores",
    "realtime": "it holds spoken conversations through two protocol servers in real time, about a minute",
    "resources": "it starts every default component in fresh processes, minutes on two cores",
}
"""Groups ``--quick`` leaves out, and why (unless ``--only`` names them: then they run, with quick sizes)."""


class Steps:
    """The progress lines of one run of the groups ``only`` (in that order), leaving out those of ``skips``
    (group -> why). Call :meth:`run` as each group comes up, and :meth:`close` at the end."""

    def __init__(
        self,
        only: Collection[str],
        skips: Mapping[str, str] | None = None,
        *,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._only = list(only)
        self._skips = skips or {}
        self._stream = stream
        self._clock = clock
        self._started: float | None = None
        self._line = ""
        self.skipped: list[str] = []
        """The groups left out by ``--quick`` so far."""

    def run(self, group: str) -> bool:
        """Whether ``group`` runs now; prints its line (finishing the previous group's with its time)."""
        if group not in self._only:
            return False
        self._finish()
        number = f"[{self._only.index(group) + 1}/{len(self._only)}] {group}:"
        if group in self._skips:
            self.skipped.append(group)
            self._write(f"{number} skipped by --quick ({self._skips[group]}; run it with --quick --only {group})\n")
            return False
        self._line = f"{number} {DESCRIPTIONS.get(group, group)}... "
        if self._tty():
            self._write(self._line)
        self._started = self._clock()
        return True

    def close(self) -> None:
        """Finish the last group's line."""
        self._finish()

    def _finish(self) -> None:
        if self._started is not None:
            took = f"{self._clock() - self._started:.1f} s\n"
            self._write(took if self._tty() else self._line + took)
            self._started = None

    def _tty(self) -> bool:
        return (self._stream or sys.stderr).isatty()

    def _write(self, text: str) -> None:
        stream = self._stream or sys.stderr
        stream.write(text)
        stream.flush()
