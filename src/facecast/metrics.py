"""Prometheus metrics (served at ``/metrics``): per-stage latency histograms, sessions, utterances, errors.

One :class:`Metrics` per server, each with its own registry, so tests and benchmarks that start several
servers in one process do not mix their numbers.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics", "CONTENT_TYPE", "STAGES"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STAGES = ("endpoint", "stt_final", "llm_first_token", "first_sentence", "tts_first_chunk", "first_face", "engine_ack")
"""Stages of a turn, each timed from the end of the player's speech (or typed text)."""

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stage_seconds = Histogram(
            "facecast_turn_stage_seconds",
            "Time from the end of the player's speech to each stage of the reply",
            ["stage"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.active_sessions = Gauge("facecast_active_sessions", "Connected engine sessions", registry=self.registry)
        self.utterances = Counter(
            "facecast_utterances_total", "Reply utterances by outcome", ["outcome"], registry=self.registry
        )
        self.errors = Counter(
            "facecast_errors_total", "Errors reported to clients, by code", ["code"], registry=self.registry
        )
        self.failovers = Counter(
            "facecast_failovers_total", "Service failovers, by role", ["role"], registry=self.registry
        )
        self.session_store_errors = Counter(
            "facecast_session_store_errors_total",
            "Session store calls that failed or timed out (the conversation went on), by operation",
            ["operation"],
            registry=self.registry,
        )
        self.held = Counter(
            "facecast_replies_held_total",
            "Replies that waited because the player was speaking (their turn had ended too soon): cancelled "
            "(mostly the player went on and their new turn's reply or barge-in took over; also an interrupt or "
            "the session closing), released (a noise without words), timed_out (waited the longest hold)",
            ["outcome"],
            registry=self.registry,
        )
        self.speculations = Counter(
            "facecast_speculative_replies_total",
            "Replies started on a pause's transcript before the endpoint: started, adopted, dropped",
            ["outcome"],
            registry=self.registry,
        )

    def observe_turn(self, stages_ms: Mapping[str, float]) -> None:
        for stage, ms in stages_ms.items():
            if stage in STAGES:
                self.stage_seconds.labels(stage).observe(max(0.0, ms / 1000))

    def render(self) -> bytes:
        return generate_latest(self.registry)
