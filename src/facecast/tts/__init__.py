"""Text-to-speech providers, one module each.

Besides the role (:class:`facecast.roles.TextToSpeech`), a provider may offer ``voices() -> list[str]``: the
names its ``voice`` setting accepts (``facecast voices`` prints them), and ``variants() -> list[str]`` when a
voice name takes a ``+VARIANT`` suffix (espeak-ng). Neither is part of the role: wrappers (remote services,
failover lists) do not have them.
"""
