"""The store on real SQLite files: faults injected through SQLite itself, the file
deleted or replaced under it, start-up refusals, and the accounting the caps rely on."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from relaychat.server.store import (
    INTEGRITY_CHECK_INTERVAL, JOURNAL_RESERVE, Binding, Health, StorageError, Store, open_store,
)


def binding(nick: str, created: float = 1.0) -> Binding:
    return Binding(nick, nick, nick, b"i" * 32, b"s" * 32, b"g" * 64, created)


class Files(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)
        self.path = str(self.dir / "relaychat.sqlite3")

    def open(self) -> Store:
        store = open_store(self.path, journal_reserve=256 << 10)  # small: fills fast
        self.addCleanup(store.close)
        return store

    def raw(self) -> sqlite3.Connection:
        """A second connection to the same file, as another program would open it."""
        db = sqlite3.connect(self.path, isolation_level=None)
        self.addCleanup(db.close)
        return db


class Opening(Files):
    def test_persist_journal_kept_at_the_reserve(self) -> None:
        store = open_store(self.path)
        self.addCleanup(store.close)
        self.assertEqual(store._db.execute("PRAGMA journal_mode").fetchone()[0], "persist")
        self.assertEqual(store._db.execute("PRAGMA secure_delete").fetchone()[0], 1)
        self.assertGreaterEqual(os.path.getsize(self.path + "-journal"), JOURNAL_RESERVE)
        store.add_mail("bob", "alice", 1.0, b"x")
        self.assertGreaterEqual(os.path.getsize(self.path + "-journal"), JOURNAL_RESERVE)  # never truncated

    def test_counts_survive_a_restart(self) -> None:
        store = open_store(self.path)
        store.insert_binding(binding("alice"))
        store.insert_binding(binding("bob"))
        store.add_mail("bob", "alice", 1.0, b"x" * 100)
        store.add_mail("bob", "alice", 1.0, b"y" * 50)
        store.close()
        store = self.open()
        self.assertEqual((store.binding_total, store.mail_bytes), (2, 150))

    def test_release_keeps_the_counts_the_caps_use(self) -> None:
        store = self.open()
        store.insert_binding(binding("alice"))
        store.insert_binding(binding("bob"))
        store.add_mail("bob", "alice", 1.0, b"x" * 100)
        store.add_mail("alice", "bob", 1.0, b"y" * 50)
        store.note_use("bob", 5.0)
        self.assertEqual(store.release_binding("bob"), 1)
        self.assertIsNone(store.release_binding("bob"))
        self.assertEqual((store.binding_total, store.mail_bytes), (1, 50))
        store.flush_use()  # the released name's use is not written back
        self.assertIsNone(store._db.execute("SELECT 1 FROM binding_use WHERE canonical = 'bob'").fetchone())
        store.close()
        store = self.open()
        self.assertEqual((store.binding_total, store.mail_bytes), (1, 50))

    def test_not_a_database(self) -> None:
        Path(self.path).write_bytes(b"this is a text file, not a database\n" * 100)
        error = self.assertRaises(StorageError, open_store, self.path)
        self.assertEqual(str(error), f"database {self.path!r}: the file is not an SQLite database")

    def test_corrupt(self) -> None:
        store = open_store(self.path)
        for i in range(300):
            store.add_mail(f"r{i % 5}", "alice", 1.0, os.urandom(2000))
        store.close()
        with open(self.path, "r+b") as f:
            f.seek(4096 * 3)
            f.write(os.urandom(4096 * 4))
        error = self.assertRaises(StorageError, open_store, self.path)
        self.assertTrue(str(error).startswith(f"database {self.path!r}: the database is corrupt"), str(error))

    def test_directory_missing(self) -> None:
        path = str(self.dir / "nowhere" / "relaychat.sqlite3")
        error = self.assertRaises(StorageError, open_store, path)
        self.assertEqual(str(error), f"database {path!r}: cannot open it for writing: No such file or directory")

    def test_failure_at_start_is_not_logged_twice(self) -> None:
        Path(self.path).write_bytes(b"x" * 4096)
        with capturedLogs() as events:
            self.assertRaises(StorageError, open_store, self.path)
        self.assertEqual(events, [])  # the one line is the caller's


class Faults(Files):
    """Real SQLite errors: a database that may not grow (max_page_count: SQLITE_FULL)
    and one that may not be written (query_only: SQLITE_READONLY)."""

    def fill(self, store: Store) -> list[int]:
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count={pages}")
        ids = []
        with self.assertRaises(StorageError):
            for _ in range(10000):
                ids.append(store.add_mail("bob", "alice", 1.0, os.urandom(3000)))
        return ids

    def test_full_refuses_adding_logs_once_and_deleting_still_works(self) -> None:
        store = self.open()
        with capturedLogs() as events:
            ids = self.fill(store)
            error = self.assertRaises(StorageError, store.add_mail, "bob", "alice", 1.0, b"z" * 3000)
            self.assertEqual(str(error), "the relay cannot use its storage now: the disk is full")
            self.assertIs(store.health, Health.FAILING)
            self.assertTrue(store.delete_mail(ids[0], "bob"))
            self.assertIs(store.health, Health.OK)
        self.assertGreater(len(ids), 0)
        messages = [formatEvent(e) for e in events]
        self.assertEqual(len(messages), 2, messages)
        self.assertIn("the disk is full", messages[0])
        self.assertIn("writing works again", messages[1])

    def test_deleting_on_a_full_database(self) -> None:
        store = self.open()
        ids = self.fill(store)
        self.assertIs(store.health, Health.FAILING)
        before = store.mail_bytes
        self.assertTrue(all(store.delete_mail(i, "bob") for i in ids))
        self.assertEqual((store.mail_bytes, before), (0, len(ids) * 3000))
        self.assertIs(store.health, Health.OK)

    def test_read_only(self) -> None:
        store = self.open()
        mail_id = store.add_mail("bob", "alice", 1.0, b"x")
        store._db.execute("PRAGMA query_only=1")
        for call in (lambda: store.add_mail("bob", "alice", 1.0, b"y"), lambda: store.delete_mail(mail_id, "bob"),
                     lambda: store.insert_binding(binding("carol"))):
            error = self.assertRaises(StorageError, call)
            self.assertEqual(str(error), "the relay cannot use its storage now: the database is read-only")
        self.assertEqual(len(store.pending_mail("bob")), 1)  # reading still works
        self.assertEqual(store.mail_bytes, 1)
        store.note_use("bob", 5.0)
        self.assertIs(store.check(10.0), Health.FAILING)  # the uses wait for a working disk
        store._db.execute("PRAGMA query_only=0")
        self.assertIs(store.check(15.0), Health.OK)
        self.assertEqual(self.raw().execute("SELECT * FROM binding_use").fetchall(), [("bob", 5.0)])


class Replaced(Files):
    """A file deleted or replaced under the relay: nothing written now would survive a restart."""

    def check_refuses_writes(self, store: Store, mail_id: int, why: str) -> None:
        with capturedLogs() as events:
            self.assertIs(store.check(100.0), Health.LOST)
            self.assertIs(store.check(105.0), Health.LOST)
        self.assertEqual(len(events), 1)
        self.assertIn(why, formatEvent(events[0]))
        self.assertIn("refusing every write until the relay is restarted", formatEvent(events[0]))
        for call in (lambda: store.add_mail("bob", "alice", 1.0, b"y"), lambda: store.insert_binding(binding("x")),
                     lambda: store.delete_mail(mail_id, "bob")):
            error = self.assertRaises(StorageError, call)
            self.assertIn(why, str(error))

    def test_deleted(self) -> None:
        store = self.open()
        mail_id = store.add_mail("bob", "alice", 1.0, b"x")
        os.unlink(self.path)
        self.check_refuses_writes(store, mail_id, "deleted or replaced")

    def test_replaced(self) -> None:
        store = self.open()
        mail_id = store.add_mail("bob", "alice", 1.0, b"x")
        other = str(self.dir / "other.sqlite3")
        open_store(other).close()
        os.replace(other, self.path)
        self.check_refuses_writes(store, mail_id, "deleted or replaced")
        self.assertEqual(len(store.pending_mail("bob")), 1)  # reads still come from the file open

    def test_a_write_notices_before_the_timer(self) -> None:
        store = self.open()
        os.rename(self.path, self.path + ".moved")
        error = self.assertRaises(StorageError, store.add_mail, "bob", "alice", 1.0, b"y")
        self.assertIn("deleted or replaced", str(error))
        self.assertIs(store.health, Health.LOST)

    def test_corruption_found_by_the_timed_quick_check(self) -> None:
        store = self.open()
        for i in range(300):
            store.add_mail(f"r{i % 5}", "alice", 1.0, os.urandom(2000))
        self.assertIs(store.check(0.0), Health.OK)  # the first check only schedules (start-up ran one)
        with open(self.path, "r+b") as f:
            f.seek(4096 * 3)
            f.write(os.urandom(4096 * 4))
            f.seek(24)  # the file change counter: tells SQLite its cache is stale, as another writer would
            f.write(os.urandom(4))
        self.assertIs(store.check(INTEGRITY_CHECK_INTERVAL - 1), Health.OK)  # not due yet
        with capturedLogs() as events:
            self.assertIs(store.check(INTEGRITY_CHECK_INTERVAL + 1), Health.LOST)
        self.assertIn("the database is corrupt", formatEvent(events[0]))


class Expiry(Files):
    def test_unused_nicknames_go_with_their_mail_online_ones_stay(self) -> None:
        store = self.open()
        for nick in ("old", "online", "recent"):
            store.insert_binding(binding(nick, created=0.0))
        store.note_use("recent", 50.0)
        store.add_mail("old", "recent", 1.0, b"x" * 10)
        store.add_mail("recent", "old", 1.0, b"y" * 20)
        self.assertEqual(store.expire_bindings(40.0, online={"online"}), ["old"])
        self.assertEqual(sorted(r[0] for r in self.raw().execute("SELECT canonical FROM bindings")), ["online", "recent"])
        self.assertEqual((store.binding_total, store.mail_bytes), (2, 20))
        self.assertEqual(store.pending_mail("old"), [])
        self.assertEqual(store.expire_bindings(40.0, online={"online"}), [])

    def test_purge_in_batches_that_fit_the_journal(self) -> None:
        store = Store(self.path, journal_reserve=64 << 10)
        self.addCleanup(store.close)
        for _ in range(40):
            store.add_mail("bob", "alice", 1.0, b"x" * 4000)
        store.add_mail("bob", "alice", 9.0, b"keep")
        self.assertEqual(store.purge_mail(5.0), 40)
        self.assertEqual(store.mail_bytes, 4)
