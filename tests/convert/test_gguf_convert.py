"""`slm convert --to gguf`: the embedded SmolLM2 (as a Hugging Face folder) back to GGUF, compared
with the original GGUF; the MiniLM embedder through the CLI and through a Hub-layout server; bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest

from slmkit.convert.gguf_vocab import LLAMA3_SPLIT, pre_tokenizer_name
from slmkit.convert.hf_gguf import CausalConfig, _llama3_rope_factors, _permute
from slmkit.engine.llamacpp.bindings import Model
from slmkit.engine.llamacpp.template import ChatTemplate
from slmkit.errors import ConversionError
from slmkit.store.embedded import EMBEDDED, EmbeddedSentenceTransformer
from slmkit.store.store import Store
from tests.conftest import MODEL, slm
from tests.fakehub import FakeHub, HubFile
from tests.helpers import ServerProcess

ORIGINAL = EMBEDDED[MODEL].path()
SAMPLES = [
    "Hello, world! How are you today?",
    "In 2024 the price rose 12.5% to $1,234,567.89; call 555-0100.",
    "  leading spaces\tand tabs\n\nnew paragraphs   trailing  ",
    "Ünïcödé: 東京は日本の首都です。 Привет, мир! 🙂🚀",
    "def f(x):\n    return x ** 2  # squares\n",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "I've been 'told he's there, 'RE you sure? We'Ve a'lL",
]
CHAT = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name three colours."},
        {"role": "assistant", "content": "Red, green, blue."}, {"role": "user", "content": "And 2 more?"}]
HPARAMS = ("block_count", "context_length", "embedding_length", "feed_forward_length", "attention.head_count",
           "attention.head_count_kv", "rope.freq_base", "attention.layer_norm_rms_epsilon", "vocab_size",
           "rope.dimension_count")
TOKENIZER_KEYS = ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
                  "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                  "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id",
                  "tokenizer.ggml.add_bos_token", "tokenizer.chat_template")


class _Fields:
    """GGUF metadata values, decoded on demand (decoding 49k-token arrays takes seconds)."""

    def __init__(self, path: Path) -> None:
        import gguf

        self.fields = gguf.GGUFReader(path).fields

    def __getitem__(self, key: str) -> Any:
        field = self.fields[key]
        if len(field.data) > 1000:  # a token / merge / type array: compare the raw values
            return [bytes(field.parts[i]) for i in field.data]
        return field.contents()


def _fields(path: Path) -> _Fields:
    return _Fields(path)


@pytest.fixture(scope="module")
def gguf_home(smollm_hf: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The folder converted to f16 (default name) and q8_0 (named), in a fresh store."""
    home = tmp_path_factory.mktemp("gguf-home")
    reports = {}
    for outtype, extra in (("f16", ()), ("q8_0", ("--name", "smol-roundtrip:q8"))):
        done = slm("convert", str(smollm_hf), "--to", "gguf", "--outtype", outtype, *extra, "--json", home=home)
        assert done.returncode == 0, done.stderr
        reports[outtype] = json.loads(done.stdout)
    store = Store(home)
    paths = {k: store.model_path(store.get(r["name"])) for k, r in reports.items()}
    return {"home": home, "reports": reports, "paths": paths}


@pytest.mark.slow
def test_conversions_are_registered_as_gguf(gguf_home: dict[str, Any], smollm_hf: Path) -> None:
    f16, q8 = gguf_home["reports"]["f16"], gguf_home["reports"]["q8_0"]
    assert f16["name"] == f"{smollm_hf.name}:f16" and q8["name"] == "smol-roundtrip:q8"
    for report in (f16, q8):
        assert report["architecture"] == "LlamaForCausalLM" and report["gguf_architecture"] == "llama"
        assert report["tensors"] == 272 and report["seconds"] > 0  # as many as the original (tied output)
        manifest = Store(gguf_home["home"]).get(report["name"])
        assert manifest.format == "gguf" and manifest.source["to"] == "gguf"
        assert manifest.size == report["size"] == Path(report["path"]).stat().st_size
    assert 135e6 * 1.9 < f16["size"] < 135e6 * 2.2 and q8["size"] < 0.6 * f16["size"]
    assert _fields(gguf_home["paths"]["q8_0"])["general.file_type"] == 7  # MOSTLY_Q8_0
    assert not list((gguf_home["home"] / "tmp").glob("convert-*"))
    listed = json.loads(slm("list", "--json", home=gguf_home["home"]).stdout)
    listed = [m for m in listed if m["source"]["kind"] != "embedded"]  # the store's own
    assert {(m["name"], m["model"]["format"]) for m in listed} == {(smollm_hf.name, "gguf"),
                                                                   ("smol-roundtrip", "gguf")}


@pytest.mark.slow
def test_metadata_matches_the_original(gguf_home: dict[str, Any]) -> None:
    original, converted = _fields(ORIGINAL), _fields(gguf_home["paths"]["f16"])
    assert converted["general.architecture"] == "llama"
    for key in HPARAMS:
        assert converted[f"llama.{key}"] == pytest.approx(original[f"llama.{key}"]), key
    for key in TOKENIZER_KEYS:
        assert converted[key] == original[key], key
    assert converted["tokenizer.ggml.pre"] == "smollm"


@pytest.mark.slow
def test_tokenization_and_chat_template_match(gguf_home: dict[str, Any]) -> None:
    ours, theirs = Model(gguf_home["paths"]["f16"], vocab_only=True), Model(ORIGINAL, vocab_only=True)
    try:
        for text in SAMPLES:
            for special in (False, True):
                assert (ours.tokenize(text, add_special=True, parse_special=special)
                        == theirs.tokenize(text, add_special=True, parse_special=special)), text
        assert ours.tokenize(SAMPLES[5], add_special=False, parse_special=True)[0] == 1  # <|im_start|> whole
        assert (ours.bos, ours.eos, ours.add_bos) == (theirs.bos, theirs.eos, theirs.add_bos)
        rendered = [ChatTemplate(m.chat_template()).render(CHAT) for m in (ours, theirs)]
        assert rendered[0] == rendered[1] and "<|im_start|>assistant" in rendered[0]
        assert (ours.tokenize(rendered[0], add_special=False, parse_special=True)
                == theirs.tokenize(rendered[1], add_special=False, parse_special=True))
        assert ours.detokenize(ours.tokenize(SAMPLES[3], add_special=False, parse_special=False)) == SAMPLES[3]
    finally:
        ours.close()
        theirs.close()


@pytest.mark.slow
def test_logits_match_transformers_on_the_source_folder(gguf_home: dict[str, Any], smollm_hf: Path) -> None:
    """The conversion itself (tensor names, Q/K permutation, norms, RoPE base) against the folder it
    read, run by transformers: the same next-token choice at every position."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from slmkit.eval.perplexity import LogitSource, log_softmax

    source = LogitSource(gguf_home["paths"]["f16"], window=128, threads=2)
    try:
        tokens = source.tokenize(SAMPLES[0] + " " + SAMPLES[4] + SAMPLES[1])
        ours = log_softmax(source.logits(tokens))
    finally:
        source.close()
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(smollm_hf), dtype=torch.float32)
    with torch.no_grad():
        reference = log_softmax(hf(torch.tensor([tokens])).logits[0].numpy())
    assert (ours.argmax(axis=1) == reference.argmax(axis=1)).all()
    kl = (np.exp(reference) * (reference - ours)).sum(axis=1)
    assert kl.mean() < 1e-3, kl


@pytest.fixture(scope="module")
def served(gguf_home: dict[str, Any]) -> Iterator[openai.OpenAI]:
    """Both conversions behind one real server."""
    names = [gguf_home["reports"]["f16"]["name"], gguf_home["reports"]["q8_0"]["name"]]
    proc = ServerProcess(*[a for n in names for a in ("--model", n)], "--parallel", "1", "--ctx-size", "512",
                         "--threads", "2", env={"SLM_HOME": str(gguf_home["home"])})
    yield openai.OpenAI(base_url=proc.base_url, api_key="unused", max_retries=0, timeout=120)
    proc.close()


@pytest.mark.slow
def test_converted_models_serve_through_the_real_server(served: openai.OpenAI, gguf_home: dict[str, Any]) -> None:
    f16, q8 = gguf_home["reports"]["f16"]["name"], gguf_home["reports"]["q8_0"]["name"]
    assert {f16, q8} <= {m.id for m in served.models.list().data}
    answers = {}
    for model in (f16, q8):
        reply = served.chat.completions.create(model=model, messages=[{"role": "user", "content": "What is the "
                                               "capital of France?"}], temperature=0, seed=1, max_tokens=12)
        answers[model] = reply.choices[0].message.content or ""
        assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 12
        assert reply.choices[0].finish_reason in ("stop", "length")
    assert "paris" in answers[f16].lower() and answers[q8].strip()
    stream = served.chat.completions.create(model=f16, messages=[{"role": "user", "content": "Say hi."}],
                                            temperature=0, max_tokens=4, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices).strip()


@pytest.mark.slow
def test_eval_drift_from_the_original_is_small(gguf_home: dict[str, Any], tmp_path: Path) -> None:
    """The q8_0 conversion against the Q4_1 original: the same weights (dequantized, then
    re-quantized to 8 bits), so perplexity stays within a few percent (f16 is checked against
    transformers above; llama.cpp runs Q4_1 and F16 weights with differently rounded activations,
    so even f16 is not bit-equal to the original)."""
    text = tmp_path / "text.txt"
    text.write_text(Path(__file__).read_text(encoding="utf-8")[:6000])
    done = slm("eval", str(ORIGINAL), str(gguf_home["paths"]["q8_0"]), "--no-tasks",
               "--text", str(text), "--window", "96", "--max-tokens", "192", "--threads", "2", "--no-plots", "--json",
               home=gguf_home["home"], timeout=300)
    assert done.returncode == 0, done.stderr
    drift = json.loads(done.stdout)["models"][1]["drift"]
    assert 0.95 < drift["perplexity_ratio"] < 1.05, drift
    assert drift["kl_mean"] < 0.02 and drift["top1_agreement"] > 0.9, drift


# -- BERT ------------------------------------------------------------------------------

def _minilm() -> Path:
    model = EMBEDDED["all-minilm-l6-v2"]
    assert isinstance(model, EmbeddedSentenceTransformer)
    return model.source_dir()


def _embed_and_compare(path: Path, min_cosine: float) -> None:
    import asyncio

    from slmkit.engine.llamacpp.embedding import LlamaCppEmbedder
    from slmkit.settings import EngineSettings

    st = pytest.importorskip("sentence_transformers")
    sentences = SAMPLES[:5]
    reference = np.asarray(st.SentenceTransformer(str(_minilm()), device="cpu").encode(
        sentences, normalize_embeddings=True))
    embedder = LlamaCppEmbedder("minilm", path, EngineSettings(threads=2))
    try:
        ours = np.asarray(asyncio.run(embedder.embed([embedder.truncate(embedder.tokenize(s)) for s in sentences])))
    finally:
        embedder.close()
    cosines = (ours * reference).sum(axis=1)
    assert cosines.min() > min_cosine, cosines


@pytest.mark.slow
def test_bert_folder_converts_through_the_cli(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = slm("convert", str(_minilm()), "--to", "gguf", "--name", "minilm:f16", "--json", home=home)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["architecture"] == "BertModel" and report["gguf_architecture"] == "bert"
    path = Store(home).model_path(Store(home).get("minilm:f16"))
    assert _fields(path)["bert.pooling_type"] == 1
    _embed_and_compare(path, 0.999)


@pytest.mark.slow
def test_hub_repo_converts_without_fetching_other_weights(tmp_path: Path) -> None:
    repo = "sentence-transformers/all-MiniLM-L6-v2"
    files = {p.relative_to(_minilm()).as_posix(): HubFile(p.read_bytes())
             for p in _minilm().rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    files["pytorch_model.bin"] = HubFile(b"not fetched")
    files["onnx/model.onnx"] = HubFile(b"not fetched")
    hub = FakeHub(repos={repo: files}).start()
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_TOKEN")}
        env.update({"SLM_HOME": str(tmp_path / "home"), "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf")})
        done = subprocess.run([sys.executable, "-m", "slmkit", "convert", f"hf.co/{repo}", "--to", "gguf",
                               "--outtype", "q8_0", "--json"], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["name"] == "all-minilm-l6-v2:q8_0"
        assert hub.file_hits("model.safetensors") and hub.file_hits("vocab.txt")
        assert not hub.file_hits("pytorch_model.bin") and not hub.file_hits("model.onnx")
    finally:
        hub.close()
    store = Store(tmp_path / "home")
    path = store.model_path(store.get("all-minilm-l6-v2:q8_0"))
    converted = _fields(path)
    assert converted["general.architecture"] == "bert" and converted["general.file_type"] == 7
    _embed_and_compare(path, 0.995)  # q8_0 vectors stay close (measured: cosine > 0.998)
    assert not list((tmp_path / "home" / "tmp").glob("convert-*"))


# -- bad input -------------------------------------------------------------------------

def _error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0 and "Traceback" not in done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_unsupported_architecture_lists_the_supported_ones(tmp_path: Path) -> None:
    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}))
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    home = tmp_path / "home"
    line = _error_line(slm("convert", str(folder), "--to", "gguf", home=home))
    assert "cannot convert the architecture GPT2LMHeadModel" in line
    assert "LlamaForCausalLM" in line and "Qwen2ForCausalLM" in line and "BertModel" in line
    assert Store(home).list() == [] and not list((home / "tmp").glob("convert-*"))


def test_bad_sources_and_flags_are_one_line_errors(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (tmp_path / "empty").mkdir()
    assert "no config.json" in _error_line(slm("convert", str(tmp_path / "empty"), "--to", "gguf", home=home))
    assert "already a model in gguf format" in _error_line(slm("convert", MODEL, "--to", "gguf", home=home))
    assert "not a Hugging Face model folder" in _error_line(slm("convert", "no-such-thing", "--to", "gguf",
                                                                home=home))
    assert "--quant int8 does not apply to --to gguf" in _error_line(  # --precision: the old spelling
        slm("convert", str(tmp_path), "--to", "gguf", "--precision", "int8", home=home))
    assert "--quant f16 does not apply to --to onnx" in _error_line(
        slm("convert", MODEL, "--to", "onnx", "--quant", "f16", home=home))
    assert Store(home).list() == []


def test_a_tokenizer_without_a_known_pre_tokenizer_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "llama"
    folder.mkdir()
    config = {"architectures": ["LlamaForCausalLM"], "num_attention_heads": 2, "num_hidden_layers": 1,
              "hidden_size": 8, "intermediate_size": 16, "vocab_size": 4}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    tokenizer = {"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                 "pre_tokenizer": {"type": "Whitespace"}}
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    line = _error_line(slm("convert", str(folder), "--to", "gguf", home=tmp_path / "home"))
    assert "unknown byte-level BPE pre-tokenizer Whitespace" in line and "smollm" in line


def test_pre_tokenizer_shapes() -> None:
    split = {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated"}
    byte_level = {"type": "ByteLevel", "use_regex": False}
    assert pre_tokenizer_name({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [split, byte_level]}}) \
        == "llama-bpe"
    assert pre_tokenizer_name({"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False}}) == "gpt-2"
    with pytest.raises(ConversionError, match="Split\\(custom regex\\)"):
        pre_tokenizer_name({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "x"}}, byte_level]}})


def test_rope_permutation_interleaves_the_halves_of_each_head() -> None:
    # 2 heads of 4 rows: HF order per head [r0 r1 | r2 r3] -> llama.cpp pairs (r0 r2) (r1 r3)
    rows = np.arange(8, dtype=np.float32).reshape(8, 1)
    assert _permute(rows, 2).ravel().tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    with pytest.raises(ConversionError):
        _permute(np.zeros((6, 1), dtype=np.float32), 2)


def test_llama3_rope_factors_span_one_to_factor() -> None:
    cfg = CausalConfig.from_json({"architectures": ["LlamaForCausalLM"], "num_attention_heads": 32,
                                  "num_hidden_layers": 16, "hidden_size": 2048, "intermediate_size": 8192,
                                  "vocab_size": 128256, "rope_theta": 500000.0,
                                  "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                                   "high_freq_factor": 4.0,
                                                   "original_max_position_embeddings": 8192}})
    factors = _llama3_rope_factors(cfg)
    assert factors is not None and factors.shape == (32,)
    assert factors[0] == 1.0 and factors[-1] == 32.0 and np.all(np.diff(factors) >= 0)
