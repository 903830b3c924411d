"""Durable state in one SQLite file: the relay's id, nickname bindings, mail.

Only public keys and sealed mail are stored; nothing here is secret. SQLite
calls are synchronous: each is a single indexed statement on a local file,
far cheaper than a thread hop, and they happen only at registration and
mail time, never per frame.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from typing import Any, Optional

SCHEMA_VERSION = 2
"""The schema this code reads and writes; recorded in ``meta`` as ``schema_version``."""

# Step N takes a database from version N-1 to N; a new database runs every
# step, so a fresh file and an upgraded one are the same by construction.
# Version 1 is the schema shipped before versions were recorded: a file with
# tables and no ``schema_version`` is version 1. Steps are never edited once
# released: a change is a new step.
_STEPS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
        """CREATE TABLE bindings (
            canonical TEXT PRIMARY KEY,
            skeleton TEXT NOT NULL UNIQUE,
            display TEXT NOT NULL,
            identity_pub BLOB NOT NULL,
            static_pub BLOB NOT NULL,
            static_sig BLOB NOT NULL,
            created REAL NOT NULL
        )""",
        """CREATE TABLE mail (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            recipient TEXT NOT NULL,
            sender TEXT NOT NULL,
            created REAL NOT NULL,
            body BLOB NOT NULL
        )""",
        "CREATE INDEX mail_recipient ON mail (recipient, id)",
        "CREATE INDEX mail_created ON mail (created)",
    ),
    # The per-sender quota (mail_count_from) at every MAIL: an index, not a scan of the mailbox.
    2: ("CREATE INDEX mail_sender ON mail (recipient, sender)",),
}
assert sorted(_STEPS) == list(range(1, SCHEMA_VERSION + 1))


class SchemaTooNew(sqlite3.DatabaseError):
    """The database was written by a newer relaychat; this one must not touch it."""


def schema_version(db: sqlite3.Connection) -> int:
    """The version of the schema in ``db``: 0 for an empty database."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "meta" not in tables:
        return 0
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row is not None else 1


def upgrade(db: sqlite3.Connection, path: str = "the database") -> int:
    """Bring ``db`` (in autocommit mode) to :data:`SCHEMA_VERSION`, one step per
    transaction, so a failed step leaves the last good version behind. Returns
    the version found."""
    found = schema_version(db)
    if found > SCHEMA_VERSION:
        raise SchemaTooNew(f"{path} has schema version {found}; this relaychat knows up to {SCHEMA_VERSION}")
    for version in range(found + 1, SCHEMA_VERSION + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _STEPS[version]:
                db.execute(statement)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (version,))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    return found


@dataclass(frozen=True)
class Binding:
    """A nickname bound to an identity key, with its certified static key."""

    canonical: str
    skeleton: str
    display: str
    identity_pub: bytes
    static_pub: bytes
    static_sig: bytes
    created: float


@dataclass(frozen=True)
class Mail:
    id: int
    recipient: str
    sender: str
    created: float
    body: bytes


class Store:
    def __init__(self, path: str) -> None:
        """Open (creating if needed) the database at ``path``; ``:memory:`` for tests."""
        if path != ":memory:":
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
        self._db = sqlite3.connect(path, isolation_level=None)
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        upgrade(self._db, path)
        self.server_id = self._load_server_id()
        self.writable = True  # False while the store refuses writes: /healthz answers 503

    def _load_server_id(self) -> bytes:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'server_id'").fetchone()
        if row:
            return bytes(row[0])
        server_id = os.urandom(32)
        self._db.execute("INSERT INTO meta VALUES ('server_id', ?)", (server_id,))
        return server_id

    def close(self) -> None:
        self._db.close()

    # -- bindings ---------------------------------------------------------

    def binding(self, canonical: str) -> Optional[Binding]:
        row = self._db.execute("SELECT * FROM bindings WHERE canonical = ?", (canonical,)).fetchone()
        return _binding(row)

    def binding_by_skeleton(self, skeleton: str) -> Optional[Binding]:
        row = self._db.execute("SELECT * FROM bindings WHERE skeleton = ?", (skeleton,)).fetchone()
        return _binding(row)

    def insert_binding(self, b: Binding) -> bool:
        """Bind a new nickname; False if it (or a look-alike) was bound meanwhile."""
        try:
            self._db.execute(
                "INSERT INTO bindings VALUES (?, ?, ?, ?, ?, ?, ?)",
                (b.canonical, b.skeleton, b.display, b.identity_pub, b.static_pub, b.static_sig, b.created),
            )
        except sqlite3.IntegrityError:
            return False
        return True

    def update_static(self, canonical: str, static_pub: bytes, static_sig: bytes) -> None:
        self._db.execute(
            "UPDATE bindings SET static_pub = ?, static_sig = ? WHERE canonical = ?",
            (static_pub, static_sig, canonical),
        )

    def binding_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM bindings").fetchone()[0])

    def release_binding(self, canonical: str) -> Optional[int]:
        """Free a nickname with the mail waiting for it (the operator's ``release``):
        how many messages went, or None if it was not bound."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")  # both or neither: the connection is in autocommit mode
        try:
            bound = db.execute("DELETE FROM bindings WHERE canonical = ?", (canonical,)).rowcount == 1
            deleted = db.execute("DELETE FROM mail WHERE recipient = ?", (canonical,)).rowcount if bound else 0
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return deleted if bound else None

    # -- mail -------------------------------------------------------------

    def add_mail(self, recipient: str, sender: str, created: float, body: bytes) -> int:
        cursor = self._db.execute(
            "INSERT INTO mail (recipient, sender, created, body) VALUES (?, ?, ?, ?)",
            (recipient, sender, created, body),
        )
        mail_id = cursor.lastrowid
        assert mail_id is not None  # an INSERT into a rowid table sets it
        return mail_id

    def mail_usage(self, recipient: str) -> tuple[int, int]:
        """(messages, bytes) waiting for ``recipient``."""
        count, size = self._db.execute(
            "SELECT count(*), coalesce(sum(length(body)), 0) FROM mail WHERE recipient = ?", (recipient,)
        ).fetchone()
        return count, size

    def mail_totals(self) -> tuple[int, int]:
        """(messages, bytes) held for everyone: for the metrics."""
        count, size = self._db.execute("SELECT count(*), coalesce(sum(length(body)), 0) FROM mail").fetchone()
        return count, size

    def mail_count_from(self, recipient: str, sender: str) -> int:
        return int(self._db.execute(
            "SELECT count(*) FROM mail WHERE recipient = ? AND sender = ?", (recipient, sender)
        ).fetchone()[0])

    def pending_mail(self, recipient: str) -> list[Mail]:
        rows = self._db.execute(
            "SELECT id, recipient, sender, created, body FROM mail WHERE recipient = ? ORDER BY id",
            (recipient,),
        ).fetchall()
        return [Mail(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]

    def delete_mail(self, mail_id: int, recipient: str) -> bool:
        cursor = self._db.execute("DELETE FROM mail WHERE id = ? AND recipient = ?", (mail_id, recipient))
        return cursor.rowcount == 1

    def purge_mail(self, older_than: float) -> int:
        return self._db.execute("DELETE FROM mail WHERE created < ?", (older_than,)).rowcount


def _binding(row: Optional[tuple[Any, ...]]) -> Optional[Binding]:
    if row is None:
        return None
    canonical, skel, display, identity_pub, static_pub, static_sig, created = row
    return Binding(canonical, skel, display, bytes(identity_pub), bytes(static_pub), bytes(static_sig), created)
