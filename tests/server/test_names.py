"""Over HTTP a model name never reaches the filesystem (issue 17, item 12): a name resolves only
to store, embedded and configured models, never to a file in the server's working directory or an
absolute path, and every unknown name gets the same answer. The CLI and ``--model`` keep paths."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from slmkit.errors import ModelNotFound
from slmkit.server.registry import ModelRegistry
from slmkit.settings import load_settings
from slmkit.store.embedded import EMBEDDED
from slmkit.store.pull import pull
from slmkit.store.resolve import resolve_model
from slmkit.store.show import describe
from slmkit.store.store import Store
from tests.conftest import MODEL


@pytest.fixture
def cwd_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A GGUF named like a model in the working directory, the way an attacker hopes to find one."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(EMBEDDED[MODEL].path(), tmp_path / "secretmodel")
    return tmp_path / "secretmodel"


def test_a_request_name_is_not_a_file_in_the_working_directory(cwd_model: Path, tmp_path: Path) -> None:
    registry = ModelRegistry(load_settings(store__home=tmp_path / "home"))
    with pytest.raises(ModelNotFound):
        registry.resolve("secretmodel")
    assert registry.resolve(MODEL).name == MODEL  # embedded names still resolve
    assert resolve_model("secretmodel").path == cwd_model  # the CLI keeps paths


def test_configured_paths_still_resolve(cwd_model: Path, tmp_path: Path) -> None:
    registry = ModelRegistry(load_settings(store__home=tmp_path / "home", server__models=[str(cwd_model)]))
    registry._specs["secretmodel"] = str(cwd_model)  # what start() records for `--model ./secretmodel`
    assert registry.resolve("secretmodel").path == cwd_model


def test_show_and_pull_answer_paths_like_unknown_names(cwd_model: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    answers = []
    for name in (str(cwd_model), "/etc/passwd", "/no/such.gguf", "no-such-model"):
        with pytest.raises(ModelNotFound) as caught:
            describe(name, home, allow_paths=False)
        answers.append(caught.value.status)
        with pytest.raises(ModelNotFound):
            pull(Store(home), name, allow_paths=False)
    assert set(answers) == {404}
    assert Store(home).find("secretmodel") is None
