"""An example Facecast provider package: ``--tts example-tone``, a voice that hums the letters of the text.

Facecast finds it through the ``facecast.providers`` entry point in this package's ``pyproject.toml``: on
first use the registry imports this module and calls :func:`setup`, which registers the provider with its
options class and its declared capabilities. Nothing heavy is imported here; the factory builds the voice.
"""

from __future__ import annotations

from facecast.registry import Capabilities, ProviderRequest, register

from .tone import ToneOptions, ToneTTS

__all__ = ["setup", "ToneOptions", "ToneTTS"]


def _factory(request: ProviderRequest) -> ToneTTS:
    # ``--tts example-tone:PITCH`` sets the pitch; the options come from [tts.example-tone] in the TOML file,
    # FACECAST_TTS_EXAMPLE_TONE_* variables and --set tts.example-tone.FIELD=VALUE flags.
    options: ToneOptions = request.options
    if request.arg:
        from dataclasses import replace

        from facecast.errors import ConfigError

        try:
            options = replace(options, pitch_hz=float(request.arg))
        except ValueError:
            raise ConfigError(f"--tts example-tone:PITCH needs a number of Hz, got {request.arg!r}") from None
    return ToneTTS(options)


def setup() -> None:
    """Register the provider (called by Facecast's registry through the entry point)."""
    register(
        "tts",
        "example-tone",
        _factory,
        options=ToneOptions,
        # Every chunk carries IPA phonemes that tile its audio: the phonetic face animates it exactly.
        caps=Capabilities(timing="phonemes", alphabet="ipa"),
        summary="example provider package: hums each letter as a tone, with exact IPA phoneme timing",
        install="pip install ./examples/facecast-example-provider",
        requires=("numpy",),
        licence="Apache-2.0",
    )
