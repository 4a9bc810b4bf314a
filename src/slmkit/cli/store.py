"""`slm pull|list|show|rm|cp|create`: the local model store."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from slmkit.catalog.estimate import human
from slmkit.cli.common import console, err_console, handle_errors
from slmkit.store.modelfile import parse_modelfile
from slmkit.store.names import ModelRef
from slmkit.store.pull import PullEvent
from slmkit.store.pull import pull as pull_model
from slmkit.store.store import Store


def _home() -> Path:
    from slmkit.settings import load_settings

    return load_settings().store.home


def _store() -> Store:
    return Store(_home())


class _Bar:
    """Pull events drawn as one rich progress bar per step."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, event: PullEvent) -> None:
        if event.total is None:
            if event.status != "success":
                self.progress.console.print(event.status, style="dim", highlight=False)
            return
        task = self.tasks.get(event.status)
        if task is None:
            task = self.tasks[event.status] = self.progress.add_task(event.status, total=event.total)
        self.progress.update(task, completed=event.completed or 0, total=event.total)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=err_console, transient=False)


@click.command()
@click.argument("model")
@click.option("--name", default=None, help="Store the model under this name.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@handle_errors
def pull(model: str, name: str | None, as_json: bool) -> None:
    """Pull MODEL: catalog-name[:quant], hf.co/OWNER/REPO[:QUANT|FILE], an embedded model or a GGUF path."""
    with _progress() as progress:
        manifest = pull_model(_store(), model, name=name, report=_Bar(progress))
    if as_json:
        click.echo(json.dumps(manifest.to_dict(), indent=1))
    else:
        console.print(f"pulled [bold]{manifest.ref}[/] ({human(manifest.size)}, {manifest.digest[:19]})")


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def list_cmd(as_json: bool) -> None:
    """List the models this machine can serve: the store's and the embedded ones (source "embedded")."""
    manifests = _store().list()
    rows = [m.to_dict() for m in manifests] + _embedded_rows({ModelRef(m.name, m.tag).short for m in manifests})
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    table = Table("NAME", "ID", "SIZE", "MODIFIED", "SOURCE", box=None)
    for row in rows:
        age = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["created_at"]))
        digest = (row["model"]["digest"] or "").removeprefix("sha256:")[:12] or "-"
        table.add_row(f"{row['name']}:{row['tag']}", digest, human(row["model"]["size"]), age,
                      row["source"].get("kind", ""))
    console.print(table)


def _embedded_rows(stored: set[str]) -> list[dict[str, Any]]:
    """The embedded models `slm serve` serves from their packages (those not saved in the store under
    the same name), shaped as manifests with no digest."""
    from slmkit.store.embedded import EMBEDDED
    from slmkit.store.resolve import local_models

    rows = []
    for name in local_models(_home()):
        model = EMBEDDED.get(name) if name not in stored else None
        shipped = model.shipped_file() if model is not None else None
        if model is None or shipped is None:
            continue  # a store model, or a package without its file
        rows.append({"schema_version": 1, "name": name, "tag": "latest",
                     "model": {"digest": None, "size": shipped.stat().st_size, "format": "gguf",
                               "file_name": model.filename},
                     "source": {"kind": "embedded", "package": model.package}, "profile": None,
                     "created_at": shipped.stat().st_mtime})
    return rows


@click.command()
@click.argument("model")
@click.option("--modelfile", is_flag=True, help="Print the model's Modelfile.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def show(model: str, modelfile: bool, as_json: bool) -> None:
    """Show a model's architecture, parameters, quantization, context, template and license."""
    from slmkit.store.show import describe

    desc = describe(model, _home())
    if modelfile:
        click.echo(desc.modelfile(), nl=False)
        return
    summary = desc.summary()
    if as_json:
        click.echo(json.dumps(summary, indent=1, default=str))
        return
    for key in ("name", "architecture", "parameter_size", "quantization", "context_length", "embedding_length",
                "layers", "attention_heads", "kv_heads", "vocab_size", "license", "digest", "path"):
        if summary[key] is not None:
            console.print(f"  {key.replace('_', ' '):<18} {escape(str(summary[key]))}", highlight=False, soft_wrap=True)
    console.print(f"  {'file size':<18} {human(summary['file_size'])}")
    for key, value in summary["parameters_defaults"].items():
        console.print(f"  parameter {key:<8} {escape(str(value))}", highlight=False)
    if summary["system"]:
        console.print(f"  {'system':<18} {escape(str(summary['system']))}", highlight=False)


@click.command()
@click.argument("models", nargs=-1, required=True)
@handle_errors
def rm(models: tuple[str, ...]) -> None:
    """Remove models from the store (their files go when no other name uses them)."""
    store = _store()
    for model in models:
        removed = store.remove(model)
        console.print(f"deleted '{removed.ref}'")


@click.command()
@click.argument("source")
@click.argument("destination")
@handle_errors
def cp(source: str, destination: str) -> None:
    """Copy a model to a new name (no file is copied)."""
    copied = _store().copy(source, destination)
    console.print(f"copied '{source}' to '{copied.ref}'")


@click.command()
@click.argument("name")
@click.option("--file", "-f", "modelfile", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The Modelfile.")
@handle_errors
def create(name: str, modelfile: Path) -> None:
    """Create NAME from a Modelfile (FROM, PARAMETER, SYSTEM, TEMPLATE, MESSAGE, LICENSE)."""
    from slmkit.store.create import create as create_model

    profile = parse_modelfile(modelfile.read_text(encoding="utf-8"))
    manifest = create_model(_store(), name, profile, base_dir=modelfile.parent,
                            report=lambda e: err_console.print(e.status, style="dim", highlight=False))
    console.print(f"created [bold]{manifest.ref}[/] from {profile.from_}")
