"""A local Ollama-shaped front for the real slmkit server, for `slm bench --api ollama` tests.

slmkit's own /api/chat is being built separately; until it lands, this stub relays each
/api/chat request to the real server's OpenAI stream and re-encodes it the way Ollama does:
NDJSON lines, then a final ``done: true`` line with ``eval_count``, ``prompt_eval_count`` and
durations in nanoseconds. The tokens are the real model's. It also serves an OpenAI route that
omits ``usage`` plus a llama.cpp-style ``/tokenize`` backed by the real model's vocabulary, to
exercise token counting by the server's tokenizer.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from slmkit.engine.llamacpp.bindings import Model
from tests.helpers import free_port


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def build_app(upstream: str, model: str, vocab: Path) -> FastAPI:
    app = FastAPI()
    tokenizer = Model(vocab, vocab_only=True)

    @app.get("/api/tags")
    async def tags() -> dict[str, Any]:
        return {"models": [{"name": model, "model": model, "size": 0}]}

    @app.post("/api/chat", response_model=None)
    async def chat(request: Request) -> Any:
        body = await request.json()
        if body.get("model") != model:
            return JSONResponse({"error": f"model '{body.get('model')}' not found"}, status_code=404)
        options = body.get("options") or {}
        upstream_body = {"model": model, "messages": body["messages"], "stream": True,
                         "stream_options": {"include_usage": True},
                         "max_tokens": options.get("num_predict", 128),
                         "temperature": options.get("temperature", 0.8), "seed": options.get("seed")}
        return StreamingResponse(_ndjson(upstream_body), media_type="application/x-ndjson")

    async def _ndjson(upstream_body: dict[str, Any]) -> AsyncIterator[str]:
        start = time.perf_counter_ns()
        first = None
        usage: dict[str, int] = {}
        reason = "stop"
        async with httpx.AsyncClient(timeout=120, trust_env=False) as client, client.stream(
                "POST", f"{upstream}/v1/chat/completions", json=upstream_body) as resp:
            async for line in resp.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                obj = json.loads(line[6:])
                usage = obj.get("usage") or usage
                for choice in obj.get("choices", []):
                    reason = choice.get("finish_reason") or reason
                    text = choice["delta"].get("content")
                    if text:
                        first = first or time.perf_counter_ns()
                        yield json.dumps({"model": model, "created_at": _now(),
                                          "message": {"role": "assistant", "content": text}, "done": False}) + "\n"
        end = time.perf_counter_ns()
        first = first or end
        yield json.dumps({"model": model, "created_at": _now(), "message": {"role": "assistant", "content": ""},
                          "done": True, "done_reason": reason, "total_duration": end - start, "load_duration": 0,
                          "prompt_eval_count": usage.get("prompt_tokens", 0), "prompt_eval_duration": first - start,
                          "eval_count": usage.get("completion_tokens", 0), "eval_duration": end - first}) + "\n"

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model, "object": "model"}]}

    @app.post("/v1/chat/completions", response_model=None)
    async def no_usage_chat(request: Request) -> Any:
        body = await request.json()
        body.pop("stream_options", None)  # a server that never reports usage

        async def relay() -> AsyncIterator[bytes]:
            async with httpx.AsyncClient(timeout=120, trust_env=False) as client, client.stream(
                    "POST", f"{upstream}/v1/chat/completions", json=body) as resp:
                async for chunk in resp.aiter_raw():
                    yield chunk

        return StreamingResponse(relay(), media_type="text/event-stream")

    @app.post("/tokenize")
    async def tokenize(request: Request) -> dict[str, Any]:
        body = await request.json()
        return {"tokens": tokenizer.tokenize(body["content"], add_special=bool(body.get("add_special", True)),
                                             parse_special=False)}

    return app


class StubServer:
    def __init__(self, upstream: str, model: str, vocab: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(build_app(upstream, model, vocab), host="127.0.0.1", port=self.port,
                                log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("stub server did not start")
            time.sleep(0.05)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
