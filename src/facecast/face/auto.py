"""The automatic face (``--face auto``, the default): the phonetic face when the voice reports phoneme timing,
the audio-driven learned face when it does not.

Per utterance, the first speech chunk decides: if it carries phonemes (every TTS with phoneme timing puts
the utterance's first phoneme, often a pause, in its first chunk), the utterance is animated by
:class:`~facecast.face.phonetic.PhoneticAnimator` from that timing (exact lip closures); otherwise by
:class:`~facecast.face.learned.LearnedAnimator` from the audio. The frames are exactly those of the chosen
animator. A user never has to know which TTS reports what: any voice gets a face, and the best one it can.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator

from ..aio import aclose, closing
from ..types import FaceFrames, SpeechChunk
from .learned import LearnedAnimator
from .phonetic import PhoneticAnimator

__all__ = ["AutoAnimator"]


async def _replay(first: SpeechChunk, rest: AsyncIterator[SpeechChunk]) -> AsyncGenerator[SpeechChunk, None]:
    try:
        yield first
        async for chunk in rest:
            yield chunk
    finally:
        await aclose(rest)


class AutoAnimator:
    """Chooses the phonetic or the learned animator per utterance; implements :class:`~facecast.roles.FaceAnimator`.

    Holds no per-utterance state: it may animate any number of utterances at once, some by each animator.
    """

    def __init__(self, phonetic: PhoneticAnimator | None = None, learned: LearnedAnimator | None = None) -> None:
        self._phonetic = phonetic or PhoneticAnimator()
        self._learned = learned or LearnedAnimator()

    @property
    def phonetic(self) -> PhoneticAnimator:
        return self._phonetic

    @property
    def learned(self) -> LearnedAnimator:
        return self._learned

    @property
    def lookahead(self) -> float:
        """Seconds of audio past a frame needed before it is yielded: the larger of the two animators'."""
        return max(self._phonetic.lookahead, self._learned.lookahead)

    def choose(self, first: SpeechChunk) -> PhoneticAnimator | LearnedAnimator:
        """The animator for an utterance whose first speech chunk is ``first``."""
        return self._phonetic if first.phonemes else self._learned

    async def warm_up(self) -> None:
        """Load the learned model now, so that a bad model is a start-up error and the first turn is not slowed."""
        self._learned.model  # noqa: B018 - loads it

    async def animate(self, speech: AsyncIterable[SpeechChunk]) -> AsyncGenerator[FaceFrames, None]:
        """Turn one utterance's speech into 60 fps frames with the animator :meth:`choose` picks from its first
        chunk (the frames, their timing and errors are that animator's). Closing this generator early closes
        ``speech``'s iterator too, so that cancellation reaches the TTS."""
        iterator = aiter(speech)
        try:
            try:
                first = await anext(iterator)
            except StopAsyncIteration:
                return
            animator = self.choose(first)
            async with closing(animator.animate(_replay(first, iterator))) as frames:
                async for block in frames:
                    yield block
        finally:
            await aclose(iterator)
