"""examples/rag: the README's commands against the real server and its embedded models."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.examples.readme import ROOT, one_line_error, readme_commands, run_example, scratch
from tests.helpers import ServerProcess, free_port

pytest.importorskip("sqlite_vec", reason="needs the test extra: pip install 'slmkit[test]'")

README = ROOT / "examples" / "rag" / "README.md"
PROGRAM = "examples/rag/rag.py"
# what each README question is about, and the document that answers it
EXPECTED = {"API key": "docs/operations.md", "quantize": "docs/models.md"}
SOURCE = re.compile(r"^([* ])\[(\d+)\] (\S+)  \(")


@pytest.fixture(scope="module")
def readme_runs(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
                ) -> list[tuple[list[str], subprocess.CompletedProcess[str]]]:
    """Every ``python examples/rag/rag.py`` line of the README, in order, from a scratch folder."""
    commands = readme_commands(README, PROGRAM)
    assert [c[2] for c in commands] == ["ingest", "ask", "ask"], commands
    folder = scratch(tmp_path_factory.mktemp("rag-readme"), "examples", "docs")
    return [(argv, run_example(argv, folder, server.base_url)) for argv in commands]


def parse_ask(stdout: str) -> tuple[str, list[int], dict[int, tuple[str, bool]]]:
    """The answer line, the numbers it cites, and the listed sources (n -> (file, cited))."""
    answer, _, listing = stdout.partition("\nSources:\n")
    cited = [int(n) for n in re.findall(r"\[(\d+)\]", answer.strip().splitlines()[-1])]
    sources: dict[int, tuple[str, bool]] = {}
    for line in listing.splitlines():
        match = SOURCE.match(line)
        assert match, line
        ref = match.group(3)
        sources[int(match.group(2))] = (ref.split("#")[0], match.group(1) == "*")
    return answer.strip(), cited, sources


def test_readme_ingest_stores_every_doc(readme_runs: list[tuple[list[str], subprocess.CompletedProcess[str]]]
                                        ) -> None:
    _, done = readme_runs[0]
    assert done.returncode == 0, done.stderr
    count = len(list((ROOT / "docs").rglob("*.md")))
    assert re.match(rf"docs: {count} files \({count} new, 0 changed, 0 unchanged, 0 removed\); (\d+) chunks embedded",
                    done.stdout), done.stdout
    assert "Traceback" not in done.stderr


def test_readme_questions_retrieve_their_doc_and_cite_retrieved_sources(
        readme_runs: list[tuple[list[str], subprocess.CompletedProcess[str]]]) -> None:
    for argv, done in readme_runs[1:]:
        assert done.returncode == 0, done.stderr
        question = argv[3]
        expected = next(doc for topic, doc in EXPECTED.items() if topic in question)
        answer, cited, sources = parse_ask(done.stdout)
        assert len(sources) == 3  # -k 3
        assert expected in {doc for doc, _ in sources.values()}, (question, sources)
        assert cited, answer
        assert set(cited) <= set(sources), (cited, sources)
        assert {n for n, (_, starred) in sources.items() if starred} == set(cited)
        assert answer.rstrip("[]0123456789 ").strip(), answer  # some prose before the citations


def test_reingest_embeds_only_changed_files_and_drops_removed_ones(server: ServerProcess, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    shutil.copy(ROOT / "docs" / "operations.md", notes / "operations.md")
    (notes / "store.md").write_text("# The store\n\nModels live in the store under `$SLM_HOME/models`.\n")
    (notes / "old.md").write_text("# Old notes\n\nThe project was once called llmbox.\n")
    ingest = ["python", PROGRAM, "ingest", str(notes), "--json"]
    env = {"RAG_DB": str(tmp_path / "notes.db")}

    def report() -> dict[str, int]:
        done = run_example(ingest, ROOT, server.base_url, **env)
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    first = report()
    assert (first["new"], first["unchanged"], first["chunks_embedded"] > 0) == (3, 0, True)
    again = report()
    assert (again["new"], again["changed"], again["unchanged"], again["chunks_embedded"]) == (0, 0, 3, 0)
    assert again["chunks_total"] == first["chunks_total"]
    with (notes / "store.md").open("a", encoding="utf-8") as doc:
        doc.write("\n## Zebra migration\n\nThe zebra migration of the model store runs every Tuesday at noon.\n")
    (notes / "old.md").unlink()
    third = report()
    assert (third["changed"], third["unchanged"], third["removed"]) == (1, 1, 1)
    assert 0 < third["chunks_embedded"] < first["chunks_total"]

    done = run_example(["python", PROGRAM, "ask", "When does the zebra migration run?", "-k", "2", "--json",
                        "--max-tokens", "200"], ROOT, server.base_url, **env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["sources"][0]["ref"] == "notes/store.md#zebra-migration"
    assert all(source["source"] != "notes/old.md" for source in result["sources"])
    assert result["citations"] and set(result["citations"]) <= {1, 2}


def test_bad_input_is_one_line_and_exit_1(server: ServerProcess, tmp_path: Path) -> None:
    env = {"RAG_DB": str(tmp_path / "bad.db")}
    missing = run_example(["python", PROGRAM, "ingest", str(tmp_path / "nowhere")], ROOT, server.base_url, **env)
    one_line_error(missing, "rag.py", "no such folder")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not markdown")
    empty = run_example(["python", PROGRAM, "ingest", str(tmp_path / "empty")], ROOT, server.base_url, **env)
    one_line_error(empty, "rag.py", "no Markdown files")
    no_db = run_example(["python", PROGRAM, "ask", "anything?"], ROOT, server.base_url, **env)
    one_line_error(no_db, "rag.py", "no database")
    nobody = f"http://127.0.0.1:{free_port()}/v1"
    unreachable = run_example(["python", PROGRAM, "ingest", "docs"], ROOT, nobody, **env)
    one_line_error(unreachable, "rag.py", "cannot reach the server")
    assert not (tmp_path / "bad.db").exists()
    wrong_model = run_example(["python", PROGRAM, "ingest", "docs", "--embedding-model", "no-such-model"], ROOT,
                              server.base_url, **env)
    one_line_error(wrong_model, "rag.py", "no-such-model")


def test_chunks_stay_in_their_section_and_under_the_bound() -> None:
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("md_chunks", ROOT / "examples" / "rag" / "md_chunks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["md_chunks"] = module
    spec.loader.exec_module(module)
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    chunks = module.chunk_markdown(text, max_chars=300, overlap=60)
    assert all(len(c.text) <= 300 for c in chunks)
    headings = {c.heading for c in chunks}
    assert "API keys" in headings and "Limits" in headings
    assert not any(h.startswith("created key") for h in headings)  # a `#` comment in a code block
    assert {c.anchor for c in chunks if c.heading == "CORS and TLS"} == {"cors-and-tls"}
    limits = [c.text for c in chunks if c.heading == "Limits"]
    assert len(limits) > 1
    assert any(b[:20] in a for a, b in itertools.pairwise(limits))  # neighbours overlap
