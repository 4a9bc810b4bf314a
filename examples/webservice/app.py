"""A FastAPI service with task endpoints (summarize, classify, extract) on slmkit's Python API.

Run it:  python examples/webservice/app.py --port 8000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

import jsonschema
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator

import slmkit
from slmkit.errors import ContextLengthExceeded, InvalidRequest, OutputInvalid, Overloaded, SlmkitError

# -- requests and answers ---------------------------------------------------------------


class SummarizeIn(BaseModel):
    text: str = Field(min_length=1, max_length=20_000)
    max_words: int = Field(40, ge=5, le=200)


class SummarizeOut(BaseModel):
    summary: str


class ClassifyIn(BaseModel):
    text: str = Field(min_length=1, max_length=20_000)
    labels: list[str] = Field(min_length=2, max_length=20)

    @field_validator("labels")
    @classmethod
    def _distinct(cls, labels: list[str]) -> list[str]:
        if len(set(labels)) != len(labels) or not all(label.strip() for label in labels):
            raise ValueError("labels must be distinct, non-empty strings")
        return labels


class ClassifyOut(BaseModel):
    label: str


class ExtractIn(BaseModel):
    text: str = Field(min_length=1, max_length=20_000)
    json_schema: dict[str, Any] = Field(alias="schema")

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"not a valid JSON schema: {exc.message}") from None
        if schema.get("type") != "object":
            raise ValueError("the schema must describe an object")
        return schema


class ExtractOut(BaseModel):
    data: dict[str, Any]


# -- the service ---------------------------------------------------------------------------


def create_app(model: slmkit.Model, *, timeout: float = 60.0) -> FastAPI:
    """The service over a loaded model (the caller loads it and closes it)."""
    app = FastAPI(title="slmkit task service")
    app.state.model = model

    async def ask(request: Request, **kwargs: Any) -> slmkit.Completion:
        """One model call under the service's timeout (the call is cancelled, freeing its slot)."""
        model: slmkit.Model = request.app.state.model
        return await asyncio.wait_for(model.achat(**kwargs), timeout=timeout)

    @app.post("/summarize")
    async def summarize(body: SummarizeIn, request: Request) -> SummarizeOut:
        out = await ask(request, messages=[
            {"role": "system", "content": f"Summarize the user's text in at most {body.max_words} words."},
            {"role": "user", "content": body.text}], max_tokens=body.max_words * 2, temperature=0.0)
        return SummarizeOut(summary=out.text.strip())

    @app.post("/classify")
    async def classify(body: ClassifyIn, request: Request) -> ClassifyOut:
        schema = {"type": "object", "properties": {"label": {"enum": body.labels}}, "required": ["label"]}
        out = await ask(request, messages=[
            {"role": "system", "content": "Classify the text with exactly one of these labels: "
                                          + ", ".join(body.labels) + ". Answer in JSON."},
            {"role": "user", "content": body.text}], response_format=schema, max_tokens=40, temperature=0.0)
        return ClassifyOut(label=out.parsed["label"])

    @app.post("/extract")
    async def extract(body: ExtractIn, request: Request) -> ExtractOut:
        out = await ask(request, messages=[
            {"role": "system", "content": "Extract the fields of the JSON schema from the user's text. "
                                          "Answer in JSON."},
            {"role": "user", "content": body.text}], response_format=body.json_schema, max_tokens=200,
            temperature=0.0)
        return ExtractOut(data=out.parsed)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    install_error_mapping(app)
    return app


def install_error_mapping(app: FastAPI) -> None:
    """slmkit's errors as HTTP answers: the client's fault 4xx, the model's 502, overload 503."""

    @app.exception_handler(TimeoutError)
    async def timed_out(request: Request, exc: TimeoutError) -> JSONResponse:
        return JSONResponse({"error": "the model took too long; try a shorter text"}, status_code=504)

    @app.exception_handler(SlmkitError)
    async def model_error(request: Request, exc: SlmkitError) -> JSONResponse:
        status, headers = 500, {}
        if isinstance(exc, ContextLengthExceeded):
            status = 413
        elif isinstance(exc, InvalidRequest):
            status = 400
        elif isinstance(exc, Overloaded):
            status, headers = 503, exc.headers()
        elif isinstance(exc, OutputInvalid):
            status = 502
        return JSONResponse({"error": exc.message}, status_code=status, headers=headers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A task service (summarize, classify, extract) on a local SLM.")
    parser.add_argument("--model", default=os.environ.get("SLM_MODEL"), help="model [the embedded SmolLM2]")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per model call")
    parser.add_argument("--parallel", type=int, default=4, help="requests the model decodes together")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.timeout <= 0 or args.parallel < 1:
        parser.error("--timeout and --parallel must be positive")
    options = {"parallel": args.parallel, "ctx_size": 2048}
    if args.threads:
        options["threads"] = args.threads
    try:
        model = slmkit.load(args.model, **options)
    except SlmkitError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    with model:
        uvicorn.run(create_app(model, timeout=args.timeout), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
