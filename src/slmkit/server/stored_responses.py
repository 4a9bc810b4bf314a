"""Stored responses of the OpenAI Responses API: one SQLite file under ``SLM_HOME``.

A response is stored with its owner (the key that created it), its conversation items (the
previous response's, then its own input) and the Response object itself. Only its owner sees
it: for anyone else it does not exist (404), as an unknown id. The table is bounded by count
and age (``settings.responses``); the oldest rows go first."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmkit.errors import NotFound
from slmkit.server.clock import SYSTEM_CLOCK, Clock
from slmkit.server.context import Principal
from slmkit.settings import ResponsesSettings

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created REAL NOT NULL,
    items TEXT NOT NULL,
    own_start INTEGER NOT NULL,
    response TEXT NOT NULL
)
"""


def owner_of(principal: Principal) -> str:
    """Who owns what a principal stores: the key's id (the static key and no key by name)."""
    return f"key:{principal.key_id}" if principal.key_id else principal.name


@dataclass
class StoredResponse:
    id: str
    items: list[dict[str, Any]]  # the conversation before this response's output
    own_start: int  # where this response's own input begins in ``items``
    response: dict[str, Any]

    def input_items(self) -> list[dict[str, Any]]:
        return self.items[self.own_start:]

    def conversation(self) -> list[dict[str, Any]]:
        """What a request with ``previous_response_id`` continues: the input, then the output."""
        return [*self.items, *self.response.get("output", [])]


class ResponseStore:
    def __init__(self, path: Path, limits: ResponsesSettings, clock: Clock = SYSTEM_CLOCK) -> None:
        self.path = path
        self.limits = limits
        self.clock = clock
        self._lock = threading.Lock()

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=10)
            try:
                conn.execute(SCHEMA)
                yield conn
                conn.commit()
            finally:
                conn.close()

    # -- async API (the routes') -------------------------------------------------------------
    async def save(self, principal: Principal, response: dict[str, Any], items: list[dict[str, Any]],
                   own_start: int) -> None:
        await asyncio.to_thread(self.save_sync, owner_of(principal), response, items, own_start)

    async def find(self, response_id: str, principal: Principal, param: str | None = None) -> StoredResponse:
        """The caller's stored response; 404 when unknown, expired or someone else's."""
        found = await asyncio.to_thread(self.get_sync, response_id, owner_of(principal))
        if found is None:
            raise NotFound(f"Response with id '{response_id[:80]}' not found.", param=param)
        return found

    async def delete(self, response_id: str, principal: Principal) -> None:
        if not await asyncio.to_thread(self.delete_sync, response_id, owner_of(principal)):
            raise NotFound(f"Response with id '{response_id[:80]}' not found.")

    # -- the table -----------------------------------------------------------------------------
    def save_sync(self, owner: str, response: dict[str, Any], items: list[dict[str, Any]], own_start: int) -> None:
        if self.limits.max_count == 0:
            return
        now = self.clock.time()
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO responses (id, owner, created, items, own_start, response) "
                       "VALUES (?,?,?,?,?,?)", (response["id"], owner, now, json.dumps(items), own_start,
                                                json.dumps(response)))
            db.execute("DELETE FROM responses WHERE created < ?", (now - self.limits.max_age_s,))
            db.execute("DELETE FROM responses WHERE id NOT IN "
                       "(SELECT id FROM responses ORDER BY created DESC, rowid DESC LIMIT ?)", (self.limits.max_count,))

    def get_sync(self, response_id: str, owner: str) -> StoredResponse | None:
        if not self.path.exists():
            return None
        with self._db() as db:
            row = db.execute("SELECT items, own_start, response FROM responses WHERE id = ? AND owner = ? "
                             "AND created >= ?", (response_id, owner, self.clock.time() - self.limits.max_age_s),
                             ).fetchone()
        if row is None:
            return None
        return StoredResponse(response_id, json.loads(row[0]), int(row[1]), json.loads(row[2]))

    def delete_sync(self, response_id: str, owner: str) -> bool:
        if self.get_sync(response_id, owner) is None:
            return False
        with self._db() as db:
            db.execute("DELETE FROM responses WHERE id = ? AND owner = ?", (response_id, owner))
        return True
