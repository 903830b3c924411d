"""``twistd relaychat`` against bad and failing storage, and against clients
that would fill its disk: real processes, real file systems (a private tmpfs
per test, see tests.daemon.private_mount), real sockets."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

from twisted.trial.unittest import SynchronousTestCase

from relaychat.server.store import open_store
from relaychat.wire.codec import b64encode
from tests.daemon import Daemon, LineSocket, private_mount, private_mounts_work
from tests.support import identity, register_line

DB = "relaychat.sqlite3"
_MOUNTS = private_mounts_work()


class Base(SynchronousTestCase):
    def setUp(self) -> None:
        self.home = Path(self.mktemp()).resolve()
        self.home.mkdir(parents=True)
        self.data = self.home / "data"
        self.data.mkdir(mode=0o700)
        self.sockets: list[LineSocket] = []
        self.addCleanup(lambda: [s.close() for s in self.sockets])

    def daemon(self, config: str = "", setup: Optional[str] = None) -> Daemon:
        if setup is not None and _MOUNTS:
            self.skipTest(_MOUNTS)
        path = self.home / "relaychat.toml"
        path.write_text(f'[relay]\ndata_dir = "data"\n[[listener]]\nkind = "tcp"\n'
                        f'endpoint = "tcp:0:interface=127.0.0.1"\n{config}')
        daemon = Daemon("--config", str(path), cwd=str(self.home),
                        prefix=private_mount(str(self.data), setup) if setup is not None else ())
        self.addCleanup(daemon.stop)
        return daemon

    def client(self, port: int) -> LineSocket:
        s = LineSocket(port)
        self.sockets.append(s)
        return s

    def refused(self, daemon: Daemon) -> str:
        """Start must fail: exit status 1 and exactly one line, which is returned."""
        with self.assertRaises(AssertionError):
            daemon.start()
        self.assertEqual(daemon.wait(), 1)
        lines = daemon.log().splitlines()
        self.assertEqual(len(lines), 1, daemon.log())
        return lines[0]

    def database(self) -> str:
        return str(self.data / DB)


class StartUp(Base):
    """Each storage problem stops start-up with one line naming the file, exit status 1."""

    def test_not_a_database(self) -> None:
        Path(self.database()).write_bytes(b"not a database, a text file\n" * 200)
        self.assertEqual(self.refused(self.daemon()),
                         f"relaychat: database {self.database()!r}: the file is not an SQLite database")

    def test_corrupt(self) -> None:
        store = open_store(self.database(), journal_reserve=64 << 10)
        for i in range(300):
            store.add_mail(f"r{i % 5}", "alice", 1.0, os.urandom(2000))
        store.close()
        with open(self.database(), "r+b") as f:
            f.seek(4096 * 3)
            f.write(os.urandom(4096 * 4))
        self.assertTrue(self.refused(self.daemon()).startswith(
            f"relaychat: database {self.database()!r}: the database is corrupt"))

    def test_read_only_file_system(self) -> None:
        store = open_store(str(self.home / DB), journal_reserve=64 << 10)
        store.close()
        daemon = self.daemon(setup=f'mount -t tmpfs tmpfs "$D"; cp {self.home / DB} "$D"; '
                                   'mount -o remount,ro "$D"')
        self.assertEqual(self.refused(daemon),
                         f"relaychat: database {self.database()!r}: cannot open it for writing: Read-only file system")

    def test_unwritable_directory(self) -> None:
        daemon = self.daemon(setup='mount -t tmpfs -o ro tmpfs "$D"')
        self.assertEqual(self.refused(daemon),
                         f"relaychat: database {self.database()!r}: cannot open it for writing: Read-only file system")

    def test_full_disk(self) -> None:
        daemon = self.daemon(setup='mount -t tmpfs -o size=256k tmpfs "$D"; '
                                   'dd if=/dev/zero of="$D/filler" bs=4k 2>/dev/null || true')
        self.assertEqual(self.refused(daemon), f"relaychat: database {self.database()!r}: the disk is full")


def mail_line(nick: str, size: int) -> str:
    return f"MAIL {nick} {b64encode(os.urandom(size))}"


class FullDisk(Base):
    def test_ack_works_on_a_full_disk_and_mail_resumes(self) -> None:
        big = ("[mailbox]\nmail_per_recipient = 100000\nmail_bytes_per_recipient = 1073741824\n"
               "mail_per_sender = 100000\nmail_per_sender_per_hour = 100000\nmail_bytes_total = 1073741824\n"
               "[limits]\npow_bits = 0\n")
        daemon = self.daemon(big, setup='mount -t tmpfs -o size=12m tmpfs "$D"')
        (port,) = daemon.start()
        alice, bob = self.client(port), self.client(port)
        alice.register("alice", identity("alice"))
        bob.register("bob", identity("bob"))
        stored: list[str] = []
        while True:  # fill the disk with mail, as any client could if nothing capped it
            reply = alice.ask(mail_line("bob", 16000))
            if not reply.startswith("OK MAIL "):
                break
            stored.append(reply.split(" ")[2])
            self.assertTrue(bob.read_line().startswith(f"MAIL {stored[-1]} alice "))
        self.assertEqual(reply, "ERR MAIL unavailable the relay cannot use its storage now: the disk is full")
        self.assertGreater(len(stored), 100)
        # Whatever the relay left free (less than a mail) is taken by someone else.
        filler = Path(f"/proc/{daemon.process.pid}/root{self.data}/filler")  # type: ignore[union-attr]
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 512)
        except OSError:
            pass
        finally:
            os.close(fd)
        fs = os.statvfs(filler.parent)
        self.assertLess(fs.f_bavail * fs.f_frsize, 4096)
        self.assertEqual(alice.ask("PING alive"), "OK PING alive")
        for mail_id in stored:
            self.assertEqual(bob.ask(f"ACK {mail_id}"), f"OK ACK {mail_id}")
        self.assertEqual(alice.ask(mail_line("bob", 16000)).split(" ")[:2], ["OK", "MAIL"])  # freed pages reused
        # The daemon's output is read by a thread: on a loaded machine its last lines may still be on the way.
        deadline = time.monotonic() + 20
        while "writing works again" not in daemon.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn("the disk is full", daemon.log())
        self.assertIn("writing works again", daemon.log())


class Replaced(Base):
    def test_database_deleted_while_running(self) -> None:
        daemon = self.daemon("[limits]\npow_bits = 0\n")
        (port,) = daemon.start()
        alice = self.client(port)
        self.assertEqual(alice.register("alice", identity("alice")), "OK PROVE alice new 0")
        os.unlink(self.database())
        deadline = time.monotonic() + 20
        while "deleted or replaced" not in daemon.log() and time.monotonic() < deadline:
            time.sleep(0.1)  # the store is checked every few seconds
        self.assertIn("refusing every write until the relay is restarted", daemon.log())
        self.assertEqual(alice.ask(mail_line("alice", 10)),
                         "ERR MAIL unavailable the relay cannot use its storage now: "
                         "the database file was deleted or replaced while the relay ran")
        other = self.client(port)
        other.ask("HELLO 1")
        self.assertEqual(other.ask(register_line("bob", identity("bob"))).split(" ")[:3],
                         ["ERR", "REGISTER", "unavailable"])
        self.assertEqual(alice.ask("PING alive"), "OK PING alive")


class Attackers(Base):
    """Point 4's attackers, against the default caps (proof of work off, to be quick)."""

    def test_one_client_storing_mail_as_fast_as_it_can(self) -> None:
        daemon = self.daemon("[limits]\npow_bits = 0\n")
        (port,) = daemon.start()
        recipients = [f"r{i}" for i in range(12)]
        for nick in recipients:
            self.client(port).register(nick, identity(nick))
        attacker = self.client(port)
        attacker.register("flood", identity("flood"))
        before = os.path.getsize(self.database())
        lines = [mail_line(recipients[i % len(recipients)], 16384) for i in range(400)]
        attacker.sock.sendall("".join(line + "\n" for line in lines).encode())
        replies = [attacker.read_line() for _ in lines]
        ok = [r for r in replies if r.startswith("OK MAIL ")]
        self.assertEqual(len(ok), 100)  # mail_per_sender_per_hour
        self.assertEqual(set(replies) - set(ok), {
            "ERR MAIL quota you may store 100 messages an hour; try again in 1 minute"})
        self.assertLess(os.path.getsize(self.database()) - before, 100 * 16384 * 1.2)
        self.assertEqual(attacker.ask("PING alive"), "OK PING alive")

    def test_one_address_binding_many_nicknames(self) -> None:
        daemon = self.daemon("[limits]\npow_bits = 0\n")
        (port,) = daemon.start()
        client = self.client(port)
        client.ask("HELLO 1")
        answers = []
        for i in range(40):
            reply = client.ask(register_line(f"sock{i}", identity("one-key")))
            if not reply.startswith("OK REGISTER"):
                answers.append(reply)
                continue
            client.close()  # each nickname on its own connection, as an attacker would
            client = self.client(port)
            answers.append(client.register(f"sock{i}", identity("one-key")))
            client = self.client(port)
            client.ask("HELLO 1")
        self.assertEqual(answers[:20], [f"OK PROVE sock{i} new 0" for i in range(20)])
        self.assertEqual(set(answers[20:]), {
            "ERR REGISTER quota 20 new nicknames an hour from your address; try again in 3 minutes"})
