"""Ollama's model-management routes with the real `ollama` SDK: pull, copy, show, create, delete."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest

from slmkit.store.embedded import EMBEDDED
from slmkit.store.quantize import quantize
from slmkit.store.store import Store
from tests.fakehub import FakeHub, HubFile
from tests.helpers import ServerProcess

REPO = "someone/SmolLM2-135M-Instruct-GGUF"
FILE = "SmolLM2-135M-Instruct-Q4_K_M.gguf"


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    fake = FakeHub().start()
    fake.repos[REPO] = {FILE: HubFile(EMBEDDED["smollm2-135m-instruct"].path().read_bytes())}
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ollama-store") / "home"


@pytest.fixture(scope="module")
def served(hub: FakeHub, home: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess("--parallel", "1", "--ctx-size", "512", "--threads", "2",
                         env={"SLM_HOME": str(home), "HF_ENDPOINT": hub.url, "HF_TOKEN": "t"})
    yield proc
    proc.close()


@pytest.fixture(scope="module")
def api(served: ServerProcess) -> ollama.Client:
    return ollama.Client(host=served.url, timeout=120)


@pytest.fixture(scope="module")
def pulled(api: ollama.Client) -> list[ollama.ProgressResponse]:
    return list(api.pull(f"hf.co/{REPO}", stream=True))


def test_pull_streams_progress_in_ollamas_shape(pulled: list[ollama.ProgressResponse]) -> None:
    statuses = [p.status for p in pulled]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert "verifying sha256 digest" in statuses and "writing manifest" in statuses
    transfers = [p for p in pulled if p.total]
    assert transfers and transfers[-1].completed == transfers[-1].total
    assert transfers[-1].digest is not None and transfers[-1].digest.startswith("sha256:")


def test_pull_without_streaming_and_a_missing_repo(api: ollama.Client, pulled: list[ollama.ProgressResponse]) -> None:
    assert api.pull(f"hf.co/{REPO}", stream=False).status == "success"
    with pytest.raises(ollama.ResponseError) as err:
        api.pull("hf.co/nobody/Nothing-GGUF")
    assert err.value.status_code == 404 and "not found" in err.value.error


def test_show_copy_delete(api: ollama.Client, pulled: list[ollama.ProgressResponse]) -> None:
    shown = api.show("smollm2-135m-instruct:q4_k_m")
    assert shown.details.family == "llama" and shown.details.quantization_level == "Q4_1"
    assert shown.modelinfo["llama.block_count"] == 30 and "im_start" in (shown.template or "")
    assert api.copy("smollm2-135m-instruct:q4_k_m", "my-copy").status == "success"
    assert api.show("my-copy").details.family == "llama"
    assert api.delete("my-copy").status == "success"
    with pytest.raises(ollama.ResponseError) as err:
        api.show("my-copy")
    assert err.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as err:
        api.delete("my-copy")
    assert err.value.status_code == 404 and "not in the store" in err.value.error


def test_create_from_fields_and_from_a_modelfile(api: ollama.Client, served: ServerProcess,
                                                 pulled: list[ollama.ProgressResponse]) -> None:
    steps = list(api.create(model="pirate", from_="smollm2-135m-instruct:q4_k_m", system="Talk like a pirate.",
                            parameters={"temperature": 0.3, "num_predict": 7, "stop": ["Arr"]}, stream=True))
    assert [s.status for s in steps][-1] == "success"
    shown = api.show("pirate")
    raw = httpx.post(f"{served.url}/api/show", json={"model": "pirate"}, timeout=30).json()
    assert raw["system"] == "Talk like a pirate." and raw["capabilities"] == ["completion", "tools"]
    assert "num_predict 7" in (shown.parameters or "") and 'stop "Arr"' in (shown.parameters or "")
    assert "SYSTEM" in (shown.modelfile or "")
    legacy = httpx.post(f"{served.url}/api/create", json={
        "model": "legacy", "modelfile": "FROM pirate\nPARAMETER seed 3\n", "stream": False}, timeout=60)
    assert legacy.status_code == 200 and legacy.json() == {"status": "success"}
    params = api.show("legacy").parameters or ""
    assert "seed 3" in params and "num_predict 7" in params  # layered over its FROM


def test_create_with_quantize(api: ollama.Client, home: Path) -> None:
    # an unquantized source: the embedded Q4_1 model widened to f16 (Ollama only quantizes from f16/f32)
    quantize(Store(home), "smollm2-135m-instruct", "f16", name="smol-f16", allow_requantize=True, threads=2)
    steps = list(api.create(model="smol-small", from_="smol-f16", quantize="q4_0", stream=True))
    assert any(s.status.startswith("quantizing") and s.completed == s.total for s in steps)
    assert steps[-1].status == "success"
    assert api.show("smol-small").details.quantization_level == "Q4_0"


def test_create_blob_then_create_with_files_then_chat(api: ollama.Client, served: ServerProcess) -> None:
    """What `ollama create` does with a local GGUF: upload it as a blob, create a model naming it."""
    digest = api.create_blob(EMBEDDED["smollm2-135m-instruct"].path())
    assert httpx.head(f"{served.url}/api/blobs/{digest}", timeout=30).status_code == 200
    steps = list(api.create(model="uploaded", files={"model.gguf": digest}, system="You are brief.", stream=True))
    assert steps[-1].status == "success"
    resp = api.chat(model="uploaded", messages=[{"role": "user", "content": "Hi"}],
                    options={"num_predict": 4, "temperature": 0})
    assert resp.done and resp.eval_count
    assert "You are brief." in (api.show("uploaded").modelfile or "")
    # DELETE with a body but no content type (curl -X DELETE -d without -H), as POST routes take
    gone = httpx.request("DELETE", f"{served.url}/api/delete", content=b'{"model": "uploaded"}', timeout=30)
    assert gone.status_code == 200, gone.text


@pytest.mark.parametrize(("path", "method", "body", "status", "message"), [
    ("/api/create", "POST", {"model": "../evil", "from": "pirate"}, 400, "invalid model name"),
    ("/api/create", "POST", {"model": "x", "from": "no-such-model"}, 404, "FROM 'no-such-model'"),
    ("/api/create", "POST", {"model": "x", "modelfile": "FROM pirate\nPARAMETER warmth 1"}, 400, "warmth"),
    ("/api/create", "POST", {"model": "x"}, 400, "from is required"),
    ("/api/create", "POST", {"model": "x", "from": "pirate", "quantize": "q8_0"}, 400, "already quantized"),
    ("/api/create", "POST", {"model": "x", "from": "pirate", "quantize": "q9"}, 400, "unknown quantization"),
    ("/api/pull", "POST", {"model": "qwen3-0.7b"}, 404, "did you mean"),
    ("/api/copy", "POST", {"source": "nope", "destination": "x"}, 404, "not in the store"),
    ("/api/show", "POST", {}, 400, "model is required"),
    ("/api/delete", "DELETE", {"model": "a/b"}, 400, "invalid model name"),
])
def test_bad_input_is_an_ollama_error(served: ServerProcess, path: str, method: str, body: dict[str, object],
                                      status: int, message: str) -> None:
    response = httpx.request(method, f"{served.url}{path}", json=body, timeout=30)
    assert response.status_code == status
    assert set(response.json()) == {"error"} and message in response.json()["error"]
