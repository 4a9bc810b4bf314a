"""all-MiniLM-L6-v2 converted to GGUF gives the vectors sentence-transformers gives."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from slmkit.convert.bert_gguf import WORD_PREFIX, convert_sentence_transformer, read_safetensors, wordpiece_vocab
from slmkit.engine.llamacpp.embedding import LlamaCppEmbedder
from slmkit.engine.llamacpp.metadata import read_facts
from slmkit.errors import ConversionError
from slmkit.settings import EngineSettings
from slmkit.store.embedded import EMBEDDED, EmbeddedSentenceTransformer

SENTENCES = [
    "The cat sits on the mat.",
    "A quick brown fox jumps over the lazy dog.",
    "Embeddings map sentences to vectors; similar meaning, nearby vectors.",
    "東京は日本の首都です。",
    "Visit https://example.com/path?q=1 for details 🙂",
    "word " * 400,  # longer than the model's 256 tokens: truncated like sentence-transformers
]


def _source() -> Path:
    model = EMBEDDED["all-minilm-l6-v2"]
    assert isinstance(model, EmbeddedSentenceTransformer)
    return model.source_dir()


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_sentence_transformer(_source(), tmp_path_factory.mktemp("gguf") / "minilm.gguf",
                                        name="all-minilm-l6-v2")


@pytest.fixture(scope="module")
def embedder(converted: Path) -> Iterator[LlamaCppEmbedder]:
    engine = LlamaCppEmbedder("all-minilm-l6-v2", converted, EngineSettings(threads=2))
    yield engine
    engine.close()


def reference_vectors(sentences: list[str]) -> np.ndarray:
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(_source()), device="cpu")
    return np.asarray(model.encode(sentences, normalize_embeddings=True))


def test_conversion_writes_bert_metadata(converted: Path) -> None:
    facts = read_facts(converted)
    assert facts.architecture == "bert"
    assert facts.is_embedding
    assert facts.metadata["bert.embedding_length"] == 384
    assert facts.metadata["bert.pooling_type"] == 1
    assert facts.metadata["tokenizer.ggml.token_type_count"] == 2
    assert facts.metadata["slmkit.embedding.max_tokens"] == 256
    assert facts.quantization == "F16"
    assert not list(converted.parent.glob("*.tmp")), "no temp file left behind"


def test_vocabulary_is_rewritten_for_llama_cpp_wordpiece() -> None:
    tokens, types = wordpiece_vocab(_source())
    raw = (_source() / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert tokens[raw.index("[CLS]")] == "[CLS]"
    continuation = next(i for i, p in enumerate(raw) if p.startswith("##"))
    assert tokens[continuation] == raw[continuation][2:]
    assert tokens[raw.index("hello")] == WORD_PREFIX + "hello"
    assert len(tokens) == len(types) == len(raw)


def test_token_ids_match_the_hf_tokenizer(embedder: LlamaCppEmbedder) -> None:
    st = pytest.importorskip("sentence_transformers")
    tokenizer = st.SentenceTransformer(str(_source()), device="cpu").tokenizer
    for sentence in SENTENCES[:5]:
        assert embedder.tokenize(sentence) == tokenizer(sentence)["input_ids"]


def test_vectors_match_sentence_transformers(embedder: LlamaCppEmbedder) -> None:
    tokens = [embedder.truncate(embedder.tokenize(s)) for s in SENTENCES]
    assert len(tokens[-1]) == 256 and tokens[-1][-1] == tokens[0][-1], "truncation keeps [SEP]"
    ours = np.asarray(asyncio.run(embedder.embed(tokens)))
    ref = reference_vectors(SENTENCES)
    cosines = (ours * ref).sum(axis=1)
    assert cosines.min() >= 0.99, cosines
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-4)


def test_missing_files_are_a_conversion_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ConversionError, match="not a BERT model"):
        convert_sentence_transformer(tmp_path, tmp_path / "out.gguf", name="x")
    assert not (tmp_path / "out.gguf").exists()


def test_safetensors_reader_reads_shapes() -> None:
    tensors = read_safetensors(_source() / "model.safetensors")
    assert tensors["embeddings.word_embeddings.weight"].shape == (30522, 384)
