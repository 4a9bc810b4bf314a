"""`slm ps` and `slm stop MODEL`: the models a running server holds, and unloading one (as
`ollama ps` / `ollama stop`), over the server's Ollama API."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import click

from slmkit.catalog.estimate import human
from slmkit.cli.common import handle_errors
from slmkit.errors import InvalidRequest, ModelNotFound, SlmkitError
from slmkit.store.aliases import normalize

DEFAULT_URL = "http://127.0.0.1:8080"


def server_options(func: Any) -> Any:
    func = click.option("--api-key", envvar="SLM_API_KEY", default=None,
                        help="Key for a server that requires one (also SLM_API_KEY).")(func)
    return click.option("--url", envvar="SLM_URL", default=DEFAULT_URL, show_default=True,
                        help="The server (also SLM_URL).")(func)


def _request(method: str, url: str, api_key: str | None, path: str, body: dict[str, Any] | None = None) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.request(method, url.rstrip("/") + path, json=body, headers=headers, timeout=60)
    except httpx.HTTPError as exc:
        raise SlmkitError(f"no server at {url} ({type(exc).__name__}); start one with `slm serve`") from None
    if response.status_code == 401:
        raise SlmkitError(f"{url} requires a key: pass --api-key or set SLM_API_KEY")
    if response.status_code >= 400:
        try:
            message = response.json().get("error") or response.text
        except ValueError:
            message = response.text
        raise SlmkitError(f"{url}{path} answered {response.status_code}: {message}")
    return response.json()


def _until(expires_at: str) -> str:
    try:
        moment = datetime.fromisoformat(expires_at.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return expires_at
    left = moment - time.time()
    if left > 10 * 365 * 86400:
        return "Forever"
    if left < 60:
        return "in under a minute"
    minutes = round(left / 60)
    return f"{minutes} minutes from now" if minutes < 120 else f"{round(left / 3600)} hours from now"


@click.command("ps")
@server_options
@click.option("--json", "as_json", is_flag=True, help="Print the server's /api/ps answer.")
@handle_errors
def ps(url: str, api_key: str | None, as_json: bool) -> None:
    """List the models a running server has loaded."""
    models = _request("GET", url, api_key, "/api/ps")["models"]
    if as_json:
        click.echo(json.dumps(models, indent=1))
        return
    if not models:
        click.echo(f"no model loaded at {url} (models load on their first request)")
        return
    rows = [("NAME", "SIZE", "SLOTS", "CONTEXT", "UNTIL")]
    rows += [(m["name"], human(m["size"]), str(m.get("slots") or "-"), str(m["context_length"]),
              _until(m["expires_at"])) for m in models]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("    ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@click.command("stop")
@click.argument("model")
@server_options
@handle_errors
def stop(model: str, url: str, api_key: str | None) -> None:
    """Unload MODEL from a running server (it loads again on its next request)."""
    loaded = [m["name"] for m in _request("GET", url, api_key, "/api/ps")["models"]]
    if normalize(model) not in {normalize(name) for name in loaded}:  # name and name:latest are one model
        if not loaded:
            raise ModelNotFound(f"model '{model}' is not loaded; {url} has no model loaded")
        raise ModelNotFound(f"model '{model}' is not loaded; loaded: {', '.join(loaded)}")
    answer = _request("POST", url, api_key, "/api/generate", {"model": model, "keep_alive": 0})
    if answer.get("done_reason") != "unload":
        raise InvalidRequest(f"{url} did not unload '{model}'")
    click.echo(f"stopped {model}")
