"""Every script the browser client runs is integrity-checked, the Web Worker's too.

A page in headless Chromium is served from memory by the relay's own
``StaticFiles`` with one file changed: a line appended that would, if it
ever ran, request ``/tampered`` from the test's server. The page's modules
are refused by the import map's integrity; the worker's modules (which no
import map reaches) by ``workerload.js``, which stops the page with a
sentence. The control: the same change with the page's hashes recomputed
does run, so the absence of ``/tampered`` is not an accident of the
observation.
"""

from __future__ import annotations

from typing import Any, Mapping

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from twisted.web.server import Request, Site

from relaychat import web
from relaychat.server.webclient import StaticFiles
from tests.browser import Browser, have_browser


class _Files(StaticFiles):
    """StaticFiles over changeable contents, recording every path asked for."""

    def __init__(self) -> None:
        super().__init__(web.files(), "/relay")
        self.asked: list[str] = []
        self.serve(web.files())

    def serve(self, contents: Mapping[str, bytes]) -> None:
        self._contents = dict(contents, **{"relay.json": b'{"websocket": "/relay"}'})
        self._policy = web.content_security_policy("", contents["index.html"]).encode("ascii")

    def render_GET(self, request: Request) -> bytes:
        self.asked.append(request.path.decode("ascii", "replace"))
        return super().render_GET(request)


class Tampering(TestCase):
    timeout = 120

    def setUp(self) -> None:
        have_browser()
        self.files = _Files()
        site = Site(self.files)
        site.noisy = False
        port: Any = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[arg-type]  # Site is a ServerFactory at run time
        self.addCleanup(port.stopListening)
        self.url = f"http://127.0.0.1:{port.getHost().port}/"
        self.browser = Browser()
        self.addCleanup(self.browser.quit)

    def tampered(self, name: str, rehash: bool = False) -> dict[str, bytes]:
        contents = dict(web.files())
        contents[name] += f"\n;fetch('{self.url}tampered?{name}');\n".encode("ascii")
        if rehash:
            contents["index.html"] = web.render_index(contents["index.html"].decode("utf-8"), contents).encode("utf-8")
        return contents

    def status(self) -> Any:
        return deferToThread(self.browser.text, "Connection")

    @inlineCallbacks
    def open(self, contents: Mapping[str, bytes]) -> Any:
        self.files.serve(contents)
        self.files.asked.clear()
        yield deferToThread(self.browser.fresh, self.url)

    @inlineCallbacks
    def test_a_changed_worker_module_never_runs_and_the_page_says_so(self) -> Any:
        """worker.js and smprun.js only the worker loads; the other modules it
        imports the page imports too (refused below; node tests show the
        loader refusing them as well)."""
        for name in ("worker.js", "smprun.js"):
            yield self.open(self.tampered(name))
            yield deferToThread(self.browser.wait_text, "Connection", "does not match its integrity hashes")
            status = yield self.status()
            self.assertIn("Do not sign in here", status)
            self.assertNotIn("/tampered", self.files.asked)
            self.assertIn("/" + name, self.files.asked)  # it was fetched, and refused
            shown = yield deferToThread(self.browser.driver.execute_script,
                                        "return !document.getElementById('login').hidden")
            self.assertFalse(shown)  # no sign-in form: no key is made or unlocked for this code

    @inlineCallbacks
    def test_a_changed_page_module_never_runs(self) -> Any:
        for name in ("relay.js", "smp.js", "vendor/node_modules/@noble/hashes/_u64.js"):
            yield self.open(self.tampered(name))
            logs = yield deferToThread(self.browser.wait, lambda: [
                e for e in self.browser.driver.get_log("browser") if "integrity" in e["message"]], "an integrity error")
            self.assertIn(name, " ".join(e["message"] for e in logs))
            self.assertNotIn("/tampered", self.files.asked)
            status = yield self.status()
            self.assertIn("Starting", status)  # app.js never ran

    @inlineCallbacks
    def test_control_the_same_change_with_matching_hashes_runs(self) -> Any:
        """Without this, a change that broke the observation would pass the tests above."""
        for name in ("worker.js", "relay.js"):
            yield self.open(self.tampered(name, rehash=True))
            yield deferToThread(self.browser.wait, lambda: "/tampered" in self.files.asked, "the changed code to run")
        yield self.open(web.files())
        yield deferToThread(self.browser.find, "Nickname")  # the real page starts its worker and asks for a nickname
        status = yield self.status()
        self.assertNotIn("integrity", status)
