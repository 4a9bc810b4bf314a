"""Extract fields under a JSON schema from every line of a JSONL file, through an OpenAI-compatible server.

    python examples/batch/extract.py IN.jsonl OUT.jsonl --schema SCHEMA.json --field text

Each input line is a JSON object; its ``--field`` is the text to extract from and its
``--id-field`` (if present) is copied to the result. Up to ``--concurrency`` requests run at once
(asyncio + ``openai.AsyncOpenAI``); each asks for ``response_format`` of type ``json_schema``
(strict), which slmkit enforces with a grammar, and the result is validated against the schema
again here. Results are appended to OUT one whole line at a time (see ``results.py``), so after
an interruption (Ctrl-C, SIGTERM, a kill) the same command resumes where it stopped without
asking for any finished line again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import openai
from results import ResultsError, ResultsWriter, resume
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

DEFAULT_BASE_URL = "http://127.0.0.1:8080/v1"
DEFAULT_MODEL = "smollm2-135m-instruct"
SYSTEM_PROMPT = ("Extract the requested fields from the user's text. Reply with one JSON object that follows "
                 "this JSON schema:\n{schema}")


class BatchError(Exception):
    """Anything that stops the whole run, said in one line."""


class Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class LineError(Exception):
    """One line failed; ``kind`` is input, output, rejected or request (retried on the next run)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Job:
    line: int
    id: Any
    text: str


@dataclass(frozen=True)
class Task:
    schema: dict[str, Any]
    schema_name: str
    model: str
    max_tokens: int


# -- inputs -----------------------------------------------------------------------------------
def load_schema(path: Path) -> dict[str, Any]:
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BatchError(f"cannot read the schema {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise BatchError(f"the schema {path} is not JSON: {exc}") from None
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise BatchError(f"the schema {path} must be a JSON schema of an object (\"type\": \"object\")")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise BatchError(f"the schema {path} is not a valid JSON schema: {exc.message}") from None
    return schema


def schema_name(schema: dict[str, Any], path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", str(schema.get("title") or path.stem)).strip("_")
    return name[:64] or "extraction"


def input_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, raw bytes) of each non-blank line."""
    try:
        with path.open("rb") as lines:
            for number, raw in enumerate(lines, 1):
                if raw.strip():
                    yield number, raw
    except OSError as exc:
        raise BatchError(f"cannot read {path}: {exc.strerror}") from None


def parse_line(number: int, raw: bytes, field: str, id_field: str) -> Job:
    try:
        item = json.loads(raw.decode("utf-8").strip())
    except UnicodeDecodeError as exc:
        raise LineError("input", f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except ValueError as exc:
        raise LineError("input", f"not JSON ({exc})") from None
    if not isinstance(item, dict):
        raise LineError("input", "not a JSON object")
    text = item.get(field)
    if not isinstance(text, str) or not text.strip():
        raise LineError("input", f"no text in field '{field}'")
    return Job(line=number, id=item.get(id_field), text=text)


# -- the model --------------------------------------------------------------------------------
async def extract(client: openai.AsyncOpenAI, task: Task, job: Job) -> dict[str, Any]:
    """The object the model extracts from ``job.text``; LineError when there is none."""
    try:
        response = await client.chat.completions.create(
            model=task.model, temperature=0, seed=0, max_tokens=task.max_tokens,
            messages=[{"role": "system", "content": SYSTEM_PROMPT.format(schema=json.dumps(task.schema))},
                      {"role": "user", "content": job.text}],
            response_format={"type": "json_schema", "json_schema": {
                "name": task.schema_name, "strict": True, "schema": task.schema}})
    except openai.APIConnectionError:
        raise  # the server is gone: the run stops (and the next one resumes)
    except openai.APIStatusError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        kind = "request" if exc.status_code == 429 or exc.status_code >= 500 else "rejected"
        raise LineError(kind, f"the server answered {exc.status_code}: {body.get('message') or exc.message}") from None
    choice = response.choices[0]
    if choice.finish_reason == "length":
        raise LineError("output", f"the answer was cut at --max-tokens {task.max_tokens} before the JSON ended")
    try:
        data = json.loads(choice.message.content or "")
        jsonschema.validate(data, task.schema, cls=jsonschema.Draft202012Validator)
    except ValueError as exc:
        raise LineError("output", f"the model's answer is not JSON: {exc}") from None
    except jsonschema.ValidationError as exc:
        raise LineError("output", f"the model's answer does not match the schema: {exc.message}") from None
    return dict(data)


async def connect(base_url: str, model: str) -> openai.AsyncOpenAI:
    """A client for the server, after checking that it answers and serves ``model``."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY", "unused"),
                                timeout=300, max_retries=3)
    try:
        await client.with_options(max_retries=0, timeout=10).models.retrieve(model)
    except openai.APIConnectionError:
        await client.close()
        raise BatchError(f"cannot reach the server at {base_url} (start one with `slm serve`, "
                         "or pass --base-url / set OPENAI_BASE_URL)") from None
    except openai.APIStatusError as exc:
        await client.close()
        reason = f"does not serve the model {model}" if exc.status_code == 404 else f"answered {exc.status_code}"
        raise BatchError(f"the server at {base_url} {reason}") from None
    return client


# -- the run ----------------------------------------------------------------------------------
@dataclass
class Run:
    args: argparse.Namespace
    writer: ResultsWriter
    progress: Progress
    console: Console
    bar: TaskID

    def record(self, job_line: int, job_id: Any, outcome: dict[str, Any] | LineError) -> None:
        if isinstance(outcome, LineError):
            self.writer.write({"line": job_line, "id": job_id,
                               "error": {"kind": outcome.kind, "message": str(outcome)}})
            self.console.print(f"line {job_line}: {outcome.kind} error: {outcome}", markup=False, highlight=False,
                               soft_wrap=True)
        else:
            self.writer.write({"line": job_line, "id": job_id, "data": outcome})
        self.progress.advance(self.bar)

    async def worker(self, client: openai.AsyncOpenAI, task: Task, queue: asyncio.Queue[Job | None]) -> None:
        while (job := await queue.get()) is not None:
            try:
                outcome: dict[str, Any] | LineError = await extract(client, task, job)
            except LineError as exc:
                outcome = exc
            self.record(job.line, job.id, outcome)

    async def feed(self, client: openai.AsyncOpenAI, task: Task, done: set[int]) -> None:
        args = self.args
        queue: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=args.concurrency)
        workers = [asyncio.create_task(self.worker(client, task, queue)) for _ in range(args.concurrency)]
        try:
            taken = 0
            for number, raw in input_lines(args.input):
                if number in done:
                    continue
                if args.limit is not None and taken >= args.limit:
                    break
                taken += 1
                try:
                    job = parse_line(number, raw, args.field, args.id_field)
                except LineError as exc:
                    self.record(number, None, exc)
                    continue
                await _put(queue, job, workers)
            for _ in workers:
                await _put(queue, None, workers)
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)


async def _put(queue: asyncio.Queue[Job | None], item: Job | None, workers: list[asyncio.Task[None]]) -> None:
    """Queue ``item``, but surface a worker's failure instead of waiting forever on a full queue."""
    put = asyncio.ensure_future(queue.put(item))
    try:
        await asyncio.wait([put, *workers], return_when=asyncio.FIRST_COMPLETED)
        for worker in workers:
            error = worker.exception() if worker.done() and not worker.cancelled() else None
            if error is not None:
                raise error
        await put
    finally:
        put.cancel()


def progress_bar(console: Console) -> Progress:
    return Progress(TextColumn("extract"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=console)


async def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    schema = load_schema(args.schema)
    task = Task(schema=schema, schema_name=schema_name(schema, args.schema), model=args.model,
                max_tokens=args.max_tokens)
    if not args.input.is_file():
        raise BatchError(f"no such input file: {args.input}")
    if not args.output.parent.is_dir():
        raise BatchError(f"no such folder for the output: {args.output.parent}")
    state = resume(args.output)
    if state.torn:
        console.print("dropped a torn last line left by an interrupted run", markup=False)
    total = sum(1 for _ in input_lines(args.input))
    done = sum(1 for number, _ in input_lines(args.input) if number in state.done)
    summary = {"input": str(args.input), "output": str(args.output), "lines": total, "done_before": done,
               "retried": state.retried, "torn_line_dropped": state.torn}
    if done == total:
        return {**summary, "written": {}}
    client = await connect(args.base_url, args.model)
    writer = ResultsWriter(args.output)
    try:
        with progress_bar(console) as progress:
            bar = progress.add_task("extract", total=total, completed=done)
            await Run(args, writer, progress, console, bar).feed(client, task, state.done)
    except openai.APIConnectionError:
        raise BatchError(f"lost the server at {args.base_url}; run the same command again to resume") from None
    finally:
        writer.close()
        await client.close()
    return {**summary, "written": writer.counts}


async def run_until_signal(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """``run``, cancelled cleanly by SIGINT or SIGTERM (whole lines stay in OUT)."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    received: list[int] = []

    def stop(signum: int) -> None:
        received.append(signum)
        main.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop, signum)
    try:
        return await run(args, console)
    except asyncio.CancelledError:
        if received:
            raise Interrupted(received[0]) from None
        raise
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


# -- command line -----------------------------------------------------------------------------
def positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="extract.py", description=(__doc__ or "").split("\n\n")[0])
    cli.add_argument("input", type=Path, help="JSONL input, one JSON object per line")
    cli.add_argument("output", type=Path, help="JSONL results; appended to, and read back to resume")
    cli.add_argument("--schema", type=Path, required=True, help="JSON schema of the object to extract")
    cli.add_argument("--field", default="text", help="the input field holding the text [%(default)s]")
    cli.add_argument("--id-field", default="id", help="the input field copied to the result as id [%(default)s]")
    cli.add_argument("--concurrency", type=positive, default=4, help="requests at once [%(default)s]")
    cli.add_argument("--limit", type=positive, default=None, help="process at most N more lines, then stop")
    cli.add_argument("--max-tokens", type=positive, default=256, help="per answer [%(default)s]")
    cli.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL", DEFAULT_BASE_URL),
                     help=f"the server's OpenAI API [env OPENAI_BASE_URL, else {DEFAULT_BASE_URL}]")
    cli.add_argument("--model", default=os.environ.get("OPENAI_MODEL", DEFAULT_MODEL),
                     help=f"[env OPENAI_MODEL, else {DEFAULT_MODEL}]")
    cli.add_argument("--json", action="store_true", help="print the summary as JSON")
    return cli


def summary_line(summary: dict[str, Any]) -> str:
    written = summary["written"]
    errors = sum(n for kind, n in written.items() if kind != "data")
    return (f"{summary['output']}: {written.get('data', 0)} extracted, {errors} errors in this run; "
            f"{summary['done_before']} of {summary['lines']} lines were done before")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    console = Console(stderr=True)
    try:
        summary = asyncio.run(run_until_signal(args, console))
    except (BatchError, ResultsError) as exc:
        print(f"extract.py: error: {exc}", file=sys.stderr)
        return 1
    except Interrupted as exc:
        print(f"extract.py: interrupted by {exc}; finished lines are in {args.output}, "
              "run the same command again to resume", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:  # before the run's own handler was in place
        print("extract.py: interrupted before any line was written", file=sys.stderr)
        return 130
    print(json.dumps(summary) if args.json else summary_line(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
