"""The use-case layer: neutral calls in, runs out (see ``service.GenerationService``)."""

from slmkit.server.usecases.calls import ChatCall, CompletionCall, EmbedCall, GenOptions, OutputFormat, Params
from slmkit.server.usecases.run import ChoiceOut, Delta, Finish, Run, RunResult
from slmkit.server.usecases.service import EmbeddingResult, GenerationService

__all__ = ["ChatCall", "ChoiceOut", "CompletionCall", "Delta", "EmbedCall", "EmbeddingResult", "Finish",
           "GenOptions", "GenerationService", "OutputFormat", "Params", "Run", "RunResult"]
