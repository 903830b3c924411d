"""Durable state in one SQLite file: the relay's id, nickname bindings, mail.

Only public keys and sealed mail are stored; nothing here is secret. SQLite
calls are synchronous: each is a single indexed statement on a local file,
far cheaper than a thread hop, and they happen only at registration, mail
and acknowledgement time, never per frame.

Storage fails under a running relay: the disk fills, the file system is
remounted read-only, a disk errs, someone deletes or replaces the file.
Every such failure leaves this module as :class:`StorageError`, whose text
is a sentence fit for a client (the hub answers ``ERR <CMD> unavailable``),
and moves :attr:`Store.health`, logged once per change.

Why a rollback journal in ``PERSIST`` mode rather than WAL: acknowledging
mail (a ``DELETE``) must work on a full disk, and a delete must then need
no new space. A delete frees pages inside the database file (it never
grows it) and writes the pages it changes, with ``secure_delete`` the
freed ones too, to the journal first. In WAL mode those writes append to
the WAL, which cannot grow on a full disk and cannot be emptied either
while a checkpoint must first grow the database for earlier inserts. A
``PERSIST`` journal is overwritten in place by every transaction and
never truncated, so once it has been made as large as the biggest
transaction (:data:`JOURNAL_RESERVE`, done at open, while there is space),
deleting needs no free byte on the disk. On a file system that copies on
write (btrfs, ZFS) overwriting in place needs new blocks, and no journal
mode helps; keep the data directory elsewhere. The price is about three
times the time per write (three syncs instead of one), paid only on the
rare writes above.
"""

from __future__ import annotations

import enum
import os
import sqlite3
from dataclasses import dataclass
from typing import Any, Callable, Container, Optional, TypeVar

from twisted.logger import Logger

log = Logger(namespace="relaychat.store")
T = TypeVar("T")

JOURNAL_RESERVE = 4 << 20  # bytes of journal kept ready, so a delete needs no new space
MIN_FREE_AT_START = 1 << 20  # below this the disk counts as full at start-up
INTEGRITY_CHECK_INTERVAL = 3600.0  # seconds between PRAGMA quick_check runs

SCHEMA_VERSION = 3
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
    # When each nickname was last used (for nickname_expiry_days), apart from the
    # bindings so that noting a use rewrites a small row; and the scratch table
    # that sizes the journal (Store.check_at_start).
    3: (
        "CREATE TABLE binding_use (canonical TEXT PRIMARY KEY, last_used REAL NOT NULL)",
        "CREATE TABLE reserve (id INTEGER PRIMARY KEY, filler BLOB NOT NULL)",
    ),
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


class StorageError(Exception):
    """The database cannot do what was asked.

    ``str()`` is one sentence that names no path (clients see it); at
    start-up :func:`open_store` puts the file's name in front.
    """


class Health(enum.Enum):
    OK = "ok"
    #: The last write failed (disk full, I/O error); writes are still tried, since that can clear.
    FAILING = "failing"
    #: The open file is no longer the one at its path (deleted, replaced) or is corrupt:
    #: whatever is written now would vanish at restart, so writes are refused until then.
    LOST = "lost"


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
    sender: str  # canonical
    created: float
    body: bytes
    sender_display: Optional[str] = None  # the sender's display form, when the store knows it (a cluster's)


class Store:
    """The database; ``path`` ``":memory:"`` for tests (no file checks then).

    :param journal_reserve: bytes of journal to keep ready; at least the
        largest single delete (a mail of ``max_mail`` bytes and its pages).
    """

    def __init__(self, path: str, journal_reserve: int = JOURNAL_RESERVE) -> None:
        self.path = path
        self.health = Health.OK
        self.quiet = False  # True while start-up checks run: their failure is reported in one line instead
        self._problem = ""
        self._journal_reserve = journal_reserve
        self._identity: Optional[tuple[int, int]] = None
        self._touched: dict[str, float] = {}
        self._next_integrity_check: Optional[float] = None  # start-up ran one
        if path != ":memory:":
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
            self._identity = _file_identity(path)
        self._db = sqlite3.connect(path, isolation_level=None)
        try:
            self._db.execute("PRAGMA secure_delete=ON")  # deleted mail does not linger in free pages
            self._db.execute("PRAGMA temp_store=MEMORY")  # no temporary files, which would need space
            if path != ":memory:":
                self._db.execute("PRAGMA journal_mode=PERSIST").fetchone()
            upgrade(self._db, path)
            self.server_id = self._load_server_id()
            self.binding_total: int = self._db.execute("SELECT count(*) FROM bindings").fetchone()[0]
            self.mail_bytes: int = self._db.execute(
                "SELECT coalesce(sum(length(body)), 0) FROM mail").fetchone()[0]
        except BaseException:
            self._db.close()
            raise

    def _load_server_id(self) -> bytes:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'server_id'").fetchone()
        if row:
            return bytes(row[0])
        server_id = os.urandom(32)
        self._db.execute("INSERT INTO meta VALUES ('server_id', ?)", (server_id,))
        return server_id

    def close(self) -> None:
        try:
            self.flush_use()
        except StorageError:
            pass  # already logged; the last uses are lost, not the bindings
        self._db.close()

    # -- start-up checks ----------------------------------------------------

    def check_at_start(self) -> None:
        """What start-up needs beyond opening: a sound file, some free space,
        a real write, and the journal made large enough (see the module's
        docstring). Raises :class:`StorageError`."""
        problem = self.integrity_problem()
        if problem:
            raise StorageError(f"the database is corrupt ({problem})")
        directory = os.path.dirname(os.path.abspath(self.path))
        fs = os.statvfs(directory)
        free = fs.f_bavail * fs.f_frsize
        if free < MIN_FREE_AT_START:
            raise StorageError(f"the disk is full ({free} bytes free)")
        self._write("INSERT OR REPLACE INTO meta VALUES ('opened', ?)", (os.urandom(8),))
        journal = self.path + "-journal"
        size = os.path.getsize(journal) if os.path.exists(journal) else 0
        if size < self._journal_reserve:
            # Deleting a blob this large with secure_delete journals every page
            # it frees; PERSIST then keeps the journal at that size for good.
            self._write("INSERT OR REPLACE INTO reserve VALUES (1, zeroblob(?))", (self._journal_reserve,))
            self._write("DELETE FROM reserve")

    def integrity_problem(self) -> str:
        """The first problem ``PRAGMA quick_check`` finds, or ``""``."""
        rows = self._read_all("PRAGMA quick_check(1)")
        first = str(rows[0][0]) if rows else "no answer"
        return "" if first == "ok" else first

    # -- health ---------------------------------------------------------------

    @property
    def writable(self) -> bool:
        """Whether writes are expected to work: False on a failing or lost file (health checks say 503)."""
        return self.health is Health.OK

    def check(self, now: float) -> Health:
        """Call every few seconds: notice the file deleted or replaced, corruption
        (``quick_check`` every :data:`INTEGRITY_CHECK_INTERVAL`), and save uses."""
        if self.health is Health.LOST:
            return self.health
        self._check_identity()
        if self._next_integrity_check is None:
            self._next_integrity_check = now + INTEGRITY_CHECK_INTERVAL
        if not self._lost() and now >= self._next_integrity_check:
            self._next_integrity_check = now + INTEGRITY_CHECK_INTERVAL
            try:
                problem = self.integrity_problem()
            except StorageError:
                problem = ""  # logged as a failure already
            if problem:
                self._lose(f"the database is corrupt ({problem})")
        if not self._lost():
            try:
                self.flush_use()
            except StorageError:
                pass
        return self.health

    def _check_identity(self) -> None:
        """Is the file SQLite has open still the one at :attr:`path`?

        Deleted (or renamed away, or its last other link removed) the path
        no longer resolves; replaced (``mv new.sqlite3 relaychat.sqlite3``)
        it names another inode. SQLite keeps the original inode open, so its
        number cannot be handed to a new file while we compare. One
        ``stat`` per write and per timer tick.
        """
        if self._identity is None:
            return
        try:
            now = _file_identity(self.path)
        except OSError:
            now = None
        if now != self._identity:
            self._lose("the database file was deleted or replaced while the relay ran")

    def _lost(self) -> bool:
        """A method, not ``self.health is Health.LOST`` inline: the checks above
        it can lose the file, which a type checker's narrowing cannot see."""
        return self.health is Health.LOST

    def _lose(self, why: str) -> None:
        if self.health is Health.LOST:
            return
        self.health = Health.LOST
        self._problem = why
        if not self.quiet:
            log.error("relaychat: database {path}: {why}; refusing every write until the relay is restarted",
                      path=self.path, why=why)

    def _failed(self, error: sqlite3.Error) -> StorageError:
        if self.health is Health.LOST:  # what fails now is a consequence; say the cause
            return StorageError(f"the relay cannot use its storage now: {self._problem}")
        why, lost = _explain(error)
        if lost:
            self._lose(why)
        elif self.health is Health.OK:
            self.health = Health.FAILING
            if not self.quiet:
                log.error("relaychat: database {path}: {why} ({error}); writes fail until it works again",
                          path=self.path, why=why, error=str(error))
        return StorageError(f"the relay cannot use its storage now: {why}")

    def _succeeded(self) -> None:
        if self.health is Health.FAILING:
            self.health = Health.OK
            if not self.quiet:
                log.info("relaychat: database {path}: writing works again", path=self.path)

    def _refuse_if_lost(self) -> None:
        self._check_identity()
        if self.health is Health.LOST:
            raise StorageError(f"the relay cannot use its storage now: {self._problem}")

    def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in one transaction (one sync for all it does)."""
        self._refuse_if_lost()
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = work(self._db)
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        except sqlite3.Error as e:
            raise self._failed(e) from None
        self._succeeded()
        return result

    def _write(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        self._refuse_if_lost()
        try:
            cursor = self._db.execute(sql, params)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as e:
            raise self._failed(e) from None
        self._succeeded()
        return cursor

    def _read_all(self, sql: str, params: Any = ()) -> list[Any]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise self._failed(e) from None

    def _read_one(self, sql: str, params: Any = ()) -> Any:
        rows = self._read_all(sql, params)
        return rows[0] if rows else None

    # -- bindings ---------------------------------------------------------

    def binding(self, canonical: str) -> Optional[Binding]:
        return _binding(self._read_one("SELECT * FROM bindings WHERE canonical = ?", (canonical,)))

    def binding_by_skeleton(self, skeleton: str) -> Optional[Binding]:
        return _binding(self._read_one("SELECT * FROM bindings WHERE skeleton = ?", (skeleton,)))

    def insert_binding(self, b: Binding) -> bool:
        """Bind a new nickname; False if it (or a look-alike) was bound meanwhile."""
        try:
            self._write(
                "INSERT INTO bindings VALUES (?, ?, ?, ?, ?, ?, ?)",
                (b.canonical, b.skeleton, b.display, b.identity_pub, b.static_pub, b.static_sig, b.created),
            )
        except sqlite3.IntegrityError:
            return False
        self.binding_total += 1
        self._touched[b.canonical] = b.created
        return True

    def update_static(self, canonical: str, static_pub: bytes, static_sig: bytes) -> None:
        self._write(
            "UPDATE bindings SET static_pub = ?, static_sig = ? WHERE canonical = ?",
            (static_pub, static_sig, canonical),
        )

    def binding_count(self) -> int:
        return self.binding_total

    def note_use(self, canonical: str, now: float) -> None:
        """Remember that ``canonical`` was used (logged in, or left); saved by :meth:`flush_use`."""
        self._touched[canonical] = now

    def flush_use(self) -> None:
        """Save the noted uses in one transaction (one sync, however many)."""
        if not self._touched or self.health is Health.LOST:
            return
        touched = list(self._touched.items())
        self._transaction(lambda db: db.executemany("INSERT OR REPLACE INTO binding_use VALUES (?, ?)", touched))
        self._touched.clear()

    def expire_bindings(self, unused_since: float, online: Container[str], batch: int = 500) -> list[str]:
        """Delete up to ``batch`` nicknames (with their waiting mail) unused since
        ``unused_since``, skipping those in ``online``; returns them."""
        self.flush_use()
        rows = self._read_all(
            "SELECT b.canonical FROM bindings b LEFT JOIN binding_use u ON u.canonical = b.canonical "
            "WHERE coalesce(u.last_used, b.created) < ? LIMIT ?", (unused_since, batch * 2))
        gone = [r[0] for r in rows if r[0] not in online][:batch]
        if not gone:
            return []

        def delete(db: sqlite3.Connection) -> int:
            mail = 0
            for canonical in gone:
                mail += db.execute(
                    "SELECT coalesce(sum(length(body)), 0) FROM mail WHERE recipient = ?", (canonical,)).fetchone()[0]
                db.execute("DELETE FROM mail WHERE recipient = ?", (canonical,))
                db.execute("DELETE FROM bindings WHERE canonical = ?", (canonical,))
                db.execute("DELETE FROM binding_use WHERE canonical = ?", (canonical,))
            return mail

        mail = self._transaction(delete)
        self.binding_total -= len(gone)
        self.mail_bytes -= mail
        return gone

    def release_binding(self, canonical: str) -> Optional[int]:
        """Free a nickname with the mail waiting for it (the operator's ``release``):
        how many messages went, or None if it was not bound. Raises
        :class:`StorageError` as every write does."""

        def delete(db: sqlite3.Connection) -> tuple[bool, int, int]:
            if db.execute("DELETE FROM bindings WHERE canonical = ?", (canonical,)).rowcount != 1:
                return False, 0, 0
            count, size = db.execute(
                "SELECT count(*), coalesce(sum(length(body)), 0) FROM mail WHERE recipient = ?",
                (canonical,)).fetchone()
            db.execute("DELETE FROM mail WHERE recipient = ?", (canonical,))
            db.execute("DELETE FROM binding_use WHERE canonical = ?", (canonical,))
            return True, count, size

        bound, count, size = self._transaction(delete)
        if not bound:
            return None
        self._touched.pop(canonical, None)
        self.binding_total -= 1
        self.mail_bytes -= size
        return count

    # -- mail -------------------------------------------------------------

    def add_mail(self, recipient: str, sender: str, created: float, body: bytes) -> int:
        cursor = self._write(
            "INSERT INTO mail (recipient, sender, created, body) VALUES (?, ?, ?, ?)",
            (recipient, sender, created, body),
        )
        self.mail_bytes += len(body)
        mail_id = cursor.lastrowid
        assert mail_id is not None, "an INSERT into a rowid table sets lastrowid"
        return mail_id

    def mail_usage(self, recipient: str) -> tuple[int, int]:
        """(messages, bytes) waiting for ``recipient``."""
        count, size = self._read_one(
            "SELECT count(*), coalesce(sum(length(body)), 0) FROM mail WHERE recipient = ?", (recipient,))
        return count, size

    def mail_totals(self) -> tuple[int, int]:
        """(messages, bytes) held for everyone: for the metrics."""
        count, size = self._read_one("SELECT count(*), coalesce(sum(length(body)), 0) FROM mail")
        return count, size

    def mail_count_from(self, recipient: str, sender: str) -> int:
        return int(self._read_one(
            "SELECT count(*) FROM mail WHERE recipient = ? AND sender = ?", (recipient, sender))[0])

    def pending_mail(self, recipient: str) -> list[Mail]:
        rows = self._read_all(
            "SELECT id, recipient, sender, created, body FROM mail WHERE recipient = ? ORDER BY id",
            (recipient,),
        )
        return [Mail(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]

    def delete_mail(self, mail_id: int, recipient: str) -> bool:
        row = self._read_one("SELECT length(body) FROM mail WHERE id = ? AND recipient = ?", (mail_id, recipient))
        if row is None:
            return False
        if self._write("DELETE FROM mail WHERE id = ? AND recipient = ?", (mail_id, recipient)).rowcount != 1:
            return False
        self.mail_bytes -= row[0]
        return True

    def purge_mail(self, older_than: float) -> int:
        """Delete mail created before ``older_than``, in transactions that fit
        the journal kept ready (so purging works on a full disk too)."""
        deleted = 0
        while True:
            rows = self._read_all(
                "SELECT id, length(body) FROM mail WHERE created < ? ORDER BY id LIMIT 1000", (older_than,))
            if not rows:
                return deleted
            budget = self._journal_reserve // 4  # page overheads and index pages fit in the rest
            ids: list[int] = []
            size = 0
            for mail_id, length in rows:
                if ids and size + length > budget:
                    break
                ids.append(mail_id)
                size += length
            self._write(f"DELETE FROM mail WHERE id IN ({','.join('?' * len(ids))})", ids)
            self.mail_bytes -= size
            deleted += len(ids)

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # no transaction left to end


def open_store(path: str, journal_reserve: int = JOURNAL_RESERVE) -> Store:
    """Open the daemon's database and run :meth:`Store.check_at_start`.

    Any problem (unwritable directory or file, read-only file system, full
    disk, not a database, corrupt) raises :class:`StorageError` whose text
    names the file, for a one-line refusal to start.
    """
    try:
        store = Store(path, journal_reserve)
    except OSError as e:
        raise StorageError(f"database {path!r}: cannot open it for writing: {e.strerror}") from None
    except sqlite3.Error as e:
        raise StorageError(f"database {path!r}: {_explain(e)[0]}") from None
    store.quiet = True
    try:
        store.check_at_start()
    except StorageError as e:
        store.close()
        text = str(e).removeprefix("the relay cannot use its storage now: ")
        raise StorageError(f"database {path!r}: {text}") from None
    except OSError as e:
        store.close()
        raise StorageError(f"database {path!r}: {e.strerror}") from None
    store.quiet = False
    return store


def _explain(error: sqlite3.Error) -> tuple[str, bool]:
    """A sentence for an SQLite error, and whether the file is beyond use."""
    name = getattr(error, "sqlite_errorname", "") or ""
    if isinstance(error, SchemaTooNew):
        return str(error), True
    if name == "SQLITE_FULL":
        return "the disk is full", False
    if name == "SQLITE_READONLY_DBMOVED":
        return "the database file was deleted or replaced while the relay ran", True
    if name.startswith("SQLITE_READONLY"):
        return "the database is read-only", False
    if name.startswith("SQLITE_IOERR"):
        return "a disk input/output error", False
    if name.startswith("SQLITE_CORRUPT"):
        return "the database is corrupt", True
    if name == "SQLITE_NOTADB":
        return "the file is not an SQLite database", True
    if name.startswith("SQLITE_CANTOPEN"):
        return "the database or its journal cannot be opened", False
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return "the database is locked by another program", False
    return f"a storage error ({name or type(error).__name__}: {error})", False


def _file_identity(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _binding(row: Optional[tuple[Any, ...]]) -> Optional[Binding]:
    if row is None:
        return None
    canonical, skel, display, identity_pub, static_pub, static_sig, created = row
    return Binding(canonical, skel, display, bytes(identity_pub), bytes(static_pub), bytes(static_sig), created)
