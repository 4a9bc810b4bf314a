"""Engines turn a GenerationRequest into a stream of TokenEvents."""

from slmkit.engine.base import (
    Engine,
    EventStream,
    FinishReason,
    GenerationRequest,
    SamplingParams,
    TokenEvent,
)

__all__ = ["Engine", "EventStream", "FinishReason", "GenerationRequest", "SamplingParams", "TokenEvent"]
