"""Answer questions about a folder of Markdown, with citations, through an OpenAI-compatible server.

    python examples/rag/rag.py ingest docs
    python examples/rag/rag.py ask "How do I give a client its own API key?"

``ingest`` chunks every ``*.md`` file under the folder, embeds the chunks through
``/v1/embeddings`` and keeps them in SQLite (``sqlite-vec``); files whose content did not change
since the last ingest are skipped, removed files are dropped. ``ask`` embeds the question, takes
the ``k`` nearest chunks and has the chat model answer from them alone, citing them as ``[n]``.
The citations are constrained by a JSON schema (slmkit enforces it with a grammar), so every
``[n]`` the answer carries names a retrieved chunk.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
from md_chunks import Chunk, chunk_markdown
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from vector_store import Hit, StoreError, VectorStore

DEFAULT_BASE_URL = "http://127.0.0.1:8080/v1"
DEFAULT_MODEL = "smollm2-135m-instruct"
DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"
ANSWER_CHARS = 300  # the answer's bound, in characters; --max-tokens covers it even at one token each
SYSTEM_PROMPT = "You answer questions about a software project from the numbered sources you are given."


class RagError(Exception):
    """Anything the user must fix, said in one line."""


class InputTooLong(RagError):
    """An input is longer than the embedding model's context."""


@dataclass
class Options:
    base_url: str
    model: str
    embedding_model: str
    db: Path
    batch_size: int


# -- the server -------------------------------------------------------------------------------
def connect(options: Options) -> openai.OpenAI:
    """A client for the server, after checking that it answers."""
    client = openai.OpenAI(base_url=options.base_url, api_key=os.environ.get("OPENAI_API_KEY", "unused"),
                           timeout=300, max_retries=2)
    try:
        client.with_options(max_retries=0, timeout=10).models.list()
    except openai.APIConnectionError:
        raise RagError(f"cannot reach the server at {options.base_url} (start one with `slm serve`, "
                       "or pass --base-url / set OPENAI_BASE_URL)") from None
    except openai.APIStatusError as exc:
        raise RagError(f"the server at {options.base_url} answered: {describe(exc)}") from None
    return client


def describe(exc: openai.APIStatusError) -> str:
    body = exc.body
    message = body.get("message") if isinstance(body, dict) else None
    return f"{exc.status_code} {message or exc.message}"


def embed(client: openai.OpenAI, model: str, texts: list[str]) -> list[list[float]]:
    try:
        response = client.embeddings.create(model=model, input=texts)
    except openai.APIConnectionError:
        raise RagError(f"lost the server at {client.base_url}") from None
    except openai.APIStatusError as exc:
        if isinstance(exc.body, dict) and exc.body.get("code") == "context_length_exceeded":
            raise InputTooLong(f"embedding with {model} failed: {describe(exc)}") from None
        raise RagError(f"embedding with {model} failed: {describe(exc)}") from None
    return [item.embedding for item in sorted(response.data, key=lambda item: item.index)]


# -- ingest -----------------------------------------------------------------------------------
@dataclass
class IngestReport:
    folder: str
    files: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks_embedded: int = 0
    chunks_total: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        return (f"{self.folder}: {self.files} files ({self.new} new, {self.changed} changed, "
                f"{self.unchanged} unchanged, {self.removed} removed); {self.chunks_embedded} chunks embedded, "
                f"{self.chunks_total} in the database; {self.seconds:.1f} s")


def markdown_files(folder: Path) -> list[Path]:
    if not folder.exists():
        raise RagError(f"no such folder: {folder}")
    if not folder.is_dir():
        raise RagError(f"not a folder: {folder}")
    files = sorted(p for p in folder.rglob("*.md")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise RagError(f"no Markdown files (*.md) in {folder}")
    return files


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RagError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise RagError(f"cannot read {path}: {exc.strerror}") from None


def embed_chunks(client: openai.OpenAI, options: Options,
                 chunks: list[Chunk]) -> tuple[list[Chunk], list[list[float]]]:
    """The chunks and their vectors, in batches; a chunk longer than the embedding model's context
    (the server says so, in the model's own tokens) is cut in half until each part fits."""
    kept: list[Chunk] = []
    vectors: list[list[float]] = []
    for start in range(0, len(chunks), options.batch_size):
        batch = chunks[start:start + options.batch_size]
        try:
            vectors += embed(client, options.embedding_model, [chunk.embedding_input() for chunk in batch])
            kept += batch
        except InputTooLong:
            for chunk in batch:
                for part, vector in _embed_fitting(client, options, chunk):
                    kept.append(part)
                    vectors.append(vector)
    return kept, vectors


def _embed_fitting(client: openai.OpenAI, options: Options, chunk: Chunk) -> list[tuple[Chunk, list[float]]]:
    try:
        return [(chunk, embed(client, options.embedding_model, [chunk.embedding_input()])[0])]
    except InputTooLong:
        halves = chunk.halves()
        if halves is None:
            raise
        return [pair for half in halves for pair in _embed_fitting(client, options, half)]


def ingest(options: Options, folder: Path, max_chars: int, overlap: int, console: Console) -> IngestReport:
    files = markdown_files(folder)
    client = connect(options)
    store = VectorStore(options.db, create=True)
    report = IngestReport(folder=str(folder), files=len(files))
    started = time.monotonic()
    try:
        store.check_model(options.embedding_model)
        known = store.documents()
        root = folder.resolve()
        seen: set[str] = set()
        with _progress(console) as progress:
            task = progress.add_task("ingest", total=len(files))
            for path in files:
                key = str(path.resolve())
                seen.add(key)
                label = f"{root.name}/{path.relative_to(folder).as_posix()}"
                progress.update(task, description=label)
                text = read_text(path)
                digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
                old = known.get(key)
                if old is not None and old.sha256 == digest and old.label == label:
                    report.unchanged += 1
                else:
                    chunks, vectors = embed_chunks(client, options, chunk_markdown(text, max_chars, overlap))
                    if vectors:
                        store.bind_model(options.embedding_model, len(vectors[0]))
                    store.replace(key, label, digest, chunks, vectors)
                    report.chunks_embedded += len(chunks)
                    report.new += old is None
                    report.changed += old is not None
                progress.advance(task)
        for key in known:
            if key not in seen and Path(key).is_relative_to(root):
                store.remove(key)
                report.removed += 1
        report.chunks_total = store.chunk_count()
    finally:
        store.close()
    report.seconds = time.monotonic() - started
    return report


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


# -- ask --------------------------------------------------------------------------------------
def answer_schema(k: int) -> dict[str, Any]:
    """The answer, then the numbers of the sources it uses: at least one, each one of 1..k."""
    return {
        "type": "object",
        "properties": {
            "answer": {"type": "string", "minLength": 1, "maxLength": ANSWER_CHARS},
            "sources": {"type": "array", "items": {"type": "integer", "enum": list(range(1, k + 1))},
                        "minItems": 1, "maxItems": k},
        },
        "required": ["answer", "sources"],
        "additionalProperties": False,
    }


def prompt(question: str, hits: list[Hit]) -> str:
    sources = "\n\n".join(f"[{n}] {hit.heading or hit.label}\n{hit.text}" for n, hit in enumerate(hits, 1))
    return f"Sources:\n\n{sources}\n\nUsing the sources above, answer in one or two sentences: {question}"


def parse_answer(content: str, k: int) -> tuple[str, list[int]]:
    try:
        data = json.loads(content)
        answer, cited = str(data["answer"]).strip(), [int(n) for n in data["sources"]]
    except (ValueError, KeyError, TypeError):
        raise RagError(f"the model's answer was not the JSON asked for: {content[:80]!r}") from None
    cited = sorted({n for n in cited if 1 <= n <= k})
    if not cited:
        raise RagError("the model's answer cited no retrieved source")
    return answer, cited


def ask(options: Options, question: str, k: int, max_tokens: int, console: Console) -> dict[str, Any]:
    if not question.strip():
        raise RagError("the question is empty")
    store = VectorStore(options.db, create=False)
    try:
        store.check_model(options.embedding_model)
        client = connect(options)
        hits = store.search(embed(client, options.embedding_model, [question])[0], k)
    finally:
        store.close()
    content, hits = generate(client, options, question, hits, max_tokens)
    if len(hits) < k:
        console.print(f"note: the {k} nearest sources did not fit the model's context; answered from the nearest "
                      f"{len(hits)}", markup=False, highlight=False)
    answer, cited = parse_answer(content, len(hits))
    sources = [{"n": n, "ref": hit.ref, "source": hit.label, "heading": hit.heading, "anchor": hit.anchor,
                "distance": round(hit.distance, 4), "cited": n in cited} for n, hit in enumerate(hits, 1)]
    return {"question": question, "answer": answer, "citations": cited, "sources": sources,
            "model": options.model, "embedding_model": options.embedding_model}


def generate(client: openai.OpenAI, options: Options, question: str, hits: list[Hit],
             max_tokens: int) -> tuple[str, list[Hit]]:
    """The model's JSON answer from ``hits``, shedding the farthest ones while they overflow its context."""
    while True:
        try:
            response = client.chat.completions.create(
                model=options.model, temperature=0, seed=0, max_tokens=max_tokens, frequency_penalty=0.5,
                messages=[{"role": "system", "content": SYSTEM_PROMPT},
                          {"role": "user", "content": prompt(question, hits)}],
                response_format={"type": "json_schema", "json_schema": {
                    "name": "cited_answer", "strict": True, "schema": answer_schema(len(hits))}})
            choice = response.choices[0]
            if choice.finish_reason == "length":
                raise RagError(f"the answer was cut at --max-tokens {max_tokens}; raise it")
            return choice.message.content or "", hits
        except openai.APIConnectionError:
            raise RagError(f"lost the server at {options.base_url}") from None
        except openai.APIStatusError as exc:
            body = exc.body if isinstance(exc.body, dict) else {}
            if body.get("code") == "context_length_exceeded" and len(hits) > 1:
                hits = hits[:-1]
                continue
            raise RagError(f"the chat model {options.model} failed: {describe(exc)}") from None


def render(result: dict[str, Any], console: Console) -> None:
    marks = "".join(f"[{n}]" for n in result["citations"])
    console.print(f"{result['answer']} {marks}", markup=False, highlight=False)
    console.print()
    console.print("Sources:", markup=False, highlight=False)
    for source in result["sources"]:
        flag = "*" if source["cited"] else " "
        console.print(f"{flag}[{source['n']}] {source['ref']}  ({source['heading'] or 'top'}; "
                      f"distance {source['distance']:.3f})", markup=False, highlight=False)


# -- command line -----------------------------------------------------------------------------
def positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", type=Path, default=Path(os.environ.get("RAG_DB", "rag.db")),
                        help="the SQLite database [env RAG_DB, else rag.db]")
    common.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL", DEFAULT_BASE_URL),
                        help=f"the server's OpenAI API [env OPENAI_BASE_URL, else {DEFAULT_BASE_URL}]")
    common.add_argument("--embedding-model", default=DEFAULT_EMBEDDING_MODEL, help="[%(default)s]")
    common.add_argument("--json", action="store_true", help="print the result as JSON")
    top = argparse.ArgumentParser(prog="rag.py", description=(__doc__ or "").split("\n\n")[0])
    commands = top.add_subparsers(dest="command", required=True)
    ingest_cmd = commands.add_parser("ingest", parents=[common], help="chunk, embed and store a Markdown folder")
    ingest_cmd.add_argument("folder", type=Path)
    ingest_cmd.add_argument("--max-chars", type=positive, default=500, help="chunk size bound [%(default)s]")
    ingest_cmd.add_argument("--overlap", type=int, default=80, help="characters shared by neighbours [%(default)s]")
    ingest_cmd.add_argument("--batch-size", type=positive, default=32, help="texts per embeddings request")
    ask_cmd = commands.add_parser("ask", parents=[common], help="answer a question from the stored chunks")
    ask_cmd.add_argument("question")
    ask_cmd.add_argument("--model", default=os.environ.get("OPENAI_MODEL", DEFAULT_MODEL),
                         help=f"the chat model [env OPENAI_MODEL, else {DEFAULT_MODEL}]")
    ask_cmd.add_argument("-k", type=positive, default=3, help="chunks to retrieve [%(default)s]")
    ask_cmd.add_argument("--max-tokens", type=positive, default=320, help="[%(default)s]")
    return top


def run(args: argparse.Namespace, console: Console) -> None:
    options = Options(base_url=args.base_url, model=getattr(args, "model", DEFAULT_MODEL),
                      embedding_model=args.embedding_model, db=args.db, batch_size=getattr(args, "batch_size", 32))
    if args.command == "ingest":
        try:
            report = ingest(options, args.folder, args.max_chars, args.overlap, console)
        except ValueError as exc:  # chunking bounds
            raise RagError(str(exc)) from None
        print(json.dumps(report.__dict__) if args.json else report.line())
    else:
        result = ask(options, args.question, args.k, args.max_tokens, console)
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            render(result, Console(highlight=False, soft_wrap=True))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    console = Console(stderr=True)
    try:
        run(args, console)
    except (RagError, StoreError) as exc:
        print(f"rag.py: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rag.py: interrupted (documents already stored are kept)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
