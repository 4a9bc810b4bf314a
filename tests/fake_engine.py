"""A scripted engine for in-process tests: it satisfies the Engine protocol with no model.

Tokens are UTF-8 bytes (id = byte + 3; 0, 1, 2 are BOS, EOS and padding), the chat template
is ChatML, and each request's answer comes from ``reply`` (a string, or a function of the
prompt text and the request). Stop strings, ``max_tokens``, the context end and
cancellation behave as in the real engines; every request is kept in ``requests`` so a test
can check what reached the engine (sampling, grammar, prompt)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from slmkit.engine.base import FinishReason, GenerationRequest, ModelInfo, TokenEvent, TokenLogprob
from slmkit.engine.llamacpp.template import ChatTemplate
from slmkit.engine.stops import StopMatcher
from slmkit.errors import Overloaded

VOCAB = 259
Reply = str | Callable[[str, GenerationRequest], str]


class FakeStream:
    def __init__(self, engine: FakeEngine, request: GenerationRequest, text: str) -> None:
        self.engine, self.request, self.text = engine, request, text
        self.cancelled = False
        self.scored = False

    def __aiter__(self) -> AsyncIterator[TokenEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[TokenEvent]:
        request, engine = self.request, self.engine
        engine.running += 1
        try:
            stops = StopMatcher(request.stop)
            data = self.text.encode()
            limit = min(request.max_tokens or engine.context_length, engine.context_length - len(request.prompt))
            done = 0
            if request.max_tokens == 0:  # scoring the prompt only
                yield self._event("", [], 0, FinishReason.LENGTH)
                return
            for byte in data:
                await asyncio.sleep(engine.delay_s)
                if self.cancelled:
                    yield self._event("", [], done, FinishReason.CANCELLED)
                    return
                done += 1
                text, matched = stops.feed(chr(byte) if byte < 128 else bytes([byte]).decode("latin-1"))
                lps = [TokenLogprob(chr(byte), -0.5, [byte])] if request.logprobs is not None else []
                if matched:
                    event = self._event(text, [byte + 3], done, FinishReason.STOP, lps)
                    event.stop_sequence = stops.matched
                    yield event
                    return
                if done >= limit:
                    yield self._event(text + stops.flush(), [byte + 3], done, FinishReason.LENGTH, lps)
                    return
                yield self._event(text, [byte + 3], done, None, lps)
            yield self._event(stops.flush(), [], done + 1, FinishReason.STOP)  # the end token counts
        finally:
            engine.running -= 1

    def _event(self, text: str, ids: list[int], done: int, finish: FinishReason | None,
               lps: list[TokenLogprob] | None = None) -> TokenEvent:
        timings = {"prompt_s": 0.001, "generation_s": 0.002} if finish is not None else {}
        event = TokenEvent(text=text, token_ids=ids, finish_reason=finish, prompt_tokens=len(self.request.prompt),
                           completion_tokens=done, logprobs=lps or [], timings=timings)
        if self.request.prompt_logprobs is not None and not self.scored:  # the first event: -0.25 a token
            self.scored = True
            event.prompt_logprobs = [TokenLogprob(self.engine.piece(t), None if i == 0 else -0.25,
                                                  list(self.engine.piece(t).encode()))
                                     for i, t in enumerate(self.request.prompt)]
        return event

    def cancel(self) -> None:
        self.cancelled = True


class FakeEngine:
    """The Engine protocol, scripted."""

    def __init__(self, name: str = "fake", *, reply: Reply = "Hello from the fake engine.",
                 context_length: int = 512, max_queue: int = 64, delay_s: float = 0.0) -> None:
        self.name = name
        self.reply = reply
        self.delay_s = delay_s
        self.max_queue = max_queue
        self.requests: list[GenerationRequest] = []
        self.running = 0
        self.closed = False
        self._context = context_length
        self._template = ChatTemplate(None)
        self._info = ModelInfo(format="gguf", file=str(Path("/fake.gguf")), architecture="fake",
                               vocab_size=VOCAB, context_length=context_length, slots=4)

    @property
    def template(self) -> ChatTemplate:
        return self._template

    @property
    def context_length(self) -> int:
        return self._context

    @property
    def info(self) -> ModelInfo:
        return self._info

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        return ([0] if add_special else []) + [b + 3 for b in text.encode()]

    def detokenize(self, tokens: Sequence[int]) -> str:
        return bytes(t - 3 for t in tokens if t >= 3).decode(errors="replace")

    def piece(self, token: int) -> str:
        return ["<s>", "</s>", "<pad>"][token] if token < 3 else self.detokenize([token])

    def render_chat(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True,
                    tools: list[dict[str, Any]] | None = None) -> str:
        return self._template.render(messages, add_generation_prompt=add_generation_prompt, tools=tools)

    def chat_tokens(self, rendered: str) -> list[int]:
        return self.tokenize(rendered, add_special=False)

    def generate(self, request: GenerationRequest) -> FakeStream:
        if self.running >= self.max_queue:
            raise Overloaded("the fake engine's queue is full", retry_after=1)
        self.requests.append(request)
        prompt = self.detokenize(request.prompt)
        text = self.reply(prompt, request) if callable(self.reply) else self.reply
        return FakeStream(self, request, text)

    def stats(self) -> dict[str, float]:
        return {"running": self.running, "waiting": 0, "slots": 4, "kv_cache_usage": 0.0, "reused_tokens": 0}

    def slot_states(self) -> list[dict[str, int | bool]]:
        return [{"id": i, "busy": False, "cached_tokens": 0, "generated": 0} for i in range(4)]

    def close(self) -> None:
        self.closed = True


class FakeEmbedder:
    """The Embedder protocol, scripted: byte tokens, 8-dimensional unit vectors from their sums."""

    kind = "embedding"
    dimensions = 8

    def __init__(self, name: str = "fake-embed", *, context_length: int = 256) -> None:
        self.name = name
        self.inputs: list[list[int]] = []
        self.closed = False
        self._context = context_length
        self._info = ModelInfo(format="gguf", file=str(Path("/fake-embed.gguf")), architecture="bert",
                               vocab_size=VOCAB, context_length=context_length, kind="embedding")

    @property
    def context_length(self) -> int:
        return self._context

    @property
    def info(self) -> ModelInfo:
        return self._info

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = False) -> list[int]:
        return [b + 3 for b in text.encode()]

    def detokenize(self, tokens: Sequence[int]) -> str:
        return bytes(t - 3 for t in tokens if t >= 3).decode(errors="replace")

    def piece(self, token: int) -> str:
        return self.detokenize([token])

    def truncate(self, tokens: list[int]) -> list[int]:
        return tokens[:self._context]

    async def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        self.inputs += inputs
        out = []
        for tokens in inputs:
            raw = [float(1 + sum(tokens[i::self.dimensions]) % 7) for i in range(self.dimensions)]
            norm = sum(x * x for x in raw) ** 0.5
            out.append([x / norm for x in raw])
        return out

    def stats(self) -> dict[str, float]:
        return {"running": 0, "waiting": 0}

    def close(self) -> None:
        self.closed = True
