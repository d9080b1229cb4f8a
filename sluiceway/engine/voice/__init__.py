"""Voice mode: a text stream cut into sentences, each spoken by a speech
provider while the model is still writing (DESIGN.md "Engine": voice)."""

from .chunker import CodeFilter, SentenceChunker, speakable

__all__ = ["CodeFilter", "SentenceChunker", "speakable"]
