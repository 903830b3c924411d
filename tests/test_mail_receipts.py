"""Tests for relaychat.client.mail_receipts: the sent-mail record and the receipt outbox."""

from __future__ import annotations

import stat
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from relaychat.client import mail_receipts
from relaychat.client.mail_receipts import MAX_AGE, ReceiptOutbox, SentMail

RELAY = bytes(range(32))
OTHER = bytes(range(1, 33))
NOW = 1_800_000_000


def mid(n: int) -> bytes:
    return n.to_bytes(16, "big")


class SentMailTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = Path(self.mktemp()) / "sent_mail"
        self.sent = SentMail(self.path)

    def test_a_receipt_from_the_recipient_takes_it(self) -> None:
        self.sent.add(mid(1), RELAY, "Bob", "see you at 5 ✓", NOW)
        self.assertEqual(stat.S_IMODE(self.path.stat().st_mode), 0o600)
        taken = SentMail(self.path).take(mid(1), RELAY, "bob", NOW + 1)
        assert taken is not None
        self.assertEqual((taken.nick, taken.first_words, taken.time), ("bob", "see you at 5 ✓", NOW))
        self.assertIsNone(self.sent.take(mid(1), RELAY, "bob", NOW + 2), "only once")

    def test_only_the_recipient_on_that_relay_can_confirm(self) -> None:
        self.sent.add(mid(1), RELAY, "bob", "hi", NOW)
        self.assertIsNone(self.sent.take(mid(1), RELAY, "carol", NOW))
        self.assertIsNone(self.sent.take(mid(1), OTHER, "bob", NOW))
        self.assertIsNone(self.sent.take(mid(2), RELAY, "bob", NOW))
        self.assertIsNotNone(self.sent.take(mid(1), RELAY, "bob", NOW), "still waiting for the real one")

    def test_bounded_by_age_and_count(self) -> None:
        self.patch(SentMail, "limit", 3)
        for n in range(5):
            self.sent.add(mid(n), RELAY, "bob", str(n), NOW)
        self.assertEqual([r.first_words for r in self.sent.all()], ["2", "3", "4"])
        self.sent.add(mid(9), RELAY, "bob", "9", NOW + MAX_AGE + 1)
        self.assertEqual([r.first_words for r in self.sent.all()], ["9"])

    def test_two_clients_keep_each_others_lines(self) -> None:
        other = SentMail(self.path)
        self.sent.add(mid(1), RELAY, "bob", "a", NOW)
        other.add(mid(2), RELAY, "bob", "b", NOW)
        self.assertEqual(len(self.sent.all()), 2)

    def test_damage_is_skipped(self) -> None:
        self.sent.add(mid(1), RELAY, "bob", "a", NOW)
        self.path.write_text("garbage\n" + self.path.read_text())
        self.assertEqual(len(self.sent.all()), 1)


class OutboxTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.outbox = ReceiptOutbox(Path(self.mktemp()) / "mail_receipts")

    def test_owed_until_done(self) -> None:
        owed = self.outbox.add(RELAY, "Alice", mid(1), NOW)
        self.outbox.add(RELAY, "alice", mid(1), NOW)  # the same receipt once
        self.outbox.add(OTHER, "carol", mid(2), NOW)
        self.assertEqual(self.outbox.pending(RELAY), [owed])
        self.outbox.done(owed, NOW)
        self.assertEqual(self.outbox.pending(RELAY), [])
        self.assertEqual(len(self.outbox.pending(OTHER)), 1)

    def test_bounded(self) -> None:
        self.patch(ReceiptOutbox, "limit", 2)
        for n in range(4):
            self.outbox.add(RELAY, "alice", mid(n), NOW)
        self.assertEqual([r.message_id for r in self.outbox.pending(RELAY)], [mid(2), mid(3)])
        self.assertEqual(mail_receipts.MAX_OWED, 1000)


class SendingOwedReceiptsTests(SynchronousTestCase):
    def test_a_long_outbox_that_fails_at_once_neither_recurses_nor_loses_anything(self) -> None:
        from types import SimpleNamespace

        from twisted.internet.defer import fail

        from relaychat.client.mailbox import Mailbox

        outbox = ReceiptOutbox(Path(self.mktemp()) / "mail_receipts")
        self.patch(ReceiptOutbox, "limit", 3000)
        for n in range(3000):  # well past the recursion limit (1000); each add appends one line
            outbox.add(RELAY, "alice", mid(n), NOW)
        client = SimpleNamespace(server_id=RELAY, disconnected=None, reactor=SimpleNamespace(seconds=lambda: NOW),
                                 lookup=lambda nick: fail(ValueError("the relay is gone")))
        mailbox = Mailbox(client, SimpleNamespace(receipts_owed=outbox))  # type: ignore[arg-type]
        self.successResultOf(mailbox.send_receipts())
        self.assertEqual(len(outbox.pending(RELAY)), 3000, "all still owed, for the next login")
        self.successResultOf(mailbox.send_receipts())  # and it can run again


class GrowthTests(SynchronousTestCase):
    """Append-only with compaction: O(1) writes per change, and a file bounded in bytes."""

    def setUp(self) -> None:
        self.path = Path(self.mktemp()) / "mail_receipts"
        self.outbox = ReceiptOutbox(self.path)
        self.patch(ReceiptOutbox, "limit", 10)

    def test_adding_and_finishing_append_and_the_file_stays_within_its_bound(self) -> None:
        first = self.outbox.add(RELAY, "alice", mid(0), NOW)
        inode = self.path.stat().st_ino
        self.outbox.done(first, NOW)
        self.outbox.add(RELAY, "alice", mid(1), NOW)
        self.assertEqual(self.path.stat().st_ino, inode)  # appended: no rewrite per change
        self.assertIn("- ", self.path.read_text())
        for n in range(2, 500):
            owed = self.outbox.add(RELAY, "alice", mid(n), NOW)
            if n % 2:
                self.outbox.done(owed, NOW)
            self.assertLessEqual(self.path.stat().st_size, 2 * ReceiptOutbox.limit * ReceiptOutbox.max_line)
        pending = self.outbox.pending(RELAY)
        self.assertLessEqual(len(pending), 10)
        self.assertEqual(pending[-1].message_id, mid(498))  # the newest kept, the oldest gone first
        self.assertNotIn(mid(497), [r.message_id for r in pending])  # done stays done across compactions

    def test_a_record_added_again_counts_once_and_its_end_sticks(self) -> None:
        owed = self.outbox.add(RELAY, "alice", mid(1), NOW)
        self.outbox.add(RELAY, "alice", mid(1), NOW + 5)
        self.assertEqual([r.time for r in self.outbox.pending(RELAY)], [NOW + 5])
        self.outbox.done(owed, NOW + 6)
        self.assertEqual(self.outbox.pending(RELAY), [])

    def test_an_expired_oldest_record_compacts_the_file(self) -> None:
        self.outbox.add(RELAY, "alice", mid(1), NOW)
        self.outbox.add(RELAY, "alice", mid(2), NOW + MAX_AGE + 10)
        self.assertEqual([r.message_id for r in self.outbox.pending(RELAY)], [mid(2)])
        self.assertEqual(len(self.path.read_text().splitlines()), 1)

    def test_a_line_cut_by_a_crash_costs_only_itself(self) -> None:
        self.outbox.add(RELAY, "alice", mid(1), NOW)
        with self.path.open("a") as f:
            f.write(self.path.read_text()[:30])  # a crash in the middle of an append
        self.outbox.add(RELAY, "alice", mid(2), NOW)
        self.assertEqual([r.message_id for r in self.outbox.pending(RELAY)], [mid(1), mid(2)])

    def test_bounds_of_both_files_are_documented(self) -> None:
        for name in ("limit", "max_line", "MAX_AGE"):
            self.assertIn(name, mail_receipts.__doc__ or "")
        self.assertLessEqual(2 * mail_receipts.MAX_SENT * SentMail.max_line, 8 * 2**20)
