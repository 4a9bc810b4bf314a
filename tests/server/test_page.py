"""The chat page in headless Chromium (Debian's /usr/bin/chromium) through Playwright:
send a message, see the reply stream in, stop a reply, switch model."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import MODEL
from tests.helpers import ServerProcess

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = os.environ.get("SLM_TEST_CHROMIUM", "/usr/bin/chromium")
GEMMA = "gemma-3-270m-q4_k_m"
# counts every change of the page's replies, so a test can tell a streamed reply from one that
# arrived whole
COUNT_UPDATES = """
window.__updates = 0;
new MutationObserver(() => { window.__updates += 1; }).observe(document, {subtree: true, characterData: true,
                                                                        childList: true});
"""


@pytest.fixture(scope="module")
def page_server(gemma_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess("--model", MODEL, "--model", str(gemma_path), "--parallel", "2", "--ctx-size", "512",
                         "--threads", "2")
    yield proc
    proc.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium when run as root")
    with sync_api.sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield instance
        instance.close()


def _send(page: object, text: str) -> object:
    count = page.locator(".msg.assistant").count()  # type: ignore[attr-defined]
    page.fill("#prompt", text)  # type: ignore[attr-defined]
    page.press("#prompt", "Enter")  # type: ignore[attr-defined]
    return page.locator(".msg.assistant").nth(count)  # type: ignore[attr-defined]


def test_chat_streams_stops_and_switches_model(browser: object, page_server: ServerProcess) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.add_init_script(COUNT_UPDATES)
    blocked: list[str] = []  # the page must live within its own Content-Security-Policy
    page.on("console", lambda msg: blocked.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.goto(page_server.url)
    assert page.title() == "slmkit chat"
    # selector waits, not wait_for_function: its string predicates are eval'd, which the page's CSP forbids
    page.wait_for_selector("#model option:nth-child(2)", state="attached", timeout=60_000)
    options = page.locator("#model option").all_inner_texts()
    assert options[:2] == [MODEL, GEMMA]
    assert "all-minilm-l6-v2" not in options  # embedding models cannot chat
    page.fill("#temperature", "0")
    page.fill("#max-tokens", "12")

    page.evaluate("window.__updates = 0")
    reply = _send(page, "What is the capital of France?")
    reply.locator("xpath=self::*[contains(@class, 'done')]").wait_for(timeout=120_000)
    assert reply.inner_text().strip()
    assert reply.get_attribute("data-model") == MODEL
    assert reply.get_attribute("data-finish") in ("stop", "length")
    assert page.evaluate("window.__updates") >= 3, "the reply arrived in several pieces"

    page.fill("#max-tokens", "400")
    page.click("#system-box summary")
    page.fill("#system", "You write very long answers.")
    long_reply = _send(page, "Write a long story about a dragon.")
    page.wait_for_selector("#stop:not([disabled])")
    long_reply.locator("xpath=self::*[string-length(normalize-space(.)) > 0]").wait_for(timeout=120_000)
    page.click("#stop")
    long_reply.locator("xpath=self::*[contains(@class, 'done')]").wait_for(timeout=30_000)
    assert long_reply.get_attribute("data-finish") == "stopped"
    assert page.locator("#send").is_enabled()

    page.click("#clear")
    page.select_option("#model", GEMMA)
    page.fill("#max-tokens", "12")
    page.fill("#system", "")
    reply = _send(page, "Say hello.")
    reply.locator("xpath=self::*[contains(@class, 'done')]").wait_for(timeout=180_000)
    assert reply.get_attribute("data-model") == GEMMA
    assert reply.inner_text().strip() and not reply.inner_text().startswith("Error")
    assert blocked == []


def test_page_and_assets_carry_security_headers(page_server: ServerProcess) -> None:
    for path, accept in (("/", "text/html"), ("/static/app.js", "*/*"), ("/static/style.css", "*/*")):
        resp = httpx.get(f"{page_server.url}{path}", headers={"accept": accept}, timeout=30)
        assert resp.status_code == 200
        csp = resp.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["x-frame-options"] == "DENY"
        assert resp.headers["referrer-policy"] == "no-referrer"
