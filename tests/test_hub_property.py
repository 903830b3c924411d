"""Property test of the sans-IO hub (issue 10, point 3): arbitrary lines and
sequences, in every connection state, never raise out of the hub, and every
line the hub writes is one of the forms docs/protocol.rst documents
(tests/wire_forms.py)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from twisted.trial.unittest import SynchronousTestCase

from relaychat.server.connection import Life, State
from relaychat.server.operator import Operator
from relaychat.server.limits import Limits, MailPolicy
from relaychat.wire.codec import b64encode
from tests.support import FakeLink, Harness, identity, register_line
from tests.wire_forms import documented

COMMANDS = ["HELLO", "PING", "QUIT", "REGISTER", "PROVE", "LOOKUP", "WHO", "OFFER", "ACCEPT", "DECLINE",
            "CLOSE", "FRAME", "MAIL", "ACK", "hello", "FOO", ""]
NICKS = ["alice", "bob", "carol", "Alice", "nobody", "a", "x" * 30, "al1ce"]
WEIRD = ["", " ", "\r", "\x00", "\x1b[2J", "²", "١", "01", "0", "1", "18446744073709551616", "-1", "+1",
         "AAAA", "AAA=", "AA==", "A===", "====", "QUJD\r", "é", "\u2028", "\ufeff", "1" * 25, "x" * 70]


def texts() -> st.SearchStrategy[str]:
    return st.text(st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), max_size=40)


def raw_lines() -> st.SearchStrategy[bytes]:
    return st.binary(max_size=60).map(lambda b: b.replace(b"\n", b""))


class HubMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(Limits(pow_bits=0, max_frame=64, max_line=1024, max_line_unregistered=300,
                                max_output=4096, line_burst=50, lines_per_second=100.0, max_violations=12),
                         MailPolicy(max_mail=64, mail_per_recipient=3, mail_per_sender=2))
        self.links: list[tuple[Any, FakeLink]] = []
        self.sids: list[str] = ["0123456789abcdef"]
        self.mail_ids: list[str] = ["1"]
        self.seen: list[str] = []

    @initialize()
    def connect_some(self) -> None:
        for i in range(3):
            self.connect(i)

    def connect(self, i: int) -> None:
        self.links.append(self.h.connect(f"10.0.0.{i}"))

    def pick(self, data: st.DataObject) -> tuple[Any, FakeLink]:
        return self.links[data.draw(st.integers(0, len(self.links) - 1))]

    def tokens(self) -> st.SearchStrategy[str]:
        return st.one_of(
            st.sampled_from(NICKS), st.sampled_from(WEIRD), st.sampled_from(self.sids),
            st.sampled_from(self.mail_ids), texts().filter(lambda t: " " not in t),
            st.binary(min_size=1, max_size=40).map(b64encode),
        )

    def token(self, data: st.DataObject) -> str:
        return data.draw(self.tokens())

    @rule(data=st.data())
    def command(self, data: st.DataObject) -> None:
        client, _ = self.pick(data)
        name = data.draw(st.sampled_from(COMMANDS))
        args = [self.token(data) for _ in range(data.draw(st.integers(0, 4)))]
        sep = data.draw(st.sampled_from([" ", " ", " ", "  ", "\r"]))
        self.h.hub.receive(client, (sep.join([name, *args]) + data.draw(st.sampled_from(["\n", "\r\n"]))).encode(),
                           self.h.now)

    @rule(data=st.data(), line=st.one_of(texts().map(lambda t: t.encode("utf-8")), raw_lines()))
    def junk(self, data: st.DataObject, line: bytes) -> None:
        client, _ = self.pick(data)
        self.h.hub.receive(client, line + b"\n", self.h.now)

    @rule(data=st.data(), count=st.integers(1, 200))
    def burst(self, data: st.DataObject, count: int) -> None:
        client, _ = self.pick(data)
        line = data.draw(st.sampled_from([b"PING x", b"WHO", b"LOOKUP alice", b"ACK 1", b"FRAME " + self.sids[-1].encode() + b" QUJD"]))
        self.h.hub.receive(client, (line + b"\n") * count, self.h.now)

    @rule(data=st.data(), cut=st.integers(0, 30))
    def split_read(self, data: st.DataObject, cut: int) -> None:
        client, _ = self.pick(data)
        line = f"PING {self.token(data)}\n".encode()
        self.h.hub.receive(client, line[:cut], self.h.now)
        self.h.hub.receive(client, line[cut:], self.h.now)

    @rule(data=st.data())
    def register(self, data: st.DataObject) -> None:
        client, link = self.pick(data)
        nick = data.draw(st.sampled_from(["alice", "bob", "carol", "Alice"]))
        if client.life is not Life.OPEN:
            return
        self.h.hub.receive(client, b"HELLO 1\n", self.h.now)
        if not client.life is not Life.OPEN and not client.backlog:
            self.h.claim(client, link, nick, identity(nick.lower()))

    @rule(data=st.data())
    def session(self, data: st.DataObject) -> None:
        """Two fresh connections register and open a session (otherwise rare)."""
        pair = []
        for _ in range(2):
            nick = f"u{len(self.links)}"
            index = len(self.links)
            self.connect(index)
            client, link = self.links[-1]
            self.h.hub.receive(client, b"HELLO 1\n", self.h.now)
            if client.life is not Life.OPEN or client.backlog or (self.h.claim(client, link, nick, identity(nick)) or [""])[0][:8] != "OK PROVE":
                return
            pair.append((client, nick))
        self.every_line_is_documented()
        (a, _), (b, b_nick) = pair
        self.h.hub.receive(a, f"OFFER {b_nick}\n".encode(), self.h.now)
        self.every_line_is_documented()
        if b.sessions:
            self.h.hub.receive(b, f"ACCEPT {self.sids[-1]}\n".encode(), self.h.now)

    @rule(data=st.data())
    def frame(self, data: st.DataObject) -> None:
        talking = [c for c, _ in self.links if c.sessions and c.life is Life.OPEN]
        if not talking:
            return
        client = data.draw(st.sampled_from(talking))
        sid = data.draw(st.sampled_from(sorted(client.sessions))).decode()
        payloads = data.draw(st.lists(self.tokens() | raw_lines().map(lambda b: b.decode("latin-1")),
                                      min_size=1, max_size=5))
        self.h.hub.receive(client, "".join(f"FRAME {sid} {p}\n" for p in payloads).encode("utf-8", "replace"),
                           self.h.now)

    @rule(data=st.data())
    def long_line(self, data: st.DataObject) -> None:
        client, _ = self.pick(data)
        self.h.hub.receive(client, b"PING " + b"a" * data.draw(st.integers(250, 1100)) + b"\n", self.h.now)

    @rule(seconds=st.sampled_from([0.01, 0.5, 1.0, 31.0, 61.0, 700.0]))
    def time_passes(self, seconds: float) -> None:
        self.h.now += seconds
        self.h.hub.tick(self.h.now)
        for client, link in self.links:
            if link.wakeups:
                link.wakeups.clear()
                self.h.hub.wake(client, self.h.now)

    @rule(data=st.data(), congested=st.booleans())
    def output_backs_up(self, data: st.DataObject, congested: bool) -> None:
        client, _ = self.pick(data)
        self.h.hub.set_congested(client, congested, self.h.now)

    @rule(data=st.data())
    def goes_away(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.links) - 1))
        client, _ = self.links[index]
        self.h.hub.disconnect(client, self.h.now)
        self.links[index] = self.h.connect(f"10.0.1.{index}")

    @rule(data=st.data())
    def operator(self, data: st.DataObject) -> None:
        action = data.draw(st.sampled_from(["kick", "ban", "notice"]))
        if action == "kick":
            Operator(self.h.hub).kick(data.draw(st.sampled_from(NICKS)), data.draw(texts()))
        elif action == "ban":
            Operator(self.h.hub).ban("nick", data.draw(st.sampled_from(NICKS[:5])), 60.0, self.h.now)  # the console checks nicknames
        else:
            Operator(self.h.hub).notice(data.draw(texts()))

    @invariant()
    def every_line_is_documented(self) -> None:
        for _, link in self.links:
            data = b"".join(link.written)
            link.written.clear()
            for raw in data.split(b"\n")[:-1]:
                line = raw.decode("utf-8")  # the relay writes UTF-8 only
                assert documented(line), f"undocumented line from the relay: {line!r}"
                words = line.split(" ")
                if words[0] in ("OFFERED", "OK") and len(words) > 2 and len(words[2]) == 16 and words[1] in ("OFFER", "ACCEPT") or words[0] == "OFFERED":
                    sid = words[1] if words[0] == "OFFERED" else words[2]
                    if sid not in self.sids:
                        self.sids.append(sid)
                if words[:2] == ["OK", "MAIL"] or words[0] == "MAIL":
                    self.mail_ids.append(words[2] if words[0] == "OK" else words[1])


class HubProperties(SynchronousTestCase):
    def test_no_input_raises_and_every_reply_is_documented(self) -> None:
        HubMachine.TestCase.settings = settings(
            max_examples=150, stateful_step_count=40, deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        HubMachine.TestCase("runTest").runTest()

    def test_the_forms_reject_what_the_document_forbids(self) -> None:
        for line in ["OK PING a\rb", "OK ACK 01", "OK ACK ²", "FRAME 0123456789abcdef AA=A", "ERR - nonsense x",
                     "OK WHO 1", "MAIL 1 alice 5", "BYE later x", "FRAME 0123456789abcdef \x00"]:
            self.assertFalse(documented(line), line)
        for line in ["OK PING", "OK PING abc", "ERR ACK syntax a mail id is a decimal number",
                     "FRAME 0123456789abcdef QUJD", "MAIL 7 alice 1700000000 QUJD", "BYE slow x"]:
            self.assertTrue(documented(line), line)
