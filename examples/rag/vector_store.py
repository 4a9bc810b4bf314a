"""The vector store: one SQLite file, vectors in a ``sqlite-vec`` ``vec0`` table.

Tables: ``meta`` (the embedding model and its dimensions), ``documents`` (one row per file with
the sha256 of its content, so unchanged files are skipped on the next ingest), ``chunks`` (text,
heading, anchor) and ``vec_chunks`` (the chunk vectors under the chunk's id, cosine distance).
Each document is replaced in one transaction, so an interrupted ingest leaves whole documents.

Python's ``sqlite3`` can load extensions only when it was built with that enabled; where it was
not, ``pysqlite3`` (PyPI ``pysqlite3-binary``) is used instead.
"""

from __future__ import annotations

import importlib
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from md_chunks import Chunk


class StoreError(Exception):
    """A problem with the database, said in one line."""


@dataclass(frozen=True)
class Document:
    id: int
    path: str  # absolute path, the key
    label: str  # how answers cite it: the ingested folder's name / the path inside it
    sha256: str


@dataclass(frozen=True)
class Hit:
    label: str
    heading: str
    anchor: str
    text: str
    distance: float

    @property
    def ref(self) -> str:
        return f"{self.label}#{self.anchor}" if self.anchor else self.label


def sqlite_module() -> ModuleType:
    """stdlib ``sqlite3`` when it can load extensions, else ``pysqlite3``; a clear error if neither."""
    if hasattr(sqlite3.Connection, "enable_load_extension"):
        return sqlite3
    try:
        return importlib.import_module("pysqlite3.dbapi2")
    except ImportError:
        raise StoreError("this Python's sqlite3 cannot load extensions (needed for sqlite-vec); "
                         "install pysqlite3-binary (pip install pysqlite3-binary) or use a Python whose "
                         "sqlite3 supports enable_load_extension") from None


def _load_vec(db: Any) -> None:
    try:
        import sqlite_vec
    except ImportError:
        raise StoreError("the sqlite-vec package is missing: pip install sqlite-vec") from None
    db.enable_load_extension(True)
    sqlite_vec.load(db)
    db.enable_load_extension(False)


def serialize(vector: Sequence[float]) -> bytes:
    import sqlite_vec

    return bytes(sqlite_vec.serialize_float32(list(vector)))


class VectorStore:
    """Documents, chunks and their vectors in one SQLite file."""

    def __init__(self, path: Path, *, create: bool) -> None:
        if not create and not path.is_file():
            raise StoreError(f"no database at {path}: run `rag.py ingest FOLDER` first")
        module = sqlite_module()
        self._errors: type[Exception] = module.Error
        try:
            self.db: Any = module.connect(str(path))
            _load_vec(self.db)
            self._schema()
        except self._errors as exc:
            raise StoreError(f"cannot open the database {path}: {exc}") from None

    def _schema(self) -> None:
        self.db.executescript("""
            create table if not exists meta(key text primary key, value text not null);
            create table if not exists documents(
                id integer primary key, path text unique not null, label text not null, sha256 text not null);
            create table if not exists chunks(
                id integer primary key, document_id integer not null references documents(id),
                ordinal integer not null, heading text not null, anchor text not null, text text not null);
            create index if not exists chunks_document on chunks(document_id);
        """)

    def close(self) -> None:
        self.db.close()

    # -- metadata ---------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        row = self.db.execute("select value from meta where key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def check_model(self, model: str) -> None:
        known = self.meta("embedding_model")
        if known is not None and known != model:
            raise StoreError(f"this database holds vectors of {known}: pass --embedding-model {known}, "
                             "or use another --db")

    def bind_model(self, model: str, dimensions: int) -> None:
        """Record the embedding model on first use (and create the vector table); refuse another."""
        known = self.meta("embedding_model")
        if known is not None and (known != model or self.meta("dimensions") != str(dimensions)):
            raise StoreError(f"this database holds vectors of {known} ({self.meta('dimensions')} dimensions); "
                             f"use another --db for {model} ({dimensions} dimensions)")
        with self.db:
            self.db.execute("insert or ignore into meta values ('embedding_model', ?)", (model,))
            self.db.execute("insert or ignore into meta values ('dimensions', ?)", (str(dimensions),))
            self.db.execute(f"create virtual table if not exists vec_chunks using vec0("
                            f"embedding float[{int(dimensions)}] distance_metric=cosine)")

    # -- documents --------------------------------------------------------------------
    def documents(self) -> dict[str, Document]:
        rows = self.db.execute("select id, path, label, sha256 from documents").fetchall()
        return {row[1]: Document(*row) for row in rows}

    def chunk_count(self) -> int:
        return int(self.db.execute("select count(*) from chunks").fetchone()[0])

    def replace(self, path: str, label: str, sha256: str, chunks: list[Chunk],
                vectors: list[list[float]]) -> None:
        """Put a document's chunks and vectors in place of its old ones, in one transaction."""
        with self.db:
            self._delete(path)
            cursor = self.db.execute("insert into documents(path, label, sha256) values (?, ?, ?)",
                                     (path, label, sha256))
            document_id = cursor.lastrowid
            for ordinal, (chunk, vector) in enumerate(zip(chunks, vectors, strict=True)):
                cursor = self.db.execute(
                    "insert into chunks(document_id, ordinal, heading, anchor, text) values (?, ?, ?, ?, ?)",
                    (document_id, ordinal, chunk.heading, chunk.anchor, chunk.text))
                self.db.execute("insert into vec_chunks(rowid, embedding) values (?, ?)",
                                (cursor.lastrowid, serialize(vector)))

    def remove(self, path: str) -> None:
        with self.db:
            self._delete(path)

    def _delete(self, path: str) -> None:
        row = self.db.execute("select id from documents where path = ?", (path,)).fetchone()
        if row is None:
            return
        ids = [(r[0],) for r in self.db.execute("select id from chunks where document_id = ?", (row[0],))]
        if ids and self.meta("embedding_model") is not None:
            self.db.executemany("delete from vec_chunks where rowid = ?", ids)
        self.db.execute("delete from chunks where document_id = ?", (row[0],))
        self.db.execute("delete from documents where id = ?", (row[0],))

    # -- retrieval --------------------------------------------------------------------
    def search(self, vector: Sequence[float], k: int) -> list[Hit]:
        """The ``k`` chunks nearest to ``vector`` (cosine distance), nearest first."""
        if self.meta("embedding_model") is None or self.chunk_count() == 0:
            raise StoreError("the database holds no documents: run `rag.py ingest FOLDER` first")
        rows = self.db.execute("""
            with knn as (select rowid, distance from vec_chunks where embedding match ? order by distance limit ?)
            select d.label, c.heading, c.anchor, c.text, knn.distance
            from knn join chunks c on c.id = knn.rowid join documents d on d.id = c.document_id
            order by knn.distance
        """, (serialize(vector), k)).fetchall()
        return [Hit(label=r[0], heading=r[1], anchor=r[2], text=r[3], distance=float(r[4])) for r in rows]
