"""The browser client in headless Chromium against a real ``twistd relaychat``.

A browser user and a Python-library user (what the terminal program runs
on) register on one relay, find each other, chat both ways, compare the
same safety number, pass and fail the secret check, exchange offline mail
both ways and survive a relay restart; hostile text shows inert; two
browsers talk. Controls are found by accessible name (tests/browser.py).

Selenium blocks, so browser steps run in a thread (deferToThread) while
the reactor runs the Python user; one browser (and one daemon) per class.
"""

from __future__ import annotations

import atexit
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from relaychat import client as api
from relaychat.client import MailRead, SMPRequested, SMPResult
from relaychat.client.known_relays import relay_fingerprint
from relaychat.crypto.keypair import Identity
from relaychat.crypto.pins import KnownPeers
from tests.browser import Browser, Relay, have_browser

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "docs" / "web-client.png"


def until(predicate: Callable[[], Any], timeout: float = 20.0) -> Deferred:
    """Fire when ``predicate()`` is true, polling on the reactor."""
    deadline = reactor.seconds() + timeout

    @inlineCallbacks
    def poll() -> Any:
        while not predicate():
            if reactor.seconds() > deadline:
                raise AssertionError("timed out")
            yield task.deferLater(reactor, 0.02, lambda: None)
        return predicate()

    return poll()


class _BrowserTest(TestCase):
    timeout = 120
    relay: Relay
    browser: Browser

    _shared: dict[type, dict[str, Any]] = {}

    def setUp(self) -> None:
        """One relay and one browser per class, made by its first test and
        removed after its last (trial has no setUpClass); atexit covers a
        run of a single test."""
        have_browser()
        cls = type(self)
        shared = _BrowserTest._shared.get(cls)
        if shared is None:
            shared = _BrowserTest._shared[cls] = {"done": 0, "cleanups": []}
            self.prepare_class(shared)
            atexit.register(self._finish_class, cls)
        self.relay = shared["relay"]
        self.browser = shared["browser"]
        for name, value in shared.items():
            setattr(self, name, value)
        self.addCleanup(self._test_done, cls)

    def prepare_class(self, shared: dict[str, Any]) -> None:
        relay = Relay()
        relay.start()
        shared["cleanups"].append(relay.remove)
        shared["relay"] = relay
        shared["browser"] = Browser()
        shared["cleanups"].append(shared["browser"].quit)

    @staticmethod
    def _finish_class(cls: type) -> None:
        shared = _BrowserTest._shared.get(cls)
        if shared is None:
            return
        for cleanup in reversed(shared.pop("cleanups", [])):
            try:
                cleanup()
            except Exception:
                pass

    def _test_done(self, cls: type) -> None:
        shared = _BrowserTest._shared[cls]
        shared["done"] += 1
        if shared["done"] == len([n for n in dir(cls) if n.startswith("test_")]):
            self._finish_class(cls)

    def b(self, method: str, *args: Any, browser: Browser | None = None) -> Deferred:
        """Run one browser step in a thread."""
        return deferToThread(getattr(browser or self.browser, method), *args)

    @inlineCallbacks
    def python_user(self, nick: str, identity: Identity | None = None, pins: KnownPeers | None = None) -> Any:
        identity = identity or Identity.generate()
        pins = pins or KnownPeers(self.mktemp())
        client = yield api.connect(reactor, f"tcp:host=127.0.0.1:port={self.relay.tcp}", identity, nick, pins)
        self.addCleanup(lambda: client.quit() if client.disconnected is None else None)
        return client

    @inlineCallbacks
    def browser_calls(self, py: Any, nick: str) -> Any:
        """The browser calls ``nick`` (a Python user); returns the Python side's Conversation."""
        offers: list[Any] = []
        py.observe_offers(offers.append)
        yield self.b("type", "Nickname to reach", nick)
        yield self.b("press", "Call")
        yield until(lambda: offers)
        conversation = yield offers[0].accept()
        return conversation

    @inlineCallbacks
    def python_calls(self, py: Any, nick: str, browser: Browser | None = None) -> Any:
        calling = py.call(nick)
        yield self.b("press", f"Accept call from {py.canonical_nick}", browser=browser)
        conversation = yield calling
        return conversation


class BrowserAndPython(_BrowserTest):

    @inlineCallbacks
    def test_chat_both_ways_same_safety_number(self) -> None:
        yield self.b("sign_in", self.relay.url, "webchat")
        py = yield self.python_user("termchat")
        conversation = yield self.browser_calls(py, "termchat")
        received: list[str] = []
        conversation.observe_messages(received.append)
        shown = yield self.b("wait_text", "Safety number", conversation.safety_number)
        self.assertEqual(shown, conversation.safety_number)
        fingerprint = yield self.b("text", "termchat's fingerprint")
        self.assertEqual(fingerprint, py.fingerprint)
        mine = yield self.b("text", "Your fingerprint")
        self.assertEqual(mine, conversation.peer_fingerprint)

        text = "Grüße aus dem Browser 🙂\nzweite Zeile — שלום"
        yield self.b("type", "Message", text)
        yield self.b("press", "Send")
        yield until(lambda: received)
        self.assertEqual(received, [text])
        # section 11: the terminal client's RECEIPT marks the line delivered
        mark = yield self.b("text", "delivered to termchat")
        self.assertEqual(mark, "\u2713 delivered")
        mine = yield self.b("wait", lambda: [m for m in self.browser.messages() if m.startswith("webchat:")], "our line")
        self.assertTrue(mine[0].endswith("\u2713 delivered"), mine)

        conversation.send("Antwort vom Terminal ✓\n  eingerückt")
        lines = yield self.b("wait", lambda: [m for m in self.browser.messages() if "Antwort" in m], "the reply")
        self.assertEqual(lines, ["termchat: Antwort vom Terminal ✓\n  eingerückt"])

        # keyboard only: Enter in the message field sends
        from selenium.webdriver.common.keys import Keys
        yield self.b("type", "Message", "by keyboard")
        yield deferToThread(lambda: self.browser.find("Message").send_keys(Keys.ENTER))
        yield until(lambda: len(received) == 2)
        self.assertEqual(received[1], "by keyboard")

        path = SCREENSHOT if os.environ.get("RELAYCHAT_SCREENSHOT") else Path(self.mktemp() + ".png")
        yield deferToThread(self.browser.driver.save_screenshot, str(path))
        self.assertTrue(path.stat().st_size > 10000)

        # compared by voice: the person says so, and the pin record says verified from now on
        yield self.b("press", "The numbers match")
        verification = yield self.b("wait_text", "Verification", "Verified")
        self.assertEqual(verification, "Verified: this is the key you checked for termchat.")

        ended: list[Any] = []
        conversation.observe_end(ended.append)
        yield self.b("press", "Hang up")
        yield until(lambda: ended)
        self.assertTrue(ended[0].clean)

    @inlineCallbacks
    def test_secret_check_passes_with_same_secret_and_fails_with_different(self) -> None:
        yield self.b("sign_in", self.relay.url, "websmp")
        py = yield self.python_user("termsmp")
        conversation = yield self.python_calls(py, "websmp")
        results: list[bool] = []

        def smp(event: Any) -> None:
            if isinstance(event, SMPRequested):
                conversation.smp_respond(py_secret[0])
            elif isinstance(event, SMPResult):
                results.append(event.equal)

        py_secret = ["the blue bicycle"]
        conversation.observe_smp(smp)
        verification = yield self.b("text", "Verification")
        self.assertIn("Not verified", verification)
        # the browser starts, with the same secret (typed differently: NFKC and spaces)
        yield self.b("press", "Check a shared secret")
        yield self.b("type", "Shared secret", "  the blue bicycle ")
        yield self.b("press", "Start check")
        result = yield self.b("wait_text", "Secret check result", "typed the same secret")
        self.assertIn("termsmp typed the same secret", result)
        yield until(lambda: results)
        self.assertEqual(results, [True])
        yield self.b("press", "Close")
        yield self.b("wait_text", "Verification", "Verified")

        # Python starts, with a different secret; the browser answers
        conversation.smp_start("the red bicycle")
        yield self.b("type", "Shared secret", "the blue bicycle")
        yield self.b("press", "Answer")
        result = yield self.b("wait_text", "Secret check result", "The secrets differ")
        self.assertIn("someone is intercepting", result)
        yield until(lambda: len(results) == 2)
        self.assertEqual(results, [True, False])
        yield self.b("press", "Close")

    @inlineCallbacks
    def test_offline_mail_both_ways(self) -> None:
        yield self.b("sign_in", self.relay.url, "webmail")
        identity, pins = Identity.generate(), KnownPeers(self.mktemp())
        py = yield self.python_user("termmail", identity, pins)
        first_mail: list[Any] = []
        py.observe_mail(first_mail.append)
        # the browser leaves; mail waits on the relay; the next visit logs straight in
        yield deferToThread(self.browser.driver.get, "about:blank")
        yield task.deferLater(reactor, 0.3, lambda: None)
        yield py.send_mail("webmail", "Nachricht für später 📬\nzweite Zeile")
        yield deferToThread(self.browser.driver.get, self.relay.url)
        yield self.b("wait_text", "Connection", "Connected to the relay as webmail.")
        shown = yield self.b("wait_text", "Mail received", "Nachricht für später")
        self.assertIn("Mail from termmail", shown)
        self.assertIn("📬\nzweite Zeile", shown)
        # section 12: the browser's sealed read receipt reaches the sender, naming that mail
        yield until(lambda: first_mail)
        self.assertIsInstance(first_mail[0], MailRead)
        self.assertEqual((first_mail[0].reader, first_mail[0].first_words), ("webmail", "Nachricht für später 📬 zweite Zeile"))

        # now the Python user is offline and the browser writes
        yield py.quit()
        yield self.b("type", "Nickname to reach", "termmail")
        yield self.b("press", "Write mail")
        yield self.b("type", "Mail text", "Antwort per Post ✉")
        yield self.b("press", "Send mail")
        yield self.b("wait_text", "Mail received", "Mail to termmail sent")
        mail: list[Any] = []
        again = yield self.python_user("termmail", identity, pins)
        again.observe_mail(mail.append)
        yield until(lambda: mail)
        self.assertEqual((mail[0].sender, mail[0].text), ("webmail", "Antwort per Post ✉"))
        # and the Python client's receipt is shown in the page
        read = yield self.b("wait_text", "Mail received", "termmail read your mail")
        self.assertIn("\u201cAntwort per Post ✉\u201d", read)

    @inlineCallbacks
    def test_hostile_text_is_shown_inert(self) -> None:
        yield self.b("sign_in", self.relay.url, "webinert")
        py = yield self.python_user("terminert")
        conversation = yield self.python_calls(py, "webinert")
        hostile = '<img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>\x1b[2J\u202eevil\u2066'
        conversation.send(hostile)
        lines = yield self.b("wait", lambda: [m for m in self.browser.messages() if "onerror" in m], "the hostile line")
        self.assertEqual(lines[0], 'terminert: <img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>'
                                   '\\x1b[2J\\u202eevil\\u2066')
        images = yield deferToThread(self.browser.driver.execute_script, "return document.querySelectorAll('#messages img, #messages script').length")
        self.assertEqual(images, 0)
        title = yield deferToThread(lambda: self.browser.driver.title)
        self.assertEqual(title, "relaychat")
        isolated = yield deferToThread(self.browser.driver.execute_script,
                                       "return [...document.querySelectorAll('#messages li:last-child bdi')].map(b => b.dir)")
        self.assertEqual(isolated, ["auto", "auto"])

    @inlineCallbacks
    def test_only_the_relay_is_contacted_and_the_page_fits_a_phone(self) -> None:
        yield deferToThread(self.browser.requests)  # forget earlier tests' requests
        yield self.b("sign_in", self.relay.url, "webphone")
        urls = yield deferToThread(self.browser.requests)
        origin = self.relay.url.rstrip("/")
        self.assertTrue(urls)
        network = [u for u in urls if u.split(":", 1)[0] in ("http", "https", "ws", "wss", "ftp")]
        self.assertEqual([u for u in network if not u.startswith(origin + "/")], [])  # chrome:// pages are not network
        # the worker's own fetches are not in the page's log; the relay's access log has them
        assert self.relay.daemon is not None
        for path in ("/worker.js", "/pow.js", "/smprun.js"):
            self.assertIn(f'"GET {path} HTTP/1.1" 200', self.relay.daemon.log())
        errors = yield deferToThread(self.browser.driver.get_log, "browser")
        self.assertEqual([e for e in errors if e["level"] == "SEVERE"], [])
        driver = self.browser.driver
        yield deferToThread(driver.set_window_size, 390, 844)
        try:
            overflow = yield deferToThread(driver.execute_script,
                                           "return document.documentElement.scrollWidth - window.innerWidth")
            self.assertLessEqual(overflow, 0)
            field = yield self.b("find", "Nickname to reach")
            width = yield deferToThread(lambda: field.size["width"])
            self.assertLess(width, 390)
        finally:
            yield deferToThread(driver.set_window_size, 1100, 900)


class TwoBrowsers(_BrowserTest):

    other: Browser

    def prepare_class(self, shared: dict[str, Any]) -> None:
        super().prepare_class(shared)
        shared["other"] = Browser()
        shared["cleanups"].append(shared["other"].quit)

    @inlineCallbacks
    def test_two_browsers_talk(self) -> None:
        from selenium.webdriver.common.keys import Keys

        yield self.b("sign_in", self.relay.url, "anna")
        yield self.b("sign_in", self.relay.url, "ben", browser=self.other)
        yield self.b("press", "Refresh who is online")
        yield self.b("press", "Call ben")

        # ben answers with the keyboard alone: Tab to the button, then Enter
        def tab_to_accept() -> None:
            driver = self.other.driver
            self.other.find("Accept call from anna")
            body = driver.find_element("tag name", "body")
            body.send_keys(Keys.TAB)
            for _ in range(40):
                if driver.switch_to.active_element.accessible_name == "Accept call from anna":
                    driver.switch_to.active_element.send_keys(Keys.ENTER)
                    return
                driver.switch_to.active_element.send_keys(Keys.TAB)
            raise AssertionError("Tab never reached the Accept button")

        yield deferToThread(tab_to_accept)
        mine = yield self.b("wait", lambda: self.browser.text("Safety number").count(" ") == 11 and self.browser.text("Safety number"), "a safety number")
        theirs = yield self.b("wait", lambda: self.other.text("Safety number").count(" ") == 11 and self.other.text("Safety number"), "a safety number")
        self.assertEqual(mine, theirs)
        yield self.b("type", "Message", "hallo ben")
        yield self.b("press", "Send")
        got = yield self.b("wait", lambda: [m for m in self.other.messages() if "hallo" in m], "the message")
        self.assertEqual(got, ["anna: hallo ben"])
        yield self.b("type", "Message", "hallo anna", browser=self.other)
        yield self.b("press", "Send", browser=self.other)
        got = yield self.b("wait", lambda: [m for m in self.browser.messages() if "hallo anna" in m], "the reply")
        self.assertEqual(got, ["ben: hallo anna"])


class RelayRestart(_BrowserTest):

    @inlineCallbacks
    def test_browser_reconnects_after_a_relay_restart(self) -> None:
        yield self.b("sign_in", self.relay.url, "webrestart")
        identity, pins = Identity.generate(), KnownPeers(self.mktemp())
        py = yield self.python_user("termrestart", identity, pins)
        yield self.python_calls(py, "webrestart")
        yield deferToThread(self.relay.crash)  # abruptly: the connection is lost, not drained
        status = yield self.b("wait_text", "Connection", "The connection to the relay was lost")
        self.assertIn("Reconnecting in", status)
        lines = yield self.b("wait", lambda: [m for m in self.browser.messages() if "lost" in m], "the ended line")
        self.assertIn("The connection to the relay was lost; the conversation with termrestart ended.", lines)
        yield deferToThread(self.relay.start)  # same ports, same data
        yield self.b("wait_text", "Connection", "Connected to the relay as webrestart.", 40)
        again = yield self.python_user("termrestart", identity, pins)
        conversation = yield self.python_calls(again, "webrestart")
        conversation.send("wieder da")
        got = yield self.b("wait", lambda: [m for m in self.browser.messages() if "wieder da" in m], "the message")
        self.assertEqual(got, ["termrestart: wieder da"])


class RelayIdentity(_BrowserTest):

    @inlineCallbacks
    def test_a_relay_with_a_new_identity_is_a_stop_until_accepted(self) -> None:
        """Protocol section 13: the browser remembers the relay's id per address;
        a relay rebuilt (new data: a new id) at that address is refused before
        REGISTER, and accepting it carries the pins over."""
        yield self.b("sign_in", self.relay.url, "webrebuilt")
        identity = Identity.generate()
        py = yield self.python_user("termrebuilt", identity)
        conversation = yield self.python_calls(py, "webrebuilt")
        yield self.b("wait_text", "Safety number", conversation.safety_number)
        old_fingerprint = relay_fingerprint(py.server_id)
        yield deferToThread(self.relay.crash)
        shutil.rmtree(self.relay.home / "data")  # the relay's identity goes with its data
        yield deferToThread(self.relay.start)  # same ports: the browser reconnects by itself
        problem = yield self.b("wait_text", "Sign-in problem", "CHANGED its identity", 40)
        self.assertIn(old_fingerprint, problem)
        status = yield self.b("text", "Connection")
        self.assertIn("the relay has a different identity", status)
        yield self.b("press", "Accept the relay's new identity")
        yield self.b("wait_text", "Connection", "Connected to the relay as webrebuilt.", 40)
        # Someone else now holds termrebuilt on the rebuilt relay: the pin carried
        # over from the old id makes that a key change, not a first contact.
        impostor = yield self.python_user("termrebuilt", Identity.generate())
        self.assertNotEqual(relay_fingerprint(impostor.server_id), old_fingerprint)
        self.assertIn(relay_fingerprint(impostor.server_id), problem)
        impostor.call("webrebuilt").addErrback(lambda failure: None)
        yield self.b("press", "Accept call from termrebuilt")
        warning = yield self.b("wait", lambda: self.browser.find("Key changed").is_displayed() and self.browser.text("Key changed"), "the warning")
        self.assertIn("WARNING: termrebuilt's identity key has CHANGED", warning)


class OwnPackage(_BrowserTest):

    @inlineCallbacks
    def test_page_from_own_package_talks_through_any_relay(self) -> None:
        from tests.test_web_serve import LocalServer

        local = LocalServer(f"ws://127.0.0.1:{self.relay.web}/relay")
        self.addCleanup(local.stop)
        yield self.b("sign_in", local.url, "weblocal")
        py = yield self.python_user("termlocal")
        conversation = yield self.python_calls(py, "weblocal")
        conversation.send("über den eigenen Server")
        got = yield self.b("wait", lambda: [m for m in self.browser.messages() if "eigenen" in m], "the message")
        self.assertEqual(got, ["termlocal: über den eigenen Server"])
        shown = yield self.b("text", "Safety number")
        self.assertEqual(shown, conversation.safety_number)


class KeysInTheBrowser(_BrowserTest):

    @inlineCallbacks
    def test_key_change_is_a_loud_stop_until_accepted(self) -> None:
        yield self.b("sign_in", self.relay.url, "webpinned")
        py = yield self.python_user("termpinned")
        # the browser remembers another key for termpinned, as if the relay now lied about it
        import base64
        record = {"relay": base64.b64encode(py.server_id).decode(), "nick": "termpinned", "key": list(os.urandom(32))}
        yield deferToThread(self.browser.driver.execute_async_script, """
            const [record, done] = arguments;
            const open = indexedDB.open('relaychat', 1);
            open.onsuccess = () => {
              const t = open.result.transaction('kv', 'readwrite');
              t.objectStore('kv').put([{...record, key: new Uint8Array(record.key),
                verified: {how: 'number', time: 1, key: new Uint8Array(record.key)}}], 'pins');
              t.oncomplete = () => { open.result.close(); done(); };
            };""", record)
        yield deferToThread(self.browser.driver.refresh)
        yield self.b("wait_text", "Connection", "Connected to the relay as webpinned.")
        calling = py.call("webpinned")
        yield self.b("press", "Accept call from termpinned")
        warning = yield self.b("wait", lambda: self.browser.find("Key changed").is_displayed() and self.browser.text("Key changed"), "the warning")
        self.assertIn("WARNING: termpinned's identity key has CHANGED", warning)
        self.assertIn(py.fingerprint, warning)
        # protocol section 10: the caller saw the browser's binding verify first, so
        # for it the conversation opened, then ended without goodbye when the browser refused
        first = yield calling
        ended: list[Any] = []
        first.observe_end(ended.append)
        yield until(lambda: ended)
        self.assertFalse(ended[0].clean)
        yield self.b("press", "Accept the new key")
        conversation = yield self.python_calls(py, "webpinned")
        shown = yield self.b("wait_text", "Safety number", conversation.safety_number)
        self.assertEqual(shown, conversation.safety_number)
        verification = yield self.b("text", "Verification")
        self.assertIn("Not verified", verification)

    @inlineCallbacks
    def test_passphrase_guards_the_stored_key(self) -> None:
        yield self.b("sign_in", self.relay.url, "webpass", "correct horse")
        yield deferToThread(self.browser.driver.refresh)
        # a later visit asks for the passphrase: the key is not usable without it
        nick = yield self.b("find", "Nickname")
        value = yield deferToThread(nick.get_attribute, "value")
        self.assertEqual(value, "webpass")
        yield self.b("type", "Passphrase (optional)", "wrong horse")
        yield self.b("press", "Sign in")
        problem = yield self.b("wait_text", "Sign-in problem", "passphrase")
        self.assertEqual(problem, "That passphrase does not open the key kept in this browser.")
        stored = yield deferToThread(self.browser.stored, "profile", "(profile) => Object.keys(profile.keys).sort()")
        self.assertEqual(stored, ["nonce", "salt", "sealed"])
        yield self.b("type", "Passphrase (optional)", "correct horse")
        yield self.b("press", "Sign in")
        yield self.b("wait_text", "Connection", "Connected to the relay as webpass.")

    @inlineCallbacks
    def test_identity_key_is_kept_non_extractable(self) -> None:
        yield self.b("sign_in", self.relay.url, "webcryptokey")
        stored = yield deferToThread(self.browser.stored, "profile", """async (profile) => {
            const key = profile.keys.webcrypto.privateKey;
            let exported = 'no';
            try { await crypto.subtle.exportKey('pkcs8', key); exported = 'yes'; } catch (e) { exported = e.name; }
            return [key.type, key.algorithm.name, key.extractable, exported];
        }""")
        self.assertEqual(stored, ["private", "Ed25519", False, "InvalidAccessError"])
        # and the key it cannot read out still logs in after a reload
        yield deferToThread(self.browser.driver.refresh)
        yield self.b("wait_text", "Connection", "Connected to the relay as webcryptokey.")


class Layout(_BrowserTest):

    @inlineCallbacks
    def test_nickname_rules_and_taken_names_in_words(self) -> None:
        from relaychat.wire.nicknames import NICK_RULE

        yield deferToThread(self.browser.fresh, self.relay.url)
        yield self.b("type", "Nickname", "1bad")
        yield self.b("press", "Sign in")
        problem = yield self.b("wait_text", "Sign-in problem", "not a nickname")
        self.assertEqual(problem, f"'1bad' is not a nickname: {NICK_RULE}.")
        yield self.python_user("takenname")
        yield self.b("type", "Nickname", "TakenName")
        yield self.b("press", "Sign in")
        problem = yield self.b("wait_text", "Sign-in problem", "taken")
        self.assertTrue(problem.startswith("The relay refused REGISTER: "), problem)
        # another name works with the same (new) key
        yield self.b("type", "Nickname", "freename")
        yield self.b("press", "Sign in")
        yield self.b("wait_text", "Connection", "Connected to the relay as freename.")

    @inlineCallbacks
    def test_every_control_and_region_has_an_accessible_name(self) -> None:
        yield self.b("sign_in", self.relay.url, "weblabels")
        py = yield self.python_user("termlabels")
        yield self.python_calls(py, "weblabels")
        yield self.b("wait_text", "Safety number", " ")

        def unnamed() -> list[str]:
            from selenium.webdriver.common.by import By
            found = []
            for element in self.browser.driver.find_elements(
                    By.CSS_SELECTOR, "button, input, textarea, output, section, aside, dialog, [role], ol, ul"):
                if element.is_displayed() and not element.accessible_name.strip():
                    found.append(element.get_attribute("outerHTML")[:120])
            return found

        missing = yield deferToThread(unnamed)
        self.assertEqual(missing, [])

    @inlineCallbacks
    def test_several_conversations_at_once(self) -> None:
        yield self.b("sign_in", self.relay.url, "webmany")
        first = yield self.python_user("termone")
        second = yield self.python_user("termtwo")
        one = yield self.python_calls(first, "webmany")
        two = yield self.python_calls(second, "webmany")
        heard: dict[str, list[str]] = {"one": [], "two": []}
        one.observe_messages(heard["one"].append)
        two.observe_messages(heard["two"].append)
        one.send("eins")
        two.send("zwei")
        # the second call is the one shown; the first keeps its own lines
        got = yield self.b("wait", lambda: [m for m in self.browser.messages() if "zwei" in m], "zwei")
        self.assertEqual(got, ["termtwo: zwei"])
        self.assertFalse([m for m in self.browser.messages() if "eins" in m])
        yield self.b("type", "Message", "an zwei")
        yield self.b("press", "Send")
        yield self.b("press", "Conversation with termone")
        got = yield self.b("wait", lambda: [m for m in self.browser.messages() if "eins" in m], "eins")
        self.assertEqual(got, ["termone: eins"])
        safety = yield self.b("text", "Safety number")
        self.assertEqual(safety, one.safety_number)
        yield self.b("type", "Message", "an eins")
        yield self.b("press", "Send")
        yield until(lambda: heard["one"] and heard["two"])
        self.assertEqual(heard, {"one": ["an eins"], "two": ["an zwei"]})


class BenchSmoke(TestCase):
    """bench/web.py still runs (tiny figures; the numbers are bench/README.rst's business)."""

    timeout = 180

    def test_bench_web_runs(self) -> Deferred:
        import json
        import subprocess
        import sys

        have_browser()
        out = Path(self.mktemp()).resolve() / "web.json"

        def run() -> dict[str, Any]:
            result = subprocess.run(
                [sys.executable, "bench/web.py", "--setups", "3", "--messages", "100", "--rounds", "1", "--out", str(out)],
                cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=170)
            self.assertEqual(result.returncode, 0, result.stdout[-2000:] + result.stderr[-2000:])
            self.assertIn("set-up, offer to first message, p50 (ms)", result.stdout)
            return dict(json.loads(out.read_text()))

        def check(figures: dict[str, Any]) -> None:
            for key in ("tab_send_per_s", "tab_receive_per_s", "python_per_s"):
                self.assertGreater(figures[key], 0, key)
            self.assertGreater(figures["setup_browser_ms"]["p50"], 0)
            self.assertEqual(len(figures["setup_python_ms"]["samples"]), 3)

        return deferToThread(run).addCallback(check)
