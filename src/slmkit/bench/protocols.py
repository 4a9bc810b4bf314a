"""Endpoints and the two streaming protocols: OpenAI chat/completions (SSE) and Ollama /api/chat
(NDJSON). Each ``send`` fills a :class:`RequestRecord`; failures are recorded, never raised."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from slmkit.bench.records import RequestRecord
from slmkit.bench.workload import BenchPrompt
from slmkit.errors import InvalidRequest

Api = Literal["openai", "ollama"]
NS = 1e-9


@dataclass
class Endpoint:
    """A server under test. Spec syntax: ``[label=][openai+|ollama+]URL[#model]``."""

    label: str
    root: str  # scheme://host:port[/prefix], without /v1
    api: Api = "openai"
    model: str | None = None
    pid: int | None = None
    tokenize_route: str | None = None  # "/tokenize" (llama.cpp, slmkit) or "/extras/tokenize" (llama-cpp-python)

    @classmethod
    def parse(cls, spec: str, *, api: Api = "openai", model: str | None = None) -> Endpoint:
        label, sep, rest = spec.partition("=")
        if not sep or "://" in label:
            label, rest = "", spec
        for prefix in ("openai+", "ollama+"):
            if rest.startswith(prefix):
                api, rest = prefix[:-1], rest[len(prefix):]  # type: ignore[assignment]
        rest, _, fragment = rest.partition("#")
        parts = urlsplit(rest)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidRequest(f"not an http(s) URL: {spec!r}")
        path = parts.path.rstrip("/")
        for suffix in ("/chat/completions", "/v1", "/api/chat", "/api"):
            path = path.removesuffix(suffix)
        root = f"{parts.scheme}://{parts.netloc}{path}"
        return cls(label=label or root.split("://", 1)[1], root=root, api=api, model=fragment or model)

    @property
    def url(self) -> str:
        return self.root + ("/v1/chat/completions" if self.api == "openai" else "/api/chat")


def error_kind(exc: BaseException) -> str:
    """The error-by-kind bucket of a transport failure."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return "connect"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return "disconnect"
    return "protocol"


async def discover(client: httpx.AsyncClient, endpoint: Endpoint) -> None:
    """Fill in the model (first one the server lists) and the tokenizer route. Raises
    ``httpx.HTTPError`` when the server cannot be reached."""
    if endpoint.model is None:
        if endpoint.api == "openai":
            resp = await client.get(endpoint.root + "/v1/models")
            resp.raise_for_status()
            models = [m["id"] for m in resp.json().get("data", [])]
        else:
            resp = await client.get(endpoint.root + "/api/tags")
            resp.raise_for_status()
            models = [m["name"] for m in resp.json().get("models", [])]
        if not models:
            raise InvalidRequest(f"{endpoint.label} lists no models; give one as URL#model or --model")
        endpoint.model = models[0]
    if endpoint.api == "openai":
        endpoint.tokenize_route = await _find_tokenizer(client, endpoint)


async def _find_tokenizer(client: httpx.AsyncClient, endpoint: Endpoint) -> str | None:
    for route, body in (("/tokenize", {"content": "hello world"}),
                        ("/extras/tokenize", {"input": "hello world", "model": endpoint.model})):
        try:
            resp = await client.post(endpoint.root + route, json=body)
            if resp.status_code == 200 and isinstance(resp.json().get("tokens"), list):
                return route
        except (httpx.HTTPError, ValueError):
            continue
    return None


async def count_tokens(client: httpx.AsyncClient, endpoint: Endpoint, text: str) -> int | None:
    """Tokens of ``text`` by the server's own tokenizer, or None."""
    if not endpoint.tokenize_route or not text:
        return None
    body: dict[str, Any] = ({"content": text, "add_special": False} if endpoint.tokenize_route == "/tokenize"
                            else {"input": text, "model": endpoint.model})
    try:
        resp = await client.post(endpoint.root + endpoint.tokenize_route, json=body)
        tokens = resp.json().get("tokens") if resp.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    return len(tokens) if isinstance(tokens, list) else None


@dataclass
class SendOptions:
    temperature: float = 0.0
    seed: int | None = 0
    ignore_eos: bool = False


def request_body(endpoint: Endpoint, prompt: BenchPrompt, options: SendOptions, index: int) -> dict[str, Any]:
    seed = None if options.seed is None else options.seed + index
    if endpoint.api == "ollama":
        opts: dict[str, Any] = {"num_predict": prompt.max_tokens, "temperature": options.temperature}
        if seed is not None:
            opts["seed"] = seed
        return {"model": endpoint.model, "messages": prompt.messages, "stream": True, "options": opts}
    body: dict[str, Any] = {"model": endpoint.model, "messages": prompt.messages, "stream": True,
                            "max_tokens": prompt.max_tokens, "temperature": options.temperature,
                            "stream_options": {"include_usage": True}}
    if seed is not None:
        body["seed"] = seed
    if options.ignore_eos:
        body["ignore_eos"] = True
    return body


async def send(client: httpx.AsyncClient, endpoint: Endpoint, prompt: BenchPrompt, options: SendOptions,
               record: RequestRecord) -> None:
    """Stream one request and measure it into ``record``."""
    record.max_tokens = prompt.max_tokens
    start = time.perf_counter()
    parse = _openai_event if endpoint.api == "openai" else _ollama_event
    try:
        body = request_body(endpoint, prompt, options, record.index)
        async with client.stream("POST", endpoint.url, json=body) as resp:
            if resp.status_code != 200:
                await resp.aread()
                record.error_kind, record.error = f"http_{resp.status_code}", _error_text(resp)
                return
            async for line in resp.aiter_lines():
                if not line.strip() or parse(line, record, time.perf_counter() - start):
                    continue
                break
    except httpx.HTTPError as exc:
        record.error_kind, record.error = error_kind(exc), f"{type(exc).__name__}: {exc}"
    finally:
        record.e2e_s = time.perf_counter() - start
    if record.ok and record.finish_reason is None:
        record.error_kind, record.error = "incomplete", "the stream ended without a finish reason"


async def count_missing_tokens(client: httpx.AsyncClient, endpoint: Endpoint, records: list[RequestRecord]) -> None:
    """Output tokens of the requests whose server reported no usage: by the server's tokenizer,
    else one per streamed chunk. Called after a run, so the counting is not timed as load."""
    for record in records:
        if record.token_source != "none" or not record.text:
            continue
        counted = await count_tokens(client, endpoint, record.text)
        if counted is not None:
            record.output_tokens, record.token_source = counted, "tokenizer"
        else:
            record.output_tokens, record.token_source = record.chunks, "chunks"


def _error_text(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200] or resp.reason_phrase
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return str(err.get("message", err))
    return str(err or body)[:200]


def _content_chunk(record: RequestRecord, text: str, now: float) -> None:
    if not text:
        return
    if record.ttft_s is None:
        record.ttft_s = now
    record.chunk_times.append(now)
    record.chunks += 1
    record.text += text


def _openai_event(line: str, record: RequestRecord, now: float) -> bool:
    """Handle one SSE line; False ends the stream."""
    if not line.startswith("data:"):
        return True
    data = line[5:].strip()
    if data == "[DONE]":
        return False
    try:
        obj = json.loads(data)
    except json.JSONDecodeError:
        record.error_kind, record.error = "protocol", f"bad SSE data: {data[:80]}"
        return False
    if "error" in obj:
        err = obj["error"]
        record.error_kind, record.error = "stream_error", str(err.get("message", err) if isinstance(err, dict) else err)
        return False
    for choice in obj.get("choices") or []:
        _content_chunk(record, (choice.get("delta") or {}).get("content") or choice.get("text") or "", now)
        if choice.get("finish_reason"):
            record.finish_reason = choice["finish_reason"]
    usage = obj.get("usage")
    if usage:
        record.prompt_tokens = usage.get("prompt_tokens")
        record.output_tokens, record.token_source = int(usage.get("completion_tokens", 0)), "usage"
    return True


def _ollama_event(line: str, record: RequestRecord, now: float) -> bool:
    """Handle one NDJSON line; False ends the stream. The last line (``done: true``) carries
    ``eval_count``, ``prompt_eval_count`` and durations in nanoseconds."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        record.error_kind, record.error = "protocol", f"bad NDJSON line: {line[:80]}"
        return False
    if "error" in obj:
        record.error_kind, record.error = "stream_error", str(obj["error"])
        return False
    _content_chunk(record, (obj.get("message") or {}).get("content") or "", now)
    if not obj.get("done"):
        return True
    record.finish_reason = obj.get("done_reason") or "stop"
    if "eval_count" in obj:
        record.output_tokens, record.token_source = int(obj["eval_count"]), "usage"
    if "prompt_eval_count" in obj:
        record.prompt_tokens = int(obj["prompt_eval_count"])
    record.server_timing = {key.replace("_duration", "_duration_s"): float(obj[key]) * NS
                            for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")
                            if isinstance(obj.get(key), int | float)}
    return False
