"""The internal generation API every engine implements and every route calls through."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, runtime_checkable


class FinishReason(str, Enum):
    STOP = "stop"  # end-of-generation token or a stop string
    LENGTH = "length"  # max_tokens or the slot's context was reached
    CANCELLED = "cancelled"  # the client went away
    ERROR = "error"  # the engine failed


@dataclass(frozen=True)
class SamplingParams:
    """Per-request sampling. ``temperature == 0`` means greedy."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_last_n: int = 64
    seed: int | None = None
    logit_bias: dict[int, float] = field(default_factory=dict)
    grammar: str | None = None
    ignore_eos: bool = False  # never end at an end-of-generation token (benchmarks: vLLM's and llama-server's)
    speculative: bool = True  # prompt-lookup drafts, where the engine has them on (never changes the output)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass
class GenerationRequest:
    """One sequence to generate. ``prompt`` is already tokenized."""

    prompt: list[int]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    max_tokens: int | None = None  # 0 generates nothing (scoring the prompt with ``prompt_logprobs``)
    stop: Sequence[str] = ()
    logprobs: int | None = None  # number of top alternatives; 0 = only the chosen token
    # Score the prompt: each prompt token's log-probability given the tokens before it, with
    # this many top alternatives (None: off). The whole prompt is read again (no prefix reuse),
    # with logits at every position; an engine that cannot raises InvalidRequest in generate().
    prompt_logprobs: int | None = None
    request_id: str = ""


@dataclass(frozen=True)
class ModelInfo:
    """Facts about a loaded model, the same fields for every engine.

    ``extra`` holds what only one format knows (llama.cpp's description, onnxruntime-genai's
    version, an embedder's pooling); ``as_dict`` flattens everything for display."""

    format: str  # gguf | onnx | mlx
    file: str
    architecture: str
    vocab_size: int
    context_length: int
    slots: int = 1
    kind: str = "chat"  # chat | embedding
    parameters: int = 0
    size_bytes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        fixed = {k: v for k, v in self.__dict__.items() if k != "extra"}
        return {**self.extra, **fixed}

    def check_tokens(self, tokens: Sequence[int], param: str) -> None:
        """400 naming ``param`` when a token id is outside the vocabulary."""
        from slmkit.errors import InvalidRequest

        for token in tokens:
            if not isinstance(token, int) or not 0 <= token < self.vocab_size:
                raise InvalidRequest(f"{param} holds the token id {token!r}, outside the vocabulary "
                                     f"(0..{self.vocab_size - 1})", param=param)


class ChatTemplateLike(Protocol):
    """What the server needs of a model's chat template."""

    bos_token: str
    eos_token: str

    def render(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True,
               tools: list[dict[str, Any]] | None = None) -> str: ...


@dataclass
class TokenLogprob:
    token: str
    logprob: float | None  # None only for a prompt's first token (nothing before it predicts it)
    bytes: list[int]
    top: list[tuple[str, float, list[int]]] = field(default_factory=list)


@dataclass
class TokenEvent:
    """What the engine reports after each step for one sequence.

    ``text`` is the new text that is safe to show (stop strings are held back until
    they can no longer match). The last event has ``finish_reason`` set.
    """

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    logprobs: list[TokenLogprob] = field(default_factory=list)
    # one per prompt token when the request asked for ``prompt_logprobs``, on the first event
    # after the prompt was read (the final one when ``max_tokens`` is 0)
    prompt_logprobs: list[TokenLogprob] = field(default_factory=list)
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    stop_sequence: str | None = None  # on the last event: the stop string that ended the sequence


class TokenEvents(Protocol):
    """The events of one request; iterate it, and ``cancel()`` (or stop iterating) to free
    its slot."""

    def __aiter__(self) -> AsyncIterator[TokenEvent]: ...

    def cancel(self) -> None: ...


@runtime_checkable
class Engine(Protocol):
    """A loaded model that can tokenize, render chat templates and generate."""

    name: str

    @property
    def template(self) -> ChatTemplateLike:
        """The model's chat template (a served profile's TEMPLATE may replace it)."""
        ...

    @property
    def context_length(self) -> int:
        """Tokens one sequence may hold (prompt plus generated)."""
        ...

    @property
    def info(self) -> ModelInfo:
        """Facts about the loaded model (architecture, parameters, file, ...)."""
        ...

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]: ...

    def detokenize(self, tokens: Sequence[int]) -> str: ...

    def piece(self, token: int) -> str:
        """The text of one token, special tokens written out (``<|im_end|>``)."""
        ...

    def render_chat(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True,
                    tools: list[dict[str, Any]] | None = None) -> str: ...

    def chat_tokens(self, rendered: str) -> list[int]:
        """Tokenize a rendered chat prompt (adds BOS only when the template did not)."""
        ...

    def generate(self, request: GenerationRequest) -> TokenEvents:
        """Queue one request and return its events. Raises ``Overloaded`` at once when the
        wait queue is full, so callers can answer before they start a response."""
        ...

    def stats(self) -> dict[str, float]:
        """Live figures: running and waiting requests, KV usage, reused tokens."""
        ...

    def slot_states(self) -> list[dict[str, int | bool]]:
        """One entry per slot: id, busy, cached_tokens, generated."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Embedder(Protocol):
    """A loaded embedding model: token lists in, unit-length vectors out."""

    name: str
    kind: str  # "embedding"
    dimensions: int

    @property
    def context_length(self) -> int:
        """Most tokens one input may have."""
        ...

    @property
    def info(self) -> ModelInfo: ...

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = False) -> list[int]: ...

    def detokenize(self, tokens: Sequence[int]) -> str: ...

    def piece(self, token: int) -> str: ...

    def truncate(self, tokens: list[int]) -> list[int]:
        """Cut to ``context_length``, keeping a trailing separator token the model expects."""
        ...

    async def embed(self, inputs: list[list[int]]) -> list[list[float]]: ...

    def stats(self) -> dict[str, float]: ...

    def close(self) -> None: ...
