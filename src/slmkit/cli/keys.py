"""`slm keys`: create, list and revoke API keys (stored hashed in the store's SQLite file)."""

from __future__ import annotations

import json
import time

import click
from rich.markup import escape
from rich.table import Table

from slmkit.cli.common import console, handle_errors
from slmkit.server.auth import KeyRecord, KeyStore, parse_duration
from slmkit.settings import load_settings


def _store() -> KeyStore:
    return KeyStore(load_settings().keys_db)


def _row(record: KeyRecord) -> dict[str, object]:
    return {"id": record.id, "name": record.name, "models": list(record.models or []) or None,
            "rpm": record.rpm, "tpm": record.tpm, "admin": record.admin, "status": record.status,
            "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(record.created)),
            "expires": time.strftime("%Y-%m-%d %H:%M", time.localtime(record.expires)) if record.expires else None}


@click.group()
def keys() -> None:
    """Manage API keys."""


@keys.command()
@click.option("--name", required=True, help="Who or what the key is for.")
@click.option("--models", default=None, help="Comma-separated models the key may use [all].")
@click.option("--rpm", type=int, default=None, help="Requests per minute.")
@click.option("--tpm", type=int, default=None, help="Tokens per minute (prompt + generated).")
@click.option("--expires", default=None, help="Lifetime such as 30d, 12h [never].")
@click.option("--admin", is_flag=True, help="May also change the store: pull, create, copy, delete.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def create(name: str, models: str | None, rpm: int | None, tpm: int | None, expires: str | None, admin: bool,
           as_json: bool) -> None:
    """Create a key and print it once."""
    scope = [m.strip() for m in models.split(",") if m.strip()] if models else None
    first = not _store().has_keys()
    key, record = _store().create(name, models=scope, rpm=rpm, tpm=tpm,
                                  ttl_s=parse_duration(expires) if expires else None, admin=admin)
    if as_json:
        click.echo(json.dumps({"key": key, **_row(record)}))
        return
    console.print(f"created key [bold]{record.id}[/] ({escape(name)}); it is shown only this once:")
    click.echo(key)
    if first:
        click.echo(f"note: this first key turns on authentication for every server that shares {_store().path.parent} "
                   "(SLM_HOME): requests now need a key", err=True)


@keys.command(name="list")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def list_keys(as_json: bool) -> None:
    """List keys (never the keys themselves)."""
    rows = [_row(r) for r in _store().list()]
    if as_json:
        click.echo(json.dumps(rows))
        return
    table = Table("id", "name", "models", "rpm", "tpm", "status", "created", "expires")
    for row in rows:
        row["models"] = ", ".join(row["models"]) if isinstance(row["models"], list) else "all"
        table.add_row(*(escape(str(row[c] if row[c] is not None else "-")) for c in
                        ("id", "name", "models", "rpm", "tpm", "status", "created", "expires")))
    console.print(table)


@keys.command()
@click.argument("key_id")
@handle_errors
def revoke(key_id: str) -> None:
    """Revoke a key by id (or by name when it is unique)."""
    record = _store().revoke(key_id)
    console.print(f"revoked key {record.id} ({record.name})")
