"""API keys: created once, shown once, stored hashed in SQLite in the store.

A key looks like ``slm_<id>_<secret>``: ``id`` (8 hex digits) finds the row, ``secret`` (32
random bytes, url-safe base64) proves possession. We store SHA-256 of the whole key. A slow
password hash (bcrypt, scrypt) protects low-entropy secrets chosen by people against guessing;
these keys carry 256 random bits, so one SHA-256 is already beyond brute force, and it keeps
the check cheap on every request. Comparison is constant-time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from slmkit.errors import InvalidRequest, Unauthorized
from slmkit.server.clock import SYSTEM_CLOCK, Clock
from slmkit.server.context import Principal

PREFIX = "slm_"
_KEY = re.compile(r"^slm_([0-9a-f]{8})_([A-Za-z0-9_-]{43})$")
BAD_KEY = "Invalid, expired or revoked API key"

SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL,
    models TEXT,
    rpm INTEGER,
    tpm INTEGER,
    created REAL NOT NULL,
    expires REAL,
    revoked REAL,
    admin INTEGER NOT NULL DEFAULT 0
)
"""
_COLUMNS = "id, name, models, rpm, tpm, created, expires, revoked, admin"


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyRecord:
    id: str
    name: str
    models: tuple[str, ...] | None
    rpm: int | None
    tpm: int | None
    created: float
    expires: float | None
    revoked: float | None
    admin: bool = False

    @property
    def status(self) -> str:
        return self.status_at(time.time())

    def status_at(self, now: float) -> str:
        if self.revoked:
            return "revoked"
        if self.expires is not None and self.expires < now:
            return "expired"
        return "active"

    def principal(self) -> Principal:
        return Principal(name=self.name, key_id=self.id, rpm=self.rpm, tpm=self.tpm, admin=self.admin,
                         models=frozenset(self.models) if self.models else None)


class KeyStore:
    """The keys table in ``path`` (one SQLite file, shared by all workers on the host)."""

    def __init__(self, path: Path, clock: Clock = SYSTEM_CLOCK) -> None:
        self.path = path
        self.clock = clock

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=10)
        try:
            conn.execute(SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(keys)")}
            if "admin" not in columns:  # a keys file from before the admin scope
                conn.execute("ALTER TABLE keys ADD COLUMN admin INTEGER NOT NULL DEFAULT 0")
            yield conn
            conn.commit()
        finally:
            conn.close()

    def create(self, name: str, *, models: list[str] | None = None, rpm: int | None = None,
               tpm: int | None = None, ttl_s: float | None = None, admin: bool = False) -> tuple[str, KeyRecord]:
        """Make a key; returns the key (shown once) and its record. ``admin`` keys may also
        change the store (pull, create, copy, delete)."""
        if not name.strip():
            raise InvalidRequest("a key needs a name", param="name")
        for label, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and value < 1:
                raise InvalidRequest(f"{label} must be a positive integer", param=label)
        key_id = secrets.token_hex(4)
        key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        now = self.clock.time()
        expires = now + ttl_s if ttl_s else None
        with self._db() as db:
            db.execute("INSERT INTO keys (id, name, hash, models, rpm, tpm, created, expires, revoked, admin) "
                       "VALUES (?,?,?,?,?,?,?,?,NULL,?)",
                       (key_id, name, _hash(key), ",".join(models) if models else None, rpm, tpm, now, expires,
                        int(admin)))
        return key, KeyRecord(key_id, name, tuple(models) if models else None, rpm, tpm, now, expires, None, admin)

    def list(self) -> list[KeyRecord]:
        if not self.path.exists():
            return []
        with self._db() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM keys ORDER BY created").fetchall()
        return [_record(row) for row in rows]

    def revoke(self, id_or_name: str) -> KeyRecord:
        matches = [k for k in self.list() if id_or_name in (k.id, k.name) and not k.revoked]
        if len(matches) != 1:
            raise InvalidRequest(f"no single active key with id or name '{id_or_name}'"
                                 if not matches else f"several keys are named '{id_or_name}'; use the id")
        with self._db() as db:
            db.execute("UPDATE keys SET revoked = ? WHERE id = ?", (time.time(), matches[0].id))
        return matches[0]

    def has_keys(self) -> bool:
        now = self.clock.time()
        return any(k.status_at(now) == "active" for k in self.list())

    def verify(self, key: str) -> Principal:
        """The principal for ``key``; Unauthorized (same message for every cause) otherwise."""
        match = _KEY.match(key)
        if not match or not self.path.exists():
            raise Unauthorized(BAD_KEY)
        with self._db() as db:
            row = db.execute(f"SELECT {_COLUMNS}, hash FROM keys WHERE id = ?", (match.group(1),)).fetchone()
        stored = row[9] if row else _hash("")  # compare even when absent: no timing tell
        if not hmac.compare_digest(stored, _hash(key)) or row is None:
            raise Unauthorized(BAD_KEY)
        record = _record(row[:9])
        if record.status_at(self.clock.time()) != "active":
            raise Unauthorized(BAD_KEY)
        return record.principal()


def _record(row: tuple[object, ...]) -> KeyRecord:
    key_id, name, models, rpm, tpm, created, expires, revoked, admin = row
    return KeyRecord(str(key_id), str(name), tuple(str(models).split(",")) if models else None,
                     rpm if isinstance(rpm, int) else None, tpm if isinstance(tpm, int) else None,
                     float(created), float(expires) if expires is not None else None,  # type: ignore[arg-type]
                     float(revoked) if revoked is not None else None, bool(admin))  # type: ignore[arg-type]


def parse_bearer(header: str | None) -> str:
    """The token of an ``Authorization: Bearer TOKEN`` header; Unauthorized when malformed."""
    if not header:
        raise Unauthorized("Missing API key: send 'Authorization: Bearer <key>'")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Malformed Authorization header: expected 'Bearer <key>'")
    return token.strip()


def credential(authorization: str | None, api_key: str | None) -> str:
    """The key a request presents: ``Authorization: Bearer KEY`` or, when that header is absent,
    ``x-api-key: KEY``; Unauthorized when neither is there or the one given is malformed."""
    if not authorization and api_key is not None:
        if not api_key.strip():
            raise Unauthorized("Malformed x-api-key header: expected the key")
        return api_key.strip()
    if not authorization:
        raise Unauthorized("Missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'")
    return parse_bearer(authorization)


def check_static(token: str, static_key: str) -> bool:
    return hmac.compare_digest(token.encode(), static_key.encode())


def parse_duration(text: str) -> float:
    """'30d', '12h', '45m', '90s' -> seconds."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text)
    if not match:
        raise InvalidRequest(f"bad duration '{text}': use a number and s, m, h, d or w (e.g. 30d)",
                             param="expires")
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
