"""The chat page on a server that requires a key: the 401 makes it ask for one, which it keeps
in the tab's sessionStorage and sends from then on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import MODEL
from tests.helpers import ServerProcess
from tests.server.test_page import browser  # noqa: F401  (the shared headless Chromium)

KEY = "page-test-key-123"


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[ServerProcess]:
    proc = ServerProcess("--model", MODEL, "--parallel", "1", "--ctx-size", "512", "--threads", "2",
                         "--api-key", KEY)
    yield proc
    proc.close()


def test_page_asks_for_a_key_on_401(browser: object, keyed_server: ServerProcess) -> None:  # noqa: F811
    page = browser.new_page()  # type: ignore[attr-defined]
    asked: list[str] = []

    def answer(dialog: object) -> None:
        asked.append(dialog.message)  # type: ignore[attr-defined]
        dialog.accept(KEY)  # type: ignore[attr-defined]

    page.on("dialog", answer)
    page.goto(keyed_server.url)
    # a selector wait, not wait_for_function: its string predicate is eval'd, which the page's CSP forbids
    page.wait_for_selector("#model option", state="attached", timeout=60_000)
    assert page.locator("#model option").all_inner_texts() == [MODEL]
    assert len(asked) == 1 and "API key" in asked[0]
    assert page.evaluate("sessionStorage.getItem('slmkit-api-key')") == KEY
    page.close()
