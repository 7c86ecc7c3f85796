"""Speech-to-speech models (OpenAI Realtime, Gemini Live) behind the ``realtime`` role.

- :mod:`.events`: the role's value types (setup, commands, server events), shared by every provider.
- :mod:`.openai_codec`, :mod:`.gemini_codec`: sans-I/O codecs of each API's WebSocket messages.
- :mod:`.socket`: one WebSocket connection driven by a codec (the role's connection object).
- :mod:`.openai`, :mod:`.gemini`: the providers (``--realtime openai:MODEL`` / ``gemini:MODEL``).
- :mod:`.speech`: a model response's audio deltas -> one utterance's events (audio + audio-driven face).
- :mod:`.workflow`: the engine session's ``conversation`` workflow on a realtime model, with failover to
  the classic STT -> LLM -> TTS pipeline.

See docs/realtime.md. Nothing here is imported by ``facecast`` unless ``--realtime`` is set.
"""
