"""LangChain on a local slmkit server, through both of its APIs.

``ChatOpenAI`` talks to the OpenAI API at ``URL/v1`` and ``ChatOllama`` to the Ollama API at
``URL``; each shows a chat reply, a streamed reply, structured output into a pydantic class
(``with_structured_output``), and a tool call (``bind_tools``) whose result is fed back for a
final answer. ``OpenAIEmbeddings`` and ``OllamaEmbeddings`` embed a
few sentences with the embedding model slmkit ships, and the cosine similarities show that
related sentences land closer than unrelated ones.

    slm serve                                   # in another terminal
    python examples/langchain/langchain_slmkit.py --url http://127.0.0.1:8080 --report report.json

It prints each part; ``--report FILE`` also writes them all to one JSON document (what the test
reads).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import ollama
import openai
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_ollama import ChatOllama, OllamaEmbeddings
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import BaseModel, Field

CHAT_MODEL = "smollm2-135m-instruct"
EMBED_MODEL = "all-minilm-l6-v2"
QUESTION = "What is the weather like in Paris today?"
SENTENCES = {
    "query": "How do I bake bread at home?",
    "related": "A simple recipe for baking a loaf of bread in your own oven.",
    "unrelated": "The stock market closed lower after the central bank raised interest rates.",
}


class Place(BaseModel):
    """A city and the country it is in."""

    city: str = Field(description="the city's name")
    country: str = Field(description="the country's name")


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    # A real app would call a weather service here; the example answers from a fixed table.
    return json.dumps({"city": city, "temperature_c": 21, "sky": "sunny"})


# One worked exchange before the question. A 135M-parameter model rarely decides on its own to
# call a tool; shown one call, it makes the next one (few-shot prompting works for tools too).
EXAMPLE_EXCHANGE: list[BaseMessage] = [
    HumanMessage("What is the weather like in London?"),
    AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "London"}, "id": "call_example"}]),
    ToolMessage(json.dumps({"city": "London", "temperature_c": 15, "sky": "cloudy"}), tool_call_id="call_example"),
    AIMessage("It is 15 °C and cloudy in London."),
]


class ExampleError(Exception):
    """A problem the user can fix (bad URL, server not running): one line, exit 1."""


def chat_models(url: str, max_tokens: int) -> dict[str, BaseChatModel]:
    """The same model behind both APIs, greedy so runs repeat."""
    return {
        "openai": ChatOpenAI(base_url=f"{url}/v1", api_key="unused",  # type: ignore[arg-type]
                             model=CHAT_MODEL, temperature=0, seed=0, max_tokens=max_tokens,  # type: ignore[call-arg]
                             max_retries=0, timeout=120),
        "ollama": ChatOllama(base_url=url, model=CHAT_MODEL, temperature=0, seed=0, num_predict=max_tokens),
    }


def tool_round_trip(llm: BaseChatModel, api: str) -> dict[str, Any]:
    """Ask a question the tool answers; run the tool the model called; answer with its result.

    On the OpenAI API ``tool_choice`` names the tool, so slmkit's grammar makes the call certain.
    The Ollama API has no ``tool_choice``: there the model decides (``auto``), helped by the
    worked exchange before the question. Either way the grammar makes any call well-formed."""
    forced = {"tool_choice": "get_weather"} if api == "openai" else {}
    asked: list[BaseMessage] = [*EXAMPLE_EXCHANGE, HumanMessage(QUESTION)]
    reply = llm.bind_tools([get_weather], **forced).invoke(asked)
    if not isinstance(reply, AIMessage):
        raise ExampleError(f"expected an AIMessage, got {type(reply).__name__}")
    out: dict[str, Any] = {"tool_calls": [{"name": c["name"], "args": c["args"], "id": c["id"]}
                                          for c in reply.tool_calls],
                           "text": reply.text}
    if reply.tool_calls:
        results = [ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"] or "")
                   for call in reply.tool_calls]
        final = llm.invoke([*asked, reply, *results])
        out["tool_results"] = [str(r.content) for r in results]
        out["final_answer"] = final.text
    return out


def chat_demo(llm: BaseChatModel, api: str) -> dict[str, Any]:
    messages = [SystemMessage("You are a helpful assistant. Answer in one short sentence."),
                HumanMessage("What is the capital of France?")]
    reply = llm.invoke(messages)
    chunks = [chunk.text for chunk in llm.stream("Name three colors of the rainbow.")]
    # structured output: slmkit constrains the reply to the model class's JSON schema
    place = llm.with_structured_output(Place, method="json_schema").invoke(
        "Paris is the capital of France. Extract the city and the country.")
    if not isinstance(place, Place):
        raise ExampleError(f"expected a Place, got {place!r}")
    return {"reply": reply.text, "stream_chunks": chunks, "streamed_text": "".join(chunks),
            "structured": place.model_dump(), "tools": tool_round_trip(llm, api)}


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def embeddings_demo(url: str) -> dict[str, Any]:
    embedders = {
        # check_embedding_ctx_length=False sends the text itself: the default tokenizes with
        # OpenAI's tiktoken (downloaded at run time), whose token ids mean nothing to other models.
        "openai": OpenAIEmbeddings(base_url=f"{url}/v1", api_key="unused",  # type: ignore[arg-type]
                                   model=EMBED_MODEL, check_embedding_ctx_length=False, max_retries=0),
        "ollama": OllamaEmbeddings(base_url=url, model=EMBED_MODEL),
    }
    out = {}
    for api, embedder in embedders.items():
        query = embedder.embed_query(SENTENCES["query"])
        related, unrelated = embedder.embed_documents([SENTENCES["related"], SENTENCES["unrelated"]])
        out[api] = {"dimensions": len(query), "similarity_related": cosine(query, related),
                    "similarity_unrelated": cosine(query, unrelated)}
    return out


def check_server(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ExampleError(f"--url must be an http(s) URL such as http://127.0.0.1:8080, got {url!r}")
    url = url.rstrip("/")
    try:
        httpx.get(f"{url}/health", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        raise ExampleError(f"no slmkit server answers at {url} ({exc}); start one with `slm serve`") from None
    return url


def run(url: str, max_tokens: int) -> dict[str, Any]:
    url = check_server(url)
    report: dict[str, Any] = {api: chat_demo(llm, api) for api, llm in chat_models(url, max_tokens).items()}
    report["embeddings"] = embeddings_demo(url)
    return report


def show(report: dict[str, Any]) -> None:
    for api in ("openai", "ollama"):
        part = report[api]
        print(f"== {api} API ==")
        print(f"chat:   {part['reply']!r}")
        print(f"stream: {len(part['stream_chunks'])} chunks: {part['streamed_text']!r}")
        print(f"structured: {part['structured']}")
        tools = part["tools"]
        for call in tools["tool_calls"]:
            print(f"tool call: {call['name']}({json.dumps(call['args'])})")
        if "final_answer" in tools:
            print(f"answer with the tool's result: {tools['final_answer']!r}")
        elif not tools["tool_calls"]:
            print(f"no tool call; the model answered: {tools['text']!r}")
    for api, emb in report["embeddings"].items():
        print(f"== {api} embeddings: {emb['dimensions']} dimensions; cosine related "
              f"{emb['similarity_related']:.3f} vs unrelated {emb['similarity_unrelated']:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="slmkit server [%(default)s]")
    parser.add_argument("--max-tokens", type=int, default=48, help="tokens per reply [%(default)s]")
    parser.add_argument("--report", type=Path, default=None, help="also write everything to this JSON file")
    args = parser.parse_args(argv)
    if args.max_tokens < 1:
        parser.error("--max-tokens must be positive")
    try:
        report = run(args.url, args.max_tokens)
    except ExampleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (openai.APIError, ollama.ResponseError, httpx.HTTPError) as exc:
        print(f"error: the server refused a request: {exc}", file=sys.stderr)
        return 1
    show(report)
    if args.report is not None:
        tmp = args.report.with_name(f".{args.report.name}.tmp")
        tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
        tmp.replace(args.report)  # never a half-written file under the final name
    return 0


if __name__ == "__main__":
    sys.exit(main())
