"""Engines turn a GenerationRequest into a stream of TokenEvents."""

from slmkit.engine.base import (
    Engine,
    FinishReason,
    GenerationRequest,
    ModelInfo,
    SamplingParams,
    TokenEvent,
    TokenEvents,
)

__all__ = ["Engine", "FinishReason", "GenerationRequest", "ModelInfo", "SamplingParams", "TokenEvent", "TokenEvents"]
