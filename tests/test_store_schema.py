"""The store's schema version and its upgrade in steps (relaychat/server/store.py)."""

from __future__ import annotations

import os
import sqlite3

from twisted.trial.unittest import TestCase

from relaychat.server import store as store_module
from relaychat.server.store import SCHEMA_VERSION, SchemaTooNew, Store, schema_version

# The schema as released before versions were recorded (version 1), written
# out here on purpose: the test must keep opening what is on operators' disks
# even when the code's own definition changes.
_VERSION_1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS bindings (
    canonical TEXT PRIMARY KEY,
    skeleton TEXT NOT NULL UNIQUE,
    display TEXT NOT NULL,
    identity_pub BLOB NOT NULL,
    static_pub BLOB NOT NULL,
    static_sig BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS mail (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient TEXT NOT NULL,
    sender TEXT NOT NULL,
    created REAL NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS mail_recipient ON mail (recipient, id);
CREATE INDEX IF NOT EXISTS mail_created ON mail (created);
"""


def _schema(path: str) -> list[tuple[str, str]]:
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
        # SQLite keeps each statement's text as written: compare it without layout
        return sorted((name, " ".join(sql.replace("IF NOT EXISTS ", "").replace("(", " ( ").split()))
                      for name, sql in rows)
    finally:
        db.close()


class SchemaVersions(TestCase):
    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.makedirs(self.dir)

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def test_a_version_1_database_is_upgraded_and_keeps_its_data(self) -> None:
        path = self.path("old.sqlite")
        db = sqlite3.connect(path)
        db.executescript(_VERSION_1)
        db.execute("INSERT INTO meta VALUES ('server_id', ?)", (b"\x07" * 32,))
        db.execute("INSERT INTO bindings VALUES ('alice', 'allce', 'Alice', ?, ?, ?, 1.5)",
                   (b"\x01" * 32, b"\x02" * 32, b"\x03" * 64))
        db.execute("INSERT INTO mail (recipient, sender, created, body) VALUES ('alice', 'bob', 2.0, ?)", (b"sealed",))
        db.commit()
        db.close()

        store = Store(path)
        self.addCleanup(store.close)
        self.assertEqual(store.server_id, b"\x07" * 32)
        binding = store.binding("alice")
        assert binding is not None
        self.assertEqual((binding.display, binding.identity_pub, binding.static_sig), ("Alice", b"\x01" * 32, b"\x03" * 64))
        [mail] = store.pending_mail("alice")
        self.assertEqual((mail.sender, mail.body), ("bob", b"sealed"))
        self.assertEqual(store.mail_count_from("alice", "bob"), 1)
        self.assertEqual(schema_version(store._db), SCHEMA_VERSION)

        # and the upgraded file has exactly the schema of a new one
        fresh = Store(self.path("new.sqlite"))
        fresh.close()
        store.close()
        self.assertEqual(_schema(path), _schema(self.path("new.sqlite")))

    def test_opening_again_changes_nothing(self) -> None:
        path = self.path("db.sqlite")
        Store(path).close()
        before = _schema(path)
        store = Store(path)
        store.close()
        self.assertEqual(_schema(path), before)

    def test_a_newer_database_is_refused_untouched(self) -> None:
        path = self.path("future.sqlite")
        Store(path).close()
        db = sqlite3.connect(path)
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION + 1,))
        db.commit()
        db.close()
        with self.assertRaises(SchemaTooNew) as caught:
            Store(path)
        self.assertIn(f"schema version {SCHEMA_VERSION + 1}", str(caught.exception))

    def test_a_failed_step_leaves_the_previous_version(self) -> None:
        path = self.path("half.sqlite")
        db = sqlite3.connect(path)
        db.executescript(_VERSION_1)
        db.close()
        steps = dict(store_module._STEPS)
        steps[2] = ("CREATE INDEX mail_sender ON mail (recipient, sender)", "THIS IS NOT SQL")
        self.patch(store_module, "_STEPS", steps)
        self.assertRaises(sqlite3.OperationalError, Store, path)
        db = sqlite3.connect(path, isolation_level=None)
        self.addCleanup(db.close)
        self.assertEqual(schema_version(db), 1)
        self.assertNotIn("mail_sender", [name for name, _ in _schema(path)])
